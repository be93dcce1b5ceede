"""Stage 5, `refiner`: distil the 1-step Refiner on top of the Backbone's output.

The Refiner (its own, smaller DiT) starts from the Base model's first layers and head. Per
batch, a ground-truth chunk is noised to the Backbone's last timestep and denoised by the
(frozen) Backbone, which keeps the chunk's layout but loses detail, as the Backbone's output
does in streaming. That output is re-noised to the refiner timestep exactly as
`OnlineStream.refine` does, and the Refiner's one-step prediction is regressed onto the
ground-truth latents (L2 + L1). Option `mouth_read` W adds W x a frozen pixel mouth reader's
error on the prediction decoded by the frozen VAE (`Objective.pixel_read_error`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model_core.flow import add_noise, predict_x0
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import LPMConditioner, random_crop
from model_core.train.objectives.vae import weighted_mean


def init_refiner_from_base(model) -> None:
    """Copy every Base weight the Refiner has a place for (its blocks are the first ones)."""
    src = model.base.state_dict()
    dst = model.refiner.state_dict()
    model.refiner.load_state_dict(
        {k: src[k] if k in src and src[k].shape == v.shape else v for k, v in dst.items()}
    )


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

    def trainable_modules(self):
        return [self.model.refiner]

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
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
            tr = float(self.cfg.online.refiner_timestep)
            xr = (1 - tr) * coarse + tr * torch.randn_like(coarse)
        kw = self.cond.forward_kwargs(m.refiner, cond, fpc)
        pred = predict_x0(xr, m.refiner(xr, torch.full((b, fpc), tr), **kw), torch.full((b,), tr))
        w = self.mouth_weights(batch.mouth, x0.shape[-2:])
        mse = weighted_mean((pred - x0).pow(2), w)
        loss = mse + self.l1 * weighted_mean((pred - x0).abs(), w)
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
