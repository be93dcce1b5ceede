"""API keys: `authorization: Bearer lpm_<id>_<secret>` metadata, stored hashed, tenant-bound.

The key's id is its public half (the row's primary key); only SHA-256 of the secret is stored,
which is enough for 256-bit random secrets (no password stretching needed). `AuthInterceptor`
checks every call except health and reflection and puts the caller's tenant in a context
variable that servicers read with `current_tenant()`.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

import grpc
from sqlalchemy import select

from services.common.db import Database, utcnow
from services.common.models import ApiKey
from services.common.telemetry import wrap_handler

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_KEY_RE = re.compile(r"^lpm_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
# Calls anyone may make: probes and tooling must work without a key.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("lpm_tenant", default=None)


def current_tenant() -> str:
    """The authenticated caller's tenant (inside a servicer method)."""
    tenant = _tenant.get()
    if tenant is None:
        raise RuntimeError("no authenticated tenant in this context")
    return tenant


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    key: str  # shown once, never stored
    key_id: str
    tenant: str


def create_api_key(db: Database, tenant: str, name: str = "") -> NewApiKey:
    if not TENANT_RE.match(tenant):
        raise ValueError(
            f"bad tenant {tenant!r}: 1-64 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(ApiKey(id=key_id, tenant=tenant, secret_sha256=_sha256(secret), name=name))
    return NewApiKey(key=f"lpm_{key_id}_{secret}", key_id=key_id, tenant=tenant)


def revoke_api_key(db: Database, key_id: str) -> bool:
    with db.session() as s:
        row = s.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        return True


class ApiKeyVerifier:
    """Checks keys against the database, remembering good ones for `cache_s` seconds."""

    def __init__(self, db: Database, cache_s: float = 10.0):
        self._db = db
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def tenant_for(self, key: str) -> str | None:
        m = _KEY_RE.match(key)
        if not m:
            return None
        cache_key = _sha256(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit and hit[0] > now:
            return hit[1]
        key_id, secret = m.groups()
        with self._db.session() as s:
            row = s.execute(select(ApiKey).where(ApiKey.id == key_id)).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
            return None
        with self._lock:
            self._cache[cache_key] = (now + self._cache_s, row.tenant)
        return row.tenant


def bearer_token(metadata) -> str | None:
    for k, v in metadata or ():
        if k == "authorization":
            scheme, _, token = v.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class AuthInterceptor(grpc.ServerInterceptor):
    """UNAUTHENTICATED unless the call carries a valid key; sets the tenant for the servicer."""

    def __init__(self, verifier: ApiKeyVerifier):
        self._verifier = verifier

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(PUBLIC_PREFIXES):
            return handler
        return wrap_handler(handler, self._authenticated)

    def _authenticated(self, behavior):
        verifier = self._verifier

        def checked(request_or_iterator, context):
            # Runs in the worker thread, so the database lookup never blocks the server loop.
            token = bearer_token(context.invocation_metadata())
            if token is None:
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing API key: send `authorization: Bearer <key>` metadata",
                )
            tenant = verifier.tenant_for(token)
            if tenant is None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked API key")
            _tenant.set(tenant)
            return behavior(request_or_iterator, context)

        return checked
