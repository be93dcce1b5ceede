"""Does guidance on the audio alone make the Base teacher's mouth follow the voice?

Renders LPM-Bench-mini's speaking and dialogue samples (held-out characters and lines, the
bench's seeds) with the Base model at each `--scales` value of `audio_guidance` (on top of
the sampler's classifier-free guidance) and reads them as the bench does: lip sync, mouth
motion, identity, flicker, with ground truth beside.

Usage: .venv/bin/python scripts/base-audio-guidance.py [CHECKPOINT] [--samples 30]
       [--seconds 2] [--steps 4] [--scales 0,2,4,6] [--threads 2] --json OUT.json
"""

from __future__ import annotations

import argparse
import json

import torch

from model_core.bench.analysis import aggregate, analyze_frames, reference_embeddings
from model_core.bench.judges import load_judges
from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.pipeline import LPMPipeline
from model_core.progress import progress_bar

METRICS = ("lip_sync", "mouth_motion", "identity", "flicker")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    ap.add_argument("--samples", type=int, default=30, help="speaking and dialogue samples")
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="Base sampler steps (the bench's)")
    ap.add_argument("--scales", default="0,2,4,6")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    try:
        scales = [float(x) for x in a.scales.split(",")]
    except ValueError:
        ap.error(f"--scales must be numbers separated by commas, got {a.scales!r}")
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=True)
    judges = load_judges()
    specs = [sp for sp in scenario_specs(100, a.seconds) if sp.kind in ("speaking", "dialogue")][
        : a.samples
    ]
    rows = {"ground_truth": [], **{f"audio_guidance={g:g}": [] for g in scales}}
    renderer = ScenarioRenderer()
    with torch.no_grad(), progress_bar(len(specs), "base audio guidance", unit="sample") as bar:
        for spec in specs:
            sample = renderer.render(spec)
            ref = reference_embeddings(judges, sample)
            rows["ground_truth"].append(analyze_frames(sample.frames, sample, judges, ref))
            refs = pipe.encode_references(sample.model_refs)
            for g in scales:
                frames = pipe.render_base(
                    refs,
                    sample.speak,
                    sample.listen,
                    text=sample.identity.describe(),
                    seconds=spec.seconds,
                    steps=a.steps,
                    seed=spec.index,
                    audio_guidance=g,
                )
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
        "steps": a.steps,
        "guidance_scale": pipe.config.sampler.guidance_scale,
        "summary": summary,
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    print(
        f"{len(specs)} samples x {a.seconds} s, Base {a.steps} steps, CFG "
        f"{pipe.config.sampler.guidance_scale:g}"
    )
    print("| render | " + " | ".join(METRICS) + " |")
    for name, m in summary.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")


if __name__ == "__main__":
    main()
