"""What do the generators draw? Ground truth, Base and Online frames side by side.

For a few held-out speaking samples of LPM-Bench-mini, one PNG: per sample three rows
(ground-truth footage, the Base teacher's render, the Online stream) of every `--every`-th
frame. Metrics summarise; this shows what they summarise.

The generators get what the bench gives them (`ScenarioSample.model_refs`: the framed
picture as the global reference); `--studio` gives them the studio portrait instead, and
`--framed` the sample's own first frame.

Usage: .venv/bin/python scripts/generator-frames.py [CHECKPOINT] [--samples 3] [--seconds 2]
       [--every 5] [--studio | --framed] -o OUT.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.pipeline import LPMPipeline, ReferenceImages

SR = 16000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=SHIPPED_CHECKPOINT)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--framed", action="store_true", help="the first frame as global reference")
    ap.add_argument("--studio", action="store_true", help="the studio portrait as global reference")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=True)
    specs = [s for s in scenario_specs(a.samples * 8, a.seconds, 0) if s.kind == "speaking"]
    rows = []
    for spec in specs[: a.samples]:
        sample = ScenarioRenderer().render(spec)
        text = sample.identity.describe()
        refs = sample.refs if a.studio else sample.model_refs
        if a.framed:
            refs = ReferenceImages(sample.frames[0], dict(refs.body), dict(refs.face))
        base = pipe.render_base(refs, sample.speak, sample.listen, seconds=a.seconds, text=text)
        stream = pipe.start_stream(pipe.encode_references(refs), text=text, seed=spec.index)
        online = np.concatenate(
            [
                stream.push(
                    sample.speak[k * SR : (k + 1) * SR], sample.listen[k * SR : (k + 1) * SR]
                ).frames
                for k in range(a.seconds)
            ]
        )
        picks = range(1, a.seconds * 24, a.every)
        for video in (sample.frames, base, online):
            rows.append(np.concatenate([video[i] for i in picks], axis=1))
        print(spec.name)
    Image.fromarray(np.concatenate(rows, axis=0)).save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
