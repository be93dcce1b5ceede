"""Research: can the decoder draw a mouth from latents as soft as a generator's?

`latent-mouth-probe.py` found the streamed Backbone's latents following the footage's opening
by the latent mouth reader while their decoded frames do not. This asks the converse: given
latents as soft as the Backbone's whose mouth is the footage's, does the decoder draw it?
Per window of a latent cache (training windows, or a cache of held-out footage), chunk after
chunk with the footage's previous chunk in the Backbone's KV cache:

- footage: the footage's own latents;
- soft50 / soft75: the footage's chunk noised to t = 0.5 (the Backbone's second step) or 0.75
  and denoised by the Backbone in one step (the input the `refiner` stage trains on);
  `_ref`: then the Refiner, re-noised to its timestep as serving does;
- online_bb / online_ref: the Online model streamed from noise (dmd-on's on-policy rollout:
  the Backbone's output refills its cache), without and with the Refiner;
- with a checkpoint that has a mouth head (model_core/mouth_head.py), also neutral (the
  footage with its mouth cells at their window mean, the `mouth-head` stage's input),
  neutral_head (the head on it), soft_head (the head on soft75_ref with its mouth cells so
  neutralised: the stage's `soft` input) and online_head (the head on online_ref, as serving
  does).

Each is read three ways, within-window Pearson r against the footage's mouth opening: the
latent reader (fitted on `--reader-cache`, default the cache itself), the training-side pixel
reader (`--mouth-reader`) on the decoded frames and the bench's FaceProbe on them; and the
pixel reading at lags -12..12 frames (positive: the drawn mouth later than the footage's).

Usage: .venv/bin/python scripts/soft-latent-probe.py CACHE CHECKPOINT --mouth-reader PATH
       [--reader-cache CACHE] [--windows 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from model_core.bench.judges import load_judges
from model_core.flow import add_noise, predict_x0
from model_core.online import frames_to_uint8
from model_core.pipeline import LPMPipeline
from model_core.train.data import LatentCache
from model_core.train.gen_latents import refine_chunks
from model_core.train.latent_mouth import fit_latent_mouth_reader
from model_core.train.mouth_reader import LPMMouthReader
from model_core.train.objectives import make_objective
from model_core.train.objectives.conditioning import ChunkRollout
from model_core.train.objectives.mouth_head import neutral_mouth

_spec = importlib.util.spec_from_file_location(
    "latent_mouth_probe", Path(__file__).with_name("latent-mouth-probe.py")
)
_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_probe)
corr, pixel_read = _probe.corr, _probe.pixel_read

KINDS = ("footage", "soft50", "soft50_ref", "soft75", "soft75_ref", "online_bb", "online_ref")
HEAD_KINDS = ("neutral", "neutral_head", "soft_head", "online_head")
LAGS = range(-12, 13)


def lagged(a: np.ndarray, y: np.ndarray, lag: int) -> float:
    if lag > 0:
        a, y = a[lag:], y[:-lag]
    elif lag < 0:
        a, y = a[:lag], y[-lag:]
    k = ~np.isnan(y)
    return corr(a[k], y[k])


class Probe:
    def __init__(self, checkpoint: str):
        self.model = LPMPipeline.load(checkpoint, with_base=True).model.eval()
        self.obj = make_objective("dmd-on", self.model, {"framed_global": 1.0})
        self.fpc = self.obj.cond.fpc
        self.head = None
        if self.model.mouth_head is not None:
            self.head = make_objective("mouth-head", self.model, {"noise": 0.0})

    def refine(self, x0: torch.Tensor, cond) -> torch.Tensor:
        return refine_chunks(self.model, self.obj.cond, cond, x0)

    def soft(self, batch, cond, t: float) -> torch.Tensor:
        b, fpc = batch.size, self.fpc
        roll = ChunkRollout(self.obj.cond, self.model.backbone, cond, self.obj.window)
        out = []
        for c in range(batch.x0.shape[2] // fpc):
            gt = batch.x0[:, :, c * fpc : (c + 1) * fpc]
            xt = add_noise(gt, torch.randn_like(gt), torch.full((b,), t))
            out.append(predict_x0(xt, roll.velocity()(xt, t), torch.full((b,), t)))
            roll.commit(gt)
        return torch.cat(out, 2)

    @torch.no_grad()
    def latents(self, batch, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        cond = self.obj.cond.encode(batch)
        lat = {"footage": batch.x0}
        for t in (0.5, 0.75):
            name = f"soft{int(t * 100)}"
            lat[name] = self.soft(batch, cond, t)
            lat[name + "_ref"] = self.refine(lat[name], cond)
        lat["online_bb"] = self.obj.generate(batch, cond, grad=False)
        lat["online_ref"] = self.refine(lat["online_bb"], cond)
        if self.head is not None:
            x_in, cells, speak, spans = self.head.inputs(batch)
            lat["neutral"] = x_in
            head = self.model.mouth_head
            lat["neutral_head"] = head(x_in, batch.picture, speak, spans)[0]
            soft = neutral_mouth(lat["soft75_ref"], cells)
            lat["soft_head"] = head(soft, batch.picture, speak, spans)[0]
            lat["online_head"] = head(lat["online_ref"], batch.picture, speak, spans)[0]
        return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("checkpoint")
    ap.add_argument("--mouth-reader", required=True, help="lpm train mouth-reader's file")
    ap.add_argument("--reader-cache", help="fit the latent reader here (default: CACHE)")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cache = LatentCache.load(a.cache)
    reader = fit_latent_mouth_reader(LatentCache.load(a.reader_cache or a.cache), seed=0)
    probe = load_judges(None, False).probe
    pixel = LPMMouthReader.load(a.mouth_reader)
    p = Probe(a.checkpoint)
    tf, sf = p.model.cfg.vae.temporal_factor, p.model.cfg.vae.spatial_factor
    kinds = KINDS + (HEAD_KINDS if p.head is not None else ())
    scores = {k: {"latent": [], "pixel": [], "probe": [], "mse": []} for k in kinds}
    lags = {k: {lag: [] for lag in LAGS} for k in kinds}
    picks = np.linspace(0, len(cache) - 1, a.windows).round().astype(int).tolist()
    for s in range(0, len(picks), 4):
        batch = cache.batch(picks[s : s + 4])
        with torch.no_grad():
            for k, z in p.latents(batch, s).items():
                read, _ = reader.read(z, batch.mouth, batch.picture)
                video = p.model.vae.decode(torch.cat([batch.picture, z], 2))[:, :, 1:]
                drawn = pixel_read(pixel, video, batch.mouth, tf, sf)
                scores[k]["mse"].append(float((z - batch.x0).pow(2).mean()))
                for b in range(batch.size):
                    y = batch.mouth_open[b].flatten().numpy()
                    m = ~np.isnan(y)
                    face = probe.predict(frames_to_uint8(video[b : b + 1]))["mouth_open"]
                    scores[k]["latent"].append(corr(read[b].flatten()[m], y[m]))
                    scores[k]["pixel"].append(corr(drawn[b][m], y[m]))
                    scores[k]["probe"].append(corr(face[m], y[m]))
                    for lag in LAGS:
                        lags[k][lag].append(lagged(drawn[b], y, lag))
        print(f"{min(s + 4, len(picks))}/{len(picks)} windows", flush=True)
    report = {
        "cache": a.cache,
        "checkpoint": a.checkpoint,
        "windows": a.windows,
        "reader_cache": a.reader_cache or a.cache,
        "reader_held_out_r": round(float(reader.held_out_r), 4),
        "scores": {
            k: {m: round(float(np.nanmean(v)), 4) for m, v in d.items()} for k, d in scores.items()
        },
        "pixel_by_lag": {
            k: {str(lag): round(float(np.nanmean(v)), 3) for lag, v in d.items()}
            for k, d in lags.items()
        },
    }
    for k, d in report["scores"].items():
        print(f"{k:11s} " + "  ".join(f"{m} {v:+.3f}" for m, v in d.items()))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
