"""Does guidance on the audio alone make the mouth follow the voice?

Renders LPM-Bench-mini's speaking and dialogue samples (held-out characters and lines, the
bench's seeds) at each `--scales` value of `audio_guidance` and reads them as the bench does:
lip sync, mouth motion, identity, flicker, with ground truth beside.

- `--system base`: the Base teacher, on top of the sampler's classifier-free guidance
  (`render_base(audio_guidance=)`); records in `base_audio_guidance.json`.
- `--system online`: the Online model streamed chunk by chunk, guided in each Backbone step
  and, with `--refiner`, in the Refiner's step as well (`start_stream(audio_guidance=,
  refiner_audio_guidance=)`); records in `online_audio_guidance{,_refiner}.json`.
Each guided step costs one more pass of that network (the same conditions without the audio).

Usage: .venv/bin/python scripts/audio-guidance.py [CHECKPOINT] --system base|online
       [--samples 30] [--seconds 2] [--steps 4] [--scales 0,2,4,6] [--refiner] [--threads 2]
       --json OUT.json
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


def render(pipe, refs, sample, a, scale: float) -> np.ndarray:
    seconds, seed, text = sample.spec.seconds, sample.spec.index, sample.identity.describe()
    if a.system == "base":
        return pipe.render_base(
            refs, sample.speak, sample.listen, text=text, seconds=seconds, steps=a.steps,
            seed=seed, audio_guidance=scale,
        )  # fmt: skip
    stream = pipe.start_stream(
        refs, text=text, seed=seed, audio_guidance=scale,
        refiner_audio_guidance=scale if a.refiner else 0.0,
    )  # fmt: skip
    n, out = len(sample.speak), []
    for k in range(seconds):
        idx = np.arange(k * SR, (k + 1) * SR) % n
        out.append(stream.push(sample.speak[idx], sample.listen[idx]).frames)
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    ap.add_argument("--system", choices=("base", "online"), required=True)
    ap.add_argument("--samples", type=int, default=30, help="speaking and dialogue samples")
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="Base sampler steps (the bench's)")
    ap.add_argument("--scales", default="0,2,4,6")
    ap.add_argument("--refiner", action="store_true", help="online: guide the Refiner too")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    try:
        scales = [float(x) for x in a.scales.split(",")]
    except ValueError:
        ap.error(f"--scales must be numbers separated by commas, got {a.scales!r}")
    if any(not g >= 0 for g in scales):
        ap.error(f"--scales must be >= 0, got {a.scales!r}")
    if a.refiner and a.system != "online":
        ap.error("--refiner guides the Online model's Refiner; use it with --system online")
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=a.system == "base")
    judges = load_judges()
    specs = [sp for sp in scenario_specs(100, a.seconds) if sp.kind in ("speaking", "dialogue")][
        : a.samples
    ]
    rows = {"ground_truth": [], **{f"audio_guidance={g:g}": [] for g in scales}}
    renderer = ScenarioRenderer()
    with (
        torch.no_grad(),
        progress_bar(len(specs), f"{a.system} audio guidance", unit="sample") as bar,
    ):
        for spec in specs:
            sample = renderer.render(spec)
            ref = reference_embeddings(judges, sample)
            rows["ground_truth"].append(analyze_frames(sample.frames, sample, judges, ref))
            refs = pipe.encode_references(sample.model_refs)
            for g in scales:
                frames = render(pipe, refs, sample, a, g)
                rows[f"audio_guidance={g:g}"].append(analyze_frames(frames, sample, judges, ref))
            bar.update(1)
    summary = {name: {m: aggregate(per)[m] for m in METRICS} for name, per in rows.items()}
    result = {
        "checkpoint": str(a.checkpoint),
        "version": pipe.version,
        "system": a.system,
        "samples": len(specs),
        "seconds": a.seconds,
        "summary": summary,
    }
    if a.system == "base":
        result |= {"steps": a.steps, "guidance_scale": pipe.config.sampler.guidance_scale}
    else:
        result["refiner_guided"] = a.refiner
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    print(
        f"{len(specs)} samples x {a.seconds} s, {a.system}"
        + (", Refiner guided" if a.refiner else "")
    )
    print("| render | " + " | ".join(METRICS) + " |")
    for name, m in summary.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")


if __name__ == "__main__":
    main()
