"""Stage 2, `ode`: ODE-supervision warm-up of the causal Backbone.

The frozen Base model integrates its probability-flow ODE (Euler, classifier-free guidance,
the same shifted schedule as `render_base`) from noise to a clean clip; the states it passes
at the Backbone's own timesteps (1.0, 0.5 for tiny) are recorded. The Backbone, starting from
the Base weights, then learns to jump from each recorded state straight to the ODE's end
point, one chunk at a time: earlier chunks of the ODE solution fill its sink + window KV
cache (block-causal, as in streaming), the current chunk enters at the recorded state.
"""

from __future__ import annotations

import torch

from model_core.flow import predict_x0
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import (
    ChunkRollout,
    LPMConditioner,
    guided_velocity,
    ode_solve,
    random_crop,
)
from model_core.train.objectives.vae import weighted_mean


class ODEObjective(Objective):
    name = "ode"
    uses_mouth_latent = True
    uses_mouth_read = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        model.init_online_from_base()  # a resumed run overwrites this with its checkpoint
        self.cond = LPMConditioner(model, self.p_framed)
        self.chunks = self.option("chunks", 2)
        self.ode_steps = self.option("ode_steps", 8)
        self.guidance = self.option("guidance_scale", float(self.cfg.sampler.guidance_scale))
        self.audio_guidance = self.option("audio_guidance", float(self.cfg.sampler.audio_guidance))
        self.window = self.cfg.online.window_chunks
        self.context_noise = self.option("context_noise", 0.0)

    def trainable_modules(self):
        return [self.model.backbone]

    @torch.no_grad()
    def trajectory(self, batch, cond) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
        base, f = self.model.base, batch.x0.shape[2]
        sink = self.cond.sink(base, cond)
        kw = self.cond.forward_kwargs(base, cond, f, sink=sink)
        ukw = self.cond.forward_kwargs(base, self.cond.unconditional(cond), f, sink=sink)
        return ode_solve(
            lambda x, t: guided_velocity(base, x, t, kw, ukw, self.guidance, self.audio_guidance),
            torch.randn_like(batch.x0),
            self.ode_steps,
            self.cfg.sampler.shift,
            tuple(self.cfg.online.backbone_timesteps),
        )

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        fpc, ts = self.cond.fpc, tuple(self.cfg.online.backbone_timesteps)
        batch = random_crop(batch, self.chunks, fpc, self.cfg.audio.sample_rate)
        with torch.no_grad():
            cond = self.cond.encode(batch)
        x_end, states = self.trajectory(batch, cond)
        chunks = batch.x0.shape[2] // fpc
        target = int(torch.randint(chunks, (1,)))
        k = int(torch.randint(len(ts), (1,)))
        rollout = ChunkRollout(
            self.cond, self.model.backbone, cond, self.window, self.context_noise
        )
        for c in range(target):
            rollout.commit(x_end[:, :, c * fpc : (c + 1) * fpc])
        sl = slice(target * fpc, (target + 1) * fpc)
        x_t = states[ts[k]][:, :, sl]
        v = rollout.velocity()(x_t, float(ts[k]))
        pred = predict_x0(x_t, v, torch.full((x_t.shape[0],), float(ts[k])))
        err = (pred - x_end[:, :, sl]).pow(2)
        w = self.mouth_weights(batch.mouth, x_t.shape[-2:])
        loss = weighted_mean(err, None if w is None else w[:, :, sl])
        metrics = {"ode_mse": err.mean().item(), "chunk": target, "t": float(ts[k])}
        if self.w_mouth_latent > 0:  # the footage's opening, where the teacher's may be faint
            opening = self.opening_error(pred, batch.x0[:, :, sl], batch, sl)
            loss = loss + self.w_mouth_latent * opening
            metrics["mouth_latent"] = opening.item()
        if self.w_mouth_read > 0:  # the drawn mouth against the footage's opening
            read = self.pixel_read_error(pred, batch, sl)
            loss = loss + self.w_mouth_read * read
            metrics["mouth_read_mse"] = read.item()
        return loss, metrics
