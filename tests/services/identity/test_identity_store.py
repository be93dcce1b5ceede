"""The store's consistency rule: a failure part-way leaves no row without its object, and the
janitor removes the objects left without a row (only once they are older than the grace)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from services.common.db import Database
from services.common.objectstore import open_object_store
from services.identity.images import ReferenceLimits, Slot, inspect_image, sha256_hex
from services.identity.models import ReferenceRow
from services.identity.store import IdentityStore, UploadedImage

pytestmark = pytest.mark.services


class CrashingObjects:
    """An object store that fails a chosen operation, as a crash or outage would."""

    def __init__(self, inner, fail_put_at: int | None = None, fail_delete: bool = False):
        self.inner, self.fail_put_at, self.fail_delete, self.puts = (
            inner,
            fail_put_at,
            fail_delete,
            0,
        )

    def put(self, key, data, content_type="application/octet-stream"):
        self.puts += 1
        if self.puts == self.fail_put_at:
            raise OSError("object store went away")
        self.inner.put(key, data, content_type)

    def delete(self, key):
        if self.fail_delete:
            raise OSError("object store went away")
        self.inner.delete(key)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def parts(backend):
    s = backend.settings()
    db = Database(s.database_url)
    objects = open_object_store(
        s.object_store_url,
        s3_endpoint=s.s3_endpoint,
        s3_access_key=s.s3_access_key,
        s3_secret_key=s.s3_secret_key,
    )
    limits = ReferenceLimits.for_preset("tiny", 10_000_000, 40_000_000)
    yield db, objects, limits
    db.dispose()


def _images(helpers, n_body=2):
    out = []
    for slot, data in [(Slot("global"), helpers.image_bytes(seed=1))] + [
        (Slot("body", v), helpers.image_bytes(seed=2 + i))
        for i, v in enumerate(["front", "left"][:n_body])
    ]:
        out.append(
            UploadedImage(
                slot,
                data,
                sha256_hex(data),
                inspect_image(data, slot, ReferenceLimits.for_preset("tiny", 10**7, 4 * 10**7)),
            )
        )
    return out


def _row_count(db) -> int:
    with db.session() as s:
        return s.execute(select(func.count()).select_from(ReferenceRow)).scalar_one()


def test_failed_upload_leaves_no_rows_and_janitor_clears_objects(parts, helpers):
    db, objects, limits = parts
    # The 3rd object write fails, and the clean-up fails too (as if the process had died).
    crashing = CrashingObjects(objects, fail_put_at=3, fail_delete=True)
    store = IdentityStore(db, crashing, limits, "v1")
    with pytest.raises(OSError):
        store.create("acme", "Lumi", _images(helpers))
    assert _row_count(db) == 0
    orphans = list(objects.list("tenants/"))
    assert len(orphans) == 2  # written before the failure, no row points at them

    good = IdentityStore(db, objects, limits, "v1")
    kept = good.create("acme", "Kept", _images(helpers, n_body=1))
    # Within the grace period nothing is touched (an upload may still be writing its rows).
    assert good.sweep_orphans(dt.timedelta(hours=1)) == []
    removed = good.sweep_orphans(dt.timedelta(0))
    assert sorted(removed) == sorted(o.key for o in orphans)
    left = {o.key for o in objects.list("tenants/")}
    assert left == {r.object_key for r in kept.references}


def test_failed_row_write_removes_its_objects(parts, helpers, monkeypatch):
    db, objects, limits = parts
    store = IdentityStore(db, objects, limits, "v1")
    monkeypatch.setattr(
        store, "_start_encoding", lambda *a: (_ for _ in ()).throw(RuntimeError("db down"))
    )
    with pytest.raises(RuntimeError):
        store.create("acme", "Lumi", _images(helpers))
    assert _row_count(db) == 0 and list(objects.list("tenants/")) == []


def test_delete_that_crashes_before_objects_go(parts, helpers):
    db, objects, limits = parts
    store = IdentityStore(db, CrashingObjects(objects, fail_delete=True), limits, "v1")
    rec = store.create("acme", "Lumi", _images(helpers))
    store.delete("acme", rec.identity.id)  # rows go first; object removal "crashes"
    assert _row_count(db) == 0 and len(list(objects.list("tenants/"))) == 3
    assert len(IdentityStore(db, objects, limits, "v1").sweep_orphans(dt.timedelta(0))) == 3
    assert list(objects.list("tenants/")) == []


def test_stale_encodings_are_swept(parts, helpers):
    db, objects, limits = parts
    store = IdentityStore(db, objects, limits, "v1")
    rec = store.create("acme", "Lumi", _images(helpers, n_body=1))
    first = rec.identity.set_checksum
    assert store.finish_encoding(rec.identity.id, first, b"latents-1")
    data = helpers.image_bytes(seed=50)
    img = UploadedImage(
        Slot("body", "left"),
        data,
        sha256_hex(data),
        inspect_image(data, Slot("body", "left"), limits),
    )
    rec2 = store.put_reference("acme", rec.identity.id, img)
    assert rec2.identity.set_checksum != first and rec2.encoding.state == "encoding"
    removed = store.sweep_orphans(dt.timedelta(0))
    assert len(removed) == 1 and "/latents/" in removed[0]
