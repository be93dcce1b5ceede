"""Stability over a long stream: every metric per minute, and drift.

The long stream loops one minute of dialogue, so every minute asks for the same performance;
a metric that changes from minute to minute shows the system's own drift, not the content's.
Drift of a metric = its worst relative degradation from minute 1 (0 = never worse than at the
start); the system's `drift` is the worst over its metrics.
"""

from __future__ import annotations

import math

HIGHER_IS_BETTER = {
    "lip_sync": True,
    "mouth_motion": True,  # less: a mouth stiffening as the stream goes on
    "identity": True,
    "listening": True,
    "flicker": False,
}
# Denominator floors, so a metric near zero at minute 1 does not turn noise into huge ratios.
FLOORS = {
    "lip_sync": 0.1,
    "mouth_motion": 0.1,
    "identity": 0.1,
    "listening": 0.05,
    "flicker": 0.005,
}


def relative_degradation(metric: str, first: float, later: float) -> float:
    base = max(abs(first), FLOORS[metric])
    worse = (first - later) if HIGHER_IS_BETTER[metric] else (later - first)
    return max(0.0, worse / base)


def drift(per_minute: list[dict[str, float | None]]) -> dict[str, float | None]:
    """{metric: worst relative degradation from minute 1} plus `worst`."""
    out: dict[str, float | None] = {}
    for metric in HIGHER_IS_BETTER:
        vals = [m.get(metric) for m in per_minute]
        if len(vals) < 2 or vals[0] is None or any(v is None for v in vals[1:]):
            out[metric] = None
            continue
        out[metric] = max(relative_degradation(metric, vals[0], v) for v in vals[1:])
    known = [v for v in out.values() if v is not None and not math.isnan(v)]
    out["worst"] = max(known) if known else None
    return out
