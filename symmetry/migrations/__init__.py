"""Alembic migrations of the symmetry database, shipped inside the package.

:func:`symmetry.store.open_store` calls :func:`upgrade` on every open, so an
installed symmetry brings any database it opens to its own schema. For a new
schema change, edit the models in :mod:`symmetry.store`, then generate a
revision against a database at the current head and review it::

    SYMMETRY_DATABASE_URL=sqlite:////tmp/dev.sqlite3 \\
        python -m symmetry.migrations revision --autogenerate -m "add video frames"

``python -m symmetry.migrations`` takes Alembic's usual commands (``current``,
``history``, ``upgrade head --sql`` to print the SQL for a DBA, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["alembic_config", "upgrade", "check_current", "head_revision", "current_revision", "main"]

_HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    """The newest revision this version of symmetry knows."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:  # pragma: no cover - guarded by the tests
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}; merge them")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _check_known(rev: str | None) -> None:
    from ..store import StoreError

    if rev is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(rev)
    except Exception:
        raise StoreError(
            f"the database schema (revision {rev}) is newer than this symmetry knows "
            f"(head {head_revision()}); upgrade symmetry to open it"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` in one transaction (no-op when already there).

    The whole upgrade runs in one transaction holding the write lock (SQLite
    ``BEGIN IMMEDIATE``; a PostgreSQL advisory lock in ``env.py``), so two
    processes opening a new database at once do not both create it.
    """
    rev = current_revision(engine)
    _check_known(rev)
    if revision == "head" and rev == head_revision():
        return
    with engine.connect().execution_options(symmetry_write=True) as conn:
        with conn.begin():
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


def check_current(engine: Engine) -> None:
    """Raise :class:`~symmetry.store.StoreError` unless the database is at the head revision."""
    from ..store import StoreError

    rev = current_revision(engine)
    _check_known(rev)
    if rev != head_revision():
        raise StoreError(f"the database is at revision {rev}, not {head_revision()}; open it with migrate=True")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m symmetry.migrations``: Alembic's command line on the packaged migrations."""
    from alembic.config import CommandLine

    cli = CommandLine(prog="python -m symmetry.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cfg = alembic_config()
    cfg.cmd_opts = options
    cli.run_cmd(cfg, options)
