"""Training objectives, one module per curriculum stage, behind one interface.

The loop (`model_core/train/loop.py`) knows nothing about stages: it asks the objective for
its trainable parameters, feeds it batches of the kind it names (`data_kind`: pixel clips for
the VAE, cached latents for everything else) and steps the optimizer on the loss it returns.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from model_core.model import LPMModel

# stage -> "module:Class"; the order is the curriculum's.
STAGES: dict[str, str] = {
    "vae": "model_core.train.objectives.vae:VAEObjective",
    "vae-stream": "model_core.train.objectives.vae:StreamVAEObjective",
    "base": "model_core.train.objectives.base:BaseFlowObjective",
    "ode": "model_core.train.objectives.ode:ODEObjective",
    "dmd-off": "model_core.train.objectives.dmd:OffPolicyDMDObjective",
    "dmd-on": "model_core.train.objectives.dmd:OnPolicyDMDObjective",
    "refiner": "model_core.train.objectives.refiner:RefinerObjective",
    "dpo": "model_core.train.objectives.dpo:DPOObjective",
    "vae-decoder": "model_core.train.objectives.vae_decoder:DecoderObjective",
}


class Objective:
    """One stage's loss. Subclasses set `name`, `data_kind` and implement `step`."""

    name = "objective"
    data_kind = "latents"  # "frames" (pixel clips) or "latents" (LatentCache batches)
    frames_per_clip = 9  # pixel clips only: 1 + 4k frames

    def __init__(self, model: LPMModel, options: dict[str, Any] | None = None):
        self.model = model
        self.cfg = model.cfg
        self.options = dict(options or {})
        # Extra loss weight on the mouth region (`mouth_weights`); the data must then carry
        # face boxes (curated shards or recordings with the performer's ground truth).
        self.w_mouth = self.option("mouth_weight", 0.0)
        # Probability that a sample's global reference is its window's first frame
        # (`LPMConditioner`); the latent cache must then hold those frames.
        self.p_framed = self.option("framed_global", 0.0)
        if not 0.0 <= self.p_framed <= 1.0:
            raise ValueError(f"framed_global must be a probability in [0, 1], got {self.p_framed}")

    @property
    def needs_picture(self) -> bool:
        """Whether latent batches must carry each window's first frame."""
        return self.p_framed > 0

    @property
    def needs_mouth(self) -> bool:
        """Whether batches must carry mouth regions (the loop builds them so)."""
        return self.w_mouth > 0

    # Whether pixel batches must carry each frame's ground-truth mouth opening.
    needs_mouth_open = False

    def _require_mouth(self, mouth: torch.Tensor | None) -> None:
        if mouth is None:
            raise ValueError(
                f"{self.name}: the mouth options need face boxes in the data's ground truth "
                "(curated shards or performer recordings); this data has none"
            )

    def mouth_region(self, mouth: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
        """`mouth_cover` of a batch's mouth regions on an (h, w) grid; an error naming the
        stage when the data has none."""
        from model_core.train.data import mouth_cover

        self._require_mouth(mouth)
        return mouth_cover(mouth, shape)

    def mouth_weights(self, mouth: torch.Tensor | None, shape: tuple[int, int]):
        """`model_core.train.data.mouth_weights` at this stage's mouth_weight, or None
        without the option; an error naming the stage when the data has no regions."""
        from model_core.train.data import mouth_weights

        if not self.needs_mouth:
            return None
        self._require_mouth(mouth)
        return mouth_weights(mouth, shape, self.w_mouth)

    def option(self, key: str, default: Any) -> Any:
        value = self.options.get(key, default)
        return type(default)(value) if default is not None and value is not None else value

    def trainable_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def trainable_parameters(self) -> list[dict]:
        """Optimizer parameter groups (a group may carry its own `lr`)."""
        return [{"params": [p for m in self.trainable_modules() for p in m.parameters()]}]

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    # Extra state that is not part of the LPM model (critics, frozen references, counters).
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def finalize(self, batches) -> dict[str, float]:
        """Called once after the last step, before the stage's final checkpoint."""
        return {}


def make_objective(
    stage: str,
    model: LPMModel,
    options: dict[str, Any] | None = None,
) -> Objective:
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose from {', '.join(STAGES)}")
    module, cls = STAGES[stage].split(":")
    return getattr(importlib.import_module(module), cls)(model, options)
