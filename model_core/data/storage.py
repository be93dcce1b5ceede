"""Where data lives: a local folder or an S3 prefix, behind one small interface.

`open_store("out/curated")` or `open_store("s3://bucket/prefix")`. S3 settings come from the
same environment variables the services use: `LPM_S3_ENDPOINT` (host:port or URL),
`LPM_S3_ACCESS_KEY`, `LPM_S3_SECRET_KEY`, `LPM_S3_REGION`, `LPM_S3_SECURE`.
Writes are atomic: a local file appears under its name only when complete (temp + rename),
and an S3 object only when its upload finished.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse


class StoreError(Exception):
    """A store that cannot be used (missing bucket, no endpoint, unreadable folder)."""


class LocalStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                yield p.relative_to(self.root).as_posix()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def clean_partial(self) -> int:
        """Remove temp files left by an interrupted write; returns how many."""
        n = 0
        if self.root.exists():
            for p in self.root.rglob(".*.part"):
                p.unlink(missing_ok=True)
                n += 1
        return n


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or s3_client_from_env()
        try:
            found = self.client.bucket_exists(bucket)
        except Exception as e:  # connection refused, bad credentials
            raise StoreError(f"cannot reach S3 for bucket {bucket!r}: {e}") from e
        if not found:
            raise StoreError(f"bucket {bucket!r} does not exist")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._key(key))
            return True
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound", "NotFound"):
                return False
            raise

    def get(self, key: str) -> bytes:
        resp = self.client.get_object(self.bucket, self._key(key))
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data))

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        cut = len(self.prefix) + 1 if self.prefix else 0
        names = [
            o.object_name
            for o in self.client.list_objects(self.bucket, prefix=full, recursive=True)
            if not o.is_dir
        ]
        for name in sorted(names):
            yield name[cut:]

    def local_path(self, key: str) -> Path | None:
        return None

    def clean_partial(self) -> int:
        return 0  # S3 uploads are all-or-nothing


Store = LocalStore | S3Store


def s3_client_from_env():
    from minio import Minio

    endpoint = os.environ.get("LPM_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint:
        raise StoreError("s3:// needs an S3 endpoint: set LPM_S3_ENDPOINT (host:port)")
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    secure = (
        os.environ.get("LPM_S3_SECURE", "").lower() in ("1", "true", "yes")
        or parsed.scheme == "https"
    )
    return Minio(
        parsed.netloc,
        access_key=os.environ.get("LPM_S3_ACCESS_KEY") or os.environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=os.environ.get("LPM_S3_SECRET_KEY")
        or os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        region=os.environ.get("LPM_S3_REGION", "us-east-1"),
        secure=secure,
    )


def open_store(url: str | Path, create: bool = False, client=None) -> Store:
    """A local folder (created when `create`) or `s3://bucket/prefix` (the bucket must exist)."""
    text = str(url)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise StoreError(f"{text!r} names no bucket")
        return S3Store(parsed.netloc, parsed.path, client=client)
    path = Path(text[len("file://") :] if text.startswith("file://") else text)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        raise StoreError(f"{path} is not a folder")
    return LocalStore(path)
