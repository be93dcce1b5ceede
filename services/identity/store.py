"""Persistence of identities: rows in SQL, image bytes and cached latents in the object store.

Ordering rule that keeps the two consistent without a distributed transaction: objects are
written before the rows that point at them, and rows are deleted before their objects. A crash
in between can therefore only leave an object without a row, never a row without its object;
`sweep_orphans` (the janitor) removes such objects once they are older than a grace period, so
uploads still in flight are never touched.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from services.common.db import Database, utcnow
from services.common.objectstore import ObjectStore
from services.identity.images import BadReference, ImageInfo, ReferenceLimits, Slot, check_set
from services.identity.images import set_checksum as compute_set_checksum
from services.identity.models import EncodingRow, IdentityRow, ReferenceRow

log = logging.getLogger(__name__)

ENCODING, READY, FAILED = "encoding", "ready", "failed"
OBJECT_ROOT = "tenants/"


class IdentityNotFound(LookupError):
    """No such identity for this tenant (whether it exists for another is not revealed)."""


@dataclass(frozen=True)
class UploadedImage:
    slot: Slot
    data: bytes
    sha256: str
    info: ImageInfo


@dataclass(frozen=True)
class IdentityRecord:
    identity: IdentityRow
    references: list[ReferenceRow]
    encoding: EncodingRow | None


def new_identity_id() -> str:
    """Time-ordered, so listing by id is listing by creation."""
    return f"idn_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", part)


def image_key(tenant: str, identity_id: str, sha256: str) -> str:
    return f"{OBJECT_ROOT}{tenant}/identities/{identity_id}/images/{sha256}"


def latents_key(tenant: str, identity_id: str, model_version: str, checksum: str) -> str:
    return (
        f"{OBJECT_ROOT}{tenant}/identities/{identity_id}/latents/{_safe(model_version)}/{checksum}"
    )


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode()


def decode_page_token(token: str) -> str:
    try:
        value = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadReference("bad page_token") from None
    if not value.startswith("idn_"):
        raise BadReference("bad page_token")
    return value


class IdentityStore:
    def __init__(
        self, db: Database, objects: ObjectStore, limits: ReferenceLimits, model_version: str
    ):
        self.db = db
        self.objects = objects
        self.limits = limits
        self.model_version = model_version

    # --- reads -----------------------------------------------------------------------------
    def _load(self, s: Session, tenant: str, identity_id: str, lock: bool = False) -> IdentityRow:
        q = (
            select(IdentityRow)
            .where(IdentityRow.id == identity_id, IdentityRow.tenant == tenant)
            .options(selectinload(IdentityRow.references))
        )
        if lock:
            q = q.with_for_update()
        row = s.execute(q).scalar_one_or_none()
        if row is None:
            raise IdentityNotFound(identity_id)
        return row

    def _record(self, s: Session, row: IdentityRow) -> IdentityRecord:
        enc = s.get(EncodingRow, (row.id, row.set_checksum, self.model_version))
        return IdentityRecord(row, list(row.references), enc)

    def get(self, tenant: str, identity_id: str) -> IdentityRecord:
        with self.db.session() as s:
            return self._record(s, self._load(s, tenant, identity_id))

    def list(
        self, tenant: str, page_size: int, page_token: str = ""
    ) -> tuple[list[IdentityRecord], str]:
        after = decode_page_token(page_token) if page_token else ""
        with self.db.session() as s:
            q = (
                select(IdentityRow)
                .where(IdentityRow.tenant == tenant, IdentityRow.id > after)
                .order_by(IdentityRow.id)
                .limit(page_size + 1)
                .options(selectinload(IdentityRow.references))
            )
            rows = list(s.execute(q).scalars())
            more = len(rows) > page_size
            rows = rows[:page_size]
            records = [self._record(s, r) for r in rows]
        return records, encode_page_token(rows[-1].id) if more else ""

    def reference_object(self, tenant: str, identity_id: str, slot: Slot) -> ReferenceRow:
        with self.db.session() as s:
            row = self._load(s, tenant, identity_id)
            for ref in row.references:
                if (ref.kind, ref.label) == (slot.kind, slot.label):
                    return ref
        raise LookupError(f"identity {identity_id} has no {slot} reference")

    # --- writes ----------------------------------------------------------------------------
    def _put_objects(self, tenant: str, identity_id: str, images: list[UploadedImage]) -> list[str]:
        written: list[str] = []
        try:
            for img in images:
                key = image_key(tenant, identity_id, img.sha256)
                if key not in written:
                    self.objects.put(key, img.data, img.info.content_type)
                    written.append(key)
        except BaseException:
            self._forget_objects(written)
            raise
        return written

    def _forget_objects(self, keys: list[str]) -> None:
        """Best-effort removal; whatever survives a crash here the janitor removes later."""
        for key in keys:
            try:
                self.objects.delete(key)
            except Exception:
                log.warning("could not remove object", extra={"fields": {"key": key}})

    def _ref_row(self, tenant: str, identity_id: str, img: UploadedImage) -> ReferenceRow:
        return ReferenceRow(
            identity_id=identity_id,
            kind=img.slot.kind,
            label=img.slot.label,
            content_type=img.info.content_type,
            width=img.info.width,
            height=img.info.height,
            size_bytes=len(img.data),
            sha256=img.sha256,
            object_key=image_key(tenant, identity_id, img.sha256),
        )

    def _start_encoding(self, s: Session, row: IdentityRow) -> bool:
        """Point the identity at its current set; True when that set still needs encoding."""
        row.set_checksum = compute_set_checksum(
            (Slot(r.kind, r.label), r.sha256) for r in row.references
        )
        row.updated_at = utcnow()
        enc = s.get(EncodingRow, (row.id, row.set_checksum, self.model_version))
        if enc is None:
            s.add(
                EncodingRow(
                    identity_id=row.id,
                    set_checksum=row.set_checksum,
                    model_version=self.model_version,
                    state=ENCODING,
                )
            )
            return True
        if enc.state == FAILED:  # the same set again: try once more
            enc.state, enc.error, enc.updated_at = ENCODING, "", utcnow()
            return True
        return enc.state == ENCODING

    def create(self, tenant: str, name: str, images: list[UploadedImage]) -> IdentityRecord:
        check_set((img.slot for img in images), self.limits)
        identity_id = new_identity_id()
        written = self._put_objects(tenant, identity_id, images)
        try:
            with self.db.session() as s:
                row = IdentityRow(id=identity_id, tenant=tenant, name=name)
                row.references = [self._ref_row(tenant, identity_id, img) for img in images]
                s.add(row)
                s.flush()
                self._start_encoding(s, row)
                s.flush()
                record = self._record(s, row)
        except BaseException:
            self._forget_objects(written)
            raise
        return record

    def put_reference(self, tenant: str, identity_id: str, img: UploadedImage) -> IdentityRecord:
        self.get(tenant, identity_id)  # NOT_FOUND before any object is written
        written = self._put_objects(tenant, identity_id, [img])
        try:
            with self.db.session() as s:
                row = self._load(s, tenant, identity_id, lock=True)
                old = next(
                    (r for r in row.references if (r.kind, r.label) == astuple(img.slot)), None
                )
                slots = [Slot(r.kind, r.label) for r in row.references if r is not old]
                check_set([*slots, img.slot], self.limits)
                old_key = old.object_key if old else None
                if old is not None:
                    row.references.remove(old)
                    s.flush()
                row.references.append(self._ref_row(tenant, identity_id, img))
                s.flush()
                self._start_encoding(s, row)
                s.flush()
                record = self._record(s, row)
                still_used = {r.object_key for r in row.references}
        except BaseException:
            if not self._key_in_use(written[0]):
                self._forget_objects(written)
            raise
        if old_key and old_key not in still_used:
            self._forget_objects([old_key])
        return record

    def _key_in_use(self, key: str) -> bool:
        with self.db.session() as s:
            q = select(ReferenceRow.id).where(ReferenceRow.object_key == key).limit(1)
            return s.execute(q).first() is not None

    def delete_reference(self, tenant: str, identity_id: str, slot: Slot) -> IdentityRecord:
        if slot.kind == "global":
            raise BadReference("the global image cannot be removed, only replaced")
        with self.db.session() as s:
            row = self._load(s, tenant, identity_id, lock=True)
            old = next((r for r in row.references if (r.kind, r.label) == astuple(slot)), None)
            if old is None:
                raise LookupError(f"identity {identity_id} has no {slot} reference")
            row.references.remove(old)
            s.flush()
            self._start_encoding(s, row)
            s.flush()
            record = self._record(s, row)
            still_used = {r.object_key for r in row.references}
        if old.object_key not in still_used:
            self._forget_objects([old.object_key])
        return record

    def delete(self, tenant: str, identity_id: str) -> None:
        with self.db.session() as s:
            row = self._load(s, tenant, identity_id, lock=True)
            keys = [r.object_key for r in row.references]
            encs = s.execute(select(EncodingRow).where(EncodingRow.identity_id == identity_id))
            keys += [e.object_key for e in encs.scalars() if e.object_key]
            s.execute(delete(EncodingRow).where(EncodingRow.identity_id == identity_id))
            s.delete(row)
        self._forget_objects(sorted(set(keys)))

    # --- encodings -------------------------------------------------------------------------
    def pending_encodings(self) -> list[tuple[str, str]]:
        """(identity_id, set_checksum) of this model version's unfinished encodings."""
        with self.db.session() as s:
            q = select(EncodingRow.identity_id, EncodingRow.set_checksum).where(
                EncodingRow.state == ENCODING, EncodingRow.model_version == self.model_version
            )
            return [tuple(r) for r in s.execute(q)]

    def set_for_encoding(self, identity_id: str, checksum: str) -> list[tuple[Slot, bytes]] | None:
        """The images of the set `checksum`, or None when the identity has moved on."""
        with self.db.session() as s:
            row = s.get(IdentityRow, identity_id)
            if row is None or row.set_checksum != checksum:
                return None
            refs = [(Slot(r.kind, r.label), r.object_key) for r in row.references]
        return [(slot, self.objects.get(key)) for slot, key in refs]

    def finish_encoding(self, identity_id: str, checksum: str, blob: bytes) -> bool:
        with self.db.session() as s:
            row = s.get(IdentityRow, identity_id)
            if row is None:
                return False
            tenant = row.tenant
        key = latents_key(tenant, identity_id, self.model_version, checksum)
        self.objects.put(key, blob)
        with self.db.session() as s:
            enc = s.get(EncodingRow, (identity_id, checksum, self.model_version))
            if enc is None:  # deleted while encoding: the janitor takes the object
                return False
            enc.state, enc.error, enc.object_key = READY, "", key
            enc.size_bytes, enc.updated_at = len(blob), utcnow()
        return True

    def fail_encoding(self, identity_id: str, checksum: str, error: str) -> None:
        with self.db.session() as s:
            enc = s.get(EncodingRow, (identity_id, checksum, self.model_version))
            if enc is not None:
                enc.state, enc.error, enc.updated_at = FAILED, error[:2000], utcnow()

    def encoded_blob(self, tenant: str, identity_id: str) -> bytes:
        record = self.get(tenant, identity_id)
        enc = record.encoding
        if enc is None or enc.state != READY:
            state = enc.state if enc else "missing"
            raise RuntimeError(f"encoding of identity {identity_id} is {state}, not ready")
        return self.objects.get(enc.object_key)

    # --- janitor ---------------------------------------------------------------------------
    def sweep_orphans(self, grace: dt.timedelta) -> list[str]:
        """Remove objects no row points at and stale encodings; returns the removed keys.

        Only objects older than `grace` are touched, so an upload that has written its objects
        but not yet its rows is safe.
        """
        cutoff = utcnow() - grace
        removed: list[str] = []
        with self.db.session() as s:
            stale = s.execute(
                select(EncodingRow)
                .join(IdentityRow, IdentityRow.id == EncodingRow.identity_id)
                .where(
                    EncodingRow.set_checksum != IdentityRow.set_checksum,
                    EncodingRow.updated_at < cutoff,
                )
            ).scalars()
            for enc in stale:
                s.delete(enc)
        with self.db.session() as s:
            known = set(s.execute(select(ReferenceRow.object_key)).scalars())
            known |= set(s.execute(select(EncodingRow.object_key)).scalars())
        for obj in self.objects.list(OBJECT_ROOT):
            if obj.key not in known and obj.modified < cutoff:
                self.objects.delete(obj.key)
                removed.append(obj.key)
        if removed:
            log.info("janitor removed orphans", extra={"fields": {"count": len(removed)}})
        return removed


def astuple(slot: Slot) -> tuple[str, str]:
    return slot.kind, slot.label
