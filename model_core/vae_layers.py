"""Building blocks of the causal 3D VAE: causal convolutions with a temporal feature cache.

Tensors inside the VAE use the (B, T, C, H, W) layout so that every convolution runs as a 2D
convolution over B*T frames (a free reshape); a temporal kernel of size kt becomes a 2D
convolution over the channel-concatenation of kt shifted frames ("time im2col"), which is both
faster on CPU than conv3d and trivially causal.

Streaming: every layer that looks at past frames keeps the tail of its input in a
`TemporalCache` (keyed by the layer). The first call on an empty cache behaves exactly like the
start of a whole clip (zeros before frame 0), so a clip pushed chunk by chunk gives the same
output as the whole clip pushed at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TemporalCache:
    """Per-layer tails of the time axis carried between the pushes of one stream."""

    def __init__(self) -> None:
        self._tails: dict[int, Tensor] = {}

    def get(self, layer: nn.Module) -> Tensor | None:
        return self._tails.get(id(layer))

    def put(self, layer: nn.Module, tail: Tensor) -> None:
        # Detached: a stream that runs for hours must not chain autograd graphs across pushes.
        self._tails[id(layer)] = tail.detach()

    def clear(self) -> None:
        self._tails.clear()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tails.values())

    def __len__(self) -> int:
        return len(self._tails)


def _frames(x: Tensor) -> Tensor:
    """(B, T, C, H, W) -> (B*T, C, H, W) in channels-last memory: mkldnn convs, resizes and the
    channel norm are 2-10x faster on CPU with channels innermost, and the layout then flows
    through every elementwise op. A no-op (a view) when x is already laid out that way."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]).contiguous(
        memory_format=torch.channels_last
    )


def _conv2d_frames(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """Apply a 2D conv to every frame of a (B, T, C, H, W) tensor."""
    y = conv(_frames(x))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def _cat(xs: list[Tensor], dim: int) -> Tensor:
    """torch.cat of (B, T, C, H, W) tensors along time (dim=1) or channels (dim=2) whose result
    keeps channels innermost in memory (a plain 5D cat would fall back to the NCTHW layout)."""
    nhwc = [x.permute(0, 1, 3, 4, 2) for x in xs]
    return torch.cat(nhwc, dim=1 if dim == 1 else 4).permute(0, 1, 4, 2, 3)


def _time_columns(xp: Tensor, kt: int, t_out: int, stride: int = 1) -> Tensor:
    """Stack kt consecutive frames along channels: (B, T', C, H, W) -> (B, t_out, kt*C, H, W)."""
    span = stride * (t_out - 1) + 1
    return _cat([xp[:, i : i + span : stride] for i in range(kt)], dim=2)


class LPMChannelNorm(nn.Module):
    """RMS norm over channels at each position (Wan's RMS_norm): local in time, so causal."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.scale = channels**0.5
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=2, eps=self.eps) * (self.gamma * self.scale)


class LPMCausalConv(nn.Module):
    """(kt, k, k) convolution that sees the current and kt-1 past frames, never the future."""

    def __init__(self, cin: int, cout: int, kt: int = 3, k: int = 3) -> None:
        super().__init__()
        self.kt = kt
        self.conv = nn.Conv2d(cin * kt, cout, k, padding=k // 2)

    def forward(self, x: Tensor, cache: TemporalCache | None = None) -> Tensor:
        if self.kt == 1:
            return _conv2d_frames(self.conv, x)
        past = cache.get(self) if cache is not None else None
        if past is None:
            past = x.new_zeros(x.shape[0], self.kt - 1, *x.shape[2:])
        xp = _cat([past, x], dim=1)
        if cache is not None:
            cache.put(self, xp[:, -(self.kt - 1) :])
        return _conv2d_frames(self.conv, _time_columns(xp, self.kt, x.shape[1]))


class LPMTimeDownsample(nn.Module):
    """Halve the frame rate after frame 0 (Wan layout): frame 0 passes alone, then each pair
    of frames becomes one, computed from the pair and the frame before it (k_t=3, stride 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 3, channels, 1)

    def forward(self, x: Tensor, cache: TemporalCache | None = None) -> Tensor:
        prev = cache.get(self) if cache is not None else None
        head = None
        if prev is None:  # start of the clip / stream: frame 0 stays alone
            head, prev, x = x[:, :1], x[:, :1], x[:, 1:]
        if x.shape[1] % 2:
            raise ValueError(
                f"time downsample needs an even number of frames after frame 0, got {x.shape[1]}"
            )
        xp = _cat([prev, x], dim=1)
        if cache is not None:
            cache.put(self, xp[:, -1:])
        t_out = x.shape[1] // 2
        y = _conv2d_frames(self.conv, _time_columns(xp, 3, t_out, stride=2)) if t_out else x
        return y if head is None else _cat([head, y], dim=1)


class LPMTimeUpsample(nn.Module):
    """Double the frame rate after frame 0 (inverse of LPMTimeDownsample): frame 0 gives one
    frame, every later frame gives two, from a causal k_t=3 conv producing 2x channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 3, channels * 2, 1)

    def forward(self, x: Tensor, cache: TemporalCache | None = None) -> Tensor:
        past = cache.get(self) if cache is not None else None
        start = past is None
        if start:
            past = x.new_zeros(x.shape[0], 2, *x.shape[2:])
        xp = _cat([past, x], dim=1)
        if cache is not None:
            cache.put(self, xp[:, -2:])
        b, t, c, h, w = x.shape
        src = xp[:, 1:] if start else xp  # frame 0's pair is never used: skip computing it
        t_conv = t - 1 if start else t
        y = _conv2d_frames(self.conv, _time_columns(src, 3, t_conv))
        # channels (2, c) -> two consecutive frames, keeping channels innermost in memory
        y = y.permute(0, 1, 3, 4, 2).reshape(b, t_conv, h, w, 2, c).permute(0, 1, 4, 2, 3, 5)
        y = y.reshape(b, t_conv * 2, h, w, c).permute(0, 1, 4, 2, 3)
        return _cat([x[:, :1], y], dim=1) if start else y


class LPMSpatialDown(nn.Module):
    """2x spatial downsample per frame: asymmetric zero pad + stride-2 3x3 conv (as in Wan)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(F.pad(_frames(x), (0, 1, 0, 1)))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class LPMSpatialUp(nn.Module):
    """2x spatial upsample per frame: nearest neighbour + 3x3 conv (as in Wan)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(F.interpolate(_frames(x), scale_factor=2.0, mode="nearest"))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class LPMResBlock(nn.Module):
    """Pre-norm residual block of two causal convolutions."""

    def __init__(self, cin: int, cout: int, kt: int) -> None:
        super().__init__()
        self.norm1 = LPMChannelNorm(cin)
        self.conv1 = LPMCausalConv(cin, cout, kt)
        self.norm2 = LPMChannelNorm(cout)
        self.conv2 = LPMCausalConv(cout, cout, kt)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, cache: TemporalCache | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return (x if self.shortcut is None else _conv2d_frames(self.shortcut, x)) + h


class LPMFrameAttention(nn.Module):
    """Single-head self-attention over the positions of each frame (Wan's mid AttentionBlock):
    frame-local, so it needs no cache."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = LPMChannelNorm(channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)  # starts as identity, like Wan

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        qkv = _conv2d_frames(self.qkv, self.norm(x)).reshape(b * t, 3, c, h * w)
        q, k, v = (qkv[:, i].transpose(1, 2) for i in range(3))  # (BT, HW, C)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c, h, w)
        return x + _conv2d_frames(self.proj, y)
