"""Typed configuration for every part of the LPM model, and the named presets.

Each config is a plain dataclass; `LPMConfig.preset(name)` returns a complete one and
`to_dict` / `from_dict` round-trip it through the JSON stored beside a checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class VideoConfig:
    height: int = 128
    width: int = 128
    fps: int = 24
    chunk_frames: int = 24  # one streaming chunk = 1 second of video


@dataclass
class VAEConfig:
    """Causal 3D VAE in the Wan2.1 layout: first frame alone, then groups of 4 frames.

    Levels run from the input resolution / patch_size down to the latent resolution; level i
    has base_channels * channel_mults[i] channels and per-frame (1) or causal 3-frame (3)
    temporal kernels (time_kernel[i]). The defaults are the `tiny` VAE, sized so that decoding
    one 24-frame chunk at 128x128 takes well under 0.1 s on 2 CPU threads.
    """

    z_dim: int = 16
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 3, 6)  # levels at H/2, H/4, H/8
    temporal_downsample: tuple[bool, ...] = (True, True)  # between levels: 2 x 2 -> 4x
    time_kernel: tuple[int, ...] = (1, 1, 3)  # temporal convs only at the lowest resolution
    patch_size: int = 2  # space-to-depth at the input: nothing runs at full resolution
    num_res_blocks: int = 1
    mid_attention: bool = True
    spatial_factor: int = 8
    temporal_factor: int = 4
    # Width of the decoder's per-frame audio embedding (model_core/vae_audio.py); 0: the
    # decoder reads latents only. Set by the `vae-decoder` stage's `audio` option.
    decoder_audio: int = 0


@dataclass
class AudioConfig:
    sample_rate: int = 16000
    n_mels: int = 64
    hop_length: int = 160  # 10 ms mel hop
    win_length: int = 400
    feature_dim: int = 128  # per-video-frame feature size fed to the DiT
    hidden: int = 128
    context_seconds: float = 1.0  # left audio context the encoder may look at
    frontend: str = "logmel"  # built-in front end; others are passed to LPMAudioEncoder
    kernel_size: int = 3  # causal dilated conv stack over the 10 ms front-end frames
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # receptive field 31 frames + window: ~0.33 s


@dataclass
class TextConfig:
    backend: str = "hash"  # "hash" (self-contained) or "minilm" (frozen pretrained encoder)
    vocab_size: int = 8192
    dim: int = 128
    max_tokens: int = 32


@dataclass
class DiTConfig:
    """Transformer trunk. Parameter names and shapes follow Wan2.1's WanModel."""

    dim: int = 192
    ffn_dim: int = 768
    num_heads: int = 3
    num_layers: int = 8
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    cond_dim: int = 0  # extra input channels (Wan I2V concatenates image latent + mask: 20)
    image_context_dim: int = 0  # CLIP image context of Wan I2V (1280); 0 disables it
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    # Dual audio injection: speaking audio in even layers with a narrow frame-local window,
    # listening audio in odd layers with a wide window (both in video frames).
    speak_window: tuple[int, int] = (2, 0)  # frames before / after the latent frame's span
    listen_window: tuple[int, int] = (48, 0)
    # Layer-normalise each audio frame's features before the audio cross-attention reads them
    # (no weights). Without it, training can mute the voice by shrinking the audio encoder's
    # output: the shipped tiny model's fell to an eighth of its initial size. Off by default
    # so checkpoints trained without it behave as they did; the `base` stage's `audio_norm`
    # option turns it on.
    audio_norm: bool = False
    # The global reference latent concatenated to every video frame's noisy latent along
    # channels (z_dim more input channels of the patch embedding), as Wan2.1's image-to-video
    # model conditions on its first frame: every video token sees the reference at its own
    # position, besides the in-sequence reference tokens it attends to. Off by default; the
    # `base` stage's `ref_concat` option turns it on with zero-initialised input weights.
    ref_concat: bool = False


@dataclass
class ReferenceConfig:
    max_body: int = 4
    max_face: int = 8
    body_views: tuple[str, ...] = ("front", "left", "right", "back")
    face_labels: tuple[str, ...] = (
        "neutral",
        "smile",
        "laugh",
        "frown",
        "surprise",
        "anger",
        "sad",
        "thinking",
    )
    face_size: int = 64  # face crops are encoded at this side length
    # Each reference type sits at its own temporal RoPE slot, before the video's positions.
    rope_slot_global: int = 0
    rope_slot_body: int = 1
    rope_slot_face: int = 2
    video_rope_offset: int = 4  # first video latent frame's temporal position


@dataclass
class OnlineConfig:
    backbone_steps: int = 2
    refiner_steps: int = 1
    window_chunks: int = 2  # sliding window of recent chunks kept in the KV cache
    refiner_layers: int = 4  # the Refiner is its own, smaller DiT with the same width
    backbone_timesteps: tuple[float, ...] = (1.0, 0.5)
    refiner_timestep: float = 0.25
    # Width of the mouth head (model_core/mouth_head.py) that draws the speaking voice into
    # each chunk's latents after the Refiner; 0: none (set by the `mouth-head` stage).
    mouth_head: int = 0
    # Width of the mouth painter (model_core/mouth_painter.py) that draws the opening the
    # mouth head hears into each decoded frame; 0: none (set by the `mouth-painter` stage).
    mouth_painter: int = 0
    # Whether the mouth painter also sees the stream's picture (the decoded global reference)
    # to find the character's mouth (set by the `mouth-painter` stage's `picture` option).
    mouth_painter_picture: bool = False
    # The painter is told this many times the opening the mouth head hears. Its drawn opening
    # hardly moves below a told 0.25 (`scripts/painter-gain.py`'s response curve), so a gain
    # over 1 carries more of what the head hears into what it draws; set by the
    # `mouth-painter` stage's `serve_gain` option, chosen on validation samples.
    mouth_painter_gain: float = 1.0
    # Paint the opening relative to the painter's own edit at opening 0: each frame gets the
    # painter's edit for the opening told less its edit for opening 0, so a frame told
    # "closed" is left as the Online model drew it. The painter alone edits even a frame told
    # 0, and on some characters that edit reads as an open mouth (`scripts/painter-gain.py`);
    # set by the `mouth-painter` stage's `serve_relative` option.
    mouth_painter_relative: bool = False
    # The painter's edit is drawn this many times over (relative: the edit for the opening
    # told less the edit for 0). Past a told 1.25 what it draws saturates, so scaling the edit
    # carries a wider swing than telling it more; set by the stage's `serve_strength` option.
    mouth_painter_strength: float = 1.0


@dataclass
class BaseSamplerConfig:
    steps: int = 16
    guidance_scale: float = 3.0
    shift: float = 3.0
    # Guidance on the audio alone on top (`model_core/flow.py` `guide`): 0 = plain guidance.
    audio_guidance: float = 0.0


@dataclass
class LPMConfig:
    name: str = "tiny"
    video: VideoConfig = field(default_factory=VideoConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    refs: ReferenceConfig = field(default_factory=ReferenceConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    sampler: BaseSamplerConfig = field(default_factory=BaseSamplerConfig)

    @property
    def latent_frames_per_chunk(self) -> int:
        return self.video.chunk_frames // self.vae.temporal_factor

    @property
    def latent_hw(self) -> tuple[int, int]:
        f = self.vae.spatial_factor
        return self.video.height // f, self.video.width // f

    @property
    def tokens_per_latent_frame(self) -> int:
        h, w = self.latent_hw
        return (h // self.dit.patch_size[1]) * (w // self.dit.patch_size[2])

    @property
    def tokens_per_chunk(self) -> int:
        return self.latent_frames_per_chunk * self.tokens_per_latent_frame

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LPMConfig:
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            sub = _SUBCONFIGS.get(f.name)
            kw[f.name] = _build(sub, v) if sub else v
        return cls(**kw)

    def with_overrides(self, overrides: dict[str, Any]) -> LPMConfig:
        """A copy with some fields changed: {"vae.base_channels": 24, "dit.num_layers": 10}.
        Lists become tuples; an unknown section or field, or a value of the wrong kind (a
        number for a tuple, text for a number), raises ValueError naming it."""
        d = self.to_dict()
        for path, value in overrides.items():
            section, _, key = path.partition(".")
            if section not in _SUBCONFIGS or not key:
                raise ValueError(
                    f"unknown config field {path!r}; sections: {', '.join(_SUBCONFIGS)}"
                )
            if key not in d[section]:
                raise ValueError(
                    f"unknown config field {path!r}; {section} has {', '.join(d[section])}"
                )
            old = d[section][key]
            if not _same_kind(old, value):
                raise ValueError(f"config field {path!r}: {value!r} is not a {type(old).__name__}")
            d[section][key] = type(old)(value) if isinstance(old, int | float) else value
        return LPMConfig.from_dict(d)

    @classmethod
    def preset(cls, name: str) -> LPMConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return PRESETS[name]()


def _same_kind(old: Any, value: Any) -> bool:
    """Whether `value` may replace the config value `old` (a list for a tuple, a whole number
    for an int, any number for a float, a bool only for a bool)."""
    if isinstance(old, bool) or isinstance(value, bool):
        return isinstance(old, bool) and isinstance(value, bool)
    if isinstance(old, list | tuple):
        return isinstance(value, list | tuple)
    if isinstance(old, int):
        return isinstance(value, int | float) and float(value).is_integer()
    if isinstance(old, float):
        return isinstance(value, int | float)
    return isinstance(value, type(old))


def _build(sub: type, v: dict[str, Any]):
    kw = {}
    for f in dataclasses.fields(sub):
        if f.name in v:
            val = v[f.name]
            kw[f.name] = tuple(val) if isinstance(val, list) else val
    return sub(**kw)


_SUBCONFIGS = {
    "video": VideoConfig,
    "vae": VAEConfig,
    "audio": AudioConfig,
    "text": TextConfig,
    "dit": DiTConfig,
    "refs": ReferenceConfig,
    "online": OnlineConfig,
    "sampler": BaseSamplerConfig,
}


def _tiny() -> LPMConfig:
    return LPMConfig(name="tiny")


def _small() -> LPMConfig:
    return LPMConfig(
        name="small",
        video=VideoConfig(height=256, width=256),
        vae=VAEConfig(base_channels=32, time_kernel=(1, 3, 3)),
        audio=AudioConfig(feature_dim=256, hidden=256),
        text=TextConfig(dim=256),
        dit=DiTConfig(dim=1024, ffn_dim=4096, num_heads=16, num_layers=16),
        online=OnlineConfig(window_chunks=3, refiner_layers=4),
    )


def _lpm_17b() -> LPMConfig:
    # Wan2.1-I2V-14B trunk shape (dim 5120, 40 layers, 40 heads, ffn 13824, umT5 text 4096,
    # 36 input channels) plus LPM's audio, reference and refiner parts. LPM's in-sequence
    # reference tokens replace Wan-I2V's CLIP image cross-attention (k_img/v_img/img_emb, 2.1B),
    # which the Wan mapping drops (model_core/wan_mapping.py).
    return LPMConfig(
        name="lpm-17b",
        video=VideoConfig(height=480, width=832),
        # Wan2.1 VAE widths: 3D causal convs at every level, no space-to-depth.
        vae=VAEConfig(
            base_channels=96,
            channel_mults=(1, 2, 4, 4),
            temporal_downsample=(False, True, True),
            time_kernel=(3, 3, 3, 3),
            patch_size=1,
            num_res_blocks=2,
        ),
        audio=AudioConfig(feature_dim=1024, hidden=1024, n_mels=80),
        text=TextConfig(backend="umt5", vocab_size=256384, dim=4096, max_tokens=512),
        dit=DiTConfig(
            dim=5120,
            ffn_dim=13824,
            num_heads=40,
            num_layers=40,
            cond_dim=20,
            image_context_dim=0,
        ),
        online=OnlineConfig(window_chunks=3, refiner_layers=1),
    )


PRESETS = {"tiny": _tiny, "small": _small, "lpm-17b": _lpm_17b}
