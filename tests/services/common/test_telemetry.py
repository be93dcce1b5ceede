"""OpenTelemetry export: with an OTLP endpoint configured, a service's RPCs reach the collector.

An in-process OTLP/gRPC receiver (the collector's TraceService and MetricsService, from the
stubs in `opentelemetry-proto`) listens on 127.0.0.1; a real identity service (SQLite + local
folder) is pointed at it, serves a few calls and stops. Stopping must flush: the batch span
processor and the periodic metric reader would otherwise hold the data for seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from services.common.telemetry import setup_opentelemetry

LIST = "/lpm.v1.IdentityService/ListIdentities"
GET = "/lpm.v1.IdentityService/GetIdentity"


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attrs(key_values) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


@dataclass
class ExportedSpan:
    service: str  # the resource's service.name
    name: str
    attributes: dict


@dataclass
class ExportedPoint:
    service: str
    metric: str
    attributes: dict
    count: int


@dataclass
class OtlpReceiver:
    endpoint: str
    spans: list[ExportedSpan] = field(default_factory=list)
    points: list[ExportedPoint] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, done: Callable[[OtlpReceiver], bool], timeout: float = 2.0) -> None:
        """Poll until `done`. The default is shorter than the exporters' own schedules (5 s
        batches of spans, 60 s metric reads), so only a flush when the service stops passes."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if done(self):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"collector did not get the expected data within {timeout}s: "
                    f"spans={[(s.service, s.name) for s in self.spans]} "
                    f"metrics={sorted({p.metric for p in self.points})}"
                )
            time.sleep(0.05)


class _TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver):
        self._r = receiver

    def Export(self, request, context):  # noqa: N802
        with self._r.lock:
            for rs in request.resource_spans:
                service = _attrs(rs.resource.attributes).get("service.name", "")
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self._r.spans.append(
                            ExportedSpan(service, span.name, _attrs(span.attributes))
                        )
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver):
        self._r = receiver

    def Export(self, request, context):  # noqa: N802
        with self._r.lock:
            for rm in request.resource_metrics:
                service = _attrs(rm.resource.attributes).get("service.name", "")
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        for dp in data.data_points:
                            count = dp.count if hasattr(dp, "count") else 1
                            self._r.points.append(
                                ExportedPoint(service, metric.name, _attrs(dp.attributes), count)
                            )
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp"))
    port = server.add_insecure_port("127.0.0.1:0")
    receiver = OtlpReceiver(endpoint=f"127.0.0.1:{port}")
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceSink(receiver), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsSink(receiver), server)
    server.start()
    yield receiver
    server.stop(0)


def test_without_endpoint_nothing_is_installed():
    telemetry = setup_opentelemetry("identity", "")
    assert telemetry.interceptors == []
    telemetry.shutdown()  # a no-op, safe to call


def _serve_calls(start_identity, backend, receiver: OtlpReceiver):
    """Start identity exporting to `receiver`, make an OK, a NOT_FOUND and an
    UNAUTHENTICATED call, and stop it (which must flush)."""
    from services.identity.client import IdentityClient

    app = start_identity(otlp_endpoint=receiver.endpoint)
    with IdentityClient(app.target, backend.new_key("acme")) as good:
        assert list(good.list_all()) == []
        with pytest.raises(grpc.RpcError) as err:
            good.get("idn_nope")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with IdentityClient(app.target, "lpm_0123456789abcdef_" + "x" * 43) as bad:
        with pytest.raises(grpc.RpcError) as err:
            list(bad.list_all())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    app.stop(grace=1)
    return app


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_configured_endpoint_exports_spans_and_rpc_metrics(start_identity, backend, otlp_receiver):
    _serve_calls(start_identity, backend, otlp_receiver)

    def spans_arrived(r: OtlpReceiver) -> bool:
        return sum(s.name == LIST for s in r.spans) >= 2 and any(s.name == GET for s in r.spans)

    otlp_receiver.wait_for(spans_arrived)
    by_code = {
        (s.name, s.attributes.get("rpc.grpc.status_code")): s
        for s in otlp_receiver.spans
        if s.name in (LIST, GET)
    }
    assert set(by_code) == {(LIST, 0), (GET, 5), (LIST, 16)}  # OK, NOT_FOUND, UNAUTHENTICATED
    assert all(s.service == "lpm-identity" for s in by_code.values())
    assert by_code[(LIST, 0)].attributes["rpc.method"] == "ListIdentities"

    def latency_arrived(r: OtlpReceiver) -> bool:
        return any(p.metric == "rpc.server.duration" for p in r.points)

    otlp_receiver.wait_for(latency_arrived)
    calls = {
        (p.attributes["rpc.method"], p.attributes["rpc.grpc.status_code"]): p
        for p in otlp_receiver.points
        if p.metric == "rpc.server.duration"
    }
    assert set(calls) == {("ListIdentities", 0), ("GetIdentity", 5), ("ListIdentities", 16)}
    point = calls[("ListIdentities", 0)]
    assert point.count == 1 and point.service == "lpm-identity"
    assert point.attributes["rpc.service"] == "lpm.v1.IdentityService"
    assert point.attributes["rpc.system"] == "grpc"


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_each_service_exports_after_another_has_shut_down(start_identity, backend, otlp_receiver):
    """Providers are per service, not process globals: a second service in the same process
    (as in tests, or a restart) still exports after the first one's providers shut down."""
    _serve_calls(start_identity, backend, otlp_receiver)
    otlp_receiver.wait_for(lambda r: any(s.name == LIST for s in r.spans))
    with otlp_receiver.lock:
        otlp_receiver.spans.clear()
        otlp_receiver.points.clear()
    _serve_calls(start_identity, backend, otlp_receiver)
    otlp_receiver.wait_for(
        lambda r: (
            sum(s.name == LIST for s in r.spans) >= 2
            and any(p.metric == "rpc.server.duration" for p in r.points)
        )
    )
