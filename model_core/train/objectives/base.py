"""Stage 1, `base`: flow matching of the bidirectional Base model on curated clips.

Conditions: the multi-granularity reference set (global + body views + faces of the clip's
identity), both audio tracks, the caption. Condition dropout makes classifier-free guidance
possible: per batch, the caption is dropped, the audio is dropped, both are dropped (the
`render_base` unconditional branch), and the references are cut to the global image alone,
each with its own probability. The text and audio encoders train with the Base model here and
are frozen in every later stage.

With probability `clean_prefix`, the first chunk of a multi-chunk clip is given clean (t=0)
and only the rest is scored: the Base model then also knows how to continue a clip, which
is what it is asked as the real score of the distillation stages.
"""

from __future__ import annotations

import torch

from model_core.flow import add_noise, predict_x0, sample_training_timesteps
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import LPMConditioner, random_crop
from model_core.train.objectives.vae import combine_weights, motion_weights, weighted_mean


class BaseFlowObjective(Objective):
    name = "base"
    uses_mouth_latent = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.cond = LPMConditioner(model, self.p_framed)
        self.chunks = self.option("chunks", 2)
        self.p_text = self.option("drop_text", 0.1)
        self.p_audio = self.option("drop_audio", 0.1)
        self.p_both = self.option("drop_all", 0.1)
        self.p_global = self.option("only_global_refs", 0.2)
        self.p_prefix = self.option("clean_prefix", 0.25)
        self.shift = self.option("timestep_shift", 1.0)
        self.w_motion = self.option("motion_weight", 0.0)
        if self.option("audio_norm", 0):  # see DiTConfig.audio_norm
            model.set_audio_norm(True)
            self.cfg = model.cfg
        if self.option("ref_concat", 0):  # see DiTConfig.ref_concat
            model.set_ref_concat()
            self.cfg = model.cfg

    def trainable_modules(self):
        return [self.model.base, self.model.audio_encoder, self.model.text_encoder]

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        m, fpc = self.model, self.cond.fpc
        batch = random_crop(batch, self.chunks, fpc, self.cfg.audio.sample_rate)
        u = torch.rand(5).tolist()
        drop_all = u[0] < self.p_both
        cond = self.cond.encode(
            batch,
            text=not (drop_all or u[1] < self.p_text),
            audio=not (drop_all or u[2] < self.p_audio),
            only_global=u[3] < self.p_global,
        )
        x0 = batch.x0
        b, f = x0.shape[0], x0.shape[2]
        t = sample_training_timesteps(b, self.shift)[:, None].expand(b, f).clone()
        scored = torch.ones(f, dtype=torch.bool)
        if f > fpc and u[4] < self.p_prefix:
            t[:, :fpc] = 0.0
            scored[:fpc] = False
        noise = torch.randn_like(x0)
        z_t = add_noise(x0, noise, t)
        v = m.base(z_t, t, **self.cond.forward_kwargs(m.base, cond, f))
        err = (v - (noise - x0)).pow(2)[:, :, scored]
        mouth = self.mouth_weights(batch.mouth, x0.shape[-2:])
        w = combine_weights(motion_weights(x0, self.w_motion), mouth)
        loss = weighted_mean(err, None if w is None else w[:, :, scored])
        metrics = {"fm": loss.item(), "fm_plain": err.mean().item(), "t": float(t[:, -1].mean())}
        if self.w_mouth_latent > 0:
            x0_hat = predict_x0(z_t, v, t)[:, :, scored]
            opening = self.opening_error(x0_hat, x0[:, :, scored], batch, scored)
            loss = loss + self.w_mouth_latent * opening
            metrics["mouth_latent"] = opening.item()
        return loss, metrics
