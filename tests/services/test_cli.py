"""`lpm` as a new user runs it: db upgrade, admin create-key, serve identity (a real
subprocess, stopped with SIGTERM and started again), identity create/ls/show/rm, and errors
as one line with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli import build_parser, main

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_serving(target: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    channel = grpc.insecure_channel(target)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                r = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
        raise TimeoutError("server did not start")
    finally:
        channel.close()


def test_model_registrars_are_mounted():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"serve", "admin", "db", "identity"} <= commands
    assert "perform" in commands  # mounted from model_core.cli


def test_usage_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LPM_HOME", str(tmp_path))
    monkeypatch.delenv("LPM_API_KEY", raising=False)
    assert main(["identity", "ls"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lpm identity ls: error: set LPM_API_KEY") and "\n" not in err
    assert main(["db", "upgrade"]) == 0
    assert main(["admin", "create-key", "--tenant", "Bad Tenant"]) == 2
    assert capsys.readouterr().err.startswith("lpm admin create-key: error: bad tenant")
    monkeypatch.setenv("LPM_API_KEY", "k")
    assert main(["identity", "create", "--name", "x", "--global", str(tmp_path / "nope.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_new_user_session(tmp_path, helpers, capsys):
    """db upgrade -> create-key -> serve -> create/ls/show -> SIGTERM -> serve again -> rm."""
    env = {**os.environ, "LPM_HOME": str(tmp_path / "home"), "LPM_LOG_FORMAT": "json"}
    env.pop("LPM_CONFIG", None)
    lpm = [sys.executable, "-m", "services.cli"]

    def run(*args, check=True):
        r = subprocess.run(
            [*lpm, *args], env=env, capture_output=True, text=True, cwd=REPO, timeout=120
        )
        if check:
            assert r.returncode == 0, r.stderr
        return r

    assert "database at revision 0001" in run("db", "upgrade").stdout
    key = run("admin", "create-key", "--tenant", "acme").stdout.strip()
    assert key.startswith("lpm_")
    env["LPM_API_KEY"] = key
    port = _free_port()
    target = f"127.0.0.1:{port}"
    env.update(LPM_PORT=str(port), LPM_HTTP_PORT=str(_free_port()), LPM_IDENTITY_TARGET=target)

    img = tmp_path / "global.png"
    img.write_bytes(helpers.image_bytes())
    face = tmp_path / "smile.jpg"
    face.write_bytes(helpers.image_bytes(64, 64, "JPEG"))

    def serve():
        proc = subprocess.Popen(
            [*lpm, "serve", "identity"], env=env, cwd=REPO, stderr=subprocess.PIPE
        )
        _wait_serving(target, proc)
        return proc

    proc = serve()
    try:
        identity_id = run(
            "identity", "create", "--name", "Lumi", "--global", str(img), "--face", f"smile={face}"
        ).stdout.strip()
        assert identity_id.startswith("idn_")
        assert identity_id in run("identity", "ls").stdout
        shown = json.loads(run("identity", "show", identity_id).stdout)
        assert shown["name"] == "Lumi" and len(shown["references"]) == 2
        bad = run(
            "identity",
            "create",
            "--name",
            "x",
            "--global",
            str(tmp_path / "global.png"),
            "--body",
            f"top={img}",
            check=False,
        )
        assert bad.returncode == 2 and bad.stderr.startswith("INVALID_ARGUMENT: unknown body view")
        missing = run("identity", "show", "idn_nope", check=False)
        assert (missing.returncode, missing.stderr) == (
            2,
            "NOT_FOUND: identity 'idn_nope' not found\n",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(rec["msg"] == "service stopped" for rec in logs)

    proc = serve()  # restarted: nothing lost
    try:
        assert identity_id in run("identity", "ls").stdout
        run("identity", "rm", identity_id)
        assert run("identity", "ls").stdout == ""
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_admin_janitor_sweeps_once(tmp_path, capsys, monkeypatch):
    """`lpm admin janitor`: one sweep of the configured store, honouring the grace period."""
    from services.common.objectstore import LocalObjectStore

    monkeypatch.setenv("LPM_HOME", str(tmp_path))
    for name in ("LPM_CONFIG", "LPM_DATABASE_URL", "LPM_OBJECT_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["admin", "janitor"]) == 2  # no schema yet: says what to run, sweeps nothing
    assert "run `lpm db upgrade`" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    orphan = "tenants/acme/idn_gone/global.png"
    LocalObjectStore(tmp_path / "objects").put(orphan, b"no row points here")
    capsys.readouterr()

    assert main(["admin", "janitor"]) == 0  # default grace (an hour): too young to touch
    out = capsys.readouterr()
    assert out.out == "" and "removed 0 orphaned objects" in out.err
    assert main(["admin", "janitor", "--grace-s", "-1"]) == 2
    assert capsys.readouterr().err.startswith("lpm admin janitor: error: --grace-s")
    assert main(["admin", "janitor", "--grace-s", "0"]) == 0
    out = capsys.readouterr()
    assert out.out.split() == [orphan] and "removed 1 orphaned objects" in out.err
    assert not (tmp_path / "objects" / orphan).exists()
