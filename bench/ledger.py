"""Benchmark: ledger throughput on SQLite and PostgreSQL, proofs, offline verification.

Baselines measured in the same run: hashlib alone (the leaf hashing floor) and a bare insert
of equally sized rows in one transaction (the storage floor: sqlite3 executemany, and
PostgreSQL's COPY through psycopg). The batch figure interleaves its floor: each 10,000-leaf
batch is timed right after 10,000 bare rows into the same store, so the ratio holds on a
loaded machine where the absolute rates do not.

    .venv/bin/python bench/ledger.py [--leaves 200000] [--pg postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from custodes.access import enter
from custodes.ledger import checkpoints, log, publish
from custodes.ledger.audit import audit_store
from custodes.ledger.event_types import Disclosure
from custodes.ledger.events import Event
from custodes.ledger.verify import verify_export
from custodes.services.workspace import init
from custodes.synthetic.staff import administrators
from custodes.workspace import Workspace, open_workspace


def record(ws: Workspace, evs: list[Event]) -> None:
    """The ledger's own cost: one append per business transaction, as every service does."""
    with ws.engine.begin() as conn:
        log.append(conn, evs)


def events(n: int, start: int) -> list[Event]:
    """A batch of disclosures as a release records them: one moment for the whole batch."""
    at = dt.datetime.now(dt.UTC)
    return [
        Event(
            Disclosure(
                item_sha256=f"{start + i:064x}",
                fields=["last_known_address"],
                provision="irc-6103-i-2",
                agency="ICE",
                recipients_sha256="c" * 64,
                ruleset_sha256="a" * 64,
                model_sha256="b" * 64,
            ),
            at=at,
            actor="officer-7",
            request_id=f"req-{(start + i) // 1000}",
            record_id=f"rec-{start + i:016x}",
        )
        for i in range(n)
    ]


def rate(n: int, secs: float) -> str:
    return f"{n / secs:>12,.0f} /s"


def floor_rows(n: int, start: int) -> list[tuple[int, str, bytes, bytes]]:
    body = "x" * 420
    return [(start + i, body, os.urandom(32), os.urandom(32)) for i in range(n)]


def floor_insert(ws: Workspace, rows: list[tuple[int, str, bytes, bytes]]) -> float:
    """The storage floor: the same number of bare rows (no index but the key) in one commit,
    in the same store, through the driver's fastest path."""
    t = time.perf_counter()
    with ws.engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        if conn.dialect.name == "postgresql":
            with raw.cursor() as cur, cur.copy("COPY bench_floor FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        else:
            raw.cursor().executemany("INSERT INTO bench_floor VALUES (?, ?, ?, ?)", rows)
    return time.perf_counter() - t


def bench_store(label: str, url: str | None, home: Path, leaves: int, interactive: int) -> None:
    init(home, url, origin=f"bench.custodes/{label}")
    ws = open_workspace(home, url)
    call = enter(ws, administrators(ws).admin, "ledger.sign")
    singles = [events(1, i) for i in range(interactive)]
    t = time.perf_counter()
    for evs in singles:
        record(ws, evs)
    inter = time.perf_counter() - t
    batch = 10_000
    # Events are built before the clock starts: the figure is the ledger's own cost.
    batches = [
        events(min(batch, interactive + leaves - s), s)
        for s in range(interactive, interactive + leaves, batch)
    ]
    with ws.engine.begin() as conn:
        blob = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
        conn.exec_driver_sql(
            f"CREATE TABLE bench_floor (idx BIGINT PRIMARY KEY, body TEXT, salt {blob}, c {blob})"
        )
    bulk = floor = 0.0
    for b, evs in enumerate(batches):
        floor += floor_insert(ws, floor_rows(len(evs), b * batch))
        t = time.perf_counter()
        record(ws, evs)
        bulk += time.perf_counter() - t
    checkpoints.checkpoint(call)
    size = interactive + leaves
    t = time.perf_counter()
    proofs = 2000
    with ws.engine.connect() as conn:
        for i in range(proofs):
            log.inclusion(conn, (i * 7919) % size, size)
    prove = time.perf_counter() - t
    exp = home / "export"
    t = time.perf_counter()
    publish.export(call, exp)
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    rep = verify_export(exp, checkpoints.verifier(ws))
    verify_s = time.perf_counter() - t
    assert rep.ok, rep.problems
    t = time.perf_counter()
    audit = audit_store(ws)
    audit_s = time.perf_counter() - t
    assert audit.ok, audit.problems
    print(f"[{label}] one commit per leaf ({interactive:,})      {rate(interactive, inter)}")
    print(f"[{label}] floor: bare rows, 10,000 per commit   {rate(leaves, floor)}")
    print(f"[{label}] batch, 10,000 leaves per commit ({leaves:,}) {rate(leaves, bulk)}")
    print(f"[{label}] batch / floor                         {floor / bulk:>12.3f}")
    print(f"[{label}] inclusion proofs from the store      {rate(proofs, prove)}")
    print(f"[{label}] export to tlog-tiles                 {rate(size, export_s)}")
    print(f"[{label}] offline verification of the export   {rate(size, verify_s)}")
    print(f"[{label}] full store audit                     {rate(size, audit_s)}")
    ws.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leaves", type=int, default=200_000)
    ap.add_argument("--interactive", type=int, default=2_000)
    ap.add_argument(
        "--pg",
        default=os.environ.get(
            "CUSTODES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres"
        ),
    )
    args = ap.parse_args()
    n = args.leaves
    body = b"x" * 420
    t = time.perf_counter()
    for i in range(n):
        hashlib.sha256(b"\x00" + hashlib.sha256(body + i.to_bytes(8, "big")).digest()).digest()
    base_hash = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (idx INTEGER PRIMARY KEY, body TEXT, salt BLOB, c BLOB)")
        t = time.perf_counter()
        with db:
            db.executemany(
                "INSERT INTO t VALUES (?, ?, ?, ?)",
                ((i, body.decode(), os.urandom(32), os.urandom(32)) for i in range(n)),
            )
        base_sqlite = time.perf_counter() - t
        print(f"baseline: hashlib commitment + leaf hash      {rate(n, base_hash)}")
        print(f"baseline: bare sqlite3 executemany, 1 commit  {rate(n, base_sqlite)}")
        bench_store("sqlite", None, Path(tmp) / "sqlite", n, args.interactive)
        admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
        name = f"custodes_bench_{uuid.uuid4().hex[:8]}"
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            print(f"[postgresql] skipped: {exc.orig}")
            return
        try:
            url = sa.engine.make_url(args.pg).set(database=name).render_as_string(False)
            bench_store("postgresql", url, Path(tmp) / "pg", n, args.interactive)
        finally:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
