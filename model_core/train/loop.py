"""The one training loop of every stage: the objective decides what is learned, the loop how.

AdamW over the objective's parameter groups, linear warm-up, gradient clipping, optional EMA,
a checkpoint every N steps (folder or S3) with everything a resumed run needs to take exactly
the step an uninterrupted run would have taken, a tqdm progress bar and a JSON-lines log.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from model_core.checkpoint import read_checkpoint
from model_core.config import LPMConfig
from model_core.model import LPMModel, build_model
from model_core.train.checkpoints import TrainingCheckpoints, fetch_checkpoint
from model_core.train.config import TrainConfig
from model_core.train.data import (
    ClipSource,
    FrameBatches,
    LatentBatches,
    LatentCache,
    open_clip_source,
)
from model_core.train.objectives import make_objective


def load_model(init: str | None, cfg: LPMConfig, seed: int = 0) -> LPMModel:
    """The model a stage starts from: a checkpoint (the previous stage's) or a fresh one."""
    if init is None:
        return build_model(cfg, seed=seed)
    ckpt_cfg, state, _ = read_checkpoint(fetch_checkpoint(init))
    model = build_model(ckpt_cfg, seed=seed)
    model.load_state_dict(state, strict=True)
    return model


def module_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def encoder_state(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Everything of a VAE but its decoder, the encoder and the latent statistics (decoding
    de-normalises with them), at float16, the precision checkpoints keep: what two VAEs with
    one latent space share."""
    return {
        k: v.detach().half() for k, v in vae.state_dict().items() if not k.startswith("decoder.")
    }


def encoder_digest(vae: torch.nn.Module) -> str:
    """A digest of `encoder_state`: equal for two VAEs with one latent space."""
    h = hashlib.sha1()
    for k, v in sorted(encoder_state(vae).items()):
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class ParamEMA:
    """Exponential moving average of the trainable weights (used for the stage's final model)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p, 1 - self.decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            p.copy_(s)

    def state_dict(self) -> list[torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        self.shadow = [t.clone() for t in state]


class Trainer:
    def __init__(
        self,
        tc: TrainConfig,
        model_config: LPMConfig | None = None,
        source: ClipSource | None = None,
        cache: LatentCache | None = None,
        model: LPMModel | None = None,
    ):
        self.tc = tc
        cfg = model_config or LPMConfig.preset(tc.preset)
        self.model = model if model is not None else load_model(tc.init, cfg, tc.seed)
        self.objective = make_objective(tc.stage, self.model, tc.options)
        self.cfg = self.model.cfg  # an objective may add to the architecture (vae-decoder's audio)
        self.model.requires_grad_(False)
        for m in self.objective.trainable_modules():
            m.requires_grad_(True)
        groups = self.objective.trainable_parameters()
        for g in groups:  # a group may carry its own "lr", or an "lr_scale" of the stage's
            g.setdefault("lr", tc.lr * g.pop("lr_scale", 1.0))
            g["base_lr"] = g["lr"]
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(
            groups, lr=tc.lr, betas=(0.9, 0.99), weight_decay=tc.weight_decay
        )
        self.ema = ParamEMA(self.params, tc.ema) if tc.ema > 0 else None
        self.checkpoints = TrainingCheckpoints(tc.out)
        local = self.checkpoints.store.local_path("")
        self.work = (
            Path(tc.work_dir)
            if tc.work_dir
            else (local if local is not None else Path(".lpm-train") / tc.stage)
        )
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work / "log.jsonl"
        self.batches = self._batches(source, cache)
        self.step = 0
        self.history: list[float] = []
        self.resumed_from: str | None = None
        torch.manual_seed(tc.seed + 1)  # the run's own stream, replaced on resume
        if tc.resume:
            self.resume()

    # -- data ---------------------------------------------------------------------------------
    def _batches(self, source: ClipSource | None, cache: LatentCache | None):
        tc = self.tc
        if self.objective.data_kind in ("frames", "frames+audio"):
            source = source or open_clip_source(tc.data, self.cfg, tc.max_recordings)
            audio = None
            if self.objective.data_kind == "frames+audio":
                audio = (self.cfg.audio.sample_rate, self.cfg.video.fps)
            return FrameBatches(
                source,
                self.objective.frames_per_clip,
                tc.batch,
                tc.max_windows,
                tc.seed,
                audio,
                mouth=self.objective.needs_mouth,
                mouth_open=self.objective.needs_mouth_open,
            )
        if cache is None:
            cache = self._latent_cache(source)
        self.objective.prepare(cache)
        return LatentBatches(cache, tc.batch, tc.seed)

    def _latent_cache(self, source: ClipSource | None) -> LatentCache:
        tc = self.tc
        path = Path(tc.latent_cache) if tc.latent_cache else self.work / "latents.pt"
        version = module_digest(self.model.vae)
        if path.is_file():
            cache = LatentCache.load(path)
            fits = cache.vae_version == version and cache.seconds >= tc.clip_seconds
            fits &= cache.max_windows == tc.max_windows
            # A cache from before face boxes or pictures were kept is rebuilt for a stage
            # that needs them.
            fits &= cache.mouth is not None or not self.objective.needs_mouth
            fits &= cache.pictures is not None or not self.objective.needs_picture
            fits &= cache.mouth_open is not None or not self.objective.needs_mouth_open
            fits &= cache.picture_kind == self.objective.picture_kind or not (
                self.objective.needs_picture
            )
            if fits:
                return cache
        source = source or open_clip_source(tc.data, self.cfg, tc.max_recordings)
        cache = LatentCache.build(
            self.model,
            source,
            tc.clip_seconds,
            tc.max_windows,
            tc.seed,
            vae_version=version,
            picture=self.objective.picture_kind,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        cache.save(path)
        return cache

    # -- checkpoints ----------------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "stage": self.tc.stage,
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "batches": self.batches.state_dict(),
            "objective": self.objective.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "history": self.history,
        }

    def save_checkpoint(self) -> str:
        name = self.checkpoints.save(
            self.step,
            self.model,
            self.cfg,
            self.version(),
            self.trainer_state(),
            self.tc.keep_checkpoints,
        )
        if self.checkpoints.store.local_path("") is None and self.log_path.exists():
            self.checkpoints.put_file("log.jsonl", self.log_path)
        return name

    def resume(self) -> bool:
        name = self.checkpoints.latest()
        if name is None:
            return False
        state, trainer = self.checkpoints.load(name)
        if trainer.get("stage") != self.tc.stage:
            raise ValueError(
                f"{self.tc.out}/{name} is a {trainer.get('stage')} checkpoint, not {self.tc.stage}"
            )
        self.model.load_state_dict(state, strict=True)
        self.objective.load_state_dict(trainer["objective"])
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.batches.load_state_dict(trainer["batches"])
        if self.ema and trainer["ema"] is not None:
            self.ema.load_state_dict(trainer["ema"])
        torch.set_rng_state(trainer["rng"])
        self.step, self.history = trainer["step"], list(trainer["history"])
        self.resumed_from = name
        return True

    def version(self) -> str:
        return f"{self.cfg.name}-{self.tc.stage}-step{self.step}"

    # -- the loop -------------------------------------------------------------------------------
    def _set_lr(self, elapsed_s: float = 0.0) -> float:
        tc = self.tc
        scale = min(1.0, (self.step + 1) / max(1, tc.warmup))
        if tc.lr_schedule == "cosine":
            progress = self.step / max(1, tc.steps)
            if tc.max_minutes:
                progress = max(progress, elapsed_s / (60 * tc.max_minutes))
            cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            scale *= tc.lr_floor + (1 - tc.lr_floor) * cos
        elif tc.lr_schedule != "constant":
            raise ValueError(f"unknown lr_schedule {tc.lr_schedule!r} (constant or cosine)")
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * scale
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, elapsed_s: float = 0.0) -> dict[str, float]:
        tick = time.perf_counter()
        lr = self._set_lr(elapsed_s)
        batch = self.batches.next()
        loss, metrics = self.objective.step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.params if p.grad is not None],
            self.tc.grad_clip if self.tc.grad_clip > 0 else math.inf,
        )
        self.optimizer.step()
        if self.ema:
            self.ema.update()
        self.step += 1
        value = loss.item()
        self.history.append(value)
        return {
            "step": self.step,
            "loss": value,
            **metrics,
            "lr": lr,
            "grad_norm": float(norm),
            "step_s": round(time.perf_counter() - tick, 4),
        }

    def run(self) -> dict[str, Any]:
        from model_core.progress import progress_bar

        tc, start = self.tc, time.perf_counter()
        first = self.history[0] if self.history else None
        bar = progress_bar(
            tc.steps,
            f"train {tc.stage}",
            unit="step",
            progress=None if tc.progress else False,
            initial=self.step,
        )
        stopped_early = False
        with self.log_path.open("a") as log:
            while self.step < tc.steps:
                rec = self.train_step(time.perf_counter() - start)
                rec["elapsed_s"] = round(time.perf_counter() - start, 2)
                first = rec["loss"] if first is None else first
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                over = tc.max_minutes is not None and rec["elapsed_s"] > 60 * tc.max_minutes
                if self.step % tc.checkpoint_every == 0 or self.step == tc.steps or over:
                    self.save_checkpoint()
                if over:
                    stopped_early = self.step < tc.steps
                    break
        bar.close()
        if self.step > 0 and self.checkpoints.latest() != f"step-{self.step:08d}":
            self.save_checkpoint()
        final_metrics = self.objective.finalize(self.batches)
        if self.ema:
            self.ema.copy_to_params()
        tail = self.history[-10:]
        summary = {
            "stage": tc.stage,
            "steps": self.step,
            "planned_steps": tc.steps,
            "stopped_early": stopped_early,
            "wall_s": round(time.perf_counter() - start, 1),
            "first_loss": first,
            "last_loss_mean10": sum(tail) / len(tail) if tail else None,
            "resumed_from": self.resumed_from,
            "batch": tc.batch,
            "lr": tc.lr,
            **final_metrics,
        }
        summary["final"] = self.checkpoints.save_final(
            self.model, self.cfg, self.version(), summary
        )
        if self.checkpoints.store.local_path("") is None:
            self.checkpoints.put_file("log.jsonl", self.log_path)
        return summary


def train(tc: TrainConfig, model_config: LPMConfig | None = None, **kw) -> dict[str, Any]:
    return Trainer(tc, model_config, **kw).run()
