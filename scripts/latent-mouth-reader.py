"""Research: how well the mouth's opening can be read from a latent cache's mouth cells, on
identities left out of the fit: a linear (ridge) reading of the latent's mouth band, the same
with the picture's band beside it, and the MLP reader that the `base` stage's `mouth_latent`
option trains with (`model_core/train/latent_mouth.py`). Writes JSON.

    .venv/bin/python scripts/latent-mouth-reader.py out/exp/run/latents.pt --json out.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from model_core.train.data import LatentCache
from model_core.train.latent_mouth import _corr, _features, fit_latent_mouth_reader


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    mx, my = x.mean(0), y.mean(0)
    xc = (x - mx).double()
    a = xc.T @ xc + lam * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(a, xc.T @ (y - my).double()).float()
    return w, my - mx @ w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", help="latents.pt written by a DiT stage")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache = LatentCache.load(args.cache)
    reader = fit_latent_mouth_reader(cache)  # the same split as below (seed 0, a quarter)
    ids = sorted(set(cache.identities))
    order = np.random.default_rng(0).permutation(len(ids))
    out = {ids[i] for i in order[: max(1, round(0.25 * len(ids)))]}
    train = [i for i, k in enumerate(cache.identities) if k not in out]
    test = [i for i, k in enumerate(cache.identities) if k in out]
    x, y = _features(cache, train)
    xt, yt = _features(cache, test)
    half = x.shape[1] // 2  # the latent's band, then the picture's
    linear = {}
    for name, cols in (("latent band", slice(0, half)), ("latent + picture bands", slice(None))):
        linear[name] = {
            str(lam): _corr(xt[:, cols] @ w + b, yt)
            for lam in (1e-3, 1e-2, 1e-1, 1.0)
            for w, b in [ridge(x[:, cols], y, lam)]
        }
    report = {
        "cache": args.cache,
        "windows": len(cache),
        "identities": len(ids),
        "held_out_identities": len(out),
        "frames_train": len(x),
        "frames_held_out": len(xt),
        "picture_kind": cache.picture_kind,
        "ridge_r_by_strength": linear,
        "mlp_reader_r": float(reader.held_out_r),
        "opening_std_held_out": float(yt.std()),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
