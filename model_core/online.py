"""The Online LPM: block-causal, 1-second chunks, generated one after another for as long as
a conversation lasts.

Per chunk: Backbone (few denoising steps from noise, attending to the reference sink and the
sliding window of earlier chunks) -> the Backbone's own output refills its KV cache -> Refiner
(one step from a lightly re-noised Backbone output, restoring detail) -> streaming VAE decode.
The three stages only hand latents forward, so chunk k's Refiner and decode can run while the
Backbone works on chunk k+1 (see `OnlineStream.backbone`, `.refine`, `.decode`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from model_core.dit import LPMAudioInputs, LPMSink, LPMTransformer, latent_frame_spans
from model_core.flow import guide, predict_x0
from model_core.kv_cache import SinkWindowKVCache
from model_core.references import EncodedReferences

if TYPE_CHECKING:
    from model_core.model import LPMModel


@dataclass
class ChunkResult:
    index: int
    frames: np.ndarray  # uint8 (24, H, W, 3)
    timings: dict[str, float] = field(default_factory=dict)
    latents: torch.Tensor | None = None


@dataclass
class ChunkAudio:
    """Per-video-frame features of both tracks for one chunk, with left history."""

    speak: torch.Tensor  # (1, H + 24, D)
    listen: torch.Tensor
    history: int  # frames of history before the chunk's first frame


def frames_to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    x = ((video[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().numpy()


class AudioFeatureHistory:
    """Both tracks through the causal audio encoder's stream (batch of 2: speaking, listening),
    keeping the last `history_frames` features of each for the wide listening window."""

    def __init__(self, model: LPMModel, history_frames: int):
        self.stream = model.audio_encoder.stream(batch=2)
        self.history_frames = history_frames
        self.feats: torch.Tensor | None = None

    def push(self, speak: torch.Tensor, listen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.stream.push(torch.stack([speak.view(-1), listen.view(-1)]))
        prev = (
            self.feats
            if self.feats is not None
            else f.new_zeros(2, self.history_frames, f.shape[-1])
        )
        out = torch.cat([prev, f], dim=1)
        self.feats = out[:, -self.history_frames :]
        return out[0:1], out[1:2]


def _velocity(net, x: torch.Tensor, t: torch.Tensor, kw: dict, audio_guidance: float):
    """`net`'s velocity, guided on the audio alone (`guide`) when `audio_guidance` is not 0:
    one more pass with the same conditions but no audio."""
    v = net(x, t, **kw)
    if audio_guidance:
        v = guide(v, None, 1.0, net(x, t, **{**kw, "audio": None}), audio_guidance)
    return v


def _empty_sink(sink: LPMSink) -> LPMSink:
    return LPMSink([k[:, :0] for k in sink.k], [v[:, :0] for v in sink.v])


class OnlineStream:
    """One conversation's state: sink, KV window, audio history, VAE decode cache."""

    def __init__(
        self,
        model: LPMModel,
        refs: EncodedReferences,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
        *,
        seed: int = 0,
        window_chunks: int | None = -1,
        keep_sink: bool = True,
        audio_guidance: float = 0.0,
        refiner_audio_guidance: float = 0.0,
        mouth_head: bool = True,
        mouth_painter: bool = True,
    ):
        cfg = model.cfg
        for name, value in (
            ("audio_guidance", audio_guidance),
            ("refiner_audio_guidance", refiner_audio_guidance),
        ):
            if not (value >= 0 and value < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        # Guidance on the voice alone (`model_core.flow.guide`): each Backbone (Refiner) step
        # also runs without the audio and moves a further `audio_guidance` times along the
        # audio's own direction. 0 = one pass per step, as distilled.
        self.audio_guidance = float(audio_guidance)
        self.refiner_audio_guidance = float(refiner_audio_guidance)
        self.model, self.cfg = model, cfg
        # The mouth head (model_core/mouth_head.py), when the model has one: the voice drawn
        # into each chunk's latents after the Refiner, with the global reference's latent as
        # the picture it reads the character's mouth from.
        self.mouth_head = model.mouth_head if mouth_head else None
        # The mouth painter (model_core/mouth_painter.py), when the model has one: the opening
        # the head hears in this chunk's voice drawn into each decoded frame.
        self.mouth_painter = model.mouth_painter if mouth_painter else None
        self.picture = refs.global_latent
        # A painter that sees the picture sees it as the VAE decodes it, as in its training.
        self.painter_picture = None
        if self.mouth_painter is not None and self.mouth_painter.picture:
            with torch.no_grad():
                self.painter_picture = model.vae.decode(self.picture)[:, :, 0]
        self.fps = cfg.video.fps
        self.frames_per_chunk = cfg.latent_frames_per_chunk
        self.seed = seed
        self.index = 0
        self.context, self.context_mask = context, context_mask
        window = cfg.online.window_chunks if window_chunks == -1 else window_chunks
        layout = refs.layout(cfg)
        h, w = cfg.latent_hw
        ph, pw = cfg.dit.patch_size[1:]
        with torch.no_grad():
            self.cache = SinkWindowKVCache(
                model.backbone.encode_sink(layout),
                window,
                self.frames_per_chunk,
                (h // ph, w // pw),
                cfg.refs.video_rope_offset,
            )
            self.refiner_sink = model.refiner.encode_sink(layout)
            self.decoder = model.vae.stream_decoder()
            self.decoder.push(refs.global_latent)  # latent frame 0: primes the causal cache
        hist = max(cfg.dit.speak_window[0], cfg.dit.listen_window[0])
        # Ablation: without an attention sink the references are an ordinary first entry of
        # the window and are evicted with it once the window has moved past them.
        self.keep_sink = keep_sink
        self._window = window
        self.audio = AudioFeatureHistory(model, hist)
        self.history = hist

    def set_text(self, context: torch.Tensor, context_mask: torch.Tensor | None) -> None:
        """New caption/emotion/action text, effective from the next chunk on."""
        self.context, self.context_mask = context, context_mask

    def _noise(self, salt: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.index * 7 + salt)
        h, w = self.cfg.latent_hw
        return torch.randn(1, self.cfg.vae.z_dim, self.frames_per_chunk, h, w, generator=g)

    def encode_audio(
        self, speak: np.ndarray | torch.Tensor, listen: np.ndarray | torch.Tensor
    ) -> ChunkAudio:
        n = self.cfg.audio.sample_rate
        s, li = (torch.as_tensor(a, dtype=torch.float32).view(-1) for a in (speak, listen))
        if s.numel() != n or li.numel() != n:
            raise ValueError(f"push exactly {n} samples (1 s at {n} Hz) per track")
        with torch.no_grad():
            speak_f, listen_f = self.audio.push(s, li)
        return ChunkAudio(speak_f, listen_f, self.history)

    def _audio_inputs(self, audio: ChunkAudio) -> LPMAudioInputs:
        spans = latent_frame_spans(
            self.frames_per_chunk, audio.history, self.cfg.vae.temporal_factor
        )
        return LPMAudioInputs(audio.speak, audio.listen, spans)

    @torch.no_grad()
    def backbone(self, audio: ChunkAudio) -> torch.Tensor:
        """Denoise this chunk with the Backbone, then refill the KV cache from its output."""
        net: LPMTransformer = self.model.backbone
        if not self.keep_sink and self._window is not None and self.index >= self._window:
            self.cache.sink = _empty_sink(self.cache.sink)
            self.refiner_sink = _empty_sink(self.refiner_sink)
        frame_pos = self.cache.current_frame_pos()
        prefix = self.cache.prefix(net.rope.tables)
        aud = self._audio_inputs(audio)
        kw = dict(
            sink=self.cache.sink,
            frame_pos=frame_pos,
            context=self.context,
            context_mask=self.context_mask,
            audio=aud,
            prefix=prefix,
        )
        ts = self.cfg.online.backbone_timesteps
        x = self._noise(0)
        for i, t in enumerate(ts):
            tt = torch.full((1, self.frames_per_chunk), float(t))
            v = _velocity(net, x, tt, kw, self.audio_guidance)
            x0 = predict_x0(x, v, torch.tensor([float(t)]))
            if i + 1 < len(ts):
                tn = float(ts[i + 1])
                x = (1 - tn) * x0 + tn * self._noise(i + 1)
        _, kvs = net(x0, torch.zeros(1, self.frames_per_chunk), return_kv=True, **kw)
        self.cache.append(kvs)
        return x0

    @torch.no_grad()
    def refine(self, x0: torch.Tensor, audio: ChunkAudio) -> torch.Tensor:
        """One Refiner step from the Backbone output re-noised to the refiner timestep."""
        t = float(self.cfg.online.refiner_timestep)
        xr = (1 - t) * x0 + t * self._noise(101)
        frame_pos = torch.arange(self.frames_per_chunk) + self.cfg.refs.video_rope_offset
        kw = dict(
            sink=self.refiner_sink,
            frame_pos=frame_pos,
            context=self.context,
            context_mask=self.context_mask,
            audio=self._audio_inputs(audio),
        )
        tt = torch.full((1, self.frames_per_chunk), t)
        v = _velocity(self.model.refiner, xr, tt, kw, self.refiner_audio_guidance)
        x = predict_x0(xr, v, torch.tensor([t]))
        return self.hear(x, audio)

    @torch.no_grad()
    def hear(self, latents: torch.Tensor, audio: ChunkAudio) -> torch.Tensor:
        """The mouth head's residual on a refined chunk (unchanged without a head)."""
        if self.mouth_head is None:
            return latents
        aud = self._audio_inputs(audio)
        return self.mouth_head(latents, self.picture, aud.speak, aud.frame_span)[0]

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        speak: np.ndarray | torch.Tensor | None = None,
        audio: ChunkAudio | None = None,
    ) -> np.ndarray:
        """Latents -> frames; `speak` (this chunk's own voice) reaches a decoder that hears,
        and `audio` (this chunk's features) the mouth painter, where the model has one."""
        video = self._decode_video(latents, speak)
        if self.mouth_painter is not None and audio is not None:
            video = self.paint(video, audio)
        return frames_to_uint8(video)

    def _decode_video(
        self, latents: torch.Tensor, speak: np.ndarray | torch.Tensor | None
    ) -> torch.Tensor:
        pcm = None
        if speak is not None:
            pcm = torch.as_tensor(speak, dtype=torch.float32).view(1, -1)
        return self.decoder.push(latents, audio=pcm)

    @torch.no_grad()
    def heard_opening(self, audio: ChunkAudio) -> torch.Tensor:
        """The mouth's opening the mouth head hears in this chunk's voice, (1, T) per frame."""
        aud = self._audio_inputs(audio)
        return self.model.mouth_head.opening(aud.speak, aud.frame_span).reshape(1, -1)

    @torch.no_grad()
    def paint(self, video: torch.Tensor, audio: ChunkAudio) -> torch.Tensor:
        """The mouth painter on a decoded chunk (1, 3, T, H, W): each frame's mouth opened as
        far as the mouth head hears in the voice of that frame, times the config's
        `mouth_painter_gain` (relative to opening 0 where `mouth_painter_relative`), its edit
        drawn `mouth_painter_strength` times over."""
        opening = self.heard_opening(audio) * self.model.cfg.online.mouth_painter_gain
        if opening.shape[1] != video.shape[2]:
            raise RuntimeError(
                f"mouth painter: {opening.shape[1]} openings for {video.shape[2]} frames"
            )
        return self.model.paint_mouth(video, opening, self.painter_picture)

    def push(
        self,
        speak: np.ndarray | torch.Tensor,
        listen: np.ndarray | torch.Tensor,
        keep_latents: bool = False,
    ) -> ChunkResult:
        """1 s of each track in, 24 frames out."""
        tick = time.perf_counter()
        timings = {}
        audio = self.encode_audio(speak, listen)
        timings["audio"] = time.perf_counter() - tick
        tick = time.perf_counter()
        x0 = self.backbone(audio)
        timings["backbone"] = time.perf_counter() - tick
        tick = time.perf_counter()
        latents = self.refine(x0, audio)
        timings["refiner"] = time.perf_counter() - tick
        tick = time.perf_counter()
        with torch.no_grad():
            video = self._decode_video(latents, speak)
        timings["vae"] = time.perf_counter() - tick
        if self.mouth_painter is not None:
            tick = time.perf_counter()
            video = self.paint(video, audio)
            timings["painter"] = time.perf_counter() - tick
        frames = frames_to_uint8(video)
        result = ChunkResult(self.index, frames, timings, latents if keep_latents else None)
        self.index += 1
        return result
