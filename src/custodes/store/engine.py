"""Engines and migrations for the transactional store (SQLite by default, PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, DateTime, Table, create_engine, event, inspect, text
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from custodes import failpoints
from custodes.errors import IntegrityError, Overloaded, WorkspaceError

if TYPE_CHECKING:
    import psycopg
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# How long a call waits for a free connection when the pool was sized for a server (the
# server's admission control keeps the calls in flight below the pool's size, so this wait
# never runs out in normal operation; docs/api.md).
SERVER_POOL_TIMEOUT = 5.0


class _Pool(QueuePool):
    """SQLAlchemy's queue pool, whose checkout timeout is a coded error (`store_busy`, 503 with
    Retry-After over HTTP) instead of SQLAlchemy's TimeoutError (an internal error with a
    traceback). `_do_get` is the one place a checkout waits; SQLAlchemy's own pools override
    it the same way."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as exc:
            raise Overloaded(
                "The store has no free connection now; nothing was done. Try again shortly.",
                code="store_busy",
                retry_after=1,
            ) from exc


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """The engine for a store URL. `pool_size`: the connections a server keeps (sized with its
    admission limits, with as many again as overflow); the library's defaults otherwise."""
    pool: dict[str, Any] = {}
    if "://" in url and ":memory:" not in url and not url.rstrip("/").endswith(":"):
        pool["poolclass"] = _Pool  # a file or a server (an in-memory SQLite keeps its own)
    if pool_size and pool:
        pool |= {
            "pool_size": pool_size,
            "max_overflow": pool_size,
            "pool_timeout": SERVER_POOL_TIMEOUT,
        }
    try:
        engine = _create(url, pool)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise WorkspaceError(f"Store URL is not usable: {exc}", code="bad_store_url") from exc
    event.listen(engine, "handle_error", _generated_key_taken)
    if failpoints.ACTIVE:  # crash tests only: nothing is registered otherwise
        event.listen(engine, "commit", lambda _conn: failpoints.hit("commit"))
    return engine


def _generated_keys() -> dict[str, str]:
    """The tables whose key the store generates (a serial column on PostgreSQL, the rowid on
    SQLite): their name, and the name of their primary key's constraint on PostgreSQL."""
    from custodes.store.tables import metadata

    return {
        str(t.name): f"{t.name}_pkey"
        for t in metadata.tables.values()
        if t.autoincrement_column is not None
    }


_GENERATED: dict[str, str] = {}


def _generated_key_taken(context: ExceptionContext) -> None:
    """A genuine insert refused because its generated key is taken: a row was put into the
    table behind custodes' back. On PostgreSQL a row inserted with an explicit id leaves the
    table's sequence behind, so the next insert draws that id again and collides (issue #23,
    the tamper campaign); SQLite draws max(rowid) + 1 and never collides, but the same check
    holds for it. The database's own error would be an uncoded internal error; this says what
    happened, names the table (never a value) and leaves nothing written (the transaction is
    rolled back by the caller). `ledger verify` names the foreign row."""
    exc = context.sqlalchemy_exception
    if not isinstance(exc, DBIntegrityError):
        return
    if not _GENERATED:
        _GENERATED.update(_generated_keys())
    orig = context.original_exception
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    text_ = str(orig)
    for table, pkey in _GENERATED.items():
        if constraint == pkey or f"UNIQUE constraint failed: {table}." in text_:
            raise IntegrityError(
                f"The store's table {table} holds a row custodes did not write at the next "
                "key it draws: the store was altered outside custodes; nothing was done. "
                "Run 'custodes ledger verify' and restore the store.",
                code="store_tampered",
            ) from None


def _create(url: str, pool: dict[str, Any]) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, **pool)


def _config() -> Config:
    from alembic.config import Config  # Alembic only when migrating: it costs every command

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration's revision. Each migration's revision is its file's number
    (`0015_session_last_used.py` is revision "0015", a chain with no branches), so the head is
    read from the file names instead of loading every script through Alembic on every open
    (tests/test_migrations.py holds this to Alembic's own head)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, as Alembic records it (its `alembic_version` table)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        if _on_read_only_filesystem(engine):  # SQLite says only "unable to open database file"
            raise WorkspaceError(
                "The store's folder is on a read-only filesystem; custodes writes to its store "
                "on every call (the access log). Make it writable and run the command again.",
                code="read_only",
            ) from exc
        raise WorkspaceError(
            f"Cannot reach the store ({engine.url.render_as_string(hide_password=True)}): "
            f"{exc.orig}",
            code="store_unreachable",
        ) from exc


def _on_read_only_filesystem(engine: Engine) -> bool:
    db = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not db or db == ":memory:":
        return False
    try:
        return bool(os.statvfs(Path(db).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def upgrade(engine: Engine) -> str | None:
    """Bring the store's schema to the newest migration (idempotent); returns the revision it
    was at (None: a new store)."""
    from alembic import command

    before = current_revision(engine)  # clear error when unreachable
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before


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
    database itself at 100k rows/s (measured in bench/ledger.py). On SQLite the tuples go
    straight to the driver's executemany; datetimes are stored the way SQLAlchemy's SQLite
    dialect stores them (naive UTC text), so SQLAlchemy reads them back unchanged, and a value
    already given as that text is passed as it is. On PostgreSQL they go through `COPY … FROM
    STDIN` (psycopg's copy protocol: one stream instead of a statement per row, 2–3× the
    rows per second of a pipelined executemany). The table and column names come from
    custodes' own schema, never from input.
    """
    if not rows:
        return
    cols = [c.name for c in table.columns]
    if conn.dialect.name == "postgresql":
        # (SQLAlchemy's psycopg dialect hands over psycopg's own connection)
        raw = cast("psycopg.Connection[Any] | None", conn.connection.dbapi_connection)
        assert raw is not None
        sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
        import psycopg  # the PostgreSQL driver custodes uses; present whenever this runs

        try:
            with raw.cursor() as cur, cur.copy(sql) as copy:
                for r in rows:
                    copy.write_row(r)
        except psycopg.Error as exc:
            # The driver's error as SQLAlchemy would have raised it (IntegrityError,
            # OperationalError…), so callers catch one kind whichever path inserted.
            raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    dt_cols = [
        i
        for i, c in enumerate(table.columns)
        if isinstance(getattr(c.type, "impl", c.type), DateTime)
    ]
    for i in dt_cols if conn.dialect.name == "sqlite" else ():
        rows = [
            r if isinstance(r[i], str) else (*r[:i], sqlite_time(r[i]), *r[i + 1 :]) for r in rows
        ]
    conn.exec_driver_sql(sql, rows)


def sqlite_time(at: Any) -> str:
    """A UTC moment as SQLAlchemy's SQLite dialect stores it: naive, space, microseconds."""
    return str(at.replace(tzinfo=None).isoformat(" ", "microseconds"))
