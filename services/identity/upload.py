"""Reads a client-streaming image upload: a header part, then ImageStart + chunks per image.

Everything is checked as it arrives (declared sizes against the limit, slot counts, bytes beyond
the announced size) and in full at the end (each image decoded, checksums compared). A stream
that ends before an announced image is complete is refused: nothing half-sent is ever stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.api import identity_pb2 as pb
from services.identity.images import (
    BadReference,
    ReferenceLimits,
    Slot,
    check_slot,
    inspect_image,
    sha256_hex,
)
from services.identity.store import UploadedImage

KIND_NAMES = {
    pb.REFERENCE_KIND_GLOBAL: "global",
    pb.REFERENCE_KIND_BODY: "body",
    pb.REFERENCE_KIND_FACE: "face",
}
KIND_VALUES = {v: k for k, v in KIND_NAMES.items()}


def slot_from_proto(slot: pb.ReferenceSlot, limits: ReferenceLimits) -> Slot:
    kind = KIND_NAMES.get(slot.kind)
    if kind is None:
        raise BadReference("reference kind must be GLOBAL, BODY or FACE")
    return check_slot(kind, slot.label, limits)


def slot_to_proto(slot: Slot) -> pb.ReferenceSlot:
    return pb.ReferenceSlot(kind=KIND_VALUES[slot.kind], label=slot.label)


class _PendingImage:
    def __init__(self, start: pb.ImageStart, limits: ReferenceLimits):
        self.slot = slot_from_proto(start.slot, limits)
        if start.size_bytes <= 0:
            raise BadReference(f"{self.slot}: size_bytes must be positive")
        if start.size_bytes > limits.max_bytes:
            raise BadReference(
                f"{self.slot}: image is {start.size_bytes} bytes, over the {limits.max_bytes} limit"
            )
        self.size = start.size_bytes
        self.sha256 = start.sha256.lower()
        self.parts: list[bytes] = []
        self.received = 0

    def add(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise BadReference(f"{self.slot}: more bytes than the announced {self.size}")
        self.parts.append(chunk)

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def finish(self, limits: ReferenceLimits) -> UploadedImage:
        data = b"".join(self.parts)
        digest = sha256_hex(data)
        if self.sha256 and self.sha256 != digest:
            raise BadReference(f"{self.slot}: sha256 mismatch (sent {self.sha256}, got {digest})")
        info = inspect_image(data, self.slot, limits)
        return UploadedImage(self.slot, data, digest, info)


def read_upload(
    requests: Iterable[Any], header_field: str, limits: ReferenceLimits, max_images: int
) -> tuple[Any, list[UploadedImage]]:
    """(header, images) of a CreateIdentity / PutReference stream; raises BadReference."""
    header = None
    done: list[_PendingImage] = []
    current: _PendingImage | None = None
    slots: set[Slot] = set()
    for msg in requests:
        part = msg.WhichOneof("part")
        if part == header_field:
            if header is not None or done or current:
                raise BadReference(f"`{header_field}` must be the first message, sent once")
            header = getattr(msg, header_field)
        elif header is None:
            raise BadReference(f"the first message must carry `{header_field}`")
        elif part == "image":
            if current is not None and not current.complete:
                raise BadReference(
                    f"{current.slot}: next image started after {current.received} of "
                    f"{current.size} bytes"
                )
            current = _PendingImage(msg.image, limits)
            done.append(current)
            if len(done) > max_images:
                raise BadReference(f"at most {max_images} image(s) per request")
            _check_counts([p.slot for p in done], limits)
            if current.slot in slots:
                raise BadReference(f"{current.slot}: sent twice")
            slots.add(current.slot)
        elif part == "chunk":
            if current is None:
                raise BadReference("image bytes sent before any `image` start")
            current.add(msg.chunk)
        else:
            raise BadReference("empty message in upload stream")
    if header is None:
        raise BadReference(f"empty upload: the first message must carry `{header_field}`")
    if current is not None and not current.complete:
        raise BadReference(
            f"upload cut off: {current.slot} got {current.received} of {current.size} bytes"
        )
    return header, [p.finish(limits) for p in done]


def _check_counts(slots: list[Slot], limits: ReferenceLimits) -> None:
    body = sum(s.kind == "body" for s in slots)
    face = sum(s.kind == "face" for s in slots)
    if body > limits.max_body:
        raise BadReference(f"{body} body views; at most {limits.max_body}")
    if face > limits.max_face:
        raise BadReference(f"{face} facial expressions; at most {limits.max_face}")
