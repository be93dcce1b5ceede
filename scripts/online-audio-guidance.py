"""Does guidance on the voice alone, applied in the Online model's own steps, make its mouth
follow the voice?

Streams LPM-Bench-mini's speaking and dialogue samples (held-out characters and lines, the
bench's seeds) through the Online model with each `--scales` value of `audio_guidance` in the
Backbone's steps (and, with `--refiner`, the same value in the Refiner's step), and reads them
as the bench does: lip sync, mouth motion, identity, flicker, with ground truth beside. Each
guided step costs one more pass of that network (the same conditions without the audio).

Usage: .venv/bin/python scripts/online-audio-guidance.py [CHECKPOINT] [--samples 30]
       [--seconds 2] [--scales 0,1,2,4] [--refiner] [--threads 2] --json OUT.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.analysis import aggregate, analyze_frames, reference_embeddings
from model_core.bench.judges import load_judges
from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.bench.systems import SR
from model_core.pipeline import LPMPipeline
from model_core.progress import progress_bar

METRICS = ("lip_sync", "mouth_motion", "identity", "flicker")


def stream(pipe, refs, sample, seconds, seed, scale, refiner):
    s = pipe.start_stream(
        refs,
        text=sample.identity.describe(),
        seed=seed,
        audio_guidance=scale,
        refiner_audio_guidance=scale if refiner else 0.0,
    )
    n = len(sample.speak)
    out = []
    for k in range(seconds):
        idx = np.arange(k * SR, (k + 1) * SR) % n
        out.append(s.push(sample.speak[idx], sample.listen[idx]).frames)
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    ap.add_argument("--samples", type=int, default=30, help="speaking and dialogue samples")
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--scales", default="0,1,2,4")
    ap.add_argument("--refiner", action="store_true", help="guide the Refiner's step too")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    try:
        scales = [float(x) for x in a.scales.split(",")]
    except ValueError:
        ap.error(f"--scales must be numbers separated by commas, got {a.scales!r}")
    if any(g < 0 for g in scales):
        ap.error(f"--scales must be >= 0, got {a.scales!r}")
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint)
    judges = load_judges()
    specs = [sp for sp in scenario_specs(100, a.seconds) if sp.kind in ("speaking", "dialogue")][
        : a.samples
    ]
    rows = {"ground_truth": [], **{f"audio_guidance={g:g}": [] for g in scales}}
    renderer = ScenarioRenderer()
    with torch.no_grad(), progress_bar(len(specs), "online audio guidance", unit="sample") as bar:
        for spec in specs:
            sample = renderer.render(spec)
            ref = reference_embeddings(judges, sample)
            rows["ground_truth"].append(analyze_frames(sample.frames, sample, judges, ref))
            refs = pipe.encode_references(sample.model_refs)
            for g in scales:
                frames = stream(pipe, refs, sample, spec.seconds, spec.index, g, a.refiner)
                rows[f"audio_guidance={g:g}"].append(analyze_frames(frames, sample, judges, ref))
            bar.update(1)
    summary = {}
    for name, per in rows.items():
        agg = aggregate(per)
        summary[name] = {m: agg[m] for m in METRICS}
    result = {
        "checkpoint": str(a.checkpoint),
        "version": pipe.version,
        "samples": len(specs),
        "seconds": a.seconds,
        "refiner_guided": a.refiner,
        "summary": summary,
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{len(specs)} samples x {a.seconds} s, Online model, refiner guided: {a.refiner}")
    print("| render | " + " | ".join(METRICS) + " |")
    for name, m in summary.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")


if __name__ == "__main__":
    main()
