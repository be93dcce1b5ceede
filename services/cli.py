"""`lpm`: the one command line of the platform.

Service commands live here (`serve`, `admin`, `db`, `identity`); the model-side commands
(`perform`, `model info`, `bench`, `data`, `train`, `demo`) are mounted from
`model_core.cli.<name>.register(subparsers)` when those modules exist. Bad input:
`lpm <cmd>: error: <msg>` on stderr, exit 2; a gRPC error: `STATUS_NAME: message`, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from model_core.cli import OneLineArgumentParser, register_model_commands, run_parsed
from model_core.cli.errors import UsageError

DEFAULT_IDENTITY_TARGET = "127.0.0.1:50051"


# --- serve / admin / db ---------------------------------------------------------------------
def _serve_identity(args) -> int:
    from services.identity.app import serve
    from services.identity.settings import IdentitySettings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    serve(IdentitySettings(**overrides))
    return 0


def _settings():
    from services.common.settings import ServiceSettings

    return ServiceSettings()


def _create_key(args) -> int:
    from services.common.auth import create_api_key
    from services.common.db import Database

    db = Database(_settings().database_url)
    try:
        new = create_api_key(db, args.tenant, args.name or "")
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        db.dispose()
    print(new.key)
    print(f"key id {new.key_id} for tenant {new.tenant}; it is shown only once", file=sys.stderr)
    return 0


def _revoke_key(args) -> int:
    from services.common.auth import revoke_api_key
    from services.common.db import Database

    db = Database(_settings().database_url)
    try:
        if not revoke_api_key(db, args.key_id):
            raise UsageError(f"no active key {args.key_id!r}")
    finally:
        db.dispose()
    return 0


def _janitor(args) -> int:
    """One sweep of what the identity service's janitor does every `janitor_interval_s`."""
    import datetime as dt

    from services.common import migrate
    from services.common.db import Database
    from services.common.objectstore import open_object_store
    from services.identity.images import ReferenceLimits
    from services.identity.settings import IdentitySettings
    from services.identity.store import IdentityStore

    settings = IdentitySettings()
    grace_s = settings.janitor_grace_s if args.grace_s is None else args.grace_s
    if grace_s < 0:
        raise UsageError(f"--grace-s must be >= 0, got {grace_s:g}")
    revision, head = migrate.current(settings.database_url), migrate.head_revision()
    if revision != head:
        raise UsageError(
            f"database is at revision {revision or 'none'}, needs {head}: run `lpm db upgrade`"
        )
    objects = open_object_store(
        settings.object_store_url,
        s3_endpoint=settings.s3_endpoint,
        s3_access_key=settings.s3_access_key,
        s3_secret_key=settings.s3_secret_key,
        s3_region=settings.s3_region,
        s3_secure=settings.s3_secure,
    )
    limits = ReferenceLimits.for_preset(
        settings.model_preset, settings.max_image_bytes, settings.max_image_pixels
    )
    db = Database(settings.database_url)
    try:
        store = IdentityStore(db, objects, limits, settings.effective_model_version)
        removed = store.sweep_orphans(dt.timedelta(seconds=grace_s))
    finally:
        db.dispose()
    for key in removed:
        print(key)
    print(f"removed {len(removed)} orphaned objects older than {grace_s:g}s", file=sys.stderr)
    return 0


def _db(args) -> int:
    from services.common import migrate

    url = args.database_url or _settings().database_url
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
    else:
        migrate.downgrade(url, args.revision or "base")
    print(f"database at revision {migrate.current(url) or 'base'}")
    return 0


# --- identity client commands -----------------------------------------------------------------
def _client(args):
    from services.identity.client import IdentityClient

    key = os.environ.get("LPM_API_KEY", "")
    if not key:
        raise UsageError("set LPM_API_KEY (create one with `lpm admin create-key --tenant T`)")
    return IdentityClient(args.target, key)


def _read_image(spec: str, what: str) -> tuple[str, bytes]:
    label, sep, path = spec.partition("=") if what != "global" else ("", "", spec)
    if what != "global" and (not sep or not label or not path):
        raise UsageError(f"--{what} expects LABEL=IMAGE, got {spec!r}")
    try:
        return label, Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def _identity_summary(ident) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(ident, preserving_proto_field_name=True)


def _identity_create(args) -> int:
    images = [("global", *_read_image(args.global_image, "global"))]
    images += [("body", *_read_image(s, "body")) for s in args.body]
    images += [("face", *_read_image(s, "face")) for s in args.face]
    with _client(args) as c:
        ident = c.create(args.name, images)
    print(ident.id)
    return 0


def _identity_ls(args) -> int:
    from services.api import identity_pb2

    with _client(args) as c:
        for ident in c.list_all():
            state = identity_pb2.EncodingState.Name(ident.encoding.state).removeprefix(
                "ENCODING_STATE_"
            )
            print(f"{ident.id}\t{len(ident.references)} refs\t{state}\t{ident.name}")
    return 0


def _identity_show(args) -> int:
    with _client(args) as c:
        print(json.dumps(_identity_summary(c.get(args.identity_id)), indent=2))
    return 0


def _identity_rm(args) -> int:
    with _client(args) as c:
        for identity_id in args.identity_id:
            c.delete(identity_id)
    return 0


def _identity_url(args) -> int:
    kind, _, label = args.slot.partition(":")
    with _client(args) as c:
        print(c.download_url(args.identity_id, kind, label, args.ttl).url)
    return 0


def _register_service_commands(sub) -> None:
    p = sub.add_parser("serve", help="run a service")
    s = p.add_subparsers(dest="service", required=True, metavar="SERVICE")
    q = s.add_parser("identity", help="the identity-reference service (settings: LPM_* env)")
    q.add_argument("--host", help="bind address (LPM_HOST)")
    q.add_argument("--port", type=int, help="gRPC port (LPM_PORT)")
    q.set_defaults(func=_serve_identity, _prog=q.prog)

    p = sub.add_parser("admin", help="administration: API keys, janitor")
    s = p.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    q = s.add_parser("create-key", help="create an API key for a tenant; prints it once")
    q.add_argument("--tenant", required=True)
    q.add_argument("--name", help="a note on what the key is for")
    q.set_defaults(func=_create_key, _prog=q.prog)
    q = s.add_parser("revoke-key", help="revoke an API key by its id")
    q.add_argument("key_id")
    q.set_defaults(func=_revoke_key, _prog=q.prog)
    q = s.add_parser(
        "janitor",
        help="sweep the identity store once: remove objects no row points at and stale "
        "encodings; prints the removed object keys",
    )
    q.add_argument(
        "--grace-s",
        type=float,
        help="only touch objects older than this many seconds (default LPM_JANITOR_GRACE_S)",
    )
    q.set_defaults(func=_janitor, _prog=q.prog)

    p = sub.add_parser("db", help="database migrations (LPM_DATABASE_URL)")
    p.add_argument("action", choices=("upgrade", "downgrade"))
    p.add_argument("revision", nargs="?", help="target (default: head / base)")
    p.add_argument("--database-url", help="override LPM_DATABASE_URL")
    p.set_defaults(func=_db, _prog=p.prog)

    p = sub.add_parser("identity", help="identity references (key from LPM_API_KEY)")
    s = p.add_subparsers(dest="identity_command", required=True, metavar="ACTION")
    target = os.environ.get("LPM_IDENTITY_TARGET", DEFAULT_IDENTITY_TARGET)

    def cmd(name: str, help: str, func) -> argparse.ArgumentParser:
        q = s.add_parser(name, help=help)
        q.add_argument("--target", default=target, help=f"HOST:PORT (default {target})")
        q.set_defaults(func=func, _prog=q.prog)
        return q

    q = cmd("create", "upload a reference set; prints the new identity id", _identity_create)
    q.add_argument("--name", required=True)
    q.add_argument("--global", dest="global_image", required=True, metavar="IMG")
    q.add_argument("--body", action="append", default=[], metavar="VIEW=IMG")
    q.add_argument("--face", action="append", default=[], metavar="EXPR=IMG")
    cmd("ls", "list identities", _identity_ls)
    q = cmd("show", "show one identity as JSON", _identity_show)
    q.add_argument("identity_id")
    q = cmd("rm", "delete identities and their images", _identity_rm)
    q.add_argument("identity_id", nargs="+")
    q = cmd("url", "a time-limited download URL of one reference image", _identity_url)
    q.add_argument("identity_id")
    q.add_argument("slot", help="global, body:VIEW or face:EXPR")
    q.add_argument("--ttl", type=int, default=0, help="seconds (default 900)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="lpm", description="LPM real-time character performance")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_model_commands(sub)
    _register_service_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Model-side errors as model_core.cli prints them; a gRPC error as `STATUS: message`."""
    try:
        return run_parsed(build_parser().parse_args(argv))
    except BrokenPipeError:  # `lpm identity show X | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        grpc = sys.modules.get("grpc")
        if grpc is not None and isinstance(e, grpc.RpcError) and hasattr(e, "code"):
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
