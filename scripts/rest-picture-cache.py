"""Research: a Base latent cache whose framed picture is each window's most closed-mouth
frame (a picture at rest, as the bench gives), instead of its first frame. The latents are
the same as `lpm train base` would cache; only `LatentCache.pictures` changes. Train on it by
putting it in the run's folder:

    .venv/bin/python scripts/rest-picture-cache.py out/work/curated out/exp/base_rest/latents.pt
    lpm train base ... --out out/exp/base_rest   # uses out/exp/base_rest/latents.pt
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from model_core.pipeline import LPMPipeline
from model_core.train.config import TrainConfig
from model_core.train.data import LatentCache, open_clip_source, video_tensor
from model_core.train.loop import module_digest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="curated shards (or a synth folder)")
    p.add_argument("out", help="latents.pt to write")
    p.add_argument("--checkpoint", default="model_core/assets/checkpoints/tiny")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = LPMPipeline.load(args.checkpoint, with_base=True).model
    source = open_clip_source(args.data, model.cfg, None)
    last = {}
    read_clip, encode = source.clip, model.vae.encode

    def clip(*a, **k):
        last["clip"] = read_clip(*a, **k)
        return last["clip"]

    def encode_rest(video, *a, **k):
        # The cache encodes the picture as a one-frame video: swap in the resting frame.
        c = last.get("clip")
        if video.shape[2] == 1 and c is not None and c.mouth_open is not None:
            j = int(np.argmin(np.nan_to_num(c.mouth_open, nan=np.inf)))
            video = video_tensor(c.frames[j : j + 1])[None]
        return encode(video, *a, **k)

    source.clip, model.vae.encode = clip, encode_rest
    tc = TrainConfig(stage="base", out=str(Path(args.out).parent))  # the loop's cache settings
    version = module_digest(model.vae)
    cache = LatentCache.build(
        model, source, tc.clip_seconds, tc.max_windows, tc.seed, vae_version=version
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cache.save(args.out)
    print(f"wrote {args.out}: {len(cache.latents)} windows, pictures at rest")


if __name__ == "__main__":
    main()
