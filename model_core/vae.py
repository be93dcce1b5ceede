"""Causal 3D VAE in the Wan2.1 layout, with streaming encode and decode.

Compression: 8x spatial, 4x temporal, `z_dim` (16) latent channels. A clip of 1+4k frames maps
to 1+k latent frames: frame 0 alone, then each group of 4 frames. Every temporal operation is
causal (it looks only at past frames), and each such layer keeps the tail of its input in a
`TemporalCache`, so a clip can be encoded or decoded chunk by chunk with the same result as the
whole clip (see `LPMVAEStreamDecoder`).

Layout of the network (levels run from full to lowest resolution; `VAEConfig` sizes them):
  video -> space-to-depth by `patch_size` -> conv_in -> level 0 .. level L-1 -> mid -> head
Each level has `num_res_blocks` residual blocks with temporal kernel `time_kernel[level]`
(1 = per-frame 2D conv, 3 = causal over the current and 2 past frames); between levels a 2x
spatial resample and, where `temporal_downsample` says so, a 2x temporal resample. Temporal
kernels and resamples sit at the low resolutions where they are cheap; the full-resolution
stage is a space-to-depth so that no convolution runs at full resolution.
The decoder mirrors the encoder. The mid stage is a residual block plus per-frame attention.

Latents returned by `encode` are normalised with the per-channel `latent_mean` / `latent_std`
buffers (identity until a trainer sets them from data statistics); `decode` expects the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from model_core.config import VAEConfig, VideoConfig
from model_core.vae_audio import (
    LPMAudioInject,
    LPMDecoderAudio,
    frame_audio_features,
    pool_frames,
    silence_features,
)
from model_core.vae_layers import (
    LPMCausalConv,
    LPMChannelNorm,
    LPMFrameAttention,
    LPMResBlock,
    LPMSpatialDown,
    LPMSpatialUp,
    LPMTimeDownsample,
    LPMTimeUpsample,
    TemporalCache,
)

LOGVAR_RANGE = (-30.0, 20.0)


def _check_config(cfg: VAEConfig) -> list[int]:
    levels = len(cfg.channel_mults)
    if len(cfg.temporal_downsample) != levels - 1 or len(cfg.time_kernel) != levels:
        raise ValueError(
            "VAEConfig: temporal_downsample needs len(channel_mults)-1 entries, time_kernel one per level"
        )
    if cfg.patch_size * 2 ** (levels - 1) != cfg.spatial_factor:
        raise ValueError(
            f"VAEConfig: patch_size * 2**(levels-1) must equal spatial_factor {cfg.spatial_factor}"
        )
    if 2 ** sum(cfg.temporal_downsample) != cfg.temporal_factor:
        raise ValueError(
            f"VAEConfig: 2**sum(temporal_downsample) must equal temporal_factor {cfg.temporal_factor}"
        )
    return [cfg.base_channels * m for m in cfg.channel_mults]


class LPMVAEMid(nn.Module):
    def __init__(self, channels: int, kt: int, attention: bool) -> None:
        super().__init__()
        self.res = LPMResBlock(channels, channels, kt)
        self.attn = LPMFrameAttention(channels) if attention else None

    def forward(self, x: Tensor, cache: TemporalCache | None) -> Tensor:
        x = self.res(x, cache)
        return x if self.attn is None else self.attn(x)


class LPMVAEEncoder(nn.Module):
    """Video (B, T, 3, H, W) -> posterior moments (B, T', 2*z_dim, h, w)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch = _check_config(cfg)
        p, kt = cfg.patch_size, cfg.time_kernel
        self.patch_size = p
        self.conv_in = LPMCausalConv(3 * p * p, ch[0], kt[0])
        self.blocks = nn.ModuleList()
        self.down = nn.ModuleList()
        self.time_down = nn.ModuleList()
        cin = ch[0]
        for i, c in enumerate(ch):
            self.blocks.append(
                nn.ModuleList(
                    [LPMResBlock(cin if j == 0 else c, c, kt[i]) for j in range(cfg.num_res_blocks)]
                )
            )
            cin = c
            if i < len(ch) - 1:
                self.down.append(LPMSpatialDown(c, c))
                self.time_down.append(
                    LPMTimeDownsample(c) if cfg.temporal_downsample[i] else nn.Identity()
                )
        self.mid = LPMVAEMid(ch[-1], kt[-1], cfg.mid_attention)
        self.norm_out = LPMChannelNorm(ch[-1])
        self.conv_out = LPMCausalConv(ch[-1], 2 * cfg.z_dim, kt[-1])

    def forward(self, video: Tensor, cache: TemporalCache | None = None) -> Tensor:
        b, t = video.shape[:2]
        x = F.pixel_unshuffle(video.reshape(b * t, *video.shape[2:]), self.patch_size)
        x = self.conv_in(x.reshape(b, t, *x.shape[1:]), cache)
        for i, level in enumerate(self.blocks):
            for block in level:
                x = block(x, cache)
            if i < len(self.down):
                x = self.down[i](x)
                td = self.time_down[i]
                x = td(x, cache) if isinstance(td, LPMTimeDownsample) else x
        x = self.mid(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class LPMVAEDecoder(nn.Module):
    """Latents (B, T', z_dim, h, w) -> video (B, T, 3, H, W), unclamped."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch = _check_config(cfg)
        p, kt = cfg.patch_size, cfg.time_kernel
        self.patch_size = p
        self.conv_in = LPMCausalConv(cfg.z_dim, ch[-1], kt[-1])
        self.mid = LPMVAEMid(ch[-1], kt[-1], cfg.mid_attention)
        # Stored from the lowest resolution up: blocks[j] works at level L-1-j.
        self.blocks = nn.ModuleList()
        self.time_up = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            self.blocks.append(
                nn.ModuleList([LPMResBlock(ch[i], ch[i], kt[i]) for _ in range(cfg.num_res_blocks)])
            )
            if i > 0:
                self.time_up.append(
                    LPMTimeUpsample(ch[i]) if cfg.temporal_downsample[i - 1] else nn.Identity()
                )
                self.up.append(LPMSpatialUp(ch[i], ch[i - 1]))
        self.norm_out = LPMChannelNorm(ch[0])
        self.conv_out = LPMCausalConv(ch[0], 3 * p * p, kt[0])
        self.channels = ch
        # Frames of full rate per frame at blocks[j] (4, 2, 1 for the tiny VAE).
        self.groups = [2 ** sum(cfg.temporal_downsample[: len(ch) - 1 - j]) for j in range(len(ch))]
        self.audio: LPMDecoderAudio | None = None
        self.audio_inject: nn.ModuleList | None = None
        if cfg.decoder_audio > 0:
            self.enable_audio(cfg.decoder_audio)

    def enable_audio(self, dim: int) -> None:
        """Give the decoder the voice (model_core/vae_audio.py): an embedding per frame,
        added at every level above the lowest (the ones after a temporal upsample, where
        frames are finer than latents). The residuals start at zero."""
        ch = self.channels
        self.audio = LPMDecoderAudio(dim)
        self.audio_inject = nn.ModuleList(
            LPMAudioInject(ch[len(ch) - 1 - j], dim) for j in range(1, len(ch))
        )

    def forward(
        self, z: Tensor, cache: TemporalCache | None = None, audio: Tensor | None = None
    ) -> Tensor:
        """`audio`: per-output-frame features (B, T, FEATURES), required by a decoder with
        the audio path (`LPMCausalVAE.decode` makes them, silence when it has no track)."""
        start = _stream_start(cache)
        emb = None
        if self.audio is not None:
            if audio is None:
                raise ValueError("a decoder with the audio path needs per-frame audio features")
            emb = self.audio(audio)
        x = self.mid(self.conv_in(z, cache), cache)
        for j, level in enumerate(self.blocks):
            if emb is not None and j > 0:
                x = self.audio_inject[j - 1](x, pool_frames(emb, self.groups[j], start))
            for block in level:
                x = block(x, cache)
            if j < len(self.up):
                tu = self.time_up[j]
                x = tu(x, cache) if isinstance(tu, LPMTimeUpsample) else x
                x = self.up[j](x)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)
        b, t = x.shape[:2]
        y = F.pixel_shuffle(x.reshape(b * t, *x.shape[2:]), self.patch_size)
        return y.reshape(b, t, *y.shape[1:])


def _stream_start(cache: TemporalCache | None) -> bool:
    """Whether a decode starts a clip or stream (frame 0 alone) rather than continuing one."""
    return cache is None or len(cache) == 0


def _check_video(video: Tensor, cfg: VAEConfig, first: bool) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
    t, h, w = video.shape[2:]
    f, ft = cfg.spatial_factor, cfg.temporal_factor
    if h % f or w % f:
        raise ValueError(f"video height and width must be multiples of {f}, got {h}x{w}")
    if first and (t - 1) % ft:
        raise ValueError(f"a clip (or a stream's first push) needs 1+{ft}k frames, got {t}")
    if not first and (t == 0 or t % ft):
        raise ValueError(f"a stream push after the first needs {ft}n frames (n >= 1), got {t}")


class LPMCausalVAE(nn.Module):
    """Causal 3D VAE (Wan2.1 layout) with streaming encode/decode. Video is (B, 3, T, H, W)
    float in [-1, 1] with T = 1+4k; latents are (B, z_dim, 1+k, H/8, W/8), normalised."""

    def __init__(
        self, cfg: VAEConfig, sample_rate: int = 16000, samples_per_frame: float = 16000 / 24
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.samples_per_frame = sample_rate, samples_per_frame
        self.encoder = LPMVAEEncoder(cfg)
        self.decoder = LPMVAEDecoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.z_dim))
        self.register_buffer("latent_std", torch.ones(cfg.z_dim))

    # -- latent normalisation -------------------------------------------------------------
    def normalize(self, z: Tensor) -> Tensor:
        """Raw posterior latents (B, C, T, h, w) -> the normalised latents the DiT sees."""
        return (z - self.latent_mean.view(1, -1, 1, 1, 1)) / self.latent_std.view(1, -1, 1, 1, 1)

    def denormalize(self, z: Tensor) -> Tensor:
        return z * self.latent_std.view(1, -1, 1, 1, 1) + self.latent_mean.view(1, -1, 1, 1, 1)

    # -- whole clips ----------------------------------------------------------------------
    def encode_posterior(
        self, video: Tensor, cache: TemporalCache | None = None
    ) -> tuple[Tensor, Tensor]:
        """Raw (un-normalised) posterior (mean, logvar), each (B, z_dim, 1+k, h, w), for the
        KL term of VAE training."""
        _check_video(video, self.cfg, first=_stream_start(cache))
        moments = self.encoder(video.transpose(1, 2), cache).transpose(1, 2)
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, video: Tensor) -> Tensor:
        """Normalised posterior mean, (B, z_dim, 1+k, H/8, W/8)."""
        return self.normalize(self.encode_posterior(video)[0])

    def encode_image(self, img: Tensor) -> Tensor:
        """A single image (B, 3, H, W), H and W multiples of 8 -> (B, z_dim, 1, H/8, W/8),
        through the first-frame path (what a reference image is in the latent sequence)."""
        if img.dim() != 4:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(img.shape)}")
        return self.encode(img.unsqueeze(2))

    @property
    def hears(self) -> bool:
        """Whether the decoder has the audio path (`VAEConfig.decoder_audio`)."""
        return self.decoder.audio is not None

    def decode(
        self,
        z: Tensor,
        clamp: bool = True,
        cache: TemporalCache | None = None,
        audio: Tensor | None = None,
    ) -> Tensor:
        """Normalised latents (B, z_dim, T', h, w) -> video (B, 3, 1+4(T'-1), 8h, 8w) (when
        starting a clip; with a warm cache T' latents give 4T' frames), clamped to [-1, 1].

        `audio`: the character's own voice, PCM (B, S) at `sample_rate` whose last sample
        ends the last frame (only its last frames' windows are read; earlier frames without
        PCM hear silence). Used by a decoder with the audio path, ignored by one without;
        None is silence."""
        if z.dim() != 5 or z.shape[1] != self.cfg.z_dim or z.shape[2] == 0:
            raise ValueError(
                f"latents must be (B, {self.cfg.z_dim}, T>=1, h, w), got {tuple(z.shape)}"
            )
        feats = None
        if self.hears:
            ft = self.cfg.temporal_factor
            frames = 1 + ft * (z.shape[2] - 1) if _stream_start(cache) else ft * z.shape[2]
            if audio is None:
                feats = silence_features(z.shape[0], frames, z)
            elif audio.dim() != 2 or audio.shape[0] != z.shape[0]:
                raise ValueError(
                    f"decoder audio must be (B={z.shape[0]}, samples), got {tuple(audio.shape)}"
                )
            else:
                feats = frame_audio_features(
                    audio, frames, self.samples_per_frame, self.sample_rate
                )
        video = self.decoder(self.denormalize(z).transpose(1, 2), cache, feats).transpose(1, 2)
        return video.clamp(-1.0, 1.0) if clamp else video

    # -- streams --------------------------------------------------------------------------
    def stream_decoder(self) -> LPMVAEStreamDecoder:
        return LPMVAEStreamDecoder(self)

    def stream_encoder(self) -> LPMVAEStreamEncoder:
        return LPMVAEStreamEncoder(self)


class LPMVAEStreamDecoder:
    """Decodes a latent stream push by push; holds the per-layer temporal cache.

    The first push of 1+k latent frames gives 1+4k frames (k may be 0: the reference latent
    that primes an online stream); every later push of n latent frames gives 4n frames.
    Concatenating all outputs equals `vae.decode` of the concatenated latents.
    """

    def __init__(self, vae: LPMCausalVAE) -> None:
        self.vae = vae
        self.cache = TemporalCache()
        self.latent_frames_seen = 0

    def push(self, z_chunk: Tensor, audio: Tensor | None = None) -> Tensor:
        """`audio`: the voice for this push's frames, PCM (B, S) ending with its last frame
        (see `LPMCausalVAE.decode`)."""
        frames = self.vae.decode(z_chunk, cache=self.cache, audio=audio)
        self.latent_frames_seen += z_chunk.shape[2]
        return frames

    def reset(self) -> None:
        self.cache.clear()
        self.latent_frames_seen = 0


class LPMVAEStreamEncoder:
    """Encodes a video stream push by push: first push 1+4k frames (k may be 0), later pushes
    4n frames; returns the normalised latent mean, 1+k then n latent frames."""

    def __init__(self, vae: LPMCausalVAE) -> None:
        self.vae = vae
        self.cache = TemporalCache()
        self.frames_seen = 0

    def push(self, frames: Tensor) -> Tensor:
        mean, _ = self.vae.encode_posterior(frames, cache=self.cache)
        self.frames_seen += frames.shape[2]
        return self.vae.normalize(mean)

    def reset(self) -> None:
        self.cache.clear()
        self.frames_seen = 0


def vae_flops_per_chunk(cfg: VAEConfig, video: VideoConfig) -> dict[str, int]:
    """Convolution/matmul FLOPs (2 per multiply-add) to encode and to decode one streaming
    chunk of `video.chunk_frames` frames in steady state (after frame 0), at the video's size.
    Counted by running the model on the meta device, so it is exact for this architecture
    and costs no memory even for large presets."""
    with torch.device("meta"):
        vae = LPMCausalVAE(cfg)
        h, w, n = video.height, video.width, video.chunk_frames
        lat = (h // cfg.spatial_factor, w // cfg.spatial_factor)
        enc, dec = vae.stream_encoder(), vae.stream_decoder()
        enc.push(torch.zeros(1, 3, 1, h, w))
        dec.push(torch.zeros(1, cfg.z_dim, 1, *lat))
        out = {}
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                enc.push(torch.zeros(1, 3, n, h, w))
            out["encode"] = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter:
                dec.push(torch.zeros(1, cfg.z_dim, n // cfg.temporal_factor, *lat))
            out["decode"] = counter.get_total_flops()
    return out
