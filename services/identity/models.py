"""SQL models of the identity service: identities, their reference images, cached encodings."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.common.db import Base, UTCDateTime, utcnow


class IdentityRow(Base):
    __tablename__ = "identities"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # time-ordered, see new_id
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 over the set's (slot, image checksum) pairs; the key of its encoding.
    set_checksum: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    references: Mapped[list[ReferenceRow]] = relationship(
        back_populates="identity",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ReferenceRow.kind, ReferenceRow.label",
    )


class ReferenceRow(Base):
    """One reference image; its bytes live in the object store under `object_key`."""

    __tablename__ = "reference_images"
    __table_args__ = (UniqueConstraint("identity_id", "kind", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[str] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # global | body | face
    label: Mapped[str] = mapped_column(String(32), default="")
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    object_key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    identity: Mapped[IdentityRow] = relationship(back_populates="references")


class EncodingRow(Base):
    """Cached VAE latents of one reference set for one model version, and how far it got."""

    __tablename__ = "reference_encodings"

    identity_id: Mapped[str] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True
    )
    set_checksum: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # encoding | ready | failed
    error: Mapped[str] = mapped_column(Text, default="")
    object_key: Mapped[str] = mapped_column(String(400), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
