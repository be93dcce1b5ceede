"""Lip sync: does the mouth open when the character's own voice is loud?

The FaceProbe's per-frame mouth opening is correlated (Pearson) with the per-frame RMS of the
speaking audio. Both are lightly smoothed (3 frames) since a viseme spans several frames.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

MIN_SPEECH_FRAMES = 12  # half a second of the character's speech makes a sample count


def _smooth(x: np.ndarray) -> np.ndarray:
    return uniform_filter1d(x, 3, mode="nearest")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    # A (near-)constant signal cannot be in sync; float noise must not make it look so.
    if a.std() < 1e-3 or b.std() < 1e-6:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def lip_sync_score(mouth: np.ndarray, energy: np.ndarray, speaking: np.ndarray) -> float | None:
    """Pearson correlation of mouth opening with speech energy; None where the character
    hardly speaks (a sample without speech cannot show lip sync)."""
    if int(speaking.sum()) < MIN_SPEECH_FRAMES:
        return None
    return pearson(_smooth(np.asarray(mouth, np.float64)), _smooth(np.asarray(energy, np.float64)))
