"""Research: how much lip sync survives a mouth that can change only once per latent frame?

The VAE codes 4 video frames in one latent frame (6 a second at 24 fps), and the DiT's tokens
are per latent frame. A generator that carried exactly one mouth opening per latent frame, and
a decoder that drew it perfectly, would still lose the mouth's movement within each group of
four frames. This probe takes the bench's ground-truth footage, reads each frame's mouth with
the FaceProbe as the bench does, and scores the bench's lip sync of that reading after it is:

- held: replaced by its mean over each latent frame's frames (frame 0 alone, then groups of
  `temporal_factor`), as a step;
- interpolated: those means placed at each group's centre and linearly interpolated;
- low-passed: a 2nd-order Butterworth filter at 2, 3 and 4 Hz (forward and backward);

with the performer's own ground-truth opening beside. The ratio to the footage's score is the
most a generator in this latent space can reach if it carries one opening per latent frame.

Usage: .venv/bin/python scripts/latent-rate-ceiling.py [--samples 100] [--seconds 2]
       [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.signal import butter, filtfilt

from model_core.bench.judges import load_judges
from model_core.bench.metrics.lip_sync import lip_sync_score
from model_core.bench.scenarios import FPS, ScenarioRenderer, scenario_specs


def groups(n: int, k: int) -> list[slice]:
    """Frame 0 alone, then k frames per latent frame (the causal VAE's layout)."""
    return [slice(0, 1)] + [slice(a, min(a + k, n)) for a in range(1, n, k)]


def held(m: np.ndarray, k: int) -> np.ndarray:
    out = m.copy()
    for g in groups(len(m), k):
        out[g] = m[g].mean()
    return out


def interpolated(m: np.ndarray, k: int) -> np.ndarray:
    centres = [(g.start + g.stop - 1) / 2 for g in groups(len(m), k)]
    means = [m[g].mean() for g in groups(len(m), k)]
    return np.interp(np.arange(len(m)), centres, means)


def low_passed(m: np.ndarray, hz: float) -> np.ndarray:
    b, a = butter(2, hz / (FPS / 2))
    return filtfilt(b, a, m, padlen=min(len(m) - 1, 9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--temporal-factor", type=int, default=4)
    ap.add_argument("--json")
    a = ap.parse_args()
    k = a.temporal_factor
    probe = load_judges(None, False).probe
    renderer = ScenarioRenderer()
    variants = {
        "footage": lambda m: m,
        f"held_{k}": lambda m: held(m, k),
        f"interpolated_{k}": lambda m: interpolated(m, k),
        "held_2": lambda m: held(m, 2),
        "low_pass_2hz": lambda m: low_passed(m, 2.0),
        "low_pass_3hz": lambda m: low_passed(m, 3.0),
        "low_pass_4hz": lambda m: low_passed(m, 4.0),
    }
    scores: dict[str, list[float]] = {name: [] for name in [*variants, "performer_truth"]}
    for spec in scenario_specs(a.samples, a.seconds, 0):
        sample = renderer.render(spec)
        mouth = probe.predict(sample.frames)["mouth_open"].astype(np.float64)
        speaking = sample.state == "speaking"
        readings = {name: f(mouth) for name, f in variants.items()}
        readings["performer_truth"] = np.asarray(sample.mouth_open, np.float64)
        for name, reading in readings.items():
            s = lip_sync_score(reading, sample.speech_energy, speaking)
            if s is not None:
                scores[name].append(s)
    footage = float(np.mean(scores["footage"]))
    report = {
        "samples": a.samples,
        "seconds": a.seconds,
        "temporal_factor": k,
        "lip_sync_samples": len(scores["footage"]),
        "lip_sync": {name: round(float(np.mean(v)), 4) for name, v in scores.items()},
        "of_footage": {name: round(float(np.mean(v)) / footage, 3) for name, v in scores.items()},
    }
    for name in scores:
        print(f"{name:18} {report['lip_sync'][name]:.3f}  ({report['of_footage'][name]:.0%})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
