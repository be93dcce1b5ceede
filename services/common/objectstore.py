"""Object storage behind one small interface, with two backends.

- `S3ObjectStore`: any S3 server through the `minio` client (MinIO in production, SeaweedFS in
  tests). Presigned URLs are S3's own.
- `LocalObjectStore`: a folder (the embedded default). Its "presigned" URLs point at the owning
  service's HTTP port and carry an HMAC over (key, expiry), checked by `verify_signature`.

`open_object_store(url, ...)` picks the backend from the URL: `s3://bucket` or `file:///path`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlparse


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: dt.datetime


class ObjectNotFound(KeyError):
    pass


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, replacing any object there (atomically)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, recursively."""

    def presigned_get_url(self, key: str, ttl: dt.timedelta) -> str:
        """A URL that downloads the object without credentials until `ttl` has passed."""


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad object key {key!r}")
    return key


class LocalObjectStore:
    """Objects as files under `root`; writes go through a temporary file and a rename."""

    def __init__(self, root: Path | str, public_url: str = "", signing_key: bytes | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_url = public_url.rstrip("/")
        self._signing_key = signing_key or self._load_signing_key()

    def _load_signing_key(self) -> bytes:
        # Kept beside the objects so links stay valid across restarts of the service.
        path = self.root.parent / f".{self.root.name}.signing-key"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            os.write(fd, secrets.token_bytes(32))
            os.close(fd)
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)  # first writer wins when two processes race
            except FileExistsError:
                pass
            os.unlink(tmp)
        return path.read_bytes()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    yield ObjectInfo(
                        key, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
                    )

    def sign(self, key: str, expires: int) -> str:
        msg = f"{key}\n{expires}".encode()
        return hmac.new(self._signing_key, msg, hashlib.sha256).hexdigest()

    def verify_signature(self, key: str, expires: int, signature: str) -> bool:
        """True while `expires` (unix seconds) is in the future and the signature is ours."""
        if expires < time.time():
            return False
        return hmac.compare_digest(self.sign(key, expires), signature)

    def presigned_get_url(self, key: str, ttl: dt.timedelta) -> str:
        if not self.public_url:
            raise RuntimeError("local object store has no public URL (HTTP port disabled)")
        expires = int(time.time() + ttl.total_seconds())
        sig = self.sign(_check_key(key), expires)
        return f"{self.public_url}/objects/{quote(key)}?expires={expires}&signature={sig}"


class S3ObjectStore:
    """One bucket on an S3 server, through the minio client."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        secure: bool = False,
    ):
        from minio import Minio

        self.bucket = bucket
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        if not self.client.bucket_exists(bucket):
            try:
                self.client.make_bucket(bucket)
            except Exception:
                if not self.client.bucket_exists(bucket):  # lost a race with another replica
                    raise

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(
            self.bucket, _check_key(key), io.BytesIO(data), len(data), content_type=content_type
        )

    def get(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, _check_key(key))
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, _check_key(key))

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, _check_key(key))
            return True
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            if obj.is_dir:
                continue
            yield ObjectInfo(obj.object_name, obj.size or 0, obj.last_modified)

    def presigned_get_url(self, key: str, ttl: dt.timedelta) -> str:
        return self.client.presigned_get_object(self.bucket, _check_key(key), expires=ttl)


def open_object_store(
    url: str,
    *,
    s3_endpoint: str = "",
    s3_access_key: str = "",
    s3_secret_key: str = "",
    s3_region: str = "us-east-1",
    s3_secure: bool = False,
    public_url: str = "",
) -> ObjectStore:
    """`s3://bucket` (needs the s3_* arguments) or `file:///path` (or a bare path)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not s3_endpoint:
            raise ValueError("s3:// object store needs an S3 endpoint (LPM_S3_ENDPOINT)")
        return S3ObjectStore(
            s3_endpoint, parsed.netloc, s3_access_key, s3_secret_key, s3_region, s3_secure
        )
    if parsed.scheme in ("file", ""):
        return LocalObjectStore(parsed.path if parsed.scheme else url, public_url=public_url)
    raise ValueError(f"unsupported object store URL {url!r}; use s3://bucket or file:///path")
