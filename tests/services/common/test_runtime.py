"""What every service gets from the runtime: health and reflection without a key,
Prometheus metrics on the HTTP port, API keys stored hashed, settings from env and file."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import select

pytestmark = pytest.mark.services


def test_health_and_reflection_need_no_key(identity):
    channel = grpc.insecure_channel(identity.target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "lpm.v1.IdentityService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    resp = next(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in resp.list_services_response.service}
    assert "lpm.v1.IdentityService" in names and "grpc.health.v1.Health" in names
    channel.close()


def test_prometheus_metrics(identity, client_for):
    c = client_for()
    list(c.list_all())
    with pytest.raises(grpc.RpcError):
        c.get("idn_nope")
    body = urllib.request.urlopen(f"{identity.runtime.public_http_url}/metrics").read().decode()
    assert (
        'lpm_grpc_server_handled_total{code="OK",method="ListIdentities",service="identity"} 1.0'
        in body
    )
    assert 'code="NOT_FOUND",method="GetIdentity"' in body
    assert "lpm_grpc_server_handling_seconds_bucket" in body
    assert urllib.request.urlopen(f"{identity.runtime.public_http_url}/healthz").read() == b"ok\n"


def test_stop_turns_health_not_serving(start_identity):
    app = start_identity()
    channel = grpc.insecure_channel(app.target)
    app.stop(grace=1)
    with pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    channel.close()


def test_api_keys_are_stored_hashed(backend):
    from services.common.auth import ApiKeyVerifier, create_api_key
    from services.common.db import Database
    from services.common.models import ApiKey

    db = Database(backend.database_url)
    new = create_api_key(db, "acme")
    with db.session() as s:
        row = s.execute(select(ApiKey)).scalar_one()
    secret = new.key.split("_", 2)[2]
    assert row.tenant == "acme" and secret not in row.secret_sha256 and secret not in str(vars(row))
    verifier = ApiKeyVerifier(db, cache_s=0)
    assert verifier.tenant_for(new.key) == "acme"
    assert verifier.tenant_for(new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
    with pytest.raises(ValueError):
        create_api_key(db, "Not A Tenant!")
    db.dispose()


def test_settings_env_and_file(tmp_path, monkeypatch):
    from services.identity.settings import IdentitySettings

    cfg = tmp_path / "lpm.toml"
    cfg.write_text('log_level = "DEBUG"\nport = 1\n[identity]\nport = 7000\nmax_image_bytes = 5\n')
    monkeypatch.setenv("LPM_CONFIG", str(cfg))
    monkeypatch.setenv("LPM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LPM_MAX_IMAGE_BYTES", "9")
    s = IdentitySettings()
    assert (s.port, s.max_image_bytes, s.log_level) == (7000, 9, "DEBUG")
    assert s.database_url == f"sqlite:///{tmp_path / 'home' / 'lpm.db'}"
    assert s.object_store_url == (tmp_path / "home" / "objects").as_uri()
