"""A tiny vectorised 2D rasteriser: soft-edged ellipses, rings, capsules and rectangles.

Every primitive touches only its bounding box, so a frame of ~40 shapes costs about a
millisecond at 128x128. Colours are float32 RGB in 0..255; edges are ~1 px anti-aliased.
"""

from __future__ import annotations

import math

import numpy as np


def rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float32)


class Canvas:
    """An (H, W, 3) float32 image that shapes are alpha-blended into."""

    def __init__(self, height: int, width: int):
        self.h, self.w = height, width
        self.img = np.zeros((height, width, 3), np.float32)
        self.xs = np.arange(width, dtype=np.float32) + 0.5
        self.ys = np.arange(height, dtype=np.float32) + 0.5

    def set_background(self, background: np.ndarray) -> None:
        np.copyto(self.img, background)

    def _box(self, cx: float, cy: float, r: float):
        r = r + 1.5
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, self.w)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, self.h)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, x1, y0, y1

    def _blend(self, box, alpha: np.ndarray, color: np.ndarray) -> None:
        x0, x1, y0, y1 = box
        region = self.img[y0:y1, x0:x1]
        region += alpha[..., None] * (color - region)

    def _ellipse_distance(self, box, cx, cy, rx, ry, angle):
        x0, x1, y0, y1 = box
        dx = self.xs[None, x0:x1] - cx
        dy = self.ys[y0:y1, None] - cy
        if angle:
            c, s = math.cos(angle), math.sin(angle)
            dx, dy = dx * c + dy * s, dy * c - dx * s
        return np.sqrt((dx * (1.0 / rx)) ** 2 + (dy * (1.0 / ry)) ** 2)

    def ellipse(self, cx, cy, rx, ry, color, angle: float = 0.0, alpha: float = 1.0) -> None:
        if rx < 0.2 or ry < 0.2 or alpha <= 0:
            return
        box = self._box(cx, cy, max(rx, ry))
        if box is None:
            return
        d = self._ellipse_distance(box, cx, cy, rx, ry, angle)
        a = np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)
        if alpha < 1.0:
            a *= alpha
        self._blend(box, a, color)

    def ring(self, cx, cy, rx, ry, width, color, alpha: float = 1.0) -> None:
        if rx < 0.5 or ry < 0.5:
            return
        box = self._box(cx, cy, max(rx, ry) + width)
        if box is None:
            return
        d = self._ellipse_distance(box, cx, cy, rx, ry, 0.0)
        a = np.clip(width * 0.5 - np.abs(d - 1.0) * min(rx, ry) + 0.5, 0.0, 1.0) * alpha
        self._blend(box, a, color)

    def capsule(self, x0, y0, x1, y1, r, color, alpha: float = 1.0) -> None:
        """A thick line segment with round ends (arms, fingers, tails)."""
        if r < 0.3:
            return
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = self._box(cx, cy, math.hypot(x1 - x0, y1 - y0) / 2 + r)
        if box is None:
            return
        bx0, bx1, by0, by1 = box
        px = self.xs[None, bx0:bx1] - x0
        py = self.ys[by0:by1, None] - y0
        vx, vy = x1 - x0, y1 - y0
        ll = vx * vx + vy * vy
        t = np.clip((px * vx + py * vy) / ll, 0.0, 1.0) if ll > 1e-6 else np.zeros_like(px * py)
        d = np.sqrt((px - t * vx) ** 2 + (py - t * vy) ** 2)
        a = np.clip(r - d + 0.5, 0.0, 1.0) * alpha
        self._blend(box, a, color)

    def rect(self, x0, y0, x1, y1, color, alpha: float = 1.0) -> None:
        xa, xb = max(int(round(x0)), 0), min(int(round(x1)), self.w)
        ya, yb = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        if xa >= xb or ya >= yb:
            return
        region = self.img[ya:yb, xa:xb]
        region += alpha * (color - region)


def vertical_gradient(height: int, width: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = rgb(top) * (1 - t) + rgb(bottom) * t
    return np.broadcast_to(img, (height, width, 3)).copy()
