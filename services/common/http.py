"""The service's HTTP port: Prometheus `/metrics`, `/healthz`, and signed object downloads.

Signed downloads (`/objects/<key>?expires=..&signature=..`) serve the local-folder object
store's presigned URLs; an S3 store hands out S3's own URLs and this route answers 404.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.objectstore import LocalObjectStore, ObjectNotFound
from services.common.telemetry import ServiceMetrics

log = logging.getLogger(__name__)


class ServiceHttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: ServiceMetrics,
        objects: object | None = None,
        healthy: Callable[[], bool] = lambda: True,
    ):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                if url.path == "/metrics":
                    outer._reply(self, 200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif url.path == "/healthz":
                    ok = healthy()
                    outer._reply(self, 200 if ok else 503, b"ok\n" if ok else b"draining\n")
                elif url.path.startswith("/objects/") and isinstance(objects, LocalObjectStore):
                    outer._serve_object(self, objects, url)
                else:
                    outer._reply(self, 404, b"not found\n")

            def log_message(self, fmt, *args):  # route access logs to our logger
                log.debug("http " + fmt % args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str = "text/plain"):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _serve_object(self, h, store: LocalObjectStore, url) -> None:
        key = unquote(url.path[len("/objects/") :])
        q = parse_qs(url.query)
        try:
            expires = int(q.get("expires", ["0"])[0])
            signature = q.get("signature", [""])[0]
        except ValueError:
            expires, signature = 0, ""
        if not store.verify_signature(key, expires, signature):
            self._reply(h, 403, b"link expired or invalid\n")
            return
        try:
            body = store.get(key)
        except (ObjectNotFound, ValueError):
            self._reply(h, 404, b"not found\n")
            return
        self._reply(h, 200, body, "application/octet-stream")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
