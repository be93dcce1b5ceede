"""Metrics and traces for a service.

Prometheus metrics are always on (served by the service's HTTP port, see http.py). OpenTelemetry
traces and metrics are exported over OTLP only when an endpoint is configured; with none, no
provider is installed and the instrumentation costs nothing.
"""

from __future__ import annotations

import inspect
import logging
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


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every call and times it, labelled by method and final status code."""

    def __init__(self, metrics: ServiceMetrics):
        self._m = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        return wrap_handler(handler, lambda behavior: self._timed(method, behavior))

    def _timed(self, method: str, behavior: Callable) -> Callable:
        m = self._m

        def record(context, start: float, failed: bool) -> None:
            code = _code_name(context) or ("UNKNOWN" if failed else "OK")
            m.rpc_handled.labels(m.service, method, code).inc()
            m.rpc_seconds.labels(m.service, method).observe(time.perf_counter() - start)

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


def setup_opentelemetry(service: str, otlp_endpoint: str) -> list[grpc.ServerInterceptor]:
    """Install OTLP trace and metric export; returns the server interceptors to add.

    With no endpoint, installs nothing and returns no interceptors.
    """
    if not otlp_endpoint:
        return []
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import server_interceptor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": f"lpm-{service}"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True))
    )
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_endpoint, insecure=True)
    )
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    log.info("OpenTelemetry export on", extra={"fields": {"otlp_endpoint": otlp_endpoint}})
    return [server_interceptor(tracer_provider=tracer_provider)]
