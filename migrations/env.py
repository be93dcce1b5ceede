"""Alembic environment: the target metadata is every service's SQLAlchemy models.

Run through `lpm db upgrade|downgrade` (services/common/migrate.py), which passes the database
URL in `config.attributes["url"]` so URLs with `%` need no escaping.
"""

from alembic import context

from services.common.db import make_engine
from services.common.migrate import target_metadata

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata(),
            # SQLite cannot ALTER most things in place; batch mode copies the table instead.
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
