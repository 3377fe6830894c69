"""Alembic environment: runs on the connection :func:`symmetry.migrations.upgrade` passes in,
or (from ``python -m symmetry.migrations``) on ``SYMMETRY_DATABASE_URL`` / the default database."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from symmetry.store import Base, _make_engine, resolve_database_url

config = context.config
target_metadata = Base.metadata

#: Key of the PostgreSQL advisory lock held while migrating ("SYMM" in ASCII).
_PG_LOCK_KEY = 0x53594D4D


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=resolve_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = _make_engine(resolve_database_url())
    try:
        with engine.connect().execution_options(symmetry_write=True) as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
