"""The identity service over gRPC, on both backends: the happy path, every bad input,
tenant isolation, concurrency, restarts, presigned URLs and the encoding states."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from services.api import identity_pb2

pytestmark = pytest.mark.services
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


def _nothing_stored(app, tenant: str = "acme") -> None:
    records, _ = app.store.list(tenant, 100)
    assert records == []
    assert list(app.objects.list("tenants/")) == []


def test_create_get_list_delete(identity, client_for, helpers):
    c = client_for("acme")
    images = helpers.full_set(seed=1)
    created = c.create("Lumi", images)
    assert created.id.startswith("idn_") and created.name == "Lumi"
    got = helpers.wait_encoded(c, created.id)
    assert got.encoding.state == identity_pb2.ENCODING_STATE_READY
    assert got.encoding.model_version == "tiny-random-seed0"
    by_slot = {(r.slot.kind, r.slot.label): r for r in got.references}
    assert len(by_slot) == len(images)
    import hashlib

    for kind, label, data in images:
        ref = by_slot[(identity_pb2.ReferenceKind.Value(f"REFERENCE_KIND_{kind.upper()}"), label)]
        assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size_bytes == len(data)
    assert got.references[0].width > 0 and got.references[0].content_type.startswith("image/")
    assert [i.id for i in c.list_all()] == [created.id]
    latents = c.fetch_encoded(created.id)
    assert b"global" in latents
    c.delete(created.id)
    with pytest.raises(grpc.RpcError) as e:
        c.get(created.id)
    assert _code(e) == grpc.StatusCode.NOT_FOUND
    assert list(identity.objects.list("tenants/")) == []


def test_large_image_streams_in_many_chunks(identity, client_for, helpers):
    c = client_for()
    big = helpers.image_bytes(1024, 1024, "PNG", seed=7)  # ~3 MB, over 1 chunk by far
    assert len(big) > 2_000_000
    ident = c.create("Big", [("global", "", big)], chunk_bytes=64 * 1024)
    assert ident.references[0].size_bytes == len(big)
    url = c.download_url(ident.id, "global").url
    assert urllib.request.urlopen(url, timeout=10).read() == big


def test_pagination(identity, client_for, helpers):
    c = client_for()
    ids = [c.create(f"n{i}", [("global", "", helpers.image_bytes(seed=i))]).id for i in range(5)]
    page = c.list_page(page_size=2)
    assert [i.id for i in page.identities] == ids[:2] and page.next_page_token
    assert [i.id for i in c.list_all(page_size=2)] == ids
    with pytest.raises(grpc.RpcError) as e:
        c.list_page(page_token="not-a-token")
    assert _code(e) == INVALID


def test_put_and_delete_reference_reencode(identity, client_for, helpers, fake_encoder):
    c = client_for()
    ident = c.create("Lumi", helpers.full_set(body=1, face=0))
    first = helpers.wait_encoded(c, ident.id).encoding.set_checksum
    ident = c.put_reference(ident.id, "face", "smile", helpers.image_bytes(64, 64, seed=9))
    assert len(ident.references) == 3
    ready = helpers.wait_encoded(c, ident.id)
    assert ready.encoding.state == identity_pb2.ENCODING_STATE_READY
    assert ready.encoding.set_checksum != first
    assert fake_encoder.calls[-1] == ["body:front", "face:smile", "global"]
    # Replace the global image: same slot count, new content, old object gone.
    objects_before = len(list(identity.objects.list("tenants/")))
    c.put_reference(ident.id, "global", "", helpers.image_bytes(seed=99))
    ident = c.delete_reference(ident.id, "face", "smile")
    assert len(ident.references) == 2
    images = [o for o in identity.objects.list("tenants/") if "/images/" in o.key]
    assert len(images) == 2 and objects_before >= 3
    with pytest.raises(grpc.RpcError) as e:
        c.delete_reference(ident.id, "global", "")
    assert _code(e) == INVALID
    with pytest.raises(grpc.RpcError) as e:
        c.delete_reference(ident.id, "face", "smile")
    assert _code(e) == grpc.StatusCode.NOT_FOUND


def test_encoding_failure_is_visible(identity, client_for, helpers, fake_encoder):
    fake_encoder.fail = "the VAE refused"
    c = client_for()
    ident = c.create("Bad", helpers.full_set(body=0, face=0))
    got = helpers.wait_encoded(c, ident.id)
    assert got.encoding.state == identity_pb2.ENCODING_STATE_FAILED
    assert "the VAE refused" in got.encoding.error
    with pytest.raises(grpc.RpcError) as e:
        c.fetch_encoded(ident.id)
    assert _code(e) == grpc.StatusCode.FAILED_PRECONDITION


# --- bad input: INVALID_ARGUMENT, nothing stored -------------------------------------------
def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims 10 gigapixels (never decoded by the service)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BAD_SETS = {
    "not an image": lambda h: [("global", "", b"hello, not an image" * 100)],
    "unsupported format": lambda h: [("global", "", h.image_bytes(fmt="GIF"))],
    "bmp format": lambda h: [("global", "", h.image_bytes(fmt="BMP"))],
    "decompression bomb": lambda h: [("global", "", _bomb_png())],
    "too small": lambda h: [("global", "", h.image_bytes(64, 64))],
    "face too small": lambda h: [
        *h.full_set(body=0, face=0),
        ("face", "smile", h.image_bytes(32, 32)),
    ],
    "over the byte limit": lambda h: [("global", "", h.image_bytes(400, 400))],
    "5th body view": lambda h: [
        *h.full_set(body=4, face=0),
        ("body", "front", h.image_bytes(seed=55)),
    ],
    "9th face": lambda h: [
        *h.full_set(body=0, face=8),
        ("face", "wink", h.image_bytes(64, 64, seed=56)),
    ],
    "unknown view": lambda h: [*h.full_set(body=0, face=0), ("body", "top", h.image_bytes())],
    "bad face label": lambda h: [*h.full_set(body=0, face=0), ("face", "No Way!", h.image_bytes())],
    "missing global": lambda h: [("body", "front", h.image_bytes())],
    "truncated image data": lambda h: [("global", "", h.image_bytes(fmt="JPEG")[:3000])],
    "duplicate slot": lambda h: [*h.full_set(body=1, face=0), ("body", "front", h.image_bytes())],
}


def test_bad_input_is_refused_and_nothing_stored(start_identity, backend, helpers):
    from services.identity.client import IdentityClient

    app = start_identity(max_image_bytes=200_000)
    with IdentityClient(app.target, backend.new_key("acme")) as c:
        for case, images in BAD_SETS.items():
            with pytest.raises(grpc.RpcError) as e:
                c.create("Bad", images(helpers))
            assert _code(e) == INVALID, case
            assert e.value.details(), case
            _nothing_stored(app)


def _raw_create(client, messages):
    return client.stub.CreateIdentity(iter(messages), metadata=client.metadata, timeout=10)


def test_malformed_streams(identity, client_for, helpers):
    c = client_for()
    req, pb = identity_pb2.CreateIdentityRequest, identity_pb2
    img = helpers.image_bytes()
    start = pb.ImageStart(slot=pb.ReferenceSlot(kind=pb.REFERENCE_KIND_GLOBAL), size_bytes=len(img))
    spec = req(identity=pb.IdentitySpec(name="x"))
    cases = {
        "cut off half-way": [spec, req(image=start), req(chunk=img[: len(img) // 2])],
        "more bytes than announced": [spec, req(image=start), req(chunk=img + b"extra")],
        "bytes before start": [spec, req(chunk=img)],
        "no spec first": [req(image=start), req(chunk=img)],
        "empty stream": [],
        "sha mismatch": [
            spec,
            req(image=pb.ImageStart(slot=start.slot, size_bytes=len(img), sha256="0" * 64)),
            req(chunk=img),
        ],
        "empty name": [req(identity=pb.IdentitySpec(name=" ")), req(image=start), req(chunk=img)],
        "kind unspecified": [spec, req(image=pb.ImageStart(size_bytes=len(img))), req(chunk=img)],
        "next image before end": [spec, req(image=start), req(chunk=img[:10]), req(image=start)],
    }
    for name, msgs in cases.items():
        with pytest.raises(grpc.RpcError) as e:
            _raw_create(c, msgs)
        assert _code(e) == INVALID, name
    _nothing_stored(identity)


def test_client_cancel_mid_upload_stores_nothing(identity, client_for, helpers):
    c = client_for()
    req, pb = identity_pb2.CreateIdentityRequest, identity_pb2
    img = helpers.image_bytes(512, 512)
    start = pb.ImageStart(slot=pb.ReferenceSlot(kind=pb.REFERENCE_KIND_GLOBAL), size_bytes=len(img))
    sent = threading.Event()

    def stream():
        yield req(identity=pb.IdentitySpec(name="x"))
        yield req(image=start)
        yield req(chunk=img[:1000])
        sent.set()
        time.sleep(5)  # the client gives up long before this
        yield req(chunk=img[1000:])

    fut = c.stub.CreateIdentity.future(stream(), metadata=c.metadata)
    assert sent.wait(5)
    time.sleep(0.3)
    fut.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()
    time.sleep(0.3)
    _nothing_stored(identity)


def test_put_reference_bad_input_leaves_identity_unchanged(identity, client_for, helpers):
    c = client_for()
    ident = c.create("Lumi", helpers.full_set(body=4, face=0))
    before = c.get(ident.id)
    for kind, label, data in [
        ("body", "front", b"garbage"),
        ("body", "top", helpers.image_bytes()),
        ("global", "", helpers.image_bytes(16, 16)),
    ]:
        with pytest.raises(grpc.RpcError) as e:
            c.put_reference(ident.id, kind, label, data)
        assert _code(e) == INVALID
    after = c.get(ident.id)
    assert [r.sha256 for r in after.references] == [r.sha256 for r in before.references]
    n_objects = len([o for o in identity.objects.list("tenants/") if "/images/" in o.key])
    assert n_objects == 5
    with pytest.raises(grpc.RpcError) as e:
        c.put_reference("idn_missing", "face", "smile", helpers.image_bytes(64, 64))
    assert _code(e) == grpc.StatusCode.NOT_FOUND


# --- auth and tenancy -------------------------------------------------------------------------
def test_missing_and_bad_keys_are_unauthenticated(identity, backend):
    from services.identity.client import IdentityClient

    for key in ["", "nonsense", "lpm_0123456789abcdef_" + "x" * 43]:
        with IdentityClient(identity.target, key) as c:
            with pytest.raises(grpc.RpcError) as e:
                list(c.list_all())
            assert _code(e) == grpc.StatusCode.UNAUTHENTICATED
    channel = grpc.insecure_channel(identity.target)
    from services.api import identity_pb2_grpc

    with pytest.raises(grpc.RpcError) as e:
        identity_pb2_grpc.IdentityServiceStub(channel).ListIdentities(
            identity_pb2.ListIdentitiesRequest()
        )
    assert _code(e) == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_tenant_isolation(identity, client_for, helpers):
    a, b = client_for("acme"), client_for("globex")
    ident = a.create("Secret", helpers.full_set(body=1, face=1))
    calls = {
        "get": lambda c, i: c.get(i),
        "delete": lambda c, i: c.delete(i),
        "put": lambda c, i: c.put_reference(i, "face", "sad", helpers.image_bytes(64, 64)),
        "del ref": lambda c, i: c.delete_reference(i, "body", "front"),
        "url": lambda c, i: c.download_url(i, "global"),
        "latents": lambda c, i: c.fetch_encoded(i),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as theirs:
            call(b, ident.id)
        with pytest.raises(grpc.RpcError) as missing:
            call(b, "idn_00000000000000000000")
        assert _code(theirs) == _code(missing) == grpc.StatusCode.NOT_FOUND, name
        # Same words as for an id that never existed: existence is not revealed.
        assert theirs.value.details().replace(ident.id, "X") == missing.value.details().replace(
            "idn_00000000000000000000", "X"
        ), name
    assert list(b.list_all()) == []
    assert [i.id for i in a.list_all()] == [ident.id]
    assert len(a.get(ident.id).references) == 3


def test_revoked_key(identity, backend, client_for):
    from services.common.auth import revoke_api_key
    from services.common.db import Database

    c = client_for("acme")
    assert list(c.list_all()) == []
    key_id = c.metadata[0][1].split("_")[1]
    db = Database(backend.database_url)
    assert revoke_api_key(db, key_id)
    db.dispose()
    with pytest.raises(grpc.RpcError) as e:
        list(c.list_all())
    assert _code(e) == grpc.StatusCode.UNAUTHENTICATED


# --- concurrency, restarts, URLs ----------------------------------------------------------------
def test_20_concurrent_uploads(identity, client_for, helpers):
    import hashlib

    clients = [client_for("acme") for _ in range(4)]
    sets = {n: helpers.full_set(seed=n + 1, body=1 + n % 4, face=n % 9) for n in range(20)}

    def upload(n):
        return n, clients[n % 4].create(f"char-{n}", sets[n], chunk_bytes=16 * 1024)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        results = dict(pool.map(upload, range(20)))
    elapsed = time.perf_counter() - t0
    total = sum(len(d) for s in sets.values() for _, _, d in s)
    print(f"\n20 concurrent uploads: {total / 1e6:.1f} MB in {elapsed:.2f}s")
    listed = {i.id: i for i in clients[0].list_all()}
    assert len(listed) == 20 and {r.id for r in results.values()} == set(listed)
    for n, created in results.items():
        got = listed[created.id]
        assert got.name == f"char-{n}"
        want = {(k, lb): hashlib.sha256(d).hexdigest() for k, lb, d in sets[n]}
        have = {
            (
                identity_pb2.ReferenceKind.Name(r.slot.kind).split("_")[-1].lower(),
                r.slot.label,
            ): r.sha256
            for r in got.references
        }
        assert have == want, n
    # The stored bytes are the uploaded bytes.
    for n in (0, 7, 19):
        kind, label, data = sets[n][-1]
        stored = identity.store.reference_object("acme", results[n].id, _slot(kind, label))
        assert identity.objects.get(stored.object_key) == data
    for created in results.values():
        assert helpers.wait_encoded(clients[0], created.id).encoding.state == (
            identity_pb2.ENCODING_STATE_READY
        )


def _slot(kind, label):
    from services.identity.images import Slot

    return Slot(kind, label)


def test_restart_loses_nothing(start_identity, backend, helpers, fake_encoder):
    from services.identity.client import IdentityClient

    key = backend.new_key("acme")
    app = start_identity()
    fake_encoder.gate.clear()  # encodings stay pending across the restart
    with IdentityClient(app.target, key) as c:
        ids = [c.create(f"c{i}", helpers.full_set(seed=i, body=1, face=1)).id for i in range(3)]
        # An upload in flight when the stop begins is drained, not dropped.
        slow_done = {}

        def slow_stream():
            req, pb = identity_pb2.CreateIdentityRequest, identity_pb2
            img = helpers.image_bytes(seed=42)
            yield req(identity=pb.IdentitySpec(name="slow"))
            yield req(image=pb.ImageStart(slot=pb.ReferenceSlot(kind=1), size_bytes=len(img)))
            time.sleep(0.5)
            yield req(chunk=img)

        def slow_upload():
            slow_done["id"] = c.stub.CreateIdentity(slow_stream(), metadata=c.metadata).id

        t = threading.Thread(target=slow_upload)
        t.start()
        time.sleep(0.2)
        stopper = threading.Thread(target=app.stop, kwargs={"grace": 5})
        stopper.start()
        fake_encoder.gate.set()  # let the worker finish what it holds so stop() returns
        t.join(10)
        stopper.join(10)
        assert "id" in slow_done
    ids.append(slow_done["id"])

    app2 = start_identity()
    with IdentityClient(app2.target, key) as c:
        assert sorted(i.id for i in c.list_all()) == sorted(ids)
        for identity_id in ids:
            got = helpers.wait_encoded(c, identity_id)
            assert got.encoding.state == identity_pb2.ENCODING_STATE_READY, identity_id
            url = c.download_url(identity_id, "global").url
            assert urllib.request.urlopen(url, timeout=10).read()[:4] == b"\x89PNG"


def test_presigned_url_expires(identity, client_for, helpers):
    c = client_for()
    data = helpers.image_bytes(seed=3)
    ident = c.create("Lumi", [("global", "", data)])
    short = c.download_url(ident.id, "global", ttl_seconds=1)
    assert short.expires_at.seconds <= time.time() + 2
    assert urllib.request.urlopen(short.url, timeout=10).read() == data
    long = c.download_url(ident.id, "global")
    assert long.expires_at.seconds >= time.time() + 800
    time.sleep(2.2)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(short.url, timeout=10)
    assert e.value.code == 403
    assert urllib.request.urlopen(long.url, timeout=10).read() == data
    tampered = (
        long.url.replace("signature=", "signature=0")
        if "signature=" in long.url
        else (long.url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(tampered, timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        c.download_url(ident.id, "face", "smile")
    assert _code(err) == grpc.StatusCode.NOT_FOUND
