"""What every gRPC service process does around its servicers.

`ServiceRuntime` builds the server with interceptors (OpenTelemetry when configured, Prometheus
metrics, API-key auth), gRPC health and reflection, and the HTTP port; `stop()` drains: health
turns NOT_SERVING, new calls are refused and in-flight calls get `shutdown_grace_s` to finish.
`wait_for_signal()` blocks until SIGTERM or SIGINT so the caller can then stop.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.auth import ApiKeyVerifier, AuthInterceptor
from services.common.db import Database
from services.common.http import ServiceHttpServer
from services.common.settings import ServiceSettings
from services.common.telemetry import MetricsInterceptor, ServiceMetrics, setup_opentelemetry

log = logging.getLogger(__name__)

# Every message may carry one image chunk plus framing; uploads stream in many of these.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        db: Database,
        metrics: ServiceMetrics | None = None,
    ):
        self.name = name
        self.settings = settings
        self.metrics = metrics or ServiceMetrics(name)
        self.health = health.HealthServicer()
        self._stopped = threading.Event()
        self.telemetry = setup_opentelemetry(name, settings.otlp_endpoint)
        interceptors = [
            *self.telemetry.interceptors,
            MetricsInterceptor(self.metrics),
            AuthInterceptor(ApiKeyVerifier(db, settings.auth_cache_s)),
        ]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=name),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port(f"{settings.host}:{settings.port}")
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC port {settings.host}:{settings.port}")
        self.http: ServiceHttpServer | None = None
        self._service_names: list[str] = []

    @property
    def target(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def open_http(self, objects: object | None = None) -> ServiceHttpServer | None:
        """Bind the HTTP port (before start, so the object store can learn its URL)."""
        if self.settings.http_port >= 0 and self.http is None:
            self.http = ServiceHttpServer(
                self.settings.host,
                self.settings.http_port,
                self.metrics,
                objects,
                healthy=lambda: not self._stopped.is_set(),
            )
        return self.http

    @property
    def public_http_url(self) -> str:
        if self.settings.public_http_url:
            return self.settings.public_http_url.rstrip("/")
        return f"http://{self.settings.host}:{self.http.port}" if self.http else ""

    def add_services(self, names: Iterable[str], register: Callable[[grpc.Server], None]) -> None:
        """Register servicers; `names` are their full service names (for health and reflection)."""
        register(self.server)
        self._service_names.extend(names)

    def start(self) -> None:
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.server.start()
        if self.http:
            self.http.start()
        for svc in ("", *self._service_names):
            self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "service started",
            extra={
                "fields": {
                    "service": self.name,
                    "grpc": self.target,
                    "http": self.public_http_url,
                }
            },
        )

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, refuse new calls, let in-flight calls finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.settings.shutdown_grace_s if grace is None else grace
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        # After the drain, so the spans of calls that were still in flight go out too.
        self.telemetry.shutdown()
        if self.http:
            self.http.stop()
        log.info("service stopped", extra={"fields": {"service": self.name}})

    def wait(self) -> None:
        self.server.wait_for_termination()

    def wait_for_signal(self) -> int:
        """Block until SIGTERM or SIGINT (main thread only); returns the signal number."""
        got: list[int] = []
        done = threading.Event()

        def handle(signum, _frame):
            log.info("signal received, draining", extra={"fields": {"signal": signum}})
            got.append(signum)
            done.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        while not done.wait(1.0):  # a timed wait keeps the main thread responsive to signals
            pass
        return got[0]
