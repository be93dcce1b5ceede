"""Multi-granularity identity references: 1 global image, up to 4 body views, up to 8 faces.

References enter the transformer as ordinary latent tokens (same VAE, same patch embedder)
at timestep 0. What tells the model which is which is only where they sit in RoPE space:
each reference *type* has its own temporal slot, and each *label* within a type its own
horizontal offset (a fixed place per known view or expression, like a contact sheet).
No parameters are added for them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from model_core.config import LPMConfig, ReferenceConfig


class ReferenceError(ValueError):
    """A reference set that the model cannot use; the message names the problem."""


@dataclass
class ReferenceImages:
    """RGB uint8 images (H, W, 3). Body keys are views, face keys expression labels."""

    global_image: np.ndarray
    body: dict[str, np.ndarray] = field(default_factory=dict)
    face: dict[str, np.ndarray] = field(default_factory=dict)


def validate_references(
    refs: ReferenceImages, cfg: ReferenceConfig, allow_custom_faces: bool = False
) -> None:
    if refs.global_image is None:
        raise ReferenceError("a global reference image is required")
    images = [("global", refs.global_image)]
    if len(refs.body) > cfg.max_body:
        raise ReferenceError(f"at most {cfg.max_body} body views, got {len(refs.body)}")
    if len(refs.face) > cfg.max_face:
        raise ReferenceError(f"at most {cfg.max_face} face references, got {len(refs.face)}")
    for view, img in refs.body.items():
        if view not in cfg.body_views:
            raise ReferenceError(
                f"unknown body view {view!r}; expected one of {', '.join(cfg.body_views)}"
            )
        images.append((f"body {view}", img))
    for label, img in refs.face.items():
        if label not in cfg.face_labels and not allow_custom_faces:
            raise ReferenceError(
                f"unknown face expression {label!r}; expected one of {', '.join(cfg.face_labels)}"
            )
        if not label or not label.replace("_", "").replace("-", "").isalnum():
            raise ReferenceError(f"invalid face label {label!r}")
        images.append((f"face {label}", img))
    for name, img in images:
        a = np.asarray(img)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ReferenceError(
                f"{name} reference must be an RGB uint8 image, got {a.shape} {a.dtype}"
            )


def face_slot_order(labels: list[str], cfg: ReferenceConfig) -> list[tuple[str, int]]:
    """Known expressions keep their fixed place; custom labels take the free places in order."""
    known = [lb for lb in labels if lb in cfg.face_labels]
    custom = sorted(lb for lb in labels if lb not in cfg.face_labels)
    used = {cfg.face_labels.index(lb) for lb in known}
    free = [i for i in range(cfg.max_face) if i not in used]
    placed = [(lb, cfg.face_labels.index(lb)) for lb in known]
    placed += list(zip(custom, free, strict=False))
    return sorted(placed, key=lambda p: p[1])


@dataclass
class EncodedReferences:
    """VAE latents of a reference set, (1, z, 1, h, w) each; cacheable as bytes."""

    global_latent: torch.Tensor
    body: dict[str, torch.Tensor] = field(default_factory=dict)
    face: dict[str, torch.Tensor] = field(default_factory=dict)
    model_version: str = ""

    def to_bytes(self) -> bytes:
        tensors = {"global": self.global_latent.contiguous()}
        tensors |= {f"body/{k}": v.contiguous() for k, v in self.body.items()}
        tensors |= {f"face/{k}": v.contiguous() for k, v in self.face.items()}
        return st_save(tensors, metadata={"model_version": self.model_version})

    @classmethod
    def from_bytes(cls, blob: bytes) -> EncodedReferences:
        tensors = st_load(blob)
        meta = _safetensors_metadata(blob)
        return cls(
            global_latent=tensors["global"],
            body={k[5:]: v for k, v in tensors.items() if k.startswith("body/")},
            face={k[5:]: v for k, v in tensors.items() if k.startswith("face/")},
            model_version=meta.get("model_version", ""),
        )

    def layout(self, cfg: LPMConfig) -> list[tuple[torch.Tensor, int, int]]:
        """[(latent, temporal slot, w offset)] in a fixed order for the transformer's sink."""
        rc, ps = cfg.refs, cfg.dit.patch_size
        out = [(self.global_latent, rc.rope_slot_global, 0)]
        for view in rc.body_views:
            if view in self.body:
                z = self.body[view]
                out.append(
                    (z, rc.rope_slot_body, rc.body_views.index(view) * (z.shape[-1] // ps[2]))
                )
        for label, idx in face_slot_order(list(self.face), rc):
            z = self.face[label]
            out.append((z, rc.rope_slot_face, idx * (z.shape[-1] // ps[2])))
        return out

    def only_global(self) -> EncodedReferences:
        return EncodedReferences(self.global_latent, {}, {}, self.model_version)


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(io.BytesIO(blob[8 : 8 + n]).read())
    return header.get("__metadata__", {}) or {}
