"""The Alembic migrations upgrade and downgrade cleanly on PostgreSQL and SQLite, and the
upgraded schema is exactly what the SQLAlchemy models declare."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.common import migrate
from services.common.db import make_engine

pytestmark = pytest.mark.services
TABLES = {"api_keys", "identities", "reference_images", "reference_encodings"}


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request):
    return request.getfixturevalue("postgres_url" if request.param == "postgres" else "sqlite_url")


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_roundtrip(db_url):
    assert migrate.current(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head_revision()
    assert _tables(db_url) == TABLES
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, migrate.target_metadata()) == []
    engine.dispose()
    migrate.downgrade(db_url)
    assert migrate.current(db_url) is None and _tables(db_url) == set()
    migrate.upgrade(db_url)  # and up again
    assert _tables(db_url) == TABLES


def test_service_refuses_unmigrated_database(sqlite_url):
    from services.identity.app import IdentityApp
    from services.identity.settings import IdentitySettings

    with pytest.raises(RuntimeError, match="lpm db upgrade"):
        IdentityApp(IdentitySettings(database_url=sqlite_url, port=0, http_port=-1))
