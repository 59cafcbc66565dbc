"""Benchmark: synthetic master-file generation and import, against writing the same rows.

Baseline in the same run: DuckDB copying the generated people and address tables to Parquet
(the I/O floor). Reports seconds, people per second and the ratio to the baseline.

    .venv/bin/python bench/generate.py [--people 1000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from custodes.services import records
from custodes.services.workspace import init
from custodes.synthetic.population import generate_tables
from custodes.synthetic.staff import administrators
from custodes.workspace import open_workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.people
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tables"
        out.mkdir()
        t = time.perf_counter()
        generate_tables(n, seed=1, out=out)
        draw = time.perf_counter() - t

        t = time.perf_counter()
        for name in ("people", "addresses"):
            duckdb.sql(
                f"COPY (SELECT * FROM '{out}/{name}.parquet') TO "
                f"'{tmp}/{name}-copy.parquet' (FORMAT parquet)"
            )
        baseline = time.perf_counter() - t

        init(Path(tmp) / "ws")
        ws = open_workspace(Path(tmp) / "ws")
        admin = administrators(ws).admin
        t = time.perf_counter()
        records.generate(ws, admin, n, 1)
        total = time.perf_counter() - t
        rows = duckdb.sql(f"SELECT count(*) FROM '{out}/addresses.parquet'").fetchall()[0][0]
    print(f"people                         {n:>12,}")
    print(f"address rows                   {rows:>12,}")
    print(f"draw tables (no validation)    {draw:>10.2f} s")
    print(f"generate + validate + load     {total:>10.2f} s   ({n / total:,.0f} people/s)")
    print(f"baseline: copy tables once     {baseline:>10.2f} s")
    print(f"ratio full / baseline          {total / baseline:>10.1f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory           {peak:>10.0f} MB")


if __name__ == "__main__":
    main()
