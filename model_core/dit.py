"""The LPM diffusion transformer: a Wan2.1-shaped trunk with interleaved dual audio injection
and reference tokens concatenated into the sequence.

Token groups in every forward:
- reference tokens (the attention sink): timestep 0, each reference type at its own temporal
  RoPE slot; they attend only among themselves, so their keys/values are computed once
  (`encode_sink`) and reused by every denoising step and every chunk;
- video tokens: attend to the sink (queries rotated at a fixed temporal position, so the
  references are always equally near) and to other video tokens under a frame-level mask
  (full for the bidirectional Base model, block-causal + window for the Online model), plus
  optional cached keys/values of earlier chunks (`prefix`).
Even layers cross-attend to the speaking track through a narrow window, odd layers to the
listening track through a wide window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from model_core.attention import (
    LPMAudioCrossAttention,
    LPMCrossAttention,
    LPMLayerNorm,
    LPMSelfAttention,
    split_attention,
)
from model_core.config import DiTConfig
from model_core.rope import LPMRotaryEmbedding3D, apply_rope, rope_1d_tables


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """t: (...,) in [0, 1000] -> (..., dim), Wan's cos-then-sin layout."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    ang = t.to(torch.float64)[..., None] * freqs
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1).float()


@dataclass
class LPMSink:
    """Per-layer keys (already rotated) and values of the reference tokens."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    # The global reference latent (B, z, 1, h, w) a `ref_concat` transformer concatenates to
    # every video frame; None without it (or once the references are evicted).
    image: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return self.k[0].shape[1] if self.k else 0


@dataclass
class LPMKVPrefix:
    """Keys (rotated at `pos`) and values of earlier video tokens, per layer."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    pos: torch.Tensor  # (Np, 3) positions the keys were rotated at


def latent_frame_spans(num_latent: int, first_frame: int, temporal_factor: int) -> torch.Tensor:
    """Video frames covered by each latent frame (the first one starts at first_frame)."""
    starts = first_frame + temporal_factor * torch.arange(num_latent)
    return torch.stack([starts, starts + temporal_factor - 1], dim=1)


@dataclass
class LPMAudioInputs:
    speak: torch.Tensor  # (B, Ta, audio_dim) features for audio frames 0..Ta-1
    listen: torch.Tensor  # (B, Ta, audio_dim)
    frame_span: torch.Tensor  # (F, 2) first/last video frame (audio frame index) per latent frame


class LPMTransformerBlock(nn.Module):
    def __init__(self, cfg: DiTConfig, audio_dim: int, layer_index: int):
        super().__init__()
        dim = cfg.dim
        self.listens = layer_index % 2 == 1  # odd layers read the listening track
        self.norm1 = LPMLayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = LPMSelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = (
            LPMLayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
            if cfg.cross_attn_norm
            else nn.Identity()
        )
        self.cross_attn = LPMCrossAttention(
            dim, cfg.num_heads, cfg.qk_norm, cfg.eps, image_context=cfg.image_context_dim > 0
        )
        self.norm_audio = LPMLayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.audio_attn = LPMAudioCrossAttention(
            dim, audio_dim, cfg.num_heads, cfg.eps, normalize=cfg.audio_norm
        )
        self.norm2 = LPMLayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def _mod(self, e: torch.Tensor) -> list[torch.Tensor]:
        # e: (B, N or 1, 6, dim) -> six (B, N or 1, dim)
        return list((self.modulation[:, None] + e).unbind(dim=2))

    def forward_sink(self, r: torch.Tensor, e: torch.Tensor, rope: tuple) -> tuple:
        """Reference tokens: self-attention among themselves and the FFN, at timestep 0."""
        e0, e1, e2, e3, e4, e5 = self._mod(e)
        q, k, v = self.self_attn.project(self.norm1(r) * (1 + e1) + e0)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = self.self_attn.output(split_attention([(q, k, v, None)]))
        r = r + y * e2
        r = r + self.ffn(self.norm2(r) * (1 + e4) + e3) * e5
        return r, k, v

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        *,
        rope: tuple,
        sink_rope: tuple,
        sink_k: torch.Tensor,
        sink_v: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
        video_mask: torch.Tensor | None,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
        image_context: torch.Tensor | None,
        audio: dict | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e0, e1, e2, e3, e4, e5 = self._mod(e)
        q, k, v = self.self_attn.project(self.norm1(x) * (1 + e1) + e0)
        qv, kv = apply_rope(q, *rope), apply_rope(k, *rope)
        qs = apply_rope(q, *sink_rope)
        if prefix is not None:
            keys = torch.cat([prefix[0], kv], dim=1)
            vals = torch.cat([prefix[1], v], dim=1)
        else:
            keys, vals = kv, v
        y = split_attention([(qs, sink_k, sink_v, None), (qv, keys, vals, video_mask)])
        x = x + self.self_attn.output(y) * e2
        x = x + self.cross_attn(self.norm3(x), context, context_mask, image_context)
        if audio is not None:
            track = audio["listen"] if self.listens else audio["speak"]
            mask = audio["listen_mask"] if self.listens else audio["speak_mask"]
            x = x + self.audio_attn(
                self.norm_audio(x), track, mask, audio["q_rope"], audio["k_rope"]
            )
        x = x + self.ffn(self.norm2(x) * (1 + e4) + e3) * e5
        return x, k, v  # k before rotation, for the cache


class LPMHead(nn.Module):
    def __init__(self, dim: int, out_dim: int, patch: tuple[int, int, int], eps: float):
        super().__init__()
        self.norm = LPMLayerNorm(dim, eps=eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim * math.prod(patch))
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # e: (B, N or 1, dim)
        e0, e1 = (self.modulation[:, None] + e[:, :, None]).unbind(dim=2)
        return self.head(self.norm(x) * (1 + e1) + e0)


class LPMImageProjection(nn.Module):
    """Wan I2V's CLIP image-context projection (only in presets with image_context_dim)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, in_dim),
            nn.GELU(),
            nn.Linear(in_dim, dim),
            nn.LayerNorm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class LPMTransformer(nn.Module):
    def __init__(
        self,
        cfg: DiTConfig,
        *,
        z_dim: int,
        text_dim: int,
        audio_dim: int,
        num_layers: int | None = None,
        video_rope_offset: int = 4,
    ):
        super().__init__()
        self.cfg, self.z_dim = cfg, z_dim
        dim, layers = cfg.dim, num_layers if num_layers is not None else cfg.num_layers
        self.video_rope_offset = video_rope_offset
        self.patch_embedding = nn.Conv3d(
            z_dim + cfg.cond_dim + (z_dim if cfg.ref_concat else 0),
            dim,
            kernel_size=cfg.patch_size,
            stride=cfg.patch_size,
        )
        self.text_embedding = nn.Sequential(
            nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(
            nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(LPMTransformerBlock(cfg, audio_dim, i) for i in range(layers))
        self.head = LPMHead(dim, z_dim, cfg.patch_size, cfg.eps)
        if cfg.image_context_dim > 0:
            self.img_emb = LPMImageProjection(cfg.image_context_dim, dim)
        self.rope = LPMRotaryEmbedding3D(dim // cfg.num_heads)

    # -- embeddings ---------------------------------------------------------------------------
    def _time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t: (B, F) in [0, 1] -> head e (B, F, dim) and block e (B, F, 6, dim)."""
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t * 1000.0))
        e6 = self.time_projection(e).unflatten(-1, (6, self.cfg.dim))
        return e, e6

    def patchify(
        self, z: torch.Tensor, image: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """`image`: the global reference latent (B, z, 1, h, w) for a `ref_concat` model,
        repeated over the frames of `z` (zeros when None)."""
        parts = [z]
        if self.cfg.cond_dim:
            parts.append(z.new_zeros(z.shape[0], self.cfg.cond_dim, *z.shape[2:]))
        if self.cfg.ref_concat:
            if image is None:
                parts.append(torch.zeros_like(z))
            else:
                parts.append(image.to(z.dtype).expand(z.shape[0], -1, z.shape[2], -1, -1))
        x = self.patch_embedding(torch.cat(parts, 1) if len(parts) > 1 else z)
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        f, h, w = grid
        pt, ph, pw = self.cfg.patch_size
        x = x.view(x.shape[0], f, h, w, pt, ph, pw, self.z_dim)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(x.shape[0], self.z_dim, f * pt, h * ph, w * pw)

    @staticmethod
    def grid_positions(
        grid: tuple[int, int, int], t0: int = 0, w0: int = 0, t_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        f, h, w = grid
        t = t_values if t_values is not None else torch.arange(f) + t0
        tt, hh, ww = torch.meshgrid(t, torch.arange(h), torch.arange(w) + w0, indexing="ij")
        return torch.stack([tt.flatten(), hh.flatten(), ww.flatten()], dim=1)

    # -- the reference sink ---------------------------------------------------------------------
    def encode_sink(self, refs: list[tuple[torch.Tensor, int, int]]) -> LPMSink:
        """refs: [(latent (B, z, 1, h, w), temporal slot, w offset)] -> per-layer sink K/V.
        A `ref_concat` transformer also keeps the first reference's latent (the global
        image, first in `EncodedReferences.layout`), to concatenate to every video frame:
        the picture the video should look like, which it can copy cell by cell when the
        picture is framed like the video (in training, the `framed_global` option)."""
        toks, pos = [], []
        for z, slot, w0 in refs:
            x, grid = self.patchify(z)
            toks.append(x)
            pos.append(self.grid_positions(grid, t0=slot, w0=w0))
        r, p = torch.cat(toks, 1), torch.cat(pos, 0)
        rope = self.rope.tables(p)
        _, e6 = self._time(torch.zeros(r.shape[0], 1, device=r.device))
        ks, vs = [], []
        for block in self.blocks:
            r, k, v = block.forward_sink(r, e6, rope)
            ks.append(k)
            vs.append(v)
        return LPMSink(ks, vs, refs[0][0] if self.cfg.ref_concat and refs else None)

    # -- audio windows --------------------------------------------------------------------------
    def _audio(self, audio: LPMAudioInputs | None, hw: int) -> dict | None:
        if audio is None:
            return None
        ta = audio.speak.shape[1]
        j = torch.arange(ta)
        first, last = audio.frame_span[:, 0:1], audio.frame_span[:, 1:2]
        (sb, sa), (lb, la) = self.cfg.speak_window, self.cfg.listen_window
        speak = (j >= first - sb) & (j <= last + sa)
        listen = (j >= last - lb) & (j <= last + la)
        head_dim = self.cfg.dim // self.cfg.num_heads
        q_pos = audio.frame_span[:, 1].repeat_interleave(hw)
        return {
            "speak": audio.speak,
            "listen": audio.listen,
            "speak_mask": speak.repeat_interleave(hw, 0),
            "listen_mask": listen.repeat_interleave(hw, 0),
            "q_rope": rope_1d_tables(q_pos, head_dim),
            "k_rope": rope_1d_tables(j, head_dim),
        }

    # -- video forward --------------------------------------------------------------------------
    def forward(
        self,
        z: torch.Tensor,
        timesteps: torch.Tensor,
        *,
        sink: LPMSink,
        frame_pos: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        audio: LPMAudioInputs | None = None,
        frame_mask: torch.Tensor | None = None,
        prefix: LPMKVPrefix | None = None,
        image_context: torch.Tensor | None = None,
        return_kv: bool = False,
    ):
        """Predict the flow velocity of video latents.

        z: (B, z, F, h, w) noisy latents; timesteps: (B, F) per latent frame in [0, 1];
        frame_pos: (F,) temporal RoPE positions; frame_mask: (F, Fp + F) bool over the prefix's
        frames then these frames (None = attend to all); prefix: cached K/V of earlier frames.
        Returns the velocity (B, z, F, h, w), and with return_kv the per-layer (k, v) of these
        tokens for a cache.
        """
        x, grid = self.patchify(z, sink.image)
        f, h, w = grid
        hw = h * w
        pos = self.grid_positions(grid, t_values=frame_pos)
        rope = self.rope.tables(pos)
        sink_pos = pos.clone()
        sink_pos[:, 0] = self.video_rope_offset
        sink_rope = self.rope.tables(sink_pos)
        if timesteps.shape[1] > 1 and bool((timesteps == timesteps[:, :1]).all()):
            timesteps = timesteps[:, :1]  # one timestep for all frames: broadcast
        e, e6 = self._time(timesteps)
        if e.shape[1] > 1:
            e, e6 = e.repeat_interleave(hw, 1), e6.repeat_interleave(hw, 1)
        mask = None
        if frame_mask is not None:
            mask = frame_mask.repeat_interleave(hw, 0).repeat_interleave(hw, 1)
        ctx = self.text_embedding(context)
        img = (
            self.img_emb(image_context)
            if image_context is not None and hasattr(self, "img_emb")
            else None
        )
        aud = self._audio(audio, hw)
        kvs = []
        for i, block in enumerate(self.blocks):
            pre = (prefix.k[i], prefix.v[i]) if prefix is not None else None
            x, k, v = block(
                x,
                e6,
                rope=rope,
                sink_rope=sink_rope,
                sink_k=sink.k[i],
                sink_v=sink.v[i],
                prefix=pre,
                video_mask=mask,
                context=ctx,
                context_mask=context_mask,
                image_context=img,
                audio=aud,
            )
            if return_kv:
                kvs.append((k, v))
        out = self.unpatchify(self.head(x, e), grid)
        return (out, kvs) if return_kv else out
