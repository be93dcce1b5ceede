"""Both object store backends behave the same: put/get/list/delete, atomic replace, presigned
URLs that work and then expire, and keys that cannot escape the store."""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.request

import pytest

from services.common.objectstore import LocalObjectStore, ObjectNotFound, S3ObjectStore

pytestmark = pytest.mark.services


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path):
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        yield S3ObjectStore(s3.endpoint, s3.make_bucket("store"), s3.access_key, s3.secret_key)
    else:
        from services.common.http import ServiceHttpServer
        from services.common.telemetry import ServiceMetrics

        local = LocalObjectStore(tmp_path / "objects")
        http = ServiceHttpServer("127.0.0.1", 0, ServiceMetrics("test"), local)
        http.start()
        local.public_url = f"http://127.0.0.1:{http.port}"
        yield local
        http.stop()


def test_put_get_list_delete(store):
    store.put("a/b/one", b"1")
    store.put("a/two", b"22", "text/plain")
    store.put("a/two", b"333")  # replace
    assert store.get("a/two") == b"333" and store.exists("a/b/one")
    listed = {o.key: o.size for o in store.list("a/")}
    assert listed == {"a/b/one": 1, "a/two": 3}
    assert all(o.modified.tzinfo is not None for o in store.list())
    store.delete("a/b/one")
    store.delete("a/b/one")  # idempotent
    assert not store.exists("a/b/one")
    with pytest.raises(ObjectNotFound):
        store.get("a/b/one")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "."])
def test_bad_keys(store, key):
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_presigned_url_expires(store):
    store.put("p/img", b"picture")
    url = store.presigned_get_url("p/img", dt.timedelta(seconds=1))
    assert urllib.request.urlopen(url, timeout=10).read() == b"picture"
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 403


def test_local_signature_survives_restart_but_not_tampering(tmp_path):
    a = LocalObjectStore(tmp_path / "o", public_url="http://x")
    b = LocalObjectStore(tmp_path / "o", public_url="http://x")  # a restarted service
    exp = int(time.time()) + 60
    assert b.verify_signature("k", exp, a.sign("k", exp))
    assert not b.verify_signature("k2", exp, a.sign("k", exp))
    assert not b.verify_signature("k", exp + 1, a.sign("k", exp))
