"""The gRPC surface of the identity service: `IdentityService` from protos/lpm/v1/identity.proto.

Each method checks its input, calls the store, and turns domain errors into status codes:
BadReference -> INVALID_ARGUMENT, unknown (or another tenant's) identity -> NOT_FOUND, latents
not ready -> FAILED_PRECONDITION. The tenant comes from the API key (services.common.auth).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.api import common_pb2, identity_pb2, identity_pb2_grpc
from services.common.auth import current_tenant
from services.identity.images import BadReference, Slot
from services.identity.store import FAILED, READY, IdentityNotFound, IdentityRecord, IdentityStore
from services.identity.upload import read_upload, slot_from_proto, slot_to_proto
from services.identity.worker import EncodingWorker

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
DEFAULT_PAGE, MAX_PAGE = 50, 200
DEFAULT_URL_TTL, MAX_URL_TTL = 900, 7 * 24 * 3600
BLOB_CHUNK = 1 << 20
_STATES = {
    READY: identity_pb2.ENCODING_STATE_READY,
    FAILED: identity_pb2.ENCODING_STATE_FAILED,
}


def _ts(value: dt.datetime | None) -> Timestamp:
    ts = Timestamp()
    if value is not None:
        ts.FromDatetime(value)
    return ts


def identity_to_proto(rec: IdentityRecord) -> identity_pb2.Identity:
    row, enc = rec.identity, rec.encoding
    msg = identity_pb2.Identity(
        id=row.id,
        name=row.name,
        created_at=_ts(row.created_at),
        updated_at=_ts(row.updated_at),
        references=[
            identity_pb2.Reference(
                slot=slot_to_proto(Slot(r.kind, r.label)),
                content_type=r.content_type,
                width=r.width,
                height=r.height,
                size_bytes=r.size_bytes,
                sha256=r.sha256,
                created_at=_ts(r.created_at),
            )
            for r in rec.references
        ],
    )
    if enc is not None:
        msg.encoding.CopyFrom(
            identity_pb2.Encoding(
                state=_STATES.get(enc.state, identity_pb2.ENCODING_STATE_ENCODING),
                model_version=enc.model_version,
                set_checksum=enc.set_checksum,
                error=enc.error,
                size_bytes=enc.size_bytes,
                updated_at=_ts(enc.updated_at),
            )
        )
    return msg


def _rpc(method: Callable) -> Callable:
    """Map domain errors to status codes (context.abort raises, ending the call)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except BadReference as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except IdentityNotFound as e:
            context.abort(grpc.StatusCode.NOT_FOUND, f"identity {e.args[0]!r} not found")
        except LookupError as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e.args[0]) if e.args else "not found")

    return wrapper


def _identity_id(value: str) -> str:
    if not value:
        raise BadReference("identity_id is required")
    return value


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, store: IdentityStore, worker: EncodingWorker):
        self.store = store
        self.worker = worker

    def _encode(self, rec: IdentityRecord) -> IdentityRecord:
        enc = rec.encoding
        if enc is not None and enc.state not in (READY, FAILED):
            self.worker.submit(rec.identity.id, rec.identity.set_checksum)
        return rec

    @_rpc
    def CreateIdentity(self, request_iterator, context):  # noqa: N802 - gRPC names
        limits = self.store.limits
        max_images = 1 + limits.max_body + limits.max_face
        spec, images = read_upload(request_iterator, "identity", limits, max_images)
        name = spec.name.strip()
        if not 1 <= len(name) <= 200:
            raise BadReference("name must be 1-200 characters")
        rec = self.store.create(current_tenant(), name, images)
        return identity_to_proto(self._encode(rec))

    @_rpc
    def GetIdentity(self, request, context):  # noqa: N802
        return identity_to_proto(
            self.store.get(current_tenant(), _identity_id(request.identity_id))
        )

    @_rpc
    def ListIdentities(self, request, context):  # noqa: N802
        size = request.page.page_size
        if size < 0:
            raise BadReference("page_size must not be negative")
        size = min(size or DEFAULT_PAGE, MAX_PAGE)
        records, token = self.store.list(current_tenant(), size, request.page.page_token)
        return identity_pb2.ListIdentitiesResponse(
            identities=[identity_to_proto(r) for r in records], next_page_token=token
        )

    @_rpc
    def PutReference(self, request_iterator, context):  # noqa: N802
        identity_id, images = read_upload(request_iterator, "identity_id", self.store.limits, 1)
        if not images:
            raise BadReference("no image sent")
        rec = self.store.put_reference(current_tenant(), _identity_id(identity_id), images[0])
        return identity_to_proto(self._encode(rec))

    @_rpc
    def DeleteReference(self, request, context):  # noqa: N802
        slot = slot_from_proto(request.slot, self.store.limits)
        rec = self.store.delete_reference(current_tenant(), _identity_id(request.identity_id), slot)
        return identity_to_proto(self._encode(rec))

    @_rpc
    def DeleteIdentity(self, request, context):  # noqa: N802
        self.store.delete(current_tenant(), _identity_id(request.identity_id))
        return identity_pb2.DeleteIdentityResponse()

    @_rpc
    def GetReferenceDownloadUrl(self, request, context):  # noqa: N802
        if request.ttl_seconds < 0:
            raise BadReference("ttl_seconds must not be negative")
        ttl = dt.timedelta(seconds=min(request.ttl_seconds or DEFAULT_URL_TTL, MAX_URL_TTL))
        slot = slot_from_proto(request.slot, self.store.limits)
        ref = self.store.reference_object(current_tenant(), _identity_id(request.identity_id), slot)
        expires = dt.datetime.now(dt.UTC) + ttl
        url = self.store.objects.presigned_get_url(ref.object_key, ttl)
        return identity_pb2.ReferenceDownloadUrl(url=url, expires_at=_ts(expires))

    def FetchEncodedReferences(self, request, context):  # noqa: N802
        try:
            blob = self.store.encoded_blob(current_tenant(), _identity_id(request.identity_id))
        except BadReference as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except IdentityNotFound as e:
            context.abort(grpc.StatusCode.NOT_FOUND, f"identity {e.args[0]!r} not found")
        except RuntimeError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        for off in range(0, max(len(blob), 1), BLOB_CHUNK):
            yield common_pb2.BlobChunk(
                data=blob[off : off + BLOB_CHUNK],
                offset=off,
                total_bytes=len(blob) if off == 0 else 0,
            )


def register(servicer: IdentityServicer) -> Callable[[grpc.Server], None]:
    return lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
