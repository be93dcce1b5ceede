"""Rotary position embeddings: 3D over (t, h, w) for video and reference tokens, 1D for audio.

The head dimension is split across the three axes as in Wan2.1: the temporal axis gets
`d - 4 * (d // 6)` channels and each spatial axis `2 * (d // 6)`.
"""

from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    s = 2 * (head_dim // 6)
    return head_dim - 2 * s, s, s


def _axis_angles(pos: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim))
    return pos.to(torch.float64)[:, None] * inv[None, :]


class LPMRotaryEmbedding3D:
    """Builds (cos, sin) tables for integer (t, h, w) positions. Stateless apart from dims."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        assert head_dim % 2 == 0
        self.head_dim = head_dim
        self.dims = rope_axis_dims(head_dim)
        self.theta = theta

    def tables(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pos: (N, 3) integer positions -> cos, sin of shape (N, head_dim // 2), float32."""
        ang = torch.cat(
            [_axis_angles(pos[:, i], d, self.theta) for i, d in enumerate(self.dims)], dim=1
        )
        return torch.cos(ang).float(), torch.sin(ang).float()


def rope_1d_tables(
    pos: torch.Tensor, head_dim: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables for 1D positions (N,), e.g. audio frames and video frames in frame units."""
    ang = _axis_angles(pos, head_dim, theta)
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, N, H, D); cos/sin: (N, D/2). Rotates interleaved channel pairs."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)
    return out.flatten(-2)
