"""Attention layers of the LPM transformer. Parameter names follow Wan2.1 (q, k, v, o,
norm_q, norm_k; k_img, v_img, norm_k_img for the I2V image context)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model_core.rope import apply_rope


class LPMRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LPMLayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 (as Wan does) whatever the activation dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """q: (B, Nq, H, D), k/v: (B, Nk, H, D), mask: (Nq, Nk) bool (True = attend)."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2)


_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def split_attention(
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]],
) -> torch.Tensor:
    """One softmax over several key groups, each scored with its own rotation of the queries.

    parts: [(q_i, k_i, v_i, mask_i)], q_i (B, Nq, H, D), k_i/v_i (B, Nk_i, H, D), mask_i
    (Nq, Nk_i) bool or None. This is how video queries see the reference sink at a fixed
    temporal distance while seeing other video tokens at their true relative distance.
    """
    parts = [p for p in parts if p[1].shape[1] > 0]
    if _FLASH_CPU is not None and all(p[3] is None and p[0].device.type == "cpu" for p in parts):
        return _merged_flash_attention(parts)
    scale = 1.0 / math.sqrt(parts[0][0].shape[-1])
    scores, values = [], []
    for q, k, v, mask in parts:
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        if mask is not None:
            s = s.masked_fill(~mask[None, None], float("-inf"))
        scores.append(s)
        values.append(v)
    p = torch.softmax(torch.cat(scores, dim=-1), dim=-1)
    return torch.einsum("bhqk,bkhd->bqhd", p, torch.cat(values, dim=1))


def _merged_flash_attention(parts) -> torch.Tensor:
    """Unmasked groups on CPU: fused attention per group, merged by their log-sum-exps
    (exactly the joint softmax, without materialising the score matrices)."""
    outs, lses = [], []
    for q, k, v, _ in parts:
        o, lse = _FLASH_CPU(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))[:2]
        outs.append(o)
        lses.append(lse)
    if len(outs) == 1:
        return outs[0].transpose(1, 2)
    lse = torch.stack(lses)
    w = torch.softmax(lse, dim=0)  # each group's share of the joint normaliser
    out = sum(o * wi[..., None] for o, wi in zip(outs, w, strict=True))
    return out.transpose(1, 2)


class LPMSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = LPMRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = LPMRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values (B, N, H, D) before rotary embedding."""
        b, n, _ = x.shape
        shape = (b, n, self.num_heads, self.head_dim)
        q = self.norm_q(self.q(x)).view(shape)
        k = self.norm_k(self.k(x)).view(shape)
        return q, k, self.v(x).view(shape)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(x.flatten(2))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x)
        return self.output(masked_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v))


class LPMCrossAttention(nn.Module):
    """Text cross-attention; with `image_context` it is Wan's I2V variant that also attends to
    CLIP image tokens (k_img, v_img)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qk_norm: bool = True,
        eps: float = 1e-6,
        image_context: bool = False,
    ):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = LPMRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = LPMRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.image_context = image_context
        if image_context:
            self.k_img, self.v_img = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.norm_k_img = LPMRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = self._heads(self.norm_q(self.q(x)))
        k = self._heads(self.norm_k(self.k(context)))
        v = self._heads(self.v(context))
        mask = None
        if context_mask is not None:  # (B, L) -> (B, 1, 1, L)
            mask = context_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        ).transpose(1, 2)
        if self.image_context and image_context is not None:
            ki = self._heads(self.norm_k_img(self.k_img(image_context)))
            vi = self._heads(self.v_img(image_context))
            out = out + masked_attention(q, ki, vi)
        return self.o(out.flatten(2))


class LPMAudioCrossAttention(nn.Module):
    """Cross-attention from video tokens to one audio track's per-frame features.

    Which track a layer reads (speaking or listening) and how wide its window is are decided
    by the caller through `mask`; rotary positions in video-frame units tell the layer where
    each audio frame sits relative to the video frame it is drawing.
    """

    def __init__(
        self, dim: int, audio_dim: int, num_heads: int, eps: float = 1e-6, normalize: bool = False
    ):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.normalize, self.eps = normalize, eps  # `DiTConfig.audio_norm`
        self.q, self.o = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.k, self.v = nn.Linear(audio_dim, dim), nn.Linear(audio_dim, dim)
        self.norm_q, self.norm_k = LPMRMSNorm(dim, eps), LPMRMSNorm(dim, eps)

    def forward(
        self,
        x: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        q_rope: tuple[torch.Tensor, torch.Tensor],
        k_rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        b, n, _ = x.shape
        if self.normalize:
            audio = F.layer_norm(audio, audio.shape[-1:], eps=self.eps)
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, self.head_dim)
        k = self.norm_k(self.k(audio)).view(b, audio.shape[1], self.num_heads, self.head_dim)
        v = self.v(audio).view(b, audio.shape[1], self.num_heads, self.head_dim)
        q, k = apply_rope(q, *q_rope), apply_rope(k, *k_rope)
        return self.o(masked_attention(q, k, v, mask).flatten(2))
