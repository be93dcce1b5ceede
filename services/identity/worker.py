"""Pre-encoding of reference sets in the background, with the model core's VAE.

A set is encoded once per (identity, set checksum, model version); the state lives in SQL, so
a restart picks up every set still ENCODING (`recover`). The encoder is built lazily on first
use: a service that never encodes never loads the model.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from services.identity.images import Slot, decode_rgb
from services.identity.store import IdentityStore

log = logging.getLogger(__name__)


class ReferenceEncoder(Protocol):
    def encode(self, images: dict[Slot, np.ndarray]) -> bytes:
        """Validate and encode one complete set; raise ValueError naming what is wrong."""


class PipelineReferenceEncoder:
    """Encodes through `model_core.pipeline.LPMPipeline` (the contract in contracts.md)."""

    def __init__(self, preset: str, checkpoint: str | None, device: str = "cpu"):
        self.preset, self.checkpoint, self.device = preset, checkpoint, device
        self._pipe = None
        self._lock = threading.Lock()

    def _pipeline(self):
        with self._lock:
            if self._pipe is None:
                from model_core.pipeline import LPMPipeline

                self._pipe = LPMPipeline.build(
                    preset=self.preset,
                    checkpoint=self.checkpoint,
                    device=self.device,
                    seed=0,
                    with_base=False,  # encoding needs the VAE, never the Base model
                )
            return self._pipe

    def encode(self, images: dict[Slot, np.ndarray]) -> bytes:
        from model_core.pipeline import ReferenceImages

        refs = ReferenceImages(
            global_image=images[Slot("global")],
            body={s.label: img for s, img in images.items() if s.kind == "body"},
            face={s.label: img for s, img in images.items() if s.kind == "face"},
        )
        pipe = self._pipeline()
        pipe.validate_references(refs, allow_custom_faces=True)
        with self._lock:  # one model, one encode at a time
            return pipe.encode_references(refs, allow_custom_faces=True).to_bytes()


class EncodingWorker:
    def __init__(self, store: IdentityStore, encoder: ReferenceEncoder, workers: int = 1):
        self.store = store
        self.encoder = encoder
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="encode")
        self._inflight: dict[tuple[str, str], Future] = {}
        self._lock = threading.Lock()

    def submit(self, identity_id: str, checksum: str) -> Future:
        key = (identity_id, checksum)
        with self._lock:
            fut = self._inflight.get(key)
            if fut is None or fut.done():
                fut = self._pool.submit(self._run, identity_id, checksum)
                self._inflight[key] = fut
                fut.add_done_callback(lambda _f, k=key: self._forget(k))
            return fut

    def _forget(self, key) -> None:
        with self._lock:
            if key in self._inflight and self._inflight[key].done():
                del self._inflight[key]

    def recover(self) -> int:
        """Queue every set left ENCODING (by a crash or a restart); returns how many."""
        pending = self.store.pending_encodings()
        for identity_id, checksum in pending:
            self.submit(identity_id, checksum)
        return len(pending)

    def _run(self, identity_id: str, checksum: str) -> str:
        fields = {"identity_id": identity_id, "set_checksum": checksum[:12]}
        try:
            images = self.store.set_for_encoding(identity_id, checksum)
            if images is None:  # deleted or changed since: nothing to do
                return "skipped"
            blob = self.encoder.encode({slot: decode_rgb(data) for slot, data in images})
            if not self.store.finish_encoding(identity_id, checksum, blob):
                return "skipped"
            log.info("references encoded", extra={"fields": {**fields, "bytes": len(blob)}})
            return "ready"
        except Exception as e:
            log.warning("encoding failed", extra={"fields": {**fields, "error": str(e)}})
            self.store.fail_encoding(identity_id, checksum, f"{type(e).__name__}: {e}")
            return "failed"

    def stop(self, wait: bool = True) -> None:
        """Finish the running job; queued ones stay ENCODING in SQL for the next start."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
