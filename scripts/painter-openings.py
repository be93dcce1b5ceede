"""What does the mouth painter draw? One frame painted to several openings, side by side.

For the bench's looped-stream character and a few held-out speaking samples of
LPM-Bench-mini, the Online model streams the sample's voice without its painter; one frame
of the last chunk is then painted (model_core/mouth_painter.py) to each `--openings` value
(relative, and at the strength, that the checkpoint's config serves).
One row per sample: the footage's frame, the unpainted frame, then the painted ones, drawn at
2x. Metrics read how far the painted mouth moves; this shows what moves.

Usage: .venv/bin/python scripts/painter-openings.py [CHECKPOINT] [--samples 3]
       [--openings 0,0.5,1] [--frame 5] -o OUT.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from model_core.bench.quality import (
    QualityBenchSettings,
    build_runners,
    loop_spec,
    resolve_checkpoint,
)
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.online import frames_to_uint8

SR = 16000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="auto", help="a folder; default: shipped")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--openings", default="0,0.5,1")
    ap.add_argument("--frame", type=int, default=5, help="frame of the chunk, 0-23")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    try:
        openings = [float(v) for v in a.openings.split(",")]
    except ValueError:
        ap.error(f"--openings must be numbers separated by commas, got {a.openings!r}")
    if not 0 <= a.frame < 24 or a.samples < 0:
        ap.error("--frame must be 0-23 and --samples >= 0")
    torch.set_num_threads(a.threads)
    s = QualityBenchSettings(systems=("online",), checkpoint=a.checkpoint)
    runners, _ = build_runners(s, resolve_checkpoint(a.checkpoint)[0])
    runner = runners["online"]
    pipe = runner.pipe
    painter = pipe.model.mouth_painter
    if painter is None:
        raise SystemExit(f"{a.checkpoint}: this checkpoint has no mouth painter")
    renderer = ScenarioRenderer()
    specs = [sp for sp in scenario_specs(a.samples * 4, 2, 0) if sp.kind == "speaking"]
    samples = [renderer.render_loop(loop_spec(s), s.minute_seconds)]
    samples += [renderer.render(sp) for sp in specs[: a.samples]]
    rows = []
    for smp in samples:
        stream = pipe.start_stream(
            runner.references(smp), text=smp.identity.describe(), seed=0, mouth_painter=False
        )
        for k in range(2):
            res = stream.push(smp.speak[k * SR : (k + 1) * SR], smp.listen[k * SR : (k + 1) * SR])
        frame = torch.from_numpy(res.frames[a.frame]).permute(2, 0, 1).float() / 127.5 - 1
        video = frame[None, :, None]  # (1, 3, 1, H, W)
        picture = None
        with torch.no_grad():
            if painter.picture:
                picture = pipe.model.vae.decode(stream.picture)[:, :, 0]
            painted = [
                frames_to_uint8(pipe.model.paint_mouth(video, torch.tensor([[o]]), picture))[0]
                for o in openings
            ]
        rows.append(np.concatenate([smp.frames[24 + a.frame], res.frames[a.frame], *painted], 1))
    img = np.concatenate(rows, 0)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(a.out)
    print(f"{a.out}: footage, unpainted, painted at {openings}")


if __name__ == "__main__":
    main()
