"""Listening: reaction events (nods, brow raises) while the partner speaks versus in silence.

Nods are read from the FaceProbe's head pitch and brow raises from its brow height, each
relative to a moving median (1.5 s), so slow posture changes are not reactions. A frame is a
reaction frame when either rises past its threshold for at least `MIN_EVENT_FRAMES` frames.
The score is P(reaction | listening) - P(reaction | silence): a character that reacts to what
it hears scores high, one that twitches all the time or never moves scores about zero.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

NOD_DEG = 4.0  # a scripted nod peaks at about 11 degrees
BROW_RAISE = 0.3  # a scripted brow raise peaks at 0.8
BASELINE_FRAMES = 37
MIN_EVENT_FRAMES = 3
MOTION_BURST = 2.5  # head motion this many times the clip's median is a burst
MOTION_FLOOR = 0.004  # below this (1/250 of full scale) nothing visibly moves


def _runs_at_least(mask: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros_like(mask)
    i = 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            if j - i >= n:
                out[i:j] = True
            i = j
        else:
            i += 1
    return out


def head_motion(head_frames: np.ndarray) -> np.ndarray:
    """(T,) mean absolute frame difference of the head region (0..1), 0 for the first frame."""
    x = head_frames.astype(np.float32) / 255.0
    out = np.zeros(len(x), np.float32)
    if len(x) > 1:
        out[1:] = np.abs(x[1:] - x[:-1]).reshape(len(x) - 1, -1).mean(axis=1)
    return out


def reaction_frames(
    pitch: np.ndarray, brow: np.ndarray, motion: np.ndarray | None = None
) -> np.ndarray:
    """(T,) bool: frames inside a detected nod or brow raise. With `motion` (head-region
    motion), a burst of head motion well above the clip's typical level also counts: the
    probe's pitch and brow readings are weak (see the judges' validation), a nod is not."""
    size = min(BASELINE_FRAMES, len(pitch) | 1)
    nod = pitch - median_filter(pitch, size=size, mode="nearest") > NOD_DEG
    raise_ = brow - median_filter(brow, size=size, mode="nearest") > BROW_RAISE
    events = nod | raise_
    if motion is not None and len(motion) > 2:
        typical = float(np.median(motion[1:]))
        events |= motion > max(MOTION_BURST * typical, MOTION_FLOOR)
    return _runs_at_least(events, MIN_EVENT_FRAMES)


def listening_counts(
    reaction: np.ndarray, listen_ctx: np.ndarray, silent_ctx: np.ndarray
) -> np.ndarray:
    """[reaction frames while listening, listening frames, reaction frames in silence, silent
    frames]: summed over samples, then turned into a score by `listening_score`."""
    return np.array(
        [
            (reaction & listen_ctx).sum(),
            listen_ctx.sum(),
            (reaction & silent_ctx).sum(),
            silent_ctx.sum(),
        ],
        np.int64,
    )


def listening_score(counts: np.ndarray, min_frames: int = 12) -> float | None:
    rl, nl, rs, ns = (int(c) for c in counts)
    if nl < min_frames or ns < min_frames:
        return None
    return rl / nl - rs / ns
