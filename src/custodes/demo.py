"""The main job as `make demo` runs it, on the embedded default (SQLite + DuckDB).

Creates (or reuses) a workspace, builds a synthetic master file of DEMO_PEOPLE people, draws an
(i)(2) request shaped like the 2025 ones, and prints what each stage produced and how long it
took. Later stages (rules, matching, decisions, release, ledger) join here as they land.
"""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.table import Table

from custodes.records import master
from custodes.records.generator import generate_master
from custodes.requests.generator import generate_request
from custodes.workspace import init_workspace


def main() -> None:
    console = Console()
    people = int(os.environ.get("DEMO_PEOPLE", "20000"))
    items = int(os.environ.get("DEMO_ITEMS", str(max(people // 20, 100))))
    timings: list[tuple[str, float]] = []

    ws, _ = init_workspace(os.environ.get("CUSTODES_HOME"))
    console.rule("[bold]custodes demo")
    console.print(
        f"Workspace: {ws.home}  (store: {ws.engine.url.render_as_string(hide_password=True)})"
    )

    t = time.perf_counter()
    with console.status(f"Generating a synthetic master file of {people:,} people…"):
        generate_master(ws, people, seed=2025, replace=True)
    timings.append(("generate master file", time.perf_counter() - t))
    info = master.summary(ws)
    table = Table("master file", "count", title="Synthetic master file (ground truth kept)")
    for key in (
        "people",
        "itin",
        "with_suffix",
        "twins",
        "addresses",
        "people_sharing_last_address",
        "synthetic_non_filers",
    ):
        table.add_row(key.replace("_", " "), f"{info[key]:,}")
    console.print(table)

    t = time.perf_counter()
    req = generate_request(
        ws, "irc-6103-i-2", items, seed=2025, out=ws.home / "demo-request", overwrite=True
    )
    timings.append(("generate (i)(2) request", time.perf_counter() - t))
    table = Table("defect", "items", title=f"(i)(2) request of {items:,} items, by defect")
    for k, v in sorted(req.by_defect.items(), key=lambda kv: -kv[1]):
        table.add_row(k, f"{v:,}")
    console.print(table)
    console.print(f"Request written to {req.folder} (envelope.json, items.csv, truth.csv).")

    table = Table("stage", "seconds", title="Timings")
    for stage, secs in timings:
        table.add_row(stage, f"{secs:.2f}")
    console.print(table)
    ws.close()


if __name__ == "__main__":
    main()
