"""Benchmark: evaluating every check of the reference (i)(2) provision on a large request.

Baseline in the same run: DuckDB reading the same items file and counting non-empty streets
(the cost of touching the data once). Reports items per second and the ratio.

    .venv/bin/python bench/rules.py [--items 1000000] [--people 200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import duckdb

from custodes.records.files import read_text_table
from custodes.requests.format import ITEM_COLUMNS, read_envelope, with_optional
from custodes.rules.evaluate import evaluate
from custodes.rules.provisions import load
from custodes.rules.types import Registry
from custodes.services import records, requests
from custodes.services.workspace import init
from custodes.synthetic.staff import administrators
from custodes.workspace import open_workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        init(Path(tmp) / "ws")
        ws = open_workspace(Path(tmp) / "ws")
        admin = administrators(ws).admin
        records.generate(ws, admin, args.people, 1)
        req = Path(tmp) / "req"
        t = time.perf_counter()
        requests.generate(ws, admin, "irc-6103-i-2", args.items, 1, req)
        gen = time.perf_counter() - t
        t = time.perf_counter()
        n = duckdb.sql(
            f"SELECT count(*) FILTER (street <> '') FROM read_csv('{req}/items.csv', "
            "all_varchar=true)"
        ).fetchall()[0][0]
        baseline = time.perf_counter() - t
        assert n > 0
        rs = load()
        registry = Registry({}, [], {})
        t = time.perf_counter()
        table = with_optional(read_text_table(req / "items.csv", ITEM_COLUMNS, allow_extra=True))
        read = time.perf_counter() - t
        t = time.perf_counter()
        ev = evaluate(rs, registry, read_envelope(req), table, today=dt.date.today())
        checks = time.perf_counter() - t
    total = read + checks
    n_checks = sum(v.passed is not None for v in ev.item) + len(ev.request)
    print(f"items                                   {args.items:>12,}")
    print(f"generate the request                    {gen:>10.2f} s")
    print(f"read + validate the items file          {read:>10.2f} s")
    print(
        f"evaluate {n_checks} checks (one DuckDB pass)     {checks:>10.2f} s "
        f"({args.items / checks:,.0f} items/s)"
    )
    print(f"baseline: DuckDB scans the file once    {baseline:>10.2f} s")
    print(f"ratio (read + evaluate) / baseline      {total / baseline:>10.1f}x")


if __name__ == "__main__":
    main()
