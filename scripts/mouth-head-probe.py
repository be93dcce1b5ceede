"""Research: does the mouth head's voice reach the Online model's frames?

For held-out speaking samples of LPM-Bench-mini it streams the Online model once and, chunk by
chunk, decodes the Refiner's latents twice through two streaming decoders: as they are, and
with the mouth head's residual (model_core/mouth_head.py). The bench's FaceProbe reads the
mouth of both, and the head's own reading of the opening from the voice (its FiLM input) is
kept per frame. It reports Pearson r, per sample then averaged, of:

- each render's mouth against the speech energy (the bench's lip sync) and against the
  footage's opening;
- the head's opening against the speech energy and against the footage's opening (how well it
  hears);
- the headed render's mouth against the head's opening (how much of what it hears it draws),
  and the mean per-frame change the head makes to the mouth (headed minus plain);
- where the checkpoint has a mouth painter (model_core/mouth_painter.py), the same for the
  headed render painted with the head's opening (`painted_*`).

Usage: .venv/bin/python scripts/mouth-head-probe.py CHECKPOINT [--samples 12] [--seconds 4]
       [--json OUT]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.judges import load_judges
from model_core.bench.metrics.lip_sync import pearson
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.bench.systems import SystemRunner
from model_core.online import frames_to_uint8
from model_core.pipeline import LPMPipeline

SR = 16000


def stream_both(pipe, runner, sample, seconds):
    """(plain frames, headed frames, painted frames or None, the head's opening per frame)."""
    stream = pipe.start_stream(
        runner.references(sample), text=sample.identity.describe(),
        seed=runner.seed + sample.spec.index, mouth_head=False,
    )  # fmt: skip
    head = pipe.model.mouth_head
    headed = pipe.model.vae.stream_decoder()
    with torch.no_grad():
        headed.push(stream.picture)
    plain, drawn, painted, opening = [], [], [], []
    painter = pipe.model.mouth_painter
    n = len(sample.speak)
    for k in range(seconds):
        idx = np.arange(k * SR, (k + 1) * SR) % n
        audio = stream.encode_audio(sample.speak[idx], sample.listen[idx])
        with torch.no_grad():
            lat = stream.refine(stream.backbone(audio), audio)
            aud = stream._audio_inputs(audio)
            lat_h, op = head(lat, stream.picture, aud.speak, aud.frame_span)
            plain.append(stream.decode(lat))
            video = headed.push(lat_h)
            drawn.append(frames_to_uint8(video))
            if painter is not None:
                painted.append(
                    frames_to_uint8(
                        pipe.model.paint_mouth(video, op.reshape(1, -1), stream.painter_picture)
                    )
                )
        opening.append(op[0].flatten().numpy())
        stream.index += 1
    paint = np.concatenate(painted) if painted else None
    return np.concatenate(plain), np.concatenate(drawn), paint, np.concatenate(opening)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=False)
    if pipe.model.mouth_head is None:
        raise SystemExit(f"{a.checkpoint}: this checkpoint has no mouth head")
    judges = load_judges(None, False)
    specs = [s for s in scenario_specs(a.samples * 3, a.seconds, 0) if s.kind == "speaking"]
    renderer, runner = ScenarioRenderer(), SystemRunner("online", pipe)
    rows: dict[str, list[float]] = {}
    for spec in specs[: a.samples]:
        sample = renderer.render(spec)
        plain, drawn, painted, opening = stream_both(pipe, runner, sample, a.seconds)
        m_plain = judges.probe.predict(plain)["mouth_open"]
        m_head = judges.probe.predict(drawn)["mouth_open"]
        energy, truth = sample.speech_energy, sample.mouth_open
        figures = {
            "plain_vs_energy": pearson(m_plain, energy),
            "head_vs_energy": pearson(m_head, energy),
            "footage_vs_energy": pearson(judges.probe.predict(sample.frames)["mouth_open"], energy),
            "plain_vs_truth": pearson(m_plain, truth),
            "head_vs_truth": pearson(m_head, truth),
            "heard_vs_energy": pearson(opening, energy),
            "heard_vs_truth": pearson(opening, truth),
            "head_vs_heard": pearson(m_head, opening),
            "head_change": float(np.abs(m_head - m_plain).mean()),
            # how far the heard opening swings against the footage's own
            "heard_std": float(np.std(opening)),
            "truth_std": float(np.std(truth)),
        }
        if painted is not None:
            m_paint = judges.probe.predict(painted)["mouth_open"]
            figures |= {
                "painted_vs_energy": pearson(m_paint, energy),
                "painted_vs_truth": pearson(m_paint, truth),
                "painted_vs_heard": pearson(m_paint, opening),
                "paint_change": float(np.abs(m_paint - m_head).mean()),
            }
        for k, v in figures.items():
            rows.setdefault(k, []).append(v)
        print(spec.name, " ".join(f"{k} {v:+.3f}" for k, v in figures.items()), flush=True)
    report = {k: round(float(np.nanmean(v)), 4) for k, v in rows.items()}
    report |= {"checkpoint": a.checkpoint, "samples": a.samples, "seconds": a.seconds}
    print(json.dumps(report, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
