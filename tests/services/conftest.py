"""Fixtures for the services tests: a running identity service on either backend.

`backend` runs each test that uses it twice: PostgreSQL + S3 (SeaweedFS), and SQLite + a local
folder (the embedded default).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.common import migrate
from services.common.auth import create_api_key
from services.common.db import Database
from services.identity.images import Slot
from services.identity.settings import IdentitySettings


@dataclass
class Backend:
    name: str
    database_url: str
    object_store: dict  # IdentitySettings fields for the object store
    home: Path

    def settings(self, **overrides) -> IdentitySettings:
        base = dict(
            home=self.home,
            database_url=self.database_url,
            host="127.0.0.1",
            port=0,
            http_port=0,
            janitor_interval_s=0,
            auth_cache_s=0,
            shutdown_grace_s=5,
            log_format="text",
            **self.object_store,
        )
        return IdentitySettings(**{**base, **overrides})

    def new_key(self, tenant: str) -> str:
        db = Database(self.database_url)
        try:
            return create_api_key(db, tenant).key
        finally:
            db.dispose()


@pytest.fixture(params=["postgres+s3", "sqlite+local"])
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "postgres+s3":
        url = request.getfixturevalue("postgres_url")
        s3 = request.getfixturevalue("s3_server")
        store = dict(
            object_store_url=f"s3://{s3.make_bucket('identity')}",
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
        )
    else:
        url = request.getfixturevalue("sqlite_url")
        store = dict(object_store_url=(tmp_path / "objects").as_uri())
    migrate.upgrade(url)
    yield Backend(request.param, url, store, tmp_path)


class FakeEncoder:
    """Stands in for the VAE: fast, deterministic, and can be held back or made to fail."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[list[str]] = []
        self.fail: str | None = None

    def encode(self, images: dict[Slot, np.ndarray]) -> bytes:
        assert self.gate.wait(30), "encoder gate never opened"
        names = sorted(str(s) for s in images)
        self.calls.append(names)
        if self.fail:
            raise ValueError(self.fail)
        shapes = {str(s): list(a.shape) for s, a in images.items()}
        return json.dumps({"slots": names, "shapes": shapes}).encode()


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def start_identity(backend, fake_encoder) -> Iterator[Callable]:
    """start_identity(**settings) -> a started IdentityApp; all are stopped at teardown."""
    from services.identity.app import IdentityApp

    apps = []

    def start(encoder=None, **overrides):
        app = IdentityApp(backend.settings(**overrides), encoder=encoder or fake_encoder)
        apps.append(app.start())
        return app

    yield start
    for app in apps:
        app.stop(grace=1)


@pytest.fixture
def identity(start_identity):
    return start_identity()


@pytest.fixture
def client_for(identity, backend) -> Iterator[Callable]:
    """client_for(tenant) -> an IdentityClient with a fresh key of that tenant."""
    from services.identity.client import IdentityClient

    clients = []

    def make(tenant: str = "acme", target: str | None = None):
        c = IdentityClient(target or identity.target, backend.new_key(tenant))
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def image_bytes(h: int = 160, w: int = 128, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A random RGB image in the given format."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def full_set(seed: int = 0, body: int = 2, face: int = 2) -> list[tuple[str, str, bytes]]:
    views = ["front", "left", "right", "back"][:body]
    faces = ["smile", "frown", "laugh", "sad", "neutral", "surprise", "anger", "thinking"][:face]
    out = [("global", "", image_bytes(seed=seed * 100))]
    out += [("body", v, image_bytes(seed=seed * 100 + 1 + i)) for i, v in enumerate(views)]
    out += [
        ("face", f, image_bytes(64, 64, "JPEG", seed=seed * 100 + 10 + i))
        for i, f in enumerate(faces)
    ]
    return out


def wait_encoded(client, identity_id: str, timeout: float = 20.0):
    """The identity once its encoding has left ENCODING."""
    from services.api import identity_pb2

    deadline = time.monotonic() + timeout
    while True:
        ident = client.get(identity_id)
        if ident.encoding.state != identity_pb2.ENCODING_STATE_ENCODING:
            return ident
        if time.monotonic() > deadline:
            raise TimeoutError(f"{identity_id} still encoding after {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def helpers():
    """The image and polling helpers above, for test modules (conftest is not importable)."""
    from types import SimpleNamespace

    return SimpleNamespace(image_bytes=image_bytes, full_set=full_set, wait_encoded=wait_encoded)
