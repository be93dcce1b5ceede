"""Mouth motion: does the mouth move as far as the footage's while the character speaks?

Lip sync is a correlation, blind to scale: a mouth that opens a tenth as far as it should, in
perfect time, scores as well as one that opens fully. This metric is the other half: the
spread (standard deviation) of the FaceProbe's mouth opening over the frames where the
character speaks, divided by the spread of the sample's true opening over the same frames.
Both are smoothed as lip sync smooths them. The footage itself scores about 1 (the probe's
own gain); a frozen or stiff mouth scores near 0.
"""

from __future__ import annotations

import numpy as np

from model_core.bench.metrics.lip_sync import MIN_SPEECH_FRAMES, _smooth

MIN_TRUE_SPREAD = 0.02  # a sample whose true mouth hardly moves cannot show stiffness


def mouth_motion(mouth: np.ndarray, true_open: np.ndarray, speaking: np.ndarray) -> float | None:
    """Spread of the read opening over the true opening's, on the speaking frames; None
    where the character hardly speaks or its true mouth hardly moves."""
    speaking = np.asarray(speaking, bool)
    if int(speaking.sum()) < MIN_SPEECH_FRAMES:
        return None
    read = _smooth(np.asarray(mouth, np.float64))[speaking]
    true = _smooth(np.asarray(true_open, np.float64))[speaking]
    if true.std() < MIN_TRUE_SPREAD:
        return None
    return float(read.std() / true.std())
