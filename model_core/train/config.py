"""Typed settings of one training run (one stage), and each stage's defaults for `tiny`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    stage: str
    out: str  # checkpoint folder or s3://bucket/prefix
    data: str = "synthetic"  # curated shards, a `lpm data synth` folder, or "synthetic"
    init: str | None = None  # checkpoint folder (or s3:// prefix) the stage starts from
    preset: str = "tiny"
    steps: int = 100
    batch: int = 2
    lr: float = 1e-4
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.0  # EMA decay of the trainable weights; 0 = off
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    resume: bool = False
    max_minutes: float | None = None  # stop (checkpointed, finalized) when the budget is spent
    # Learning-rate schedule after warm-up: "constant", or "cosine" down to lr * lr_floor over
    # the run's progress (the larger of steps done / steps and minutes spent / max_minutes).
    lr_schedule: str = "constant"
    lr_floor: float = 0.1
    clip_seconds: int = 2  # seconds per cached latent window (stages crop what they need)
    max_windows: int = 256  # windows encoded into the latent cache
    max_recordings: int | None = None
    latent_cache: str | None = None  # where the latent cache lives (default: <work>/latents.pt)
    work_dir: str | None = None  # local scratch (log, cache) when `out` is on S3
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # objective-specific

    def replace(self, **kw) -> TrainConfig:
        return dataclasses.replace(self, **kw)


# The `tiny` curriculum: steps, batch and learning rate per stage, sized so that all stages
# together fit in about two hours of a 2-core CPU shared with other work (docs/training.md).
# The step counts are upper bounds: on this machine each stage's time budget
# (TINY_MINUTES, below) is what ends it, and the cosine schedule follows whichever of the
# two runs out first. EMA weights are what each stage hands on.
TINY_CURRICULUM: dict[str, dict[str, Any]] = {
    "vae": dict(
        steps=5000,
        batch=2,
        lr=5e-4,
        ema=0.995,
        options={"frames": 13, "motion_weight": 2.0, "recolour": 0.5},
    ),
    "vae-stream": dict(
        steps=10000,
        batch=2,
        lr=2e-4,
        ema=0.995,
        options={"frames": 49, "chunk": 12, "motion_weight": 2.0, "recolour": 0.5},
    ),
    # `ref_concat` + `framed_global`: the global reference is a picture framed like the video
    # (in training the window's own first frame), concatenated to every frame's latent, so the
    # generators learn to copy the character from it (docs/training.md, "A picture framed like
    # the video"). Every later stage conditions on the same picture.
    "base": dict(
        steps=8000,
        batch=2,
        lr=3e-4,
        ema=0.998,
        options={
            "timestep_shift": 3.0,
            "motion_weight": 1.0,
            "ref_concat": 1,
            "framed_global": 1.0,
        },
    ),
    "ode": dict(
        steps=1000,
        batch=2,
        lr=1e-4,
        ema=0.99,
        options={"ode_steps": 4, "context_noise": 0.3, "framed_global": 1.0},
    ),
    "dmd-off": dict(
        steps=600,
        batch=2,
        lr=2e-5,
        options={"generator_every": 2, "context_noise": 0.3, "framed_global": 1.0},
    ),
    "dmd-on": dict(
        steps=400, batch=2, lr=2e-5, options={"generator_every": 2, "framed_global": 1.0}
    ),
    "refiner": dict(steps=2000, batch=2, lr=2e-4, ema=0.995, options={"framed_global": 1.0}),
    "dpo": dict(steps=200, batch=2, lr=5e-6, options={"beta": 500.0, "framed_global": 1.0}),
    "vae-decoder": dict(
        steps=2000, batch=1, lr=2e-4, ema=0.99, options={"frames": 49, "motion_weight": 2.0}
    ),
    # the voice drawn into the Online model's latents (model_core/mouth_head.py); `lpm train
    # all` trains the pixel mouth reader its `online` share is scored by
    "mouth-head": dict(
        steps=4000,
        batch=4,
        lr=1e-3,
        ema=0.99,
        options={"picture": "rest", "soft": 0.5, "online": 0.4, "mouth_read": 1.0},
    ),
    # the head's reading of the voice drawn into the decoded frames
    # (model_core/mouth_painter.py): footage clips with the mouth's timing taken out, and half
    # the steps the Online model's own frames painted to random openings, read through a
    # shaken reader and with the change kept soft (the shipped painter's last run; its first
    # two had mouth_read 1 then 4 without `online`, the next two no shaking or `smooth`);
    # served relative to the painter's own edit at opening 0 (`serve_relative`), told the
    # opening as heard and its edit drawn 1.5 times over (`serve_gain`, `serve_strength`,
    # chosen on validation samples)
    "mouth-painter": dict(
        steps=2400,
        batch=2,
        lr=1e-3,
        ema=0.99,
        options={
            "mouth_read": 4.0,
            "online": 0.5,
            "outside": 1.0,
            "read_jitter": 2.0,
            "read_soften": 0.5,
            "smooth": 4.0,
            "serve_gain": 1.0,
            "serve_relative": True,
            "serve_strength": 1.5,
        },
    ),
}

# Minutes each stage may take in the tiny recipe; steps stop there. `vae-stream`
# got 25 more minutes after the shipped run (which had 8): measured with `lpm bench vae`, the
# mouth is what a VAE learns last, and those minutes took the round trip's lip sync from 39%
# to 69% of ground truth (docs/training.md).
TINY_MINUTES = {
    "vae": 16,
    "vae-stream": 33,
    "base": 50,
    "ode": 7,
    "dmd-off": 5,
    "dmd-on": 5,
    "refiner": 6,
    "dpo": 4,
    "vae-decoder": 6,
    "mouth-head": 14,
    "mouth-painter": 20,
}


def recipe_minutes() -> float:
    """The tiny recipe's time budget: every stage `lpm train all` runs when none are named."""
    return float(sum(TINY_MINUTES.values()))
