"""Listening: reaction events (nods, brow raises) while the partner speaks versus in silence.

Nods are read from the FaceProbe's head pitch and brow raises from its brow height, each
relative to a moving median (1.5 s), so slow posture changes are not reactions. A frame is a
reaction frame when either rises past its threshold for at least `MIN_EVENT_FRAMES` frames.
The probe hardly sees a nod at 128 px (its pitch moves under 1 degree during a scripted
11-degree nod), so nods are also read straight from the pixels: the vertical shift of the
face's features (`vertical_shift`), relative to the same moving median. On 3 minutes of
ground-truth dialogue that detector's frames were all inside scripted reactions (precision
1.0, recall 0.2-0.3: it sees the nods, not the brow raises, and no idle motion).
The score is P(reaction | listening) - P(reaction | silence): a character that reacts to what
it hears scores high, one that twitches all the time or never moves scores about zero.
Neither rule alone sees a picture with no still face in it: a randomly initialised generator
draws frames that change from frame to frame by about 170 times the footage's flicker, and
that churn, driven by the audio it is given, read as nods during the partner's speech (0.043
on LPM-Bench-mini's 180 s, above the footage's own 0.029). So a clip whose flicker is above
`UNSTABLE_FLICKER` (30x the footage's, 15x the shipped model's) has no face to react from:
every frame counts as a reaction frame, as for footage that never holds still.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

NOD_DEG = 4.0  # a scripted nod peaks at about 11 degrees
BROW_RAISE = 0.3  # a scripted brow raise peaks at 0.8
BASELINE_FRAMES = 37
MIN_EVENT_FRAMES = 3
NOD_SHIFT = 1.0 / 96  # features moving this share of the head crop's height (1 px at 128 px)
MIN_SHIFT_FRAMES = 2
TWITCH_SHARE = 0.25  # features off their baseline in more frames than this: no baseline
MAX_SHIFT = 4.0 / 96
SHIFT_STEP = 0.25 / 96
UNSTABLE_FLICKER = 0.05  # `flicker` of the clip; the footage's is about 0.0016


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


def vertical_shift(head_frames: np.ndarray) -> np.ndarray:
    """(T,) vertical shift of each frame's features against the clip's median frame, as a
    share of the crop's height (positive: down). The row profile of the central half of the
    crop (mean grey level per row, differenced so edges count, not flat colour) is matched
    against the median profile at sub-pixel shifts."""
    g = head_frames.astype(np.float32).mean(axis=-1)  # (T, H, W)
    h, w = g.shape[1:]
    prof = np.diff(g[:, :, w // 4 : 3 * w // 4].mean(axis=2), axis=1)  # (T, H-1)
    ref = np.median(prof, axis=0)
    rows = np.arange(prof.shape[1], dtype=np.float32)
    shifts = np.arange(-MAX_SHIFT, MAX_SHIFT + 1e-9, SHIFT_STEP) * h
    refs = np.stack([np.interp(rows - s, rows, ref) for s in shifts])  # (S, H-1)
    err = ((prof[:, None, :] - refs[None]) ** 2).mean(axis=2)  # (T, S)
    return (shifts[err.argmin(axis=1)] / h).astype(np.float32)


def reaction_frames(
    pitch: np.ndarray,
    brow: np.ndarray,
    shift: np.ndarray | None = None,
    flicker: float | None = None,
) -> np.ndarray:
    """(T,) bool: frames inside a detected nod or brow raise. `shift` (`vertical_shift` of
    the head crop) adds nods seen in the pixels: the features moving past `NOD_SHIFT` from
    their moving median for at least `MIN_SHIFT_FRAMES` frames; where they are off their
    median in more than `TWITCH_SHARE` of the frames, or the clip's `flicker` is above
    `UNSTABLE_FLICKER`, every frame is a reaction frame."""
    if flicker is not None and flicker > UNSTABLE_FLICKER:
        return np.ones(len(pitch), bool)
    size = min(BASELINE_FRAMES, len(pitch) | 1)
    nod = pitch - median_filter(pitch, size=size, mode="nearest") > NOD_DEG
    raise_ = brow - median_filter(brow, size=size, mode="nearest") > BROW_RAISE
    events = _runs_at_least(nod | raise_, MIN_EVENT_FRAMES)
    if shift is not None and len(shift) > 2:
        moved = np.abs(shift - median_filter(shift, size=size, mode="nearest")) > NOD_SHIFT
        if moved.mean() > TWITCH_SHARE:
            # Footage that never holds still has no baseline to react from: every frame
            # counts as moving, so it scores 0 (not a chance contrast of random jumps).
            return np.ones(len(pitch), bool)
        events |= _runs_at_least(moved, MIN_SHIFT_FRAMES)
    return events


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
