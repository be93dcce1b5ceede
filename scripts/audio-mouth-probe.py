"""How much of the footage's mouth opening can be read from the audio features the DiT sees?

A ridge-regression readout (linear, lambda 1) from the shipped model's causal audio encoder
features (and, for comparison, from the log-mel front end under them) to the ground-truth
mouth opening, per video frame: from that frame's features alone, with the 6 frames before it
(what the Backbone's speaking window sees), and with the 6 after it as well (look-ahead the
streaming model does not have). Fitted on the first half of the bench's speaking and dialogue
samples (4 s each), scored on the second half: the mean per-sample correlation over the
frames where the character speaks.

Usage: .venv/bin/python scripts/audio-mouth-probe.py [CHECKPOINT] --json OUT.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.pipeline import LPMPipeline

READOUTS = {"now": [0], "past 6": list(range(-6, 1)), "past 6 + next 6": list(range(-6, 7))}


def features(enc, speak: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """(T, D) encoder features and (T, n_mels) log-mel read where the encoder reads them."""
    pcm = torch.as_tensor(speak, dtype=torch.float32)[None]
    e = enc(pcm)[0].numpy()
    mel = enc.frontend(pcm)[0]
    idx = [int(enc.frame_end_sample(i)) // enc.hop_length - 1 for i in range(len(e))]
    return {"encoder": e[:frames], "logmel": mel[idx].numpy()[:frames]}


def with_lags(f: np.ndarray, lags: list[int]) -> np.ndarray:
    """Frame t's row holds the features of frames t + lag (the edge frame repeated)."""
    t = np.clip(np.arange(len(f))[:, None] + np.array(lags)[None], 0, len(f) - 1)
    return f[t].reshape(len(f), -1)


def readout_r(xs, ys, masks, half: int) -> float:
    a = np.concatenate(xs[:half])
    a = np.c_[a, np.ones(len(a))]
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ np.concatenate(ys[:half]))
    rs = []
    for x, y, m in zip(xs[half:], ys[half:], masks[half:]):
        if m.sum() > 12 and y[m].std() > 0:
            p = np.c_[x, np.ones(len(x))] @ w
            rs.append(np.corrcoef(p[m], y[m])[0, 1])
    return float(np.mean(rs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    enc = LPMPipeline.load(a.checkpoint).model.audio_encoder
    specs = [sp for sp in scenario_specs(100, 4) if sp.kind in ("speaking", "dialogue")]
    renderer = ScenarioRenderer()
    feats, ys, masks = {"encoder": [], "logmel": []}, [], []
    with torch.no_grad():
        for sp in specs:
            s = renderer.render(sp)
            f = features(enc, s.speak, len(s.mouth_open))
            n = len(f["encoder"])
            for k in feats:
                feats[k].append(f[k])
            ys.append(s.mouth_open[:n])
            masks.append(s.state[:n] == "speaking")
    half = len(specs) // 2
    out = {}
    for name, fs in feats.items():
        for label, lags in READOUTS.items():
            r = readout_r([with_lags(f, lags) for f in fs], ys, masks, half)
            out[f"{name}, {label}"] = r
            print(f"{name}, {label}: r {r:.3f}")
    result = {
        "checkpoint": str(a.checkpoint),
        "samples": len(specs),
        "test_samples": len(specs) - half,
        "r_on_speaking_frames": out,
    }
    with open(a.json, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
