"""Metrics and traces for a service.

Prometheus metrics are always on (served by the service's HTTP port, see http.py). OpenTelemetry
traces (a span per call) and metrics (`rpc.server.duration` per call) are exported over OTLP only
when an endpoint is configured; with none, no provider is installed and the instrumentation costs
nothing. The providers belong to the service, not to the process: each `ServiceRuntime` gets its
own and shuts them down (flushing what is buffered) when it stops, so several services or
restarts in one process (tests, the embedded default) never share or lose each other's data.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import threading
import time
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)


class ServiceMetrics:
    """The Prometheus metrics of one service, in their own registry (tests run several)."""

    def __init__(self, service: str):
        self.registry = CollectorRegistry()
        self.rpc_handled = Counter(
            "lpm_grpc_server_handled",
            "gRPC calls completed, by method and status code",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "lpm_grpc_server_handling_seconds",
            "gRPC call latency",
            ["service", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.service = service

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = (), **kw) -> Histogram:
        return Histogram(name, doc, list(labels), registry=self.registry, **kw)


# Called once per finished call: (full method "/pkg.Service/Method", status code name, seconds).
RpcRecorder = Callable[[str, str, float], None]


class RpcTimingInterceptor(grpc.ServerInterceptor):
    """Times every call and hands its method, final status code and duration to `record`."""

    def __init__(self, record: RpcRecorder):
        self._record = record

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return wrap_handler(handler, lambda behavior: self._timed(method, behavior))

    def _timed(self, method: str, behavior: Callable) -> Callable:
        report = self._record

        def record(context, start: float, failed: bool) -> None:
            code = _code_name(context) or ("UNKNOWN" if failed else "OK")
            report(method, code, time.perf_counter() - start)

        def streamed(gen, context, start):
            # A server-streaming call ends when its generator does, not when it is returned.
            failed = False
            try:
                yield from gen
            except BaseException:
                failed = True
                raise
            finally:
                record(context, start, failed)

        def timed(request_or_iterator, context):
            start = time.perf_counter()
            try:
                result = behavior(request_or_iterator, context)
            except BaseException:
                record(context, start, True)
                raise
            if inspect.isgenerator(result):
                return streamed(result, context, start)
            record(context, start, False)
            return result

        return timed


class MetricsInterceptor(RpcTimingInterceptor):
    """Counts every call and times it in Prometheus, labelled by method and final status code."""

    def __init__(self, metrics: ServiceMetrics):
        super().__init__(self._observe)
        self._m = metrics

    def _observe(self, method: str, code: str, seconds: float) -> None:
        m, name = self._m, method.rsplit("/", 1)[-1]
        m.rpc_handled.labels(m.service, name, code).inc()
        m.rpc_seconds.labels(m.service, name).observe(seconds)


def _code_name(context) -> str:
    code = context.code() if hasattr(context, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else ""


def wrap_handler(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable], Callable]):
    """A copy of `handler` whose behavior is `wrap(behavior)` (whichever of the four kinds)."""
    for kind, factory in (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ):
        behavior = getattr(handler, kind)
        if behavior is not None:
            return factory(
                wrap(behavior),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class OpenTelemetry:
    """What `setup_opentelemetry` installed for one service: its server interceptors, and
    `shutdown()`, which exports what is still buffered and stops the exporters."""

    def __init__(self, interceptors: list[grpc.ServerInterceptor], providers: tuple = ()):
        self.interceptors = interceptors
        self._providers = providers  # TracerProvider, MeterProvider
        self._lock = threading.Lock()
        if providers:
            # Our own exit hook instead of the SDK's: theirs would shut down a second time
            # (with a warning) after stop() did, and would keep every provider alive.
            atexit.register(self.shutdown)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush spans and a final metrics read to the collector, then stop (idempotent).

        Bounded: a collector that does not answer costs at most about `timeout_s` per signal.
        """
        with self._lock:
            providers, self._providers = self._providers, ()
        if not providers:
            return
        atexit.unregister(self.shutdown)
        tracer_provider, meter_provider = providers
        timeout_ms = int(timeout_s * 1000)
        try:
            tracer_provider.force_flush(timeout_ms)
            tracer_provider.shutdown()
            meter_provider.shutdown(timeout_millis=timeout_ms)
        except Exception:  # telemetry must never turn a clean stop into a crash
            log.exception("OpenTelemetry shutdown failed")


def _grpc_status_number(code_name: str) -> int:
    code = grpc.StatusCode.__members__.get(code_name, grpc.StatusCode.UNKNOWN)
    return code.value[0]


def setup_opentelemetry(service: str, otlp_endpoint: str) -> OpenTelemetry:
    """Set up OTLP trace and metric export for `service`; add the returned interceptors to its
    server and call `shutdown()` when it stops.

    With no endpoint, installs nothing (no interceptors, shutdown does nothing). The providers
    are deliberately not made the process-global ones: the global can be set only once per
    process, so a second service (or a restart) would silently keep exporting through the first
    one's, by then shut down.
    """
    if not otlp_endpoint:
        return OpenTelemetry([])
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import server_interceptor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": f"lpm-{service}"})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_endpoint, insecure=True)
    )
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[reader], shutdown_on_exit=False
    )
    # The gRPC instrumentation only traces; call counts and latency come from this histogram
    # (OpenTelemetry RPC semantic conventions; its count per attribute set is the call count).
    duration = meter_provider.get_meter("lpm.services").create_histogram(
        "rpc.server.duration", unit="ms", description="gRPC call latency, by method and status"
    )

    def record(method: str, code: str, seconds: float) -> None:
        rpc_service, _, rpc_method = method.lstrip("/").partition("/")
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": rpc_service,
            "rpc.method": rpc_method,
            "rpc.grpc.status_code": _grpc_status_number(code),
        }
        duration.record(seconds * 1000.0, attributes)

    log.info("OpenTelemetry export on", extra={"fields": {"otlp_endpoint": otlp_endpoint}})
    interceptors = [
        server_interceptor(tracer_provider=tracer_provider),
        RpcTimingInterceptor(record),
    ]
    return OpenTelemetry(interceptors, (tracer_provider, meter_provider))
