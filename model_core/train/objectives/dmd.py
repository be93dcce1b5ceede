"""Stages 3 and 4, `dmd-off` and `dmd-on`: distribution matching distillation of the Backbone.

The generator is the Backbone with its few-step sampler. Its samples are noised again at a
random time and denoised twice: by the frozen Base model with classifier-free guidance (the
real score) and by a critic, a copy of the Base model trained beside the generator with flow
matching on the generator's own samples (the fake score). The generator is pushed along
(real x0 - fake x0), normalised per sample by |sample - real x0| (DMD, eqs. 7-8).

- `dmd-off` (off-policy, teacher forcing): every chunk is generated from noise with the
  ground-truth chunks before it in the KV cache, each with a random exit step that carries the
  gradient.
- `dmd-on` (on-policy, self forcing): the Backbone rolls out the whole clip chunk after chunk
  through its sink + window KV cache, its own outputs refilling the cache as in streaming; the
  gradient flows through the last chunk, the earlier ones are its accumulated context. The
  DMD loss judges the whole rollout, so the Backbone learns to correct its own drift.

Generator and critic losses are summed: they touch disjoint parameters (the generator's loss
sees the critic only under no_grad; the critic sees only detached samples). With
`generator_every` > 1 the generator is updated on every n-th step only, as in DMD2.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from model_core.flow import add_noise, predict_x0, shift_timesteps
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import (
    ChunkRollout,
    LPMConditioner,
    few_step_sample,
    guided_velocity,
    random_crop,
)
from model_core.train.objectives.vae import weighted_mean


class DMDObjective(Objective):
    uses_mouth_latent = True
    uses_mouth_read = True
    on_policy = False
    default_chunks = 2

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.cond = LPMConditioner(model, self.p_framed)
        self.chunks = self.option("chunks", self.default_chunks)
        self.guidance = self.option("guidance_scale", float(self.cfg.sampler.guidance_scale))
        # Guidance on the audio alone in the real score (`guide`): a teacher whose mouth
        # follows the voice more than plain guidance makes it.
        self.audio_guidance = self.option("audio_guidance", float(self.cfg.sampler.audio_guidance))
        self.generator_every = self.option("generator_every", 2)
        self.critic_lr = self.option("critic_lr", 0.0)
        self.t_range = (self.option("t_min", 0.02), self.option("t_max", 0.98))
        self.window = self.cfg.online.window_chunks
        self.context_noise = self.option("context_noise", 0.0)
        # Weight of a regression of the generated mouth region onto the clip's own (0: off):
        # what the voice does to the mouth, taught from the footage rather than only through
        # the Base model's score, which carries it faintly.
        self.mouth_regress = self.option("mouth_regress", 0.0)
        # The critic starts as the Base model (the fake score equals the real one at first).
        self.critic = copy.deepcopy(model.base).requires_grad_(True)
        self.count = 0

    @property
    def needs_mouth(self) -> bool:
        return super().needs_mouth or self.mouth_regress > 0

    def trainable_modules(self):
        return [self.model.backbone, self.critic]

    def trainable_parameters(self) -> list[dict]:
        groups = [
            {"params": list(self.model.backbone.parameters())},
            {"params": list(self.critic.parameters())},
        ]
        if self.critic_lr > 0:
            groups[1]["lr"] = self.critic_lr
        return groups

    def state_dict(self) -> dict:
        return {**super().state_dict(), "critic": self.critic.state_dict(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.critic.load_state_dict(state["critic"])
        self.count = int(state["count"])

    # -- the generator ----------------------------------------------------------------------------
    def generate(self, batch, cond, grad: bool) -> torch.Tensor:
        """The Backbone's samples of the whole clip (B, z, F, h, w)."""
        fpc, ts = self.cond.fpc, tuple(self.cfg.online.backbone_timesteps)
        chunks = batch.x0.shape[2] // fpc
        rollout = ChunkRollout(
            self.cond, self.model.backbone, cond, self.window, self.context_noise
        )
        out = []
        for c in range(chunks):
            last = c == chunks - 1
            carries = grad and (last or not self.on_policy)
            exit_step = int(torch.randint(len(ts), (1,))) if carries else None
            noise = torch.randn_like(batch.x0[:, :, :fpc])
            x0 = few_step_sample(rollout.velocity(), noise, ts, grad_at=exit_step)
            out.append(x0)
            if not last:
                context = x0 if self.on_policy else batch.x0[:, :, c * fpc : (c + 1) * fpc]
                rollout.commit(context)
        return torch.cat(out, dim=2)

    # -- scores -----------------------------------------------------------------------------------
    def _times(self, b: int) -> torch.Tensor:
        lo, hi = self.t_range
        t = lo + (hi - lo) * torch.rand(b)
        return shift_timesteps(t, self.cfg.sampler.shift)

    @torch.no_grad()
    def dmd_direction(self, x: torch.Tensor, cond, kw_real, ukw_real, kw_fake) -> tuple:
        t = self._times(x.shape[0])
        xt = add_noise(x, torch.randn_like(x), t)
        real = predict_x0(
            xt,
            guided_velocity(
                self.model.base, xt, t, kw_real, ukw_real, self.guidance, self.audio_guidance
            ),
            t,
        )
        fake = predict_x0(xt, guided_velocity(self.critic, xt, t, kw_fake, None, 1.0), t)
        norm = (x - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
        return torch.nan_to_num((fake - real) / norm), t

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        fpc = self.cond.fpc
        batch = random_crop(batch, self.chunks, fpc, self.cfg.audio.sample_rate)
        f = batch.x0.shape[2]
        with torch.no_grad():
            cond = self.cond.encode(batch)
            base_sink = self.cond.sink(self.model.base, cond)
            kw_real = self.cond.forward_kwargs(self.model.base, cond, f, sink=base_sink)
            ukw_real = self.cond.forward_kwargs(
                self.model.base, self.cond.unconditional(cond), f, sink=base_sink
            )
        update_generator = self.count % self.generator_every == 0
        self.count += 1
        x = self.generate(batch, cond, grad=update_generator)
        metrics = {}
        loss = x.new_zeros(())
        if update_generator:
            with torch.no_grad():
                kw_fake = self.cond.forward_kwargs(self.critic, cond, f)
            direction, _ = self.dmd_direction(x.detach(), cond, kw_real, ukw_real, kw_fake)
            w = self.mouth_weights(batch.mouth, x.shape[-2:])
            gen_loss = 0.5 * weighted_mean((x - (x - direction).detach()).pow(2), w)
            loss = loss + gen_loss
            metrics["dmd"] = gen_loss.item()
            metrics["dmd_grad"] = float(direction.abs().mean())
            if self.mouth_regress > 0:
                region = self.mouth_region(batch.mouth, x.shape[-2:])
                mouth = weighted_mean((x - batch.x0).pow(2), region)
                loss = loss + self.mouth_regress * mouth
                metrics["mouth_mse"] = mouth.item()
            if self.w_mouth_latent > 0:
                opening = self.opening_error(x, batch.x0, batch)
                loss = loss + self.w_mouth_latent * opening
                metrics["mouth_latent"] = opening.item()
            if self.w_mouth_read > 0:  # the drawn mouth against the footage's opening
                read = self.pixel_read_error(x, batch)
                loss = loss + self.w_mouth_read * read
                metrics["mouth_read_mse"] = read.item()
        # The critic: flow matching on the generator's (detached) samples.
        sample = x.detach()
        t = self._times(sample.shape[0])
        noise = torch.randn_like(sample)
        kw_fake = self.cond.forward_kwargs(self.critic, cond, f)
        v = self.critic(add_noise(sample, noise, t), t[:, None].expand(-1, f), **kw_fake)
        critic_loss = F.mse_loss(v, noise - sample)
        metrics["critic"] = critic_loss.item()
        with torch.no_grad():
            metrics["gt_mse"] = float(F.mse_loss(sample, batch.x0))
        return loss + critic_loss, metrics


class OffPolicyDMDObjective(DMDObjective):
    name = "dmd-off"
    on_policy = False
    default_chunks = 2


class OnPolicyDMDObjective(DMDObjective):
    name = "dmd-on"
    on_policy = True
    default_chunks = 3
