"""Benchmark: intake (`submit`) and `rules check` on a large request, against DuckDB reading the
same items file once, in the same run (issue #29).

In process: intake's shape checks (`intake.check`: read, item checks, hashes) and their parts,
the item checks as Python used to make them (one `item_id_ok` per row, for the before/after
figure), `submit` (checks, copies, Parquet, ledger) and `rules check` (intake's checks plus
every rule check). Through the command line: `custodes rules check` on the large request and on
a 10-item one (what start-up and a trivial check cost), and importing the CLI's commands alone.
Each in-process figure is the best of `--repeat` runs; items per second and the ratio to the
baseline are printed for each.

    .venv/bin/python bench/intake.py [--items 1000000] [--people 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from custodes.access import sessions
from custodes.records.files import read_text_table
from custodes.requests import intake
from custodes.requests.format import EXTRA_COLUMN, ITEM_COLUMNS, item_id_status
from custodes.services import records, requests, rules
from custodes.services.rules import register_parties
from custodes.services.workspace import init
from custodes.store.sql import path as sql_path
from custodes.synthetic import staff
from custodes.workspace import open_workspace


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """The fastest of `repeat` runs: wall-clock seconds, the CPU seconds this process spent in
    that run (every thread; less disturbed by other work on a shared machine), the result."""
    runs = []
    for _ in range(repeat):
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        runs.append((time.perf_counter() - t, time.process_time() - c, out))
    return min(runs, key=lambda r: r[0])


def python_item_checks(table: Any) -> int:
    """The item-id verdicts as intake made them before issue #29: one Python call per row."""
    return sum(item_id_status(v) is not None for v in table.column("item_id").to_pylist())


def cli(home: Path, token: str, *args: str) -> float:
    env = os.environ | {"CUSTODES_SESSION": token, "PYTHONPATH": os.pathsep.join(sys.path)}
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "custodes", *args, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t
    if r.returncode not in (0, 1):  # 1: the request must be refused (a verdict, not a failure)
        raise SystemExit(f"custodes {' '.join(args)} failed:\n{r.stderr}")
    return took


Row = tuple[str, float, float, str]


def _options() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    return ap.parse_args()


def in_process(
    ws: Any, officer: Any, requester: Any, req: Path, n: int, k: int
) -> tuple[Any, list[Row]]:
    """The baseline (DuckDB reads the items once), then each in-process step on the request
    in `req` of `n` items, each the best of `k` runs: (the baseline's run, a row per step).
    The agency's requester submits (staff may key in only a request received on paper);
    the officer runs `rules check`."""
    rows: list[Row] = []
    items = req / "items.csv"

    def row(label: str, run: tuple[float, float, Any], note: str = "") -> None:
        rows.append((label, run[0], run[1], note))

    base = best(
        lambda: duckdb.sql(
            "SELECT count(*) FILTER (WHERE item_id <> '') FROM "
            f"read_csv({sql_path(items)}, all_varchar=true)"
        ).fetchall()[0][0],
        k,
    )
    assert base[2] == n

    def read() -> Any:
        return read_text_table(items, ITEM_COLUMNS, allow_extra=True, extra_names=EXTRA_COLUMN)

    run = best(read, k)
    row("read the items file (Arrow, text columns)", run)
    table = run[2]
    run = best(lambda: python_item_checks(table), 1)
    assert run[2] == 0
    row("before: item ids checked in Python, per row", run)
    row(
        "item checks in DuckDB (ids, repeats, sizes, dates)",
        best(lambda: intake._check_items(table, items.name), k),
    )
    row("content hash (Arrow stream, SHA-256)", best(lambda: intake.content_hash({}, table), k))
    row("intake.check: every shape check, both file hashes", best(lambda: intake.check(req), k))

    envelope = json.loads((req / "envelope.json").read_text())
    runs = iter(range(k))

    def submit() -> Any:
        # A new request each time (the envelope differs), so each run writes everything.
        (req / "envelope.json").write_text(json.dumps(envelope | {"note": f"run {next(runs)}"}))
        return requests.submit(ws, requester, req)

    run = best(submit, k)
    assert not run[2].duplicate and run[2].items == n
    row("submit (checks, copy, Parquet, ledger)", run)
    (req / "envelope.json").write_text(json.dumps(envelope))
    run = best(lambda: rules.check(ws, officer, req), k)
    row("rules check (intake checks + every rule check)", run, f"refused={run[2].refused}")
    return base, rows


def command_line(home: Path, token: str, req: Path, small: Path, k: int) -> list[float]:
    """`custodes rules check` on the large request and on the small one, and importing the
    CLI's commands alone: the best of `k` runs of each, in seconds."""
    e2e = min(cli(home, token, "rules", "check", str(req)) for _ in range(k))
    startup = min(cli(home, token, "rules", "check", str(small)) for _ in range(k))
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    imports = []
    for _ in range(k):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import custodes.cli.commands"], env=env)
        imports.append(time.perf_counter() - t0)
    return [e2e, startup, min(imports)]


def main() -> None:
    args = _options()
    n, k = args.items, args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        init(home)
        ws = open_workspace(home)
        people = staff.one_per_role(ws)
        records.generate(ws, people.admin, args.people, 1)
        register_parties(ws, people.admin, "irc-6103-i-2")
        req, small = Path(tmp) / "req", Path(tmp) / "small"
        requests.generate(ws, people.admin, "irc-6103-i-2", n, 1, req)
        requests.generate(ws, people.admin, "irc-6103-i-2", 10, 2, small)
        base, rows = in_process(ws, people["officer"], people["requester"], req, n, k)
        token = sessions.login(ws, "officer", people.password)
        ws.close()
        e2e, startup, imports = command_line(home, token, req, small, k)

    baseline = base[0]
    print(f"{'items':<52} {n:>10,}   {'items/s':>10}   {'CPU s':>6}   ratio to baseline")
    for label, wall, cpu, note in rows:
        print(
            f"{label:<52} {wall:>8.2f} s {n / wall:>12,.0f} {cpu:>8.2f} {wall / baseline:>8.1f}x"
            f"   {note}"
        )
    label = "baseline: DuckDB reads the CSV once"
    print(f"{label:<52} {baseline:>8.2f} s {n / baseline:>12,.0f} {base[1]:>8.2f}")
    print(f"{'custodes rules check, command line, end to end':<52} {e2e:>8.2f} s")
    print(f"{'  the same on a 10-item request (start-up)':<52} {startup:>8.2f} s")
    print(f"{'  of which importing the CLI commands':<52} {imports:>8.2f} s")
    print(f"{'  the work itself (end to end - start-up)':<52} {e2e - startup:>8.2f} s")


if __name__ == "__main__":
    main()
