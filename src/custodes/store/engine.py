"""Engines and migrations for the transactional store (SQLite by default, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, DateTime, Table, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from custodes.errors import WorkspaceError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise WorkspaceError(f"Store URL is not usable: {exc}", code="bad_store_url") from exc


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise WorkspaceError(
            f"Cannot reach the store ({engine.url.render_as_string(hide_password=True)}): "
            f"{exc.orig}",
            code="store_unreachable",
        ) from exc


def upgrade(engine: Engine) -> None:
    """Bring the store's schema to the newest migration (idempotent)."""
    current_revision(engine)  # clear error when unreachable
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def check_current(engine: Engine) -> None:
    """Refuse to work on a store whose schema is older than this version of custodes."""
    rev = current_revision(engine)
    if rev != head_revision():
        raise WorkspaceError(
            "The store's schema is not current "
            f"(at {rev or 'nothing'}, need {head_revision()}); run 'custodes init' to upgrade it.",
            code="store_outdated",
        )


def bulk_insert(conn: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows (tuples in the table's column order) in the caller's transaction.

    Hand-written because SQLAlchemy's per-row parameter processing costs more than the
    database itself at 100k rows/s (measured in bench/ledger.py); this passes the tuples
    straight to the driver's executemany. Datetimes are stored the way SQLAlchemy's SQLite
    dialect stores them, so SQLAlchemy reads them back unchanged.
    """
    if not rows:
        return
    cols = [c.name for c in table.columns]
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    dt_cols = [i for i, c in enumerate(table.columns) if isinstance(c.type, DateTime)]
    if conn.dialect.name == "sqlite" and dt_cols:
        for i in dt_cols:
            rows = [
                (*r[:i], r[i].replace(tzinfo=None).isoformat(" ", "microseconds"), *r[i + 1 :])
                for r in rows
            ]
    conn.exec_driver_sql(sql, rows)
