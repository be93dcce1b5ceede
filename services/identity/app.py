"""The identity service process: wires settings, database, object store, encoder and server.

`IdentityApp(settings).start()` runs it in-process (tests, the embedded default);
`serve(settings)` is what `lpm serve identity` runs, until SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from services.common.db import Database
from services.common.logging import configure_logging
from services.common.migrate import current as current_revision
from services.common.migrate import head_revision
from services.common.objectstore import LocalObjectStore, open_object_store
from services.common.runtime import ServiceRuntime
from services.identity.images import ReferenceLimits
from services.identity.server import SERVICE_NAME, IdentityServicer, register
from services.identity.settings import IdentitySettings
from services.identity.store import IdentityStore
from services.identity.worker import EncodingWorker, PipelineReferenceEncoder, ReferenceEncoder

log = logging.getLogger(__name__)


class IdentityApp:
    def __init__(self, settings: IdentitySettings, encoder: ReferenceEncoder | None = None):
        self.settings = settings
        revision, head = current_revision(settings.database_url), head_revision()
        if revision != head:
            raise RuntimeError(
                f"database is at revision {revision or 'none'}, the service needs {head}: "
                "run `lpm db upgrade`"
            )
        self.db = Database(settings.database_url)
        self.runtime = ServiceRuntime("identity", settings, self.db)
        self.objects = open_object_store(
            settings.object_store_url,
            s3_endpoint=settings.s3_endpoint,
            s3_access_key=settings.s3_access_key,
            s3_secret_key=settings.s3_secret_key,
            s3_region=settings.s3_region,
            s3_secure=settings.s3_secure,
        )
        self.runtime.open_http(self.objects)
        if isinstance(self.objects, LocalObjectStore):
            # Local links are served by this service's own HTTP port.
            self.objects.public_url = self.runtime.public_http_url
        limits = ReferenceLimits.for_preset(
            settings.model_preset, settings.max_image_bytes, settings.max_image_pixels
        )
        self.store = IdentityStore(self.db, self.objects, limits, settings.effective_model_version)
        self.encoder = encoder or PipelineReferenceEncoder(
            settings.model_preset, settings.model_checkpoint or None, settings.encode_device
        )
        self.worker = EncodingWorker(self.store, self.encoder, settings.encode_workers)
        servicer = IdentityServicer(self.store, self.worker)
        self.runtime.add_services([SERVICE_NAME], register(servicer))
        self._janitor_stop = threading.Event()
        self._janitor: threading.Thread | None = None

    @property
    def target(self) -> str:
        return self.runtime.target

    def start(self) -> IdentityApp:
        self.runtime.start()
        recovered = self.worker.recover()
        if recovered:
            log.info("resumed encodings", extra={"fields": {"count": recovered}})
        if self.settings.janitor_interval_s > 0:
            self._janitor = threading.Thread(target=self._janitor_loop, daemon=True)
            self._janitor.start()
        return self

    def _janitor_loop(self) -> None:
        grace = dt.timedelta(seconds=self.settings.janitor_grace_s)
        while not self._janitor_stop.wait(self.settings.janitor_interval_s):
            try:
                self.store.sweep_orphans(grace)
            except Exception:
                log.exception("janitor sweep failed")

    def stop(self, grace: float | None = None) -> None:
        """Drain gRPC calls, then let the running encode finish; queued ones resume next start."""
        self._janitor_stop.set()
        self.runtime.stop(grace)
        self.worker.stop(wait=True)
        self.db.dispose()


def serve(settings: IdentitySettings | None = None) -> None:
    settings = settings or IdentitySettings()
    configure_logging(settings.log_level, settings.log_format)
    app = IdentityApp(settings).start()
    app.runtime.wait_for_signal()
    app.stop()
