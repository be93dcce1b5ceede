"""Where does a long stream's lip sync go? The Online model's mouth over LPM-Bench-mini's loop.

Streams a checkpoint's Online model over the bench's looped minute of dialogue (the stream
`lpm bench quality` scores per minute, same seeds) and reads every frame with the FaceProbe,
as the bench does. It reports what the per-minute figures summarise:
- lip sync per window (`--window` seconds), the stream's and the footage's on the same audio:
  is a bad minute one bad stretch (a freeze, a cache boundary) or noise spread over it?
- mouth motion per window (the bench's metric: the read opening's spread over the true one's
  while the character speaks): does the mouth stiffen as the stream goes on?
- the correlation of the mouth with the voice's energy at lags of -0.5 to +1 s: a mouth that
  follows the syllables peaks sharply near 0, as the footage's does; one that only opens while
  the character speaks gives a flat curve; a late mouth peaks at a positive lag.
- where the model has a mouth head, the opening it hears per frame (what the mouth painter
  draws): its spread against the footage's opening while the character speaks (`heard_motion`,
  mouth motion's ratio), its lip sync, and the painter's gain (the slope of the read mouth on
  the heard opening): a small mouth is then either a head that hears small or a painter that
  draws small.

Usage: .venv/bin/python scripts/stream-mouth-probe.py [CHECKPOINT] [--minutes 5]
       [--window 10] [--threads 2] --json OUT.json [--png OUT.png]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.judges import load_judges
from model_core.bench.metrics.lip_sync import _smooth, lip_sync_score, pearson
from model_core.bench.metrics.mouth_motion import mouth_motion
from model_core.bench.quality import (
    QualityBenchSettings,
    build_runners,
    loop_spec,
    resolve_checkpoint,
)
from model_core.bench.scenarios import FPS, ScenarioRenderer
from model_core.progress import progress_bar

LAGS = range(-12, 25, 2)  # frames: the mouth later than the voice is a positive lag


def lag_curve(mouth: np.ndarray, energy: np.ndarray) -> list[float]:
    """Pearson r of the smoothed mouth against the smoothed energy at each of `LAGS`."""
    a, b = _smooth(mouth.astype(np.float64)), _smooth(energy.astype(np.float64))
    return [
        pearson(a[lag:], b[: len(b) - lag]) if lag >= 0 else pearson(a[:lag], b[-lag:])
        for lag in LAGS
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="auto", help="a folder; default: shipped")
    ap.add_argument("--minutes", type=int, default=5)
    ap.add_argument("--window", type=int, default=10, help="seconds per lip-sync window")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    ap.add_argument("--png")
    a = ap.parse_args()
    if a.minutes < 1 or a.window < 1 or 60 % a.window:
        ap.error("--minutes must be >= 1 and --window a divisor of 60 seconds")
    torch.set_num_threads(a.threads)
    s = QualityBenchSettings(systems=("online",), checkpoint=a.checkpoint)
    judges = load_judges()
    runners, version = build_runners(s, resolve_checkpoint(a.checkpoint)[0])
    loop = ScenarioRenderer().render_loop(loop_spec(s), s.minute_seconds)
    n = len(loop.frames)
    gt_mouth = judges.probe.predict(loop.frames)["mouth_open"]
    mouth, heard = [], []
    seconds = a.minutes * s.minute_seconds
    head = runners["online"].pipe.model.mouth_head
    if head is not None:
        hear = head.opening

        def recording(speak, spans):
            out = hear(speak, spans)
            heard.append(out.reshape(-1).float().numpy().copy())
            return out

        head.opening = recording
    with torch.no_grad(), progress_bar(seconds, "stream", unit="s") as bar:
        for chunk in runners["online"].stream(loop, loop.speak, loop.listen, seconds):
            mouth.append(judges.probe.predict(chunk)["mouth_open"])
            bar.update(1)
    mouth = np.concatenate(mouth)
    heard = np.concatenate(heard) if heard else None
    if heard is not None and len(heard) != len(mouth):
        heard = None  # no painter: the head's opening was not read per frame
    idx = np.arange(len(mouth)) % n
    energy, speaking, true = (
        loop.speech_energy[idx],
        loop.state[idx] == "speaking",
        loop.mouth_open[idx],
    )
    windows = []
    for w0 in range(0, seconds, a.window):
        sl = slice(w0 * FPS, (w0 + a.window) * FPS)
        g = gt_mouth[idx[sl]]
        row = {
            "start_s": w0,
            "lip_sync": lip_sync_score(mouth[sl], energy[sl], speaking[sl]),
            "lip_sync_footage": lip_sync_score(g, energy[sl], speaking[sl]),
            "mouth_motion": mouth_motion(mouth[sl], true[sl], speaking[sl]),
            "mouth_motion_footage": mouth_motion(g, true[sl], speaking[sl]),
        }
        if heard is not None:
            row |= {
                "heard_lip_sync": lip_sync_score(heard[sl], energy[sl], speaking[sl]),
                "heard_motion": mouth_motion(heard[sl], true[sl], speaking[sl]),
                "painter_gain": painter_gain(mouth[sl], heard[sl], speaking[sl]),
            }
        windows.append(row)
    footage = gt_mouth[idx]
    result = {
        "checkpoint": a.checkpoint,
        "version": version,
        "minutes": a.minutes,
        "window_s": a.window,
        "mouth_spread": {"stream": float(mouth.std()), "footage": float(footage.std())},
        "lag_frames": list(LAGS),
        "lag_r": {
            "stream": lag_curve(mouth, energy),
            "footage": lag_curve(footage, energy),
        },
        "windows": windows,
    }
    if heard is not None:
        result["heard"] = {
            "lip_sync": lip_sync_score(heard, energy, speaking),
            "motion": mouth_motion(heard, true, speaking),
            "painter_gain": painter_gain(mouth, heard, speaking),
            "footage_gain": painter_gain(footage, true, speaking),
        }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    for w in windows:
        print(
            f"{w['start_s']:4d} s  lip sync {_fmt(w['lip_sync'])} (footage "
            f"{_fmt(w['lip_sync_footage'])})  mouth motion {_fmt(w['mouth_motion'])} "
            f"(footage {_fmt(w['mouth_motion_footage'])})"
        )
    print(f"mouth spread: stream {mouth.std():.3f}, footage {footage.std():.3f}")
    if heard is not None:
        print("heard:", json.dumps(result["heard"]))
    if a.png:
        plot(result, a.png)


def painter_gain(read: np.ndarray, opening: np.ndarray, speaking: np.ndarray) -> float | None:
    """Least-squares slope of the read mouth on an opening over the speaking frames (both
    smoothed as lip sync smooths them): how far the read mouth moves per unit of opening."""
    if int(speaking.sum()) < 2:
        return None
    x = _smooth(opening.astype(np.float64))[speaking]
    y = _smooth(read.astype(np.float64))[speaking]
    if x.std() == 0:
        return None
    return float(np.cov(x, y, bias=True)[0, 1] / x.var())


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:+.3f}"


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    ws = result["windows"]
    t = [w["start_s"] / 60 for w in ws]
    nan = float("nan")
    for ax, key in zip(axes[:2], ("lip_sync", "mouth_motion")):
        for suffix, label in (("", "stream"), ("_footage", "footage")):
            ax.plot(
                t,
                [nan if w[key + suffix] is None else w[key + suffix] for w in ws],
                marker="o",
                label=label,
            )
        ax.set_title(f"{key} per {result['window_s']} s window")
        ax.set_xlabel("minute of the stream")
        ax.legend(fontsize=8)
    ax = axes[2]
    lags = np.asarray(result["lag_frames"]) / FPS
    for label, r in result["lag_r"].items():
        ax.plot(lags, r, marker="o", label=label)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_title("mouth vs voice energy at a lag")
    ax.set_xlabel("lag (s; mouth later > 0)")
    ax.legend(fontsize=8)
    fig.suptitle(f"Online stream over the bench's looped minute ({result['version']})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
