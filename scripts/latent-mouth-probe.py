"""Research: where a generator's mouth is lost, in the latent or in the decoder.

On training windows of a latent cache (whose footage has the performer's ground-truth mouth
opening per frame) it samples a generator from noise, with the voice and, same noise, with the
voice silenced, and correlates with the footage's opening, within each window. `--system base`
samples the Base model (the ODE stage's sampler: Euler with classifier-free guidance, `--steps`
steps); `--system online` streams the Online Backbone chunk after chunk through its sink +
window KV cache with its own few-step sampler, its outputs refilling the cache (the Refiner is
not applied). The reader is fitted as every stage with `mouth_latent` fits it (seed 0), so a
generator trained against it is read by its own judge; `--reader-seed` fits another (another
initialisation and other held-out identities) to see how much of a reading is that reader's
alone. The scores:

- reader_sample: the opening that the latent mouth reader (`model_core/train/latent_mouth.py`,
  fitted on the cache) reads from the sampled latents;
- probe_sample: the bench's FaceProbe reading of the decoded sample;
- probe_roundtrip: the FaceProbe reading of the footage's own latents decoded, the most the
  decoder lets through;
- reader_footage: the reader on the footage's latents;
- pixel_sample, pixel_roundtrip (with `--mouth-reader PATH`): the training-side pixel mouth
  reader (`lpm train mouth-reader`, the `mouth_read` loss's) on the decoded sample and on the
  footage's latents decoded. A generator trained with `mouth_read` that this reader finds
  following the footage while the FaceProbe does not has learnt that reader, not the mouth.

Usage: .venv/bin/python scripts/latent-mouth-probe.py CACHE CHECKPOINT... [--windows 24]
       [--steps 8] [--system base|online] [--mouth-reader PATH] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.judges import load_judges
from model_core.online import frames_to_uint8
from model_core.pipeline import LPMPipeline
from model_core.train.data import LatentCache, frame_mouth_boxes
from model_core.train.latent_mouth import fit_latent_mouth_reader
from model_core.train.mouth_reader import LPMMouthReader, read_openings
from model_core.train.objectives import make_objective


def corr(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() < 1e-6 or b.std() < 0.05:  # a still mouth in the footage: nothing to follow
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def pixel_read(pixel, video, mouth, tf: int, sf: int) -> np.ndarray:
    """The pixel reader's opening of decoded frames (B, 3, T, H, W) -> (B, T), each frame's box
    from its latent frame's mouth region (B, F, 4) in latent cells."""
    boxes = frame_mouth_boxes(mouth, tf, sf)[:, : video.shape[2]]
    return read_openings(pixel, video, boxes).numpy()


def probe_checkpoint(
    path, cache, reader, probe, windows: int, steps: int, system: str, pixel=None
) -> dict:
    model = LPMPipeline.load(path, with_base=True).model
    # The Base model samples as the ODE stage does; the Backbone streams as dmd-on's
    # on-policy rollout does (the ODE objective would reset it to the Base weights).
    if system == "online":
        obj = make_objective("dmd-on", model, {"framed_global": 1.0})
    else:
        obj = make_objective("ode", model, {"framed_global": 1.0, "ode_steps": steps})
    scores = {k: [] for k in ("reader_sample", "reader_sample_silent", "reader_footage")}
    scores |= {k: [] for k in ("probe_sample", "probe_sample_silent", "probe_roundtrip")}
    if pixel is not None:
        scores |= {"pixel_sample": [], "pixel_roundtrip": []}
    tf, sf = model.cfg.vae.temporal_factor, model.cfg.vae.spatial_factor
    picks = np.linspace(0, len(cache) - 1, windows).round().astype(int).tolist()
    for start in range(0, len(picks), 4):
        batch = cache.batch(picks[start : start + 4])
        with torch.no_grad():
            footage = model.vae.decode(torch.cat([batch.picture, batch.x0], 2))[:, :, 1:]
            truth, _ = reader.read(batch.x0, batch.mouth, batch.picture)
            for voice in (True, False):
                cond = obj.cond.encode(batch, audio=voice)
                torch.manual_seed(start)  # the same noise with and without the voice
                if system == "online":
                    sample = obj.generate(batch, cond, grad=False)
                else:
                    sample, _ = obj.trajectory(batch, cond)
                read, _ = reader.read(sample, batch.mouth, batch.picture)
                video = model.vae.decode(torch.cat([batch.picture, sample], 2))[:, :, 1:]
                tail = "" if voice else "_silent"
                if pixel is not None and voice:
                    drawn = pixel_read(pixel, video, batch.mouth, tf, sf)
                    own_drawn = pixel_read(pixel, footage, batch.mouth, tf, sf)
                for b in range(batch.size):
                    y = batch.mouth_open[b].flatten().numpy()
                    k = ~np.isnan(y)
                    mouth = probe.predict(frames_to_uint8(video[b : b + 1]))["mouth_open"]
                    scores["reader_sample" + tail].append(corr(read[b].flatten()[k], y[k]))
                    scores["probe_sample" + tail].append(corr(mouth[k], y[k]))
                    if pixel is not None and voice:
                        scores["pixel_sample"].append(corr(drawn[b][k], y[k]))
                        scores["pixel_roundtrip"].append(corr(own_drawn[b][k], y[k]))
                    if voice:
                        own = probe.predict(frames_to_uint8(footage[b : b + 1]))["mouth_open"]
                        scores["probe_roundtrip"].append(corr(own[k], y[k]))
                        scores["reader_footage"].append(corr(truth[b].flatten()[k], y[k]))
        print(f"{path}: {min(start + 4, len(picks))}/{len(picks)} windows", flush=True)
    return {k: round(float(np.nanmean(v)), 4) for k, v in scores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", help="latents.pt of a stage run with mouth_latent (has openings)")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reader-seed", type=int, default=0)
    ap.add_argument("--system", choices=("base", "online"), default="base")
    ap.add_argument("--mouth-reader", help="a pixel mouth reader (lpm train mouth-reader)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cache = LatentCache.load(a.cache)
    reader = fit_latent_mouth_reader(cache, seed=a.reader_seed)
    probe = load_judges(None, False).probe
    pixel = None
    if a.mouth_reader:
        pixel = LPMMouthReader.load(a.mouth_reader)
    report = {
        "cache": a.cache,
        "windows": a.windows,
        "steps": a.steps,
        "system": a.system,
        "reader_seed": a.reader_seed,
        "mouth_reader": a.mouth_reader,
    }
    report["reader_held_out_r"] = round(float(reader.held_out_r), 4)
    for path in a.checkpoints:
        report[path] = probe_checkpoint(
            path, cache, reader, probe, a.windows, a.steps, a.system, pixel
        )
        print(path, report[path], flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
