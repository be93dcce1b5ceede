"""Stage 6, `dpo`: preference tuning of the Backbone with Diffusion-DPO written for flow matching.

Pairs: for each clip the Online model (Backbone few-step sampler, then Refiner, then VAE)
renders two candidates from different noise; the automatic judge (`model_core.train.judges`,
or the bench's when present) scores both, the better one is the winner. Pairs labelled
elsewhere (human raters via the training job service) come in as `PreferenceBatch`es.

Loss (Diffusion-DPO, Wallace et al. 2023, with the velocity error of rectified flow in place
of the noise error): both samples are noised with the same noise at the same time t (one of
the Backbone's timesteps); with e = |v(x_t) - (noise - x0)|^2 per sample,

    loss = -log sigmoid(-beta * ((e_w - e_w_ref) - (e_l - e_l_ref)))

where *_ref come from a frozen copy of the Backbone taken when the stage starts. Lowering
the loss lowers the policy's error on the winner relative to the loser, measured against
the reference model: the policy moves towards what the judge prefers, no further than beta
allows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_core.flow import add_noise, predict_x0
from model_core.online import frames_to_uint8
from model_core.train.data import LatentBatch
from model_core.train.judges import default_judge
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import (
    LPMConditioner,
    few_step_sample,
    random_crop,
)


@dataclass
class PreferenceBatch:
    winner: torch.Tensor  # (B, z, F, h, w) latents of the preferred samples
    loser: torch.Tensor
    batch: LatentBatch  # the conditions both were generated under


def dpo_loss(
    err_w: torch.Tensor, err_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample errors in, (loss, margin) out; margin < 0 means the policy prefers the winner
    more than the reference does."""
    margin = (err_w - ref_w) - (err_l - ref_l)
    return -F.logsigmoid(-beta * margin).mean(), margin


class DPOObjective(Objective):
    name = "dpo"

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.cond = LPMConditioner(model, self.p_framed)
        self.beta = self.option("beta", 500.0)
        self.reference = copy.deepcopy(model.backbone).requires_grad_(False)
        judge = self.options.get("judge")
        self.judge, self.judge_name = (judge, "custom") if judge else default_judge()

    def trainable_modules(self):
        return [self.model.backbone]

    def state_dict(self) -> dict:
        return {"reference": self.reference.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.reference.load_state_dict(state["reference"])

    # -- pairs ------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, batch: LatentBatch, cond) -> tuple[torch.Tensor, list[np.ndarray]]:
        """One Online candidate per sample: Backbone latents and the decoded frames."""
        m, fpc = self.model, self.cond.fpc
        b = batch.size
        kw = self.cond.forward_kwargs(m.backbone, cond, fpc)
        ts = tuple(self.cfg.online.backbone_timesteps)
        x0 = few_step_sample(
            lambda x, t: m.backbone(x, torch.full((b, fpc), t), **kw),
            torch.randn_like(batch.x0),
            ts,
        )
        tr = float(self.cfg.online.refiner_timestep)
        xr = (1 - tr) * x0 + tr * torch.randn_like(x0)
        rkw = self.cond.forward_kwargs(m.refiner, cond, fpc)
        refined = predict_x0(
            xr, m.refiner(xr, torch.full((b, fpc), tr), **rkw), torch.full((b,), tr)
        )
        video = m.vae.decode(torch.cat([cond.refs.global_latent, refined], dim=2))
        return x0, [frames_to_uint8(video[i : i + 1, :, 1:]) for i in range(b)]

    @torch.no_grad()
    def make_pairs(self, batch: LatentBatch, cond) -> tuple[PreferenceBatch, dict[str, float]]:
        a, frames_a = self.render(batch, cond)
        b, frames_b = self.render(batch, cond)
        sr = self.cfg.audio.sample_rate
        seconds = batch.x0.shape[2] // self.cond.fpc
        speak = batch.speak[:, -seconds * sr :].numpy()
        sa, sb = [], []
        for i in range(batch.size):
            ref = batch.ref_images[i]
            sa.append(self.judge(frames_a[i], speak[i], ref))
            sb.append(self.judge(frames_b[i], speak[i], ref))
        a_wins = torch.tensor([x >= y for x, y in zip(sa, sb, strict=True)])
        sel = a_wins[:, None, None, None, None]
        pair = PreferenceBatch(torch.where(sel, a, b), torch.where(sel, b, a), batch)
        gap = float(np.mean(np.abs(np.subtract(sa, sb))))
        return pair, {"judge_gap": gap, "judge_score": float(np.mean(sa + sb))}

    # -- loss -------------------------------------------------------------------------------------
    def velocity_errors(
        self, net, x0: torch.Tensor, noise: torch.Tensor, t: float, kw: dict
    ) -> torch.Tensor:
        b, f = x0.shape[0], x0.shape[2]
        v = net(add_noise(x0, noise, torch.full((b,), t)), torch.full((b, f), t), **kw)
        return (v - (noise - x0)).pow(2).mean(dim=(1, 2, 3, 4))

    def preference_loss(
        self,
        pair: PreferenceBatch,
        cond,
        t: float,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        f = pair.winner.shape[2]
        kw = self.cond.forward_kwargs(self.model.backbone, cond, f)
        with torch.no_grad():
            rkw = self.cond.forward_kwargs(self.reference, cond, f)
            ref_w = self.velocity_errors(self.reference, pair.winner, noise, t, rkw)
            ref_l = self.velocity_errors(self.reference, pair.loser, noise, t, rkw)
        err_w = self.velocity_errors(self.model.backbone, pair.winner, noise, t, kw)
        err_l = self.velocity_errors(self.model.backbone, pair.loser, noise, t, kw)
        return dpo_loss(err_w, err_l, ref_w, ref_l, self.beta)

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        metrics: dict[str, float] = {}
        if isinstance(batch, PreferenceBatch):
            pair = batch
            with torch.no_grad():
                cond = self.cond.encode(pair.batch)
        else:
            batch = random_crop(batch, 1, self.cond.fpc, self.cfg.audio.sample_rate)
            with torch.no_grad():
                cond = self.cond.encode(batch)
            pair, metrics = self.make_pairs(batch, cond)
        ts = self.cfg.online.backbone_timesteps
        t = float(ts[int(torch.randint(len(ts), (1,)))])
        loss, margin = self.preference_loss(pair, cond, t, torch.randn_like(pair.winner))
        metrics |= {"dpo": loss.item(), "margin": margin.mean().item()}
        return loss, metrics
