"""Lip sync: does the mouth open when the character's own voice is loud?

The FaceProbe's per-frame mouth opening is correlated (Pearson) with the per-frame RMS of the
speaking audio. Both are lightly smoothed (3 frames) since a viseme spans several frames.
"""

from __future__ import annotations

import numpy as np

MIN_SPEECH_FRAMES = 12  # half a second of the character's speech makes a sample count


def _smooth(x: np.ndarray) -> np.ndarray:
    return np.convolve(x, np.ones(3) / 3, mode="same") if len(x) >= 3 else x


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0  # a constant signal: no sync


def lip_sync_score(mouth: np.ndarray, energy: np.ndarray, speaking: np.ndarray) -> float | None:
    """Pearson correlation of mouth opening with speech energy; None where the character
    hardly speaks (a sample without speech cannot show lip sync)."""
    if int(speaking.sum()) < MIN_SPEECH_FRAMES:
        return None
    return pearson(_smooth(np.asarray(mouth, np.float64)), _smooth(np.asarray(energy, np.float64)))
