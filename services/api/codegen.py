"""Generates the Python gRPC modules from protos/ into services/api/_generated.

Generated code is never edited or committed. protoc emits absolute imports (`from lpm.v1 import
common_pb2`), so `services.api` puts `_generated` on sys.path and the modules import as
`lpm.v1.*`. Generation writes to a temporary folder and renames it into place, under a file
lock, so concurrent processes (a test run and the server it starts) never see half a tree.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "protos"
GENERATED = Path(__file__).resolve().parent / "_generated"
_STAMP = GENERATED / ".stamp"


def _proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("lpm/v1/*.proto"))


def _fingerprint() -> str:
    import hashlib

    h = hashlib.sha256()
    for p in _proto_files():
        h.update(p.relative_to(PROTO_ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def is_current() -> bool:
    """True when the generated tree matches the .proto files (or when there are none to read)."""
    if not _proto_files():
        return GENERATED.is_dir()
    return _STAMP.exists() and _STAMP.read_text() == _fingerprint()


def generate(force: bool = False) -> Path:
    """Run protoc (from grpcio-tools) when the generated code is missing or stale."""
    if not force and is_current():
        return GENERATED
    if not _proto_files():
        raise RuntimeError(f"no .proto files under {PROTO_ROOT}; cannot generate the gRPC API")
    from grpc_tools import protoc  # the `services` extra

    GENERATED.parent.mkdir(parents=True, exist_ok=True)
    lock_path = GENERATED.parent / "_generated.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and is_current():
            return GENERATED
        tmp = Path(tempfile.mkdtemp(prefix="_gen-", dir=GENERATED.parent))
        tmp.chmod(0o755)
        try:
            well_known = Path(protoc.__file__).parent / "_proto"
            args = [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                *(str(p) for p in _proto_files()),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError("protoc failed; see its message above")
            (tmp / ".stamp").write_text(_fingerprint())
            old = GENERATED.with_name(f"_old-{os.getpid()}")
            if GENERATED.exists():
                GENERATED.rename(old)
            tmp.rename(GENERATED)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return GENERATED
