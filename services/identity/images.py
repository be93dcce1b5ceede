"""What makes a valid reference image and a valid reference set (LPM 1.0's identity).

Every check here runs before anything is stored; a failure raises `BadReference` with a message
the client sees under INVALID_ARGUMENT. The pixel-count guard reads only the image header, so a
decompression bomb is refused before a single pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model_core.config import LPMConfig

KINDS = ("global", "body", "face")
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_CUSTOM_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class BadReference(ValueError):
    """A reference image or set the service refuses (INVALID_ARGUMENT)."""


@dataclass(frozen=True, order=True)
class Slot:
    kind: str  # global | body | face
    label: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "global" else f"{self.kind}:{self.label}"


@dataclass(frozen=True)
class ReferenceLimits:
    """The model's needs (from its preset) plus the service's byte and pixel limits."""

    body_views: tuple[str, ...]
    face_labels: tuple[str, ...]
    max_body: int
    max_face: int
    min_side: int  # global image and body views
    min_face_side: int
    max_bytes: int
    max_pixels: int

    @classmethod
    def for_preset(cls, preset: str, max_bytes: int, max_pixels: int) -> ReferenceLimits:
        cfg = LPMConfig.preset(preset)
        return cls(
            body_views=tuple(cfg.refs.body_views),
            face_labels=tuple(cfg.refs.face_labels),
            max_body=cfg.refs.max_body,
            max_face=cfg.refs.max_face,
            min_side=min(cfg.video.height, cfg.video.width),
            min_face_side=cfg.refs.face_size,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
        )


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def check_slot(kind: str, label: str, limits: ReferenceLimits) -> Slot:
    if kind == "global":
        if label:
            raise BadReference("the global image takes no label")
        return Slot("global")
    if kind == "body":
        if label not in limits.body_views:
            raise BadReference(
                f"unknown body view {label!r}; use one of {', '.join(limits.body_views)}"
            )
        return Slot("body", label)
    if kind == "face":
        if label not in limits.face_labels and not _CUSTOM_LABEL.match(label):
            raise BadReference(
                f"bad expression label {label!r}: use {', '.join(limits.face_labels)}, or a "
                "custom label of 1-32 characters a-z, 0-9, '_', '-' starting with a letter"
            )
        return Slot("face", label)
    raise BadReference("reference kind must be global, body or face")


def inspect_image(data: bytes, slot: Slot, limits: ReferenceLimits) -> ImageInfo:
    """Check one image's bytes fully (format, pixel count, size, decodability)."""
    if len(data) > limits.max_bytes:
        raise BadReference(f"{slot}: image is {len(data)} bytes, over the {limits.max_bytes} limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadReference(f"{slot}: image has too many pixels (decompression bomb)") from None
    except Exception:
        raise BadReference(f"{slot}: not an image (PNG, JPEG or WebP expected)") from None
    with img:
        if img.format not in FORMATS:
            raise BadReference(f"{slot}: unsupported format {img.format}; use PNG, JPEG or WebP")
        w, h = img.size
        # The header's size, checked before decoding: a tiny file can claim gigapixels.
        if w * h > limits.max_pixels:
            raise BadReference(
                f"{slot}: {w}x{h} is {w * h} pixels, over the {limits.max_pixels} limit"
            )
        need = limits.min_face_side if slot.kind == "face" else limits.min_side
        if min(w, h) < need:
            raise BadReference(f"{slot}: {w}x{h} is smaller than the model needs ({need} px side)")
        try:
            img.load()
        except Exception:
            raise BadReference(f"{slot}: image data is corrupt or truncated") from None
        return ImageInfo(FORMATS[img.format], w, h)


def check_set(slots: Iterable[Slot], limits: ReferenceLimits) -> None:
    """A complete set: exactly one global image, at most 4 body views and 8 faces, no repeats."""
    slots = list(slots)
    seen: set[Slot] = set()
    for s in slots:
        if s in seen:
            raise BadReference(f"{s}: sent twice")
        seen.add(s)
    if Slot("global") not in seen:
        raise BadReference("the global appearance image is required")
    body = sum(s.kind == "body" for s in slots)
    face = sum(s.kind == "face" for s in slots)
    if body > limits.max_body:
        raise BadReference(f"{body} body views; at most {limits.max_body}")
    if face > limits.max_face:
        raise BadReference(f"{face} facial expressions; at most {limits.max_face}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_checksum(items: Iterable[tuple[Slot, str]]) -> str:
    """SHA-256 over the sorted (slot, image sha256) pairs: the identity of the set's content."""
    h = hashlib.sha256()
    for slot, digest in sorted(items):
        h.update(f"{slot.kind}\0{slot.label}\0{digest}\n".encode())
    return h.hexdigest()


def decode_rgb(data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB, the model core's image convention."""
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)
