"""Stage 2, `ode`: ODE-supervision warm-up of the causal Backbone.

The frozen Base model integrates its probability-flow ODE (Euler, classifier-free guidance,
the same shifted schedule as `render_base`) from noise to a clean clip; the states it passes
at the Backbone's own timesteps (1.0, 0.5 for tiny) are recorded. The Backbone, starting from
the Base weights, then learns to jump from each recorded state straight to the ODE's end
point, one chunk at a time: earlier chunks of the ODE solution fill its sink + window KV
cache (block-causal, as in streaming), the current chunk enters at the recorded state.

Most of a step is the teacher's solve (4 Euler steps under classifier-free guidance: 8 or
more Base passes over the whole window, against one Backbone forward and backward). With the
`pool` option the stage keeps the last `pool` solved windows (their cache index, framing,
end point and recorded states, in fp16) and, once the pool is full, solves a fresh batch
only every `pool_every` steps, training on windows drawn from the pool in between, as
CausVid and Self-Forcing train on a stored set of ODE pairs. The pool is part of the
stage's checkpoint, so a resumed run continues with it.
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
        self.pool_size = self.option("pool", 0)
        self.pool_every = self.option("pool_every", 4)
        if self.pool_size < 0:
            raise ValueError(f"pool must be >= 0 windows, got {self.pool_size}")
        if self.pool_every < 1:
            raise ValueError(f"pool_every must be >= 1 step, got {self.pool_every}")
        self.ts = tuple(self.cfg.online.backbone_timesteps)
        self.cache = None
        self.count = 0  # steps taken, for the pool's schedule
        self.pool: dict[str, torch.Tensor] | None = None
        self.added = 0  # windows ever put in the pool; the oldest is replaced first

    def trainable_modules(self):
        return [self.model.backbone]

    def prepare(self, cache) -> None:
        super().prepare(cache)
        if self.pool_size:
            frames = cache.latents.shape[2]
            if frames != self.chunks * self.cond.fpc:
                raise ValueError(
                    f"pool needs cached windows of exactly chunks={self.chunks} chunks "
                    f"({self.chunks * self.cond.fpc} latent frames), the cache's have {frames}"
                )
            self.cache = cache

    # -- the pool of solved windows ---------------------------------------------------------------
    @property
    def pool_len(self) -> int:
        return min(self.added, self.pool_size)

    @property
    def pool_next(self) -> int:
        """The slot the next solved window goes to."""
        return self.added % self.pool_size if self.pool_size else 0

    def fresh(self) -> bool:
        """Whether this step solves the teacher's ODE anew (always without a pool, and while
        the pool fills)."""
        if not self.pool_size or self.pool_len < self.pool_size:
            return True
        return self.count % self.pool_every == 0

    def pool_add(self, batch, cond, x_end: torch.Tensor, states: dict) -> None:
        if batch.index is None:
            raise ValueError("pool: batches must come from the latent cache")
        if batch.size > self.pool_size:
            raise ValueError(f"pool={self.pool_size} must hold a batch ({batch.size} windows)")
        if self.pool is None:
            n = self.pool_size
            self.pool = {
                "index": torch.zeros(n, dtype=torch.long),
                "framed": torch.zeros(n, dtype=torch.bool),
                "x_end": torch.zeros((n, *x_end.shape[1:]), dtype=torch.float16),
                "states": torch.zeros((n, len(self.ts), *x_end.shape[1:]), dtype=torch.float16),
            }
        slots = (self.added + torch.arange(batch.size)) % self.pool_size
        self.pool["index"][slots] = torch.tensor(batch.index)
        self.pool["framed"][slots] = False if cond.framed is None else cond.framed
        self.pool["x_end"][slots] = x_end.half()
        self.pool["states"][slots] = torch.stack([states[t] for t in self.ts], 1).half()
        self.added += batch.size

    def pool_draw(self, size: int):
        """`size` stored windows at random: (batch, conditioning, end points, states)."""
        if self.cache is None:
            raise RuntimeError("pool: prepare(cache) comes first")
        pick = torch.randint(self.pool_len, (size,))
        batch = self.cache.batch(self.pool["index"][pick].tolist())
        framed = self.pool["framed"][pick] if self.p_framed > 0 else None
        cond = self.cond.encode(batch, framed=framed)
        states = {t: self.pool["states"][pick, k].float() for k, t in enumerate(self.ts)}
        return batch, cond, self.pool["x_end"][pick].float(), states

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "count": self.count}
        if self.pool is not None:
            state["pool"] = {**self.pool, "added": self.added, "cache": self.cache_key()}
        return state

    def cache_key(self) -> str:
        """Which latent cache the pool's indices point into."""
        return f"{self.cache.vae_version}:{len(self.cache)}" if self.cache is not None else ""

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.count = int(state.get("count", 0))
        if "pool" in state:
            pool = dict(state["pool"])
            self.added = int(pool.pop("added"))
            key = pool.pop("cache")
            if key != self.cache_key():
                raise ValueError(
                    f"pool: the checkpoint's windows index another latent cache ({key}), "
                    f"not this one ({self.cache_key()}); resume on the cache it was built on"
                )
            if pool["x_end"].shape[0] != self.pool_size:
                raise ValueError(
                    f"pool: the checkpoint keeps {pool['x_end'].shape[0]} windows, the option "
                    f"says {self.pool_size}"
                )
            self.pool = pool

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
        fpc, ts = self.cond.fpc, self.ts
        fresh = self.fresh()
        self.count += 1
        with torch.no_grad():
            if fresh:
                batch = random_crop(batch, self.chunks, fpc, self.cfg.audio.sample_rate)
                cond = self.cond.encode(batch)
                x_end, states = self.trajectory(batch, cond)
                if self.pool_size:
                    self.pool_add(batch, cond, x_end, states)
            else:
                batch, cond, x_end, states = self.pool_draw(batch.size)
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
        if self.pool_size:
            metrics["fresh"] = float(fresh)
        if self.w_mouth_latent > 0:  # the footage's opening, where the teacher's may be faint
            opening = self.opening_error(pred, batch.x0[:, :, sl], batch, sl)
            loss = loss + self.w_mouth_latent * opening
            metrics["mouth_latent"] = opening.item()
        if self.w_mouth_read > 0:  # the drawn mouth against the footage's opening
            read = self.pixel_read_error(pred, batch, sl)
            loss = loss + self.w_mouth_read * read
            metrics["mouth_read_mse"] = read.item()
        return loss, metrics
