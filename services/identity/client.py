"""A thin Python client for IdentityService (used by `lpm identity` and by other services)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import grpc

from services.api import common_pb2, identity_pb2, identity_pb2_grpc
from services.identity.upload import KIND_VALUES

CHUNK_BYTES = 256 * 1024


def slot_proto(kind: str, label: str = "") -> identity_pb2.ReferenceSlot:
    return identity_pb2.ReferenceSlot(kind=KIND_VALUES.get(kind, 0), label=label)


def image_messages(
    kind: str, label: str, data: bytes, field: type, chunk_bytes: int = CHUNK_BYTES
) -> Iterator:
    """ImageStart then the bytes in chunks, as messages of the request type `field`."""
    yield field(
        image=identity_pb2.ImageStart(
            slot=slot_proto(kind, label),
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
    )
    for off in range(0, len(data), chunk_bytes):
        yield field(chunk=data[off : off + chunk_bytes])


class IdentityClient:
    def __init__(self, target: str, api_key: str, channel: grpc.Channel | None = None):
        self.channel = channel or grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
        )
        self.stub = identity_pb2_grpc.IdentityServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> IdentityClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def create(
        self,
        name: str,
        images: list[tuple[str, str, bytes]],
        chunk_bytes: int = CHUNK_BYTES,
        timeout: float = 60,
    ) -> identity_pb2.Identity:
        """`images`: (kind, label, bytes) with kind global | body | face."""
        req = identity_pb2.CreateIdentityRequest

        def stream():
            yield req(identity=identity_pb2.IdentitySpec(name=name))
            for kind, label, data in images:
                yield from image_messages(kind, label, data, req, chunk_bytes)

        return self.stub.CreateIdentity(stream(), metadata=self.metadata, timeout=timeout)

    def get(self, identity_id: str) -> identity_pb2.Identity:
        return self.stub.GetIdentity(
            identity_pb2.GetIdentityRequest(identity_id=identity_id), metadata=self.metadata
        )

    def list_page(self, page_size: int = 0, page_token: str = ""):
        page = common_pb2.PageRequest(page_size=page_size, page_token=page_token)
        return self.stub.ListIdentities(
            identity_pb2.ListIdentitiesRequest(page=page), metadata=self.metadata
        )

    def list_all(self, page_size: int = 0) -> Iterator[identity_pb2.Identity]:
        token = ""
        while True:
            resp = self.list_page(page_size, token)
            yield from resp.identities
            token = resp.next_page_token
            if not token:
                return

    def put_reference(
        self, identity_id: str, kind: str, label: str, data: bytes
    ) -> identity_pb2.Identity:
        req = identity_pb2.PutReferenceRequest

        def stream():
            yield req(identity_id=identity_id)
            yield from image_messages(kind, label, data, req)

        return self.stub.PutReference(stream(), metadata=self.metadata)

    def delete_reference(self, identity_id: str, kind: str, label: str) -> identity_pb2.Identity:
        return self.stub.DeleteReference(
            identity_pb2.DeleteReferenceRequest(
                identity_id=identity_id, slot=slot_proto(kind, label)
            ),
            metadata=self.metadata,
        )

    def delete(self, identity_id: str) -> None:
        self.stub.DeleteIdentity(
            identity_pb2.DeleteIdentityRequest(identity_id=identity_id), metadata=self.metadata
        )

    def download_url(
        self, identity_id: str, kind: str, label: str = "", ttl_seconds: int = 0
    ) -> identity_pb2.ReferenceDownloadUrl:
        return self.stub.GetReferenceDownloadUrl(
            identity_pb2.GetReferenceDownloadUrlRequest(
                identity_id=identity_id, slot=slot_proto(kind, label), ttl_seconds=ttl_seconds
            ),
            metadata=self.metadata,
        )

    def fetch_encoded(self, identity_id: str) -> bytes:
        chunks = self.stub.FetchEncodedReferences(
            identity_pb2.FetchEncodedReferencesRequest(identity_id=identity_id),
            metadata=self.metadata,
        )
        return b"".join(c.data for c in chunks)
