"""Pairwise preference: a judge that combines the metrics of two renders of the same sample
and prefers the better one, as raters do in the paper's side-by-side comparisons.

Each metric difference is divided by a scale (what counts as one clearly visible step) and
the steps are summed: lip sync (correlation, 0.2), identity (cosine, 0.1), listening
(reaction-rate contrast, 0.2) and flicker (a factor of 2). Metrics a sample cannot show
(no speech: no lip sync) are left out. Identical renders tie.
"""

from __future__ import annotations

import math

SCALES = {"lip_sync": 0.2, "identity": 0.1, "listening": 0.2}
FLICKER_FLOOR = 1e-3


def preference(a: dict, b: dict) -> float:
    """The judge's margin for `a` over `b` (> 0: prefers a)."""
    margin = 0.0
    for metric, scale in SCALES.items():
        va, vb = a.get(metric), b.get(metric)
        if va is None or vb is None:
            continue
        margin += (va - vb) / scale
    fa, fb = a.get("flicker"), b.get("flicker")
    if fa is not None and fb is not None:
        margin += math.log2(max(fb, FLICKER_FLOOR) / max(fa, FLICKER_FLOOR))
    return margin


def win_rate(pairs: list[tuple[dict, dict]], tie: float = 1e-9) -> dict:
    """Share of pairs the judge gives to the first system (ties count half)."""
    wins = ties = 0
    for a, b in pairs:
        m = preference(a, b)
        if abs(m) <= tie:
            ties += 1
        elif m > 0:
            wins += 1
    n = len(pairs)
    return {
        "rate": (wins + 0.5 * ties) / n if n else None,
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "pairs": n,
    }
