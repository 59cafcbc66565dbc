"""Benchmark: checking the master file against its recorded hash (issue #23, finding 2), against
DuckDB reading the same files once, in the same run.

Every use of the master file (process, prepare, approve, release, `records show`, training)
first hashes each of its files in one sequential read (`ledger.files.sha256_file`). Baseline:
DuckDB scanning every column of the same Parquet files once (`SELECT … hash(COLUMNS(*))`), the
least any use of them costs. Both are timed warm (the files just written, in the page cache) and
reported with the ratio.

    .venv/bin/python bench/files.py [--people 1000000 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from custodes.ledger.files import sha256_file
from custodes.records import master
from custodes.services import records
from custodes.services.workspace import init
from custodes.store.sql import parquet
from custodes.synthetic.staff import administrators
from custodes.workspace import open_workspace


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print("| people | files | MiB | hash (s) | MiB/s | DuckDB reads them once (s) | ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in args.people:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "ws"
            init(home, None, origin="custodes.bench/ledger")
            ws = open_workspace(home)
            admin = administrators(ws).admin
            records.generate(ws, admin, n, 1)
            mf = master.current(ws)
            paths = [mf.path(t) for t in master.TABLES if mf.has(t)]
            mib = sum(p.stat().st_size for p in paths) / 2**20

            def hash_all(paths: list[Path] = paths) -> None:
                for p in paths:
                    sha256_file(p)

            def duck_all(paths: list[Path] = paths) -> None:
                con = duckdb.connect()
                for p in paths:
                    con.execute(f"SELECT sum(hash(COLUMNS(*))) FROM {parquet(p)}").fetchall()
                con.close()

            h = _best(hash_all, args.repeat)
            d = _best(duck_all, args.repeat)
            names = "+".join(p.stem for p in paths)
            print(
                f"| {n:,} | {names} | {mib:,.0f} | {h:.2f} | {mib / h:,.0f} | {d:.2f} | "
                f"{h / d:.2f} |",
                flush=True,
            )
            ws.close()


if __name__ == "__main__":
    main()
