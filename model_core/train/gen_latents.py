"""The Online model's own latents on training windows, for the decoder to learn to draw.

Every decoder stage fits the VAE decoder to the footage's encoded latents, but what it decodes
in serving is the Online model's output: softer latents, whose mouth moves in its own way. The
latent mouth reader finds the Online Backbone's mouth following the voice in its latents
(`scripts/latent-mouth-probe.py --system online`), and the decoder does not carry that into
the frames. `build_online_latents` streams a checkpoint's Online model over the windows of a
latent cache as serving does (the Backbone chunk after chunk through its KV cache with its
few-step sampler, then the Refiner on each chunk) and keeps, per window, what the
`vae-decoder` stage's `gen_latents` option needs: the generated latents, the window's framed
picture (the decoder's first frame), its mouth regions and the footage's mouth opening per
frame. Nothing of the footage's pixels is kept: the decoder has no pixel target for a
generated latent, only the opening the footage had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

FORMAT = "lpm-online-latents-1"


@dataclass
class OnlineLatents:
    latents: torch.Tensor  # (N, z, F, h, w) float16: the Online model's output per window
    picture: torch.Tensor  # (N, z, 1, h, w) float16: the window's framed picture
    mouth: torch.Tensor  # (N, F, 4) float32 mouth region per latent frame, latent-grid units
    mouth_open: torch.Tensor  # (N, F, temporal_factor) float32 footage opening, NaN unknown
    identities: list[str]
    checkpoint: str = ""
    encoder_version: str = ""  # `encoder_digest` of the VAE whose latent space these are in

    def __len__(self) -> int:
        return self.latents.shape[0]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        torch.save({"format": FORMAT, **self.__dict__}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> OnlineLatents:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no such file of Online latents: {path}")
        blob = torch.load(path, weights_only=False)
        if not isinstance(blob, dict) or blob.pop("format", None) != FORMAT:
            raise ValueError(f"{path} is not a file of Online latents (`lpm train online-latents`)")
        return cls(**blob)

    def batch(self, index: list[int]) -> tuple[torch.Tensor, ...]:
        """(latents with the picture as frame 0, float32; mouth; mouth_open) of some windows."""
        z = torch.cat([self.picture[index], self.latents[index]], dim=2).float()
        return z, self.mouth[index], self.mouth_open[index]


def online_rollout(model):
    """dmd-on's objective, whose on-policy rollout streams the Backbone as serving does, with
    the framed picture as the global reference (as in the bench). Building it copies the Base
    model (its critic), so build it once for many windows."""
    from model_core.train.objectives import make_objective

    return make_objective("dmd-on", model, {"framed_global": 1.0})


@torch.no_grad()
def generate_online(
    model, cache, index: list[int], seed: int = 0, rollout=None, mouth_head: bool = True
) -> torch.Tensor:
    """The Online model's latents (B, z, F, h, w) for some windows of `cache`, streamed as
    serving streams them: dmd-on's on-policy rollout of the Backbone (its output refilling the
    KV cache), then one Refiner step per chunk from the Backbone's output re-noised to the
    refiner timestep, then the model's mouth head where it has one (`mouth_head=False`: the
    Refiner's output, what the head is given). `rollout`: an `online_rollout(model)` to
    reuse."""
    from model_core.dit import latent_frame_spans

    obj = rollout if rollout is not None else online_rollout(model)
    batch = cache.batch(index)
    torch.manual_seed(seed)
    cond = obj.cond.encode(batch)
    out = refine_chunks(model, obj.cond, cond, obj.generate(batch, cond, grad=False))
    if mouth_head and model.mouth_head is not None:
        spans = latent_frame_spans(out.shape[2], cond.history, model.cfg.vae.temporal_factor)
        out = model.mouth_head(out, batch.picture, cond.speak, spans)[0]
    return out


def refine_chunks(model, conditioner, cond, coarse: torch.Tensor) -> torch.Tensor:
    """The Refiner's step on each chunk of a window of Backbone output (B, z, F, h, w)."""
    from model_core.train.objectives.refiner import refine_chunk

    fpc = conditioner.fpc
    return torch.cat(
        [
            refine_chunk(model, conditioner, cond, coarse[:, :, f : f + fpc], first=f)
            for f in range(0, coarse.shape[2] // fpc * fpc, fpc)
        ],
        dim=2,
    )


def build_online_latents(
    checkpoint: str,
    data: str,
    out: str | Path,
    windows: int = 256,
    seconds: int = 2,
    batch: int = 4,
    picture: str = "rest",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Encode up to `windows` windows of `data` with the checkpoint's VAE (a latent cache, as
    the DiT stages build it, with `picture` frames) and stream its Online model over each;
    writes an `OnlineLatents` file to `out` and returns a summary."""
    import time

    from model_core.pipeline import LPMPipeline
    from model_core.train.data import LatentCache, open_clip_source
    from model_core.train.loop import encoder_digest, module_digest

    if windows < 1 or batch < 1:
        raise ValueError("online-latents needs windows >= 1 and batch >= 1")
    start = time.monotonic()
    model = LPMPipeline.load(checkpoint, with_base=True).model
    model.eval()
    source = open_clip_source(data, model.cfg, None)
    version = module_digest(model.vae)
    cache = LatentCache.build(
        model, source, seconds, windows, seed, vae_version=version, picture=picture
    )
    if cache.mouth is None or cache.mouth_open is None or cache.pictures is None:
        raise ValueError(
            f"{data}: online-latents needs face boxes and mouth openings in the data's ground "
            "truth (the performer's footage has them)"
        )
    rollout = online_rollout(model)
    chunks = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cache), desc="lpm train online-latents", unit="window")
    for first in range(0, len(cache), batch):
        index = list(range(first, min(first + batch, len(cache))))
        chunks.append(generate_online(model, cache, index, seed + first, rollout).half())
        if bar is not None:
            bar.update(len(index))
    if bar is not None:
        bar.close()
    result = OnlineLatents(
        latents=torch.cat(chunks),
        picture=cache.pictures.half(),
        mouth=cache.mouth.float(),
        mouth_open=cache.mouth_open.float(),
        identities=list(cache.identities),
        checkpoint=str(checkpoint),
        encoder_version=encoder_digest(model.vae),
    )
    result.save(out)
    return {
        "out": str(out),
        "windows": len(result),
        "identities": len(set(result.identities)),
        "wall_s": round(time.monotonic() - start, 1),
    }
