"""The small surface a service holds: build or load the model, encode a reference set, open
Online streams (1 s of audio in, 24 frames out), and render whole clips with the Base model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model_core.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from model_core.config import LPMConfig
from model_core.dit import LPMAudioInputs, latent_frame_spans
from model_core.flow import sample_euler_cfg
from model_core.model import LPMModel, build_model
from model_core.online import ChunkResult, OnlineStream, frames_to_uint8
from model_core.references import (
    EncodedReferences,
    ReferenceError,
    ReferenceImages,
    validate_references,
)

__all__ = [
    "LPMPipeline",
    "ReferenceImages",
    "EncodedReferences",
    "ChunkResult",
    "OnlineStream",
    "ReferenceError",
    "CheckpointError",
]


def image_to_tensor(img: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, h, w) in [-1, 1]: centre-crop to the aspect, then resize."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float()[None] / 127.5 - 1
    h, w = x.shape[-2:]
    th, tw = size
    scale = min(h / th, w / tw)
    ch, cw = int(round(th * scale)), int(round(tw * scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = x[..., top : top + ch, left : left + cw]
    if (ch, cw) != (th, tw):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1)


class LPMPipeline:
    def __init__(self, model: LPMModel, version: str):
        self.model = model
        self.config: LPMConfig = model.cfg
        self.version = version

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        preset: str = "tiny",
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        seed: int = 0,
        with_base: bool = True,
        config: LPMConfig | None = None,
    ) -> LPMPipeline:
        """Random initialisation of a preset (or of an explicit `config`), or a checkpoint."""
        if checkpoint is not None:
            return cls.load(checkpoint, device=device, with_base=with_base)
        cfg = config if config is not None else LPMConfig.preset(preset)
        return cls(
            build_model(cfg, device=device, seed=seed, with_base=with_base),
            version=f"{cfg.name}-random-seed{seed}",
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", with_base: bool = True) -> LPMPipeline:
        cfg, state, meta = read_checkpoint(path, with_base=with_base)
        # An Online-only checkpoint (no Base teacher weights) serves streams; it cannot render.
        with_base = with_base and any(k.startswith("base.") for k in state)
        model = build_model(cfg, device="cpu", with_base=with_base)
        if not with_base:
            state = {k: v for k, v in state.items() if not k.startswith("base.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: weights do not match the config (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
        return cls(model.to(device).eval(), version=meta.get("version", Path(path).name))

    def save(
        self, path: str | Path, dtype: torch.dtype = torch.float32, split_base: bool = False
    ) -> Path:
        """`split_base`: the Base teacher in its own file, so serving reads only the Online
        model (checkpoint.BASE_WEIGHTS)."""
        return save_checkpoint(
            self.model, self.config, path, version=self.version, dtype=dtype, split_base=split_base
        )

    def param_counts(self) -> dict[str, int]:
        return self.model.param_counts()

    # -- references -----------------------------------------------------------------------------
    def validate_references(self, refs: ReferenceImages, allow_custom_faces: bool = False) -> None:
        validate_references(refs, self.config.refs, allow_custom_faces)

    @torch.no_grad()
    def encode_references(
        self, refs: ReferenceImages, allow_custom_faces: bool = False
    ) -> EncodedReferences:
        self.validate_references(refs, allow_custom_faces)
        v = self.config.video
        full, face = (v.height, v.width), (self.config.refs.face_size,) * 2
        enc = self.model.vae.encode_image
        return EncodedReferences(
            global_latent=enc(image_to_tensor(refs.global_image, full)),
            body={k: enc(image_to_tensor(img, full)) for k, img in refs.body.items()},
            face={k: enc(image_to_tensor(img, face)) for k, img in refs.face.items()},
            model_version=self.version,
        )

    def _encoded(self, refs: ReferenceImages | EncodedReferences) -> EncodedReferences:
        return refs if isinstance(refs, EncodedReferences) else self.encode_references(refs)

    # -- text -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, text: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        te = self.model.text_encoder
        if not text:
            return te.null_context(1), None
        out = te.encode([text])
        return (out[0], out[1]) if isinstance(out, tuple) else (out, None)

    # -- Online ------------------------------------------------------------------------------------
    def start_stream(
        self,
        refs: ReferenceImages | EncodedReferences,
        text: str | None = None,
        seed: int = 0,
        window_chunks: int | None = -1,
        keep_sink: bool = True,
        audio_guidance: float = 0.0,
        refiner_audio_guidance: float = 0.0,
        mouth_head: bool = True,
        mouth_painter: bool = True,
    ) -> OnlineStream:
        """window_chunks: -1 = the config's window; None = keep all history (naive baseline).
        keep_sink=False is the no-attention-sink ablation (references get evicted).
        audio_guidance / refiner_audio_guidance: guidance on the voice alone in the Backbone's
        / the Refiner's steps (each costs one more pass of that network; 0 = as distilled).
        mouth_head=False leaves out a model's mouth head (model_core/mouth_head.py), and
        mouth_painter=False its mouth painter (model_core/mouth_painter.py)."""
        ctx, mask = self.encode_text(text)
        return OnlineStream(
            self.model,
            self._encoded(refs),
            ctx,
            mask,
            seed=seed,
            window_chunks=window_chunks,
            keep_sink=keep_sink,
            audio_guidance=audio_guidance,
            refiner_audio_guidance=refiner_audio_guidance,
            mouth_head=mouth_head,
            mouth_painter=mouth_painter,
        )

    # -- Base ------------------------------------------------------------------------------------
    @torch.no_grad()
    def render_base(
        self,
        refs: ReferenceImages | EncodedReferences,
        speak_pcm: np.ndarray,
        listen_pcm: np.ndarray | None = None,
        text: str | None = None,
        seconds: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
        audio_guidance: float | None = None,
    ) -> np.ndarray:
        """Render a whole clip bidirectionally with the multi-step Base sampler + CFG
        (plus guidance on the audio alone: `audio_guidance`, default the config's)."""
        if self.model.base is None:
            raise RuntimeError("this pipeline was built without the Base model")
        cfg, net = self.config, self.model.base
        sr = cfg.audio.sample_rate
        if seconds is None:
            seconds = max(1, int(np.ceil(len(speak_pcm) / sr)))
        n = seconds * sr
        speak = _fit(speak_pcm, n)
        listen = _fit(listen_pcm if listen_pcm is not None else np.zeros(n, np.float32), n)
        enc = self._encoded(refs)
        frames = seconds * cfg.latent_frames_per_chunk
        feats_s = self.model.audio_encoder(torch.from_numpy(speak)[None])
        feats_l = self.model.audio_encoder(torch.from_numpy(listen)[None])
        audio = LPMAudioInputs(
            feats_s, feats_l, latent_frame_spans(frames, 0, cfg.vae.temporal_factor)
        )
        ctx, mask = self.encode_text(text)
        null_ctx = self.model.text_encoder.null_context(1)
        sink = net.encode_sink(enc.layout(cfg))
        frame_pos = torch.arange(frames) + cfg.refs.video_rope_offset

        def velocity(x: torch.Tensor, t: torch.Tensor, cond: bool, heard: bool = True):
            return net(
                x,
                t[:, None].expand(-1, frames),
                sink=sink,
                frame_pos=frame_pos,
                context=ctx if cond else null_ctx,
                context_mask=mask if cond else None,
                audio=audio if cond and heard else None,
            )

        h, w = cfg.latent_hw
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, cfg.vae.z_dim, frames, h, w, generator=g)
        sc = cfg.sampler
        x0 = sample_euler_cfg(
            velocity,
            noise,
            steps or sc.steps,
            sc.guidance_scale if guidance_scale is None else guidance_scale,
            sc.shift,
            progress,
            sc.audio_guidance if audio_guidance is None else audio_guidance,
            lambda x, t: velocity(x, t, True, heard=False),
        )
        video = self.model.vae.decode(
            torch.cat([enc.global_latent, x0], dim=2), audio=torch.from_numpy(speak)[None]
        )
        return frames_to_uint8(video[:, :, 1:])


def _fit(pcm: np.ndarray, n: int) -> np.ndarray:
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)[:n]
    return np.pad(pcm, (0, n - len(pcm))) if len(pcm) < n else pcm
