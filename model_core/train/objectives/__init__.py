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
    # last, so that it learns to draw through the decoder the model ships with
    "mouth-head": "model_core.train.objectives.mouth_head:MouthHeadObjective",
    # after the head, whose reading of the voice it draws into the decoded frames
    "mouth-painter": "model_core.train.objectives.mouth_painter:MouthPainterObjective",
}


class Objective:
    """One stage's loss. Subclasses set `name`, `data_kind` and implement `step`."""

    name = "objective"
    data_kind = "latents"  # "frames" (pixel clips) or "latents" (LatentCache batches)
    frames_per_clip = 9  # pixel clips only: 1 + 4k frames
    uses_mouth_latent = False  # whether `step` adds the `mouth_latent` term
    uses_mouth_read = False  # whether `step` adds the pixel `mouth_read` term

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
        # Weight of the mouth-opening error of the generated clean latent against the
        # footage's, both read by a reader fitted on the cache (`opening_error`); 0: off.
        self.w_mouth_latent = self.option("mouth_latent", 0.0)
        if self.w_mouth_latent < 0:
            raise ValueError(f"mouth_latent must be >= 0, got {self.w_mouth_latent}")
        self.reader = None
        if self.w_mouth_latent > 0 and not self.uses_mouth_latent:
            raise ValueError(
                f"{self.name} has no mouth_latent option (base, ode, dmd-off, dmd-on and "
                "refiner have)"
            )
        # Weight of the frozen pixel mouth reader's error on the stage's clean latent, decoded
        # by the (frozen) VAE, against the footage's ground-truth opening (`pixel_read_error`);
        # the vae-decoder stage has its own use of the same option and reader.
        self.w_mouth_read = self.option("mouth_read", 0.0)
        if self.w_mouth_read < 0:
            raise ValueError(f"mouth_read must be >= 0, got {self.w_mouth_read}")
        if self.w_mouth_read > 0 and not self.uses_mouth_read:
            raise ValueError(
                f"{self.name} has no mouth_read option (ode, dmd-off, dmd-on, refiner and "
                "vae-decoder have)"
            )
        self.mouth_reader = None
        if self.w_mouth_read > 0:
            self.mouth_reader = self.load_mouth_reader("mouth_read")
        # Which frame of a window is its framed picture (`LatentCache.picture_kind`): "first",
        # or "rest", the most closed-mouth one, so that the picture's mouth says nothing
        # about the window's speech and the mouth must come from the voice.
        self.picture_kind = self.option("picture", "first")
        from model_core.train.data import PICTURE_KINDS

        if self.picture_kind not in PICTURE_KINDS:
            raise ValueError(
                f"picture must be one of {', '.join(PICTURE_KINDS)}, got {self.picture_kind!r}"
            )

    @property
    def needs_picture(self) -> bool:
        """Whether latent batches must carry each window's framed picture."""
        return self.p_framed > 0 or self.w_mouth_latent > 0

    @property
    def needs_mouth(self) -> bool:
        """Whether batches must carry mouth regions (the loop builds them so)."""
        return self.w_mouth > 0 or self.w_mouth_latent > 0 or self.w_mouth_read > 0

    @property
    def needs_mouth_open(self) -> bool:
        """Whether batches (pixel clips, or the latent cache) must carry each frame's
        ground-truth mouth opening."""
        return self.w_mouth_latent > 0 or self.w_mouth_read > 0

    def load_mouth_reader(self, what: str):
        """The frozen pixel mouth reader named by the `mouth_reader` option (a file from
        `lpm train mouth-reader`; `lpm train all` trains one when the option is missing);
        `what` is the option that needs it, for the error."""
        from pathlib import Path

        from model_core.train.mouth_reader import LPMMouthReader

        path = self.option("mouth_reader", "")
        if not path or not Path(path).is_file():
            raise ValueError(
                f"{self.name} {what} needs mouth_reader=PATH of a trained mouth reader "
                f"(`lpm train mouth-reader`), got {path!r}"
            )
        return LPMMouthReader.load(path)

    def pixel_read_error(
        self, x0_hat: torch.Tensor, batch, frames: slice = slice(None)
    ) -> torch.Tensor:
        """`mouth_read`: the generated clean latents `x0_hat` (`frames` of the batch's latent
        frames) decoded by the frozen VAE, and the frozen pixel mouth reader's squared error
        on them against the footage's ground-truth opening. The mouth a latent reader finds
        in a latent need not be one the decoder draws (docs/training.md); this scores the
        drawn one. The chunk is decoded from a cold cache, so its first latent frame gives
        one frame and is left out; the others give `temporal_factor` frames each."""
        from model_core.train.data import frame_mouth_boxes
        from model_core.train.mouth_reader import reader_error

        self._require_mouth(batch.mouth)
        if batch.mouth_open is None:
            raise ValueError(f"{self.name} mouth_read needs the footage's mouth openings")
        if x0_hat.shape[2] < 2:
            return x0_hat.sum() * 0.0
        mouth, opening = batch.mouth[:, frames, :][:, 1:], batch.mouth_open[:, frames][:, 1:]
        boxes = frame_mouth_boxes(mouth, self.cfg.vae.temporal_factor, self.cfg.vae.spatial_factor)
        drawn = self.model.vae.decode(x0_hat, clamp=False)[:, :, 1:]
        return reader_error(self.mouth_reader, drawn, boxes, opening.flatten(1))

    def prepare(self, cache) -> None:
        """Called once with the `LatentCache` before the first step of a latent stage: fits
        what an objective learns from the whole cache (the latent mouth reader)."""
        if self.w_mouth_latent > 0 and self.reader is None:
            from model_core.train.latent_mouth import fit_latent_mouth_reader

            self.reader = fit_latent_mouth_reader(cache)

    def opening_error(
        self, x0_hat: torch.Tensor, x0: torch.Tensor, batch, frames=slice(None)
    ) -> torch.Tensor:
        """Mean squared difference between the mouth opening read from generated clean
        latents `x0_hat` and from the footage's `x0` (the same frames of the batch, `frames`
        of its latent frames), over the frames whose mouth is known (`mouth_latent`)."""
        if self.reader is None:
            raise RuntimeError("mouth_latent: the reader is fitted in prepare(cache) first")
        self._require_mouth(batch.mouth)
        if batch.picture is None:
            raise ValueError("mouth_latent needs the windows' pictures in the latent cache")
        mouth = batch.mouth[:, frames]
        pred, known = self.reader.read(x0_hat, mouth, batch.picture)
        with torch.no_grad():
            true, _ = self.reader.read(x0, mouth, batch.picture)
        if not known.any():
            return x0_hat.sum() * 0.0
        return (pred - true)[known].pow(2).mean()

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

    # Extra state that is not part of the LPM model (critics, frozen references, counters);
    # a subclass adds its own to these.
    def state_dict(self) -> dict[str, Any]:
        return {} if self.reader is None else {"latent_mouth": self.reader.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "latent_mouth" in state:
            from model_core.train.latent_mouth import LatentMouthReader

            self.reader = LatentMouthReader.from_state(state["latent_mouth"])

    def finalize(self, batches) -> dict[str, float]:
        """Called once after the last step, before the stage's final checkpoint."""
        return {} if self.reader is None else {"latent_mouth_r": float(self.reader.held_out_r)}


class OptionError(ValueError):
    """A stage's options are wrong or name something unusable (a missing reader file, a
    value out of range); the message names the option. `lpm train` reports it as bad input."""


def make_objective(
    stage: str,
    model: LPMModel,
    options: dict[str, Any] | None = None,
) -> Objective:
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose from {', '.join(STAGES)}")
    module, cls = STAGES[stage].split(":")
    try:
        return getattr(importlib.import_module(module), cls)(model, options)
    except OptionError:
        raise
    except ValueError as e:  # every objective validates its options as it is built
        raise OptionError(str(e)) from e
