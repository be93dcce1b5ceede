"""Flicker: frame-to-frame instability that motion does not explain.

The mean absolute second temporal difference |x[t+1] - 2 x[t] + x[t-1]| (0..1 scale): smooth
motion has a small second difference, frame-to-frame noise and chunk-boundary jumps a large
one. Lower is better; a frozen frame scores 0, which the other metrics penalise.
"""

from __future__ import annotations

import numpy as np


def flicker_per_frame(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T - 2,) flicker of each inner frame."""
    if len(frames) < 3:
        return np.zeros(0, np.float32)
    x = frames.astype(np.float32) / 255.0
    d2 = np.abs(x[2:] - 2 * x[1:-1] + x[:-2])
    return d2.reshape(len(d2), -1).mean(axis=1)


def flicker(frames: np.ndarray) -> float:
    f = flicker_per_frame(frames)
    return float(f.mean()) if len(f) else 0.0
