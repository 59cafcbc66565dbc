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

from custodes.records.generator import generate_master
from custodes.requests.generator import generate_request
from custodes.rules.evaluate import evaluate, load_items
from custodes.rules.registry import Registry
from custodes.rules.ruleset import load
from custodes.workspace import init_workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws, _ = init_workspace(Path(tmp) / "ws")
        generate_master(ws, args.people, seed=1)
        req = Path(tmp) / "req"
        t = time.perf_counter()
        generate_request(ws, "irc-6103-i-2", args.items, seed=1, out=req)
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
        import json

        table = load_items(req, json.loads((req / "envelope.json").read_text()))
        read = time.perf_counter() - t
        t = time.perf_counter()
        ev = evaluate(rs, registry, req, items=table, today=dt.date.today())
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
