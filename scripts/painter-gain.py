"""Research: how far does the mouth painter's drawn opening follow the opening it is told,
and would telling it a scaled opening serve lip sync better?

On validation samples (LPM-Bench-mini's scenario generator with a seed other than the bench's,
so other held-out identities and other speech; every kind as the bench mixes them; listening samples
count for identity only), it streams the Online model once per sample as serving does, keeps each
chunk's decoded frames before the painter and the mouth head's opening per frame, then paints
the same frames with the opening times each gain G. The bench's FaceProbe reads every version.
Per gain it reports, averaged over the samples with speech (Pearson r, per sample):

- `lip_sync`: the read mouth against the speech energy (the bench's figure);
- `drawn_vs_told`: the read mouth against the opening told (how faithfully it draws);
- `gain`: the read mouth's spread over the told opening's, on the speaking frames;
- `change`: the mean absolute change the painter makes to the head region;
- `identity`: the bench's identity figure (the identity judge's best cosine similarity of each
  frame to the sample's reference set, averaged), which the painter's edits of the face cost.

And the painter's response curve: the FaceProbe's mean reading of frames painted at fixed
openings 0, 0.25, ..., 1.5, plain and relative.

The heard opening is the head's own, before the gain the checkpoint's config may set.

A gain written `rG` paints relative (`OnlineConfig.mouth_painter_relative`): each frame gets
the painter's edit for the opening told less its edit for opening 0; `GxS` (or `rGxS`) draws
the edit S times over (`OnlineConfig.mouth_painter_strength`).

`--set G` (or `rG`, `GxS`, `rGxS`) measures nothing: it writes `online.mouth_painter_gain` = G,
`online.mouth_painter_relative` (true for `r`) and `online.mouth_painter_strength` = S (1
without `x`) into CHECKPOINT's config.json (its weights and everything else unchanged), the
serving choice made from a sweep.

Usage: .venv/bin/python scripts/painter-gain.py CHECKPOINT [--samples 24] [--seconds 3]
       [--gains 0.5,1,1.5,r1,r1x1.5] [--seed 1] [--json OUT] [--png OUT]
       .venv/bin/python scripts/painter-gain.py CHECKPOINT --set r1x1.5
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from model_core.bench.analysis import reference_embeddings
from model_core.bench.judges import load_judges
from model_core.bench.metrics.identity import frame_similarity
from model_core.bench.metrics.lip_sync import lip_sync_score, pearson
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.bench.systems import SystemRunner
from model_core.mouth_painter import head_region
from model_core.online import frames_to_uint8
from model_core.pipeline import LPMPipeline

SR = 16000
FIXED = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def stream_unpainted(pipe, runner, sample, seconds):
    """(decoded video (1, 3, T, H, W) before the painter, the head's opening (T,))."""
    stream = pipe.start_stream(
        runner.references(sample), text=sample.identity.describe(),
        seed=runner.seed + sample.spec.index, mouth_painter=False,
    )  # fmt: skip
    videos, openings = [], []
    n = len(sample.speak)
    for k in range(seconds):
        idx = np.arange(k * SR, (k + 1) * SR) % n
        speak = sample.speak[idx]
        audio = stream.encode_audio(speak, sample.listen[idx])
        with torch.no_grad():
            lat = stream.refine(stream.backbone(audio), audio)
            videos.append(stream._decode_video(lat, speak))
            openings.append(stream.heard_opening(audio).flatten())
        stream.index += 1
    return torch.cat(videos, dim=2), torch.cat(openings), stream.painter_picture


def set_gain(checkpoint: str, gain: float, relative: bool, strength: float) -> None:
    """Write `online.mouth_painter_gain`, `_relative` and `_strength` into a checkpoint's
    config.json; exit 2 on a folder that is not a checkpoint with a painter, or a gain or
    strength that is not > 0."""
    from pathlib import Path

    from model_core.checkpoint import CONFIG, CheckpointError, read_checkpoint

    try:
        cfg, _, meta = read_checkpoint(checkpoint, with_base=False)
        if cfg.online.mouth_painter <= 0:
            raise ValueError("it has no mouth painter")
        if not gain > 0 or not strength > 0:
            raise ValueError(f"the gain and strength must be > 0, got {gain} and {strength}")
        cfg = cfg.with_overrides(
            {
                "online.mouth_painter_gain": gain,
                "online.mouth_painter_relative": relative,
                "online.mouth_painter_strength": strength,
            }
        )
    except (CheckpointError, ValueError) as e:
        print(f"painter-gain: {checkpoint}: {e}", file=sys.stderr)
        sys.exit(2)
    meta["config"] = cfg.to_dict()
    path = Path(checkpoint) / CONFIG
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)
    print(
        f"{path}: online.mouth_painter_gain = {gain:g}, mouth_painter_relative = {relative}, "
        f"mouth_painter_strength = {strength:g}"
    )


def parse_gain(text: str) -> tuple[str, float, float, bool, float]:
    """ "[r]G[+C][xS]" -> (the text, G, C, relative, S): the painter is told C + G x the
    heard opening, relative to opening 0 with the "r", its edit drawn S times over."""
    name = text.strip()
    relative = name.startswith("r")
    told, times, strength = name.removeprefix("r").partition("x")
    g, plus, c = told.partition("+")
    return (
        name, float(g), float(c) if plus else 0.0, relative, float(strength) if times else 1.0
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--gains", default="0.5,1,1.5,2,3")
    ap.add_argument("--seed", type=int, default=1, help="scenario seed (the bench uses 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--png")
    ap.add_argument("--set", help="write this serving choice ([r]G[xS]) into the checkpoint")
    a = ap.parse_args()
    if a.set is not None:
        try:
            _, gain, offset, relative, strength = parse_gain(a.set)
            if offset:
                raise ValueError
        except ValueError:
            print(f"painter-gain: --set must be [r]G[xS], got {a.set!r}", file=sys.stderr)
            sys.exit(2)
        set_gain(a.checkpoint, gain, relative, strength)
        return
    try:
        gains = [parse_gain(g) for g in a.gains.split(",")]
    except ValueError:
        print(f"painter-gain: --gains must be [r]G[+C][xS] (told = C + G x heard, r: relative, "
              f"S: strength) separated by commas, got {a.gains!r}", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=False)
    painter = pipe.model.mouth_painter
    if painter is None or pipe.model.mouth_head is None:
        print(f"painter-gain: {a.checkpoint} has no mouth painter and head", file=sys.stderr)
        sys.exit(2)
    judges = load_judges(None, False)
    specs = scenario_specs(a.samples, a.seconds, a.seed)
    renderer, runner = ScenarioRenderer(), SystemRunner("online", pipe)
    rows: dict[str, list[float]] = {}
    curve = np.zeros((2, len(FIXED)))  # plain, relative
    for spec in specs:
        sample = renderer.render(spec)
        video, opening, picture = stream_unpainted(pipe, runner, sample, a.seconds)
        t = video.shape[2]
        energy = sample.speech_energy[:t]
        speaking = np.asarray(sample.state[:t] == "speaking", bool)
        rows_r, cols_r = head_region(*video.shape[-2:])
        ref_emb = reference_embeddings(judges, sample)
        figures = {}
        with torch.no_grad():
            for g, scale, offset, relative, strength in gains:
                told = offset + scale * opening
                painted = painter.paint(
                    video, told.reshape(1, -1), picture, relative=relative, strength=strength
                )
                frames = frames_to_uint8(painted)
                read = judges.probe.predict(frames)["mouth_open"]
                sim = frame_similarity(judges.embedder.embed(frames), ref_emb)
                figures[f"identity@{g}"] = float(sim.mean())
                ls = lip_sync_score(read, energy, speaking)
                figures[f"lip_sync@{g}"] = np.nan if ls is None else ls
                figures[f"drawn_vs_told@{g}"] = pearson(read, told.numpy())
                sp = told.numpy()[speaking]
                figures[f"gain@{g}"] = (
                    float(read[speaking].std() / sp.std()) if speaking.sum() > 2 and sp.std() > 1e-4
                    else np.nan
                )  # fmt: skip
                d = (painted - video)[..., rows_r, cols_r].abs().mean()
                figures[f"change@{g}"] = float(d)
            unpainted = frames_to_uint8(video)
            plain = judges.probe.predict(unpainted)["mouth_open"]
            sim = frame_similarity(judges.embedder.embed(unpainted), ref_emb)
            figures["identity_unpainted"] = float(sim.mean())
            ls = lip_sync_score(plain, energy, speaking)
            figures["lip_sync_unpainted"] = np.nan if ls is None else ls
            for i, o in enumerate(FIXED):
                for j, relative in enumerate((False, True)):
                    painted = painter.paint(
                        video, torch.full((1, t), o), picture, relative=relative
                    )
                    read = judges.probe.predict(frames_to_uint8(painted))["mouth_open"]
                    curve[j, i] += read.mean()
        for k, v in figures.items():
            rows.setdefault(k, []).append(v)
        print(spec.name, spec.kind, " ".join(
            f"{g}:{figures[f'lip_sync@{g}']:+.3f}" for g, *_ in gains), flush=True)  # fmt: skip
    n = len(specs)
    report = {
        "checkpoint": a.checkpoint,
        "samples": n,
        "seconds": a.seconds,
        "scenario_seed": a.seed,
        "per_gain": {
            g: {
                k: round(float(np.nanmean(rows[f"{k}@{g}"])), 4)
                for k in ("lip_sync", "drawn_vs_told", "gain", "change", "identity")
            }
            for g, *_ in gains
        },
        "lip_sync_unpainted": round(float(np.nanmean(rows["lip_sync_unpainted"])), 4),
        "identity_unpainted": round(float(np.mean(rows["identity_unpainted"])), 4),
        "response_curve": {f"{o:g}": round(float(c / n), 4) for o, c in zip(FIXED, curve[0])},
        "response_curve_relative": {
            f"{o:g}": round(float(c / n), 4) for o, c in zip(FIXED, curve[1])
        },
        # per sample, for paired comparisons between gains
        "per_sample": {
            k: [None if np.isnan(v) else round(float(v), 4) for v in vals]
            for k, vals in rows.items()
            if k.startswith(("lip_sync", "identity"))
        },
        "kinds": [s.kind for s in specs],
    }
    print(json.dumps(report, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
        names = [g for g, *_ in gains]
        x = np.arange(len(names))
        ax1.plot(x, [report["per_gain"][g]["lip_sync"] for g in names], "o-", label="lip sync")
        ax1.plot(x, [report["per_gain"][g]["drawn_vs_told"] for g in names], "s-",
                 label="drawn vs told")  # fmt: skip
        ax1.set_xticks(x, names)
        ax1.set_xlabel("told = C + G x heard (G+C)")
        ax1.legend()
        ax2.plot(FIXED, [report["response_curve"][f"{o:g}"] for o in FIXED], "o-", label="plain")
        ax2.plot(FIXED, [report["response_curve_relative"][f"{o:g}"] for o in FIXED], "s-",
                 label="relative")  # fmt: skip
        ax2.legend()
        ax2.set_xlabel("opening told")
        ax2.set_ylabel("FaceProbe's mean reading")
        fig.tight_layout()
        fig.savefig(a.png, dpi=100)


if __name__ == "__main__":
    main()
