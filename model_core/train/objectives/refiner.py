"""Stage 5, `refiner`: distil the 1-step Refiner on top of the Backbone's output.

The Refiner (its own, smaller DiT) starts from the Base model's first layers and head. Per
batch, a ground-truth chunk is noised to the Backbone's last timestep and denoised by the
(frozen) Backbone, which keeps the chunk's layout but loses detail, as the Backbone's output
does in streaming. That output is re-noised to the refiner timestep exactly as
`OnlineStream.refine` does, and the Refiner's one-step prediction is regressed onto the
ground-truth latents (L2 + L1). Option `mouth_read` W adds W x a frozen pixel mouth reader's
error on the prediction decoded by the frozen VAE (`Objective.pixel_read_error`).

A Backbone output made from noised ground truth still holds the footage's mouth, so the
Refiner learns to keep a mouth, never to draw one from the voice. Option `heard` P (a
probability per step) makes a step draw its input as serving does instead: the window's
first chunk of ground truth enters the frozen Backbone's KV cache, the next chunk is sampled
from noise by the Backbone's own few steps (its mouth comes from the voice alone, as in a
stream), and the Refiner's prediction of it is scored in the mouth region (each frame's mouth
cells grown by one, since the sampled head is near but not exactly where the footage's is)
against the footage, with `heard_outside` (default 0.05) x the error elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model_core.flow import add_noise, predict_x0
from model_core.train.data import mouth_cover
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import (
    ChunkRollout,
    LPMConditioner,
    crop_chunks,
    few_step_sample,
    random_crop,
)
from model_core.train.objectives.vae import weighted_mean


def init_refiner_from_base(model) -> None:
    """Copy every Base weight the Refiner has a place for (its blocks are the first ones)."""
    src = model.base.state_dict()
    dst = model.refiner.state_dict()
    model.refiner.load_state_dict(
        {k: src[k] if k in src and src[k].shape == v.shape else v for k, v in dst.items()}
    )


def refine_chunk(model, conditioner: LPMConditioner, cond, coarse: torch.Tensor, first: int = 0):
    """The Refiner's one step on a chunk of the Backbone's output, as `OnlineStream.refine`
    does: re-noised to the refiner timestep, then the clean prediction. `first`: the chunk's
    first latent frame in the window (which audio it hears)."""
    b, fpc = coarse.shape[0], coarse.shape[2]
    t = float(model.cfg.online.refiner_timestep)
    xr = (1 - t) * coarse + t * torch.randn_like(coarse)
    kw = conditioner.forward_kwargs(model.refiner, cond, fpc, first=first)
    return predict_x0(xr, model.refiner(xr, torch.full((b, fpc), t), **kw), torch.full((b,), t))


class RefinerObjective(Objective):
    name = "refiner"
    uses_mouth_latent = True
    uses_mouth_read = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        if self.option("init_from_base", True):
            init_refiner_from_base(model)  # a resumed run overwrites this with its checkpoint
        self.cond = LPMConditioner(model, self.p_framed)
        self.l1 = self.option("l1_weight", 0.5)
        self.p_heard = self.option("heard", 0.0)
        self.heard_outside = self.option("heard_outside", 0.05)
        if not 0 <= self.p_heard <= 1 or self.heard_outside < 0:
            raise ValueError("refiner needs 0 <= heard <= 1 and heard_outside >= 0")

    @property
    def needs_mouth(self) -> bool:
        return super().needs_mouth or self.p_heard > 0

    def trainable_modules(self):
        return [self.model.refiner]

    def _loss(self, pred, target, w) -> tuple[torch.Tensor, torch.Tensor]:
        """(the weighted squared error, the loss: it + l1_weight x the weighted L1)."""
        mse = weighted_mean((pred - target).pow(2), w)
        return mse, mse + self.l1 * weighted_mean((pred - target).abs(), w)

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.p_heard > 0 and float(torch.rand(())) < self.p_heard:
            return self.heard_step(batch)
        m, fpc = self.model, self.cond.fpc
        batch = random_crop(batch, 1, fpc, self.cfg.audio.sample_rate)
        x0 = batch.x0
        b = x0.shape[0]
        with torch.no_grad():
            cond = self.cond.encode(batch)
            tb = float(self.cfg.online.backbone_timesteps[-1])
            xb = add_noise(x0, torch.randn_like(x0), torch.full((b,), tb))
            kw = self.cond.forward_kwargs(m.backbone, cond, fpc)
            coarse = predict_x0(
                xb, m.backbone(xb, torch.full((b, fpc), tb), **kw), torch.full((b,), tb)
            )
        pred = refine_chunk(m, self.cond, cond, coarse)
        w = self.mouth_weights(batch.mouth, x0.shape[-2:])
        mse, loss = self._loss(pred, x0, w)
        with torch.no_grad():
            before = F.mse_loss(coarse, x0)
        metrics = {"mse": mse.item(), "backbone_mse": float(before)}
        if self.w_mouth_latent > 0:
            opening = self.opening_error(pred, x0, batch)
            loss = loss + self.w_mouth_latent * opening
            metrics["mouth_latent"] = opening.item()
        if self.w_mouth_read > 0:
            read = self.pixel_read_error(pred, batch)
            loss = loss + self.w_mouth_read * read
            metrics["mouth_read_mse"] = read.item()
        return loss, metrics

    def heard_step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """One step on a chunk the Backbone sampled from noise after a chunk of ground truth
        (see the module's `heard`): the mouth-region error to the footage."""
        m, fpc, sr = self.model, self.cond.fpc, self.cfg.audio.sample_rate
        self._require_mouth(batch.mouth)
        total = batch.x0.shape[2] // fpc
        if total < 2:
            raise ValueError("refiner heard needs windows of at least 2 chunks")
        first = int(torch.randint(total - 1, (1,)))
        batch = crop_chunks(batch, first, 2, fpc, sr)
        target = batch.x0[:, :, fpc:]
        with torch.no_grad():
            cond = self.cond.encode(batch)
            rollout = ChunkRollout(self.cond, m.backbone, cond, self.cfg.online.window_chunks)
            rollout.commit(batch.x0[:, :, :fpc])
            ts = tuple(self.cfg.online.backbone_timesteps)
            coarse = few_step_sample(rollout.velocity(), torch.randn_like(target), ts)
        pred = refine_chunk(m, self.cond, cond, coarse, first=fpc)
        with torch.no_grad():
            cover = mouth_cover(batch.mouth[:, fpc:], target.shape[-2:])
            cells = F.max_pool3d(cover, (1, 3, 3), stride=1, padding=(0, 1, 1))
            w = self.heard_outside + (1 - self.heard_outside) * cells
        mse, loss = self._loss(pred, target, w)
        with torch.no_grad():
            before = weighted_mean((coarse - target).pow(2), w)
        return loss, {"heard_mse": mse.item(), "heard_backbone_mse": float(before)}
