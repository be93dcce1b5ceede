"""Does the generator hear the voice? A research probe of the Base and Online models' mouths.

For held-out speaking samples of LPM-Bench-mini it renders four things and reads the mouth
opening of each frame with the bench's FaceProbe:

- ground_truth: the performer's footage;
- base: the Base model (bidirectional, `--base-steps` sampling steps);
- online: the Online model streaming the sample in 1-second chunks;
- online_silent: the same stream, same seed, with the character's voice replaced by silence.

For each it reports the bench's lip sync (Pearson of mouth opening with speech energy, lag 0),
the same correlation with the mouth shifted by -12..+12 frames (a mouth that moves with the
voice but late peaks at a positive lag), and the mean mouth opening while the character speaks
and while it does not. A model that ignores the voice gives `online` and `online_silent` the
same figures.

Usage: .venv/bin/python scripts/generator-voice-probe.py [CHECKPOINT] [--samples 8]
       [--seconds 4] [--base-steps 4] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.judges import load_judges
from model_core.bench.metrics.lip_sync import _smooth, pearson
from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.bench.systems import SystemRunner
from model_core.pipeline import LPMPipeline

LAGS = range(-12, 13)


def lag_scan(mouth: np.ndarray, energy: np.ndarray) -> list[float]:
    """Pearson of mouth[t + lag] with energy[t], for every lag (both lightly smoothed)."""
    m, e = _smooth(mouth.astype(np.float64)), _smooth(energy.astype(np.float64))
    out = []
    for lag in LAGS:
        a, b = (m[lag:], e[: len(e) - lag]) if lag >= 0 else (m[:lag], e[-lag:])
        out.append(pearson(a, b))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=SHIPPED_CHECKPOINT)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--base-steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=True)
    judges = load_judges(None, False)
    specs = [s for s in scenario_specs(a.samples * 3, a.seconds, 0) if s.kind == "speaking"]
    renderer = ScenarioRenderer()
    online, base = SystemRunner("online", pipe), SystemRunner("base", pipe, a.base_steps)
    rows: dict[str, dict[str, list]] = {}
    for spec in specs[: a.samples]:
        sample = renderer.render(spec)
        silence = np.zeros_like(sample.speak)
        renders = {
            "ground_truth": sample.frames,
            "base": base.render(sample),
            "online": online.render(sample),
            "online_silent": np.concatenate(
                list(online.stream(sample, silence, sample.listen, a.seconds))
            ),
        }
        speaking = sample.state == "speaking"
        for name, frames in renders.items():
            mouth = judges.probe.predict(frames)["mouth_open"]
            r = rows.setdefault(name, {"scan": [], "speaking": [], "quiet": []})
            r["scan"].append(lag_scan(mouth, sample.speech_energy))
            r["speaking"].append(float(mouth[speaking].mean()))
            if (~speaking).any():
                r["quiet"].append(float(mouth[~speaking].mean()))
        print(spec.name, flush=True)
    report = {"checkpoint": str(a.checkpoint), "samples": a.samples, "seconds": a.seconds}
    print(
        f"{'system':14} {'lag 0':>7} {'best lag':>9} {'at best':>8} {'mouth speaking':>15} {'quiet':>7}"
    )
    for name, r in rows.items():
        scan = np.mean(np.array(r["scan"]), axis=0)
        best = int(np.argmax(scan))
        report[name] = {
            "lip_sync": round(float(scan[LAGS.index(0)]), 4),
            "best_lag": LAGS[best],
            "lip_sync_at_best_lag": round(float(scan[best]), 4),
            "mouth_speaking": round(float(np.mean(r["speaking"])), 4),
            "mouth_quiet": round(float(np.mean(r["quiet"])), 4) if r["quiet"] else None,
            "scan": [round(float(x), 4) for x in scan],
        }
        x = report[name]
        print(
            f"{name:14} {x['lip_sync']:7.3f} {x['best_lag']:9d} {x['lip_sync_at_best_lag']:8.3f}"
            f" {x['mouth_speaking']:15.3f} {x['mouth_quiet'] or float('nan'):7.3f}"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
