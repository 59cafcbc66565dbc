"""The main job as `make demo` runs it, on the embedded default (SQLite + DuckDB).

Creates (or reuses) a workspace, builds a synthetic master file of DEMO_PEOPLE people, draws an
(i)(2) request shaped like the 2025 ones, and prints what each stage produced and how long it
took, what the rules say of each check (with citations), and the ledger's signed checkpoint.
Then the main job: train the linkage model, process the request (rules, matching, decisions),
resolve review items (automatically, said on screen), prepare, approve by a second person,
release, and sign a ledger checkpoint.
"""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.table import Table

from custodes.records import master
from custodes.records.generator import generate_master
from custodes.requests.generator import generate_request
from custodes.rules.active import in_force
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
    from custodes.requests.intake import submit

    sub = submit(ws, req.folder, actor="demo-officer")
    console.print(
        f"Submitted as [bold]{sub.request_id}[/] ({sub.state}"
        + (", recognised from an earlier run" if sub.duplicate else "")
        + ")."
    )

    # Registries the (i)(2) request needs: the agency, its signer, the agreement.
    from custodes.ledger import service as ledger
    from custodes.ledger.keys import key_path, keygen
    from custodes.requests.generator import register_parties
    from custodes.rules.service import check_request

    register_parties(ws, "irc-6103-i-2", actor="demo-admin")
    t = time.perf_counter()
    ev = check_request(ws, req.folder)
    timings.append(("rules: every check, every item", time.perf_counter() - t))
    table = Table(
        "check",
        "failing items",
        "if it fails",
        "citation",
        title=f"Rules ({ev.ruleset} {ev.ruleset_sha256[:12]}…): "
        + ("REFUSED" if ev.refused else "request-level checks pass"),
    )
    for v in ev.request:
        if not v.passed:
            table.add_row(v.check, "whole request", v.severity, v.citation)
    for v in ev.item:
        table.add_row(
            v.check,
            "after matching" if v.passed is None else f"{v.failing:,}",
            v.severity,
            v.citation,
        )
    console.print(table)

    if not key_path(ws).exists():
        keygen(ws, "custodes.demo/ledger")
    t = time.perf_counter()
    cp, note = ledger.checkpoint(ws)
    timings.append(("ledger checkpoint", time.perf_counter() - t))
    console.print(f"Ledger: {cp.size:,} events, signed checkpoint:")
    console.print(note.render(), highlight=False, soft_wrap=True)
    console.print(
        f"Verify it offline: custodes ledger export DIR && custodes ledger verify DIR "
        f"--key '{ledger.verifier(ws).vkey}'",
        soft_wrap=True,
    )
    _main_job(ws, console, sub.request_id, timings)

    table = Table("stage", "seconds", title="Timings")
    for stage, secs in timings:
        table.add_row(stage, f"{secs:.2f}")
    console.print(table)
    ws.close()


def _main_job(ws, console: Console, request_id: str, timings: list) -> None:  # type: ignore[no-untyped-def]
    """Train, process, review, prepare, approve (two people), release."""
    from custodes.decisions import pipeline
    from custodes.decisions import release as rel
    from custodes.ledger import service as ledger
    from custodes.matching import service as matching
    from custodes.requests.lifecycle import current_state

    with ws.engine.connect() as conn:
        state = current_state(conn, request_id)
    if state == "received":
        t = time.perf_counter()
        with console.status("Training the linkage model on the master file and the request…"):
            info = matching.train(ws, request_id, actor="demo-officer")
        timings.append(("matching: train model", time.perf_counter() - t))
        console.print(f"Model {info['model_sha256'][:12]}… trained in {info['seconds']} s.")
    with console.status("Processing: rules, matching, rules after matching, decisions…"):
        res = pipeline.process(ws, request_id, actor="demo-officer")
    timings.extend((f"process: {k}", v) for k, v in res.stages.items())
    table = Table("outcome", "items", title=f"Outcomes of {request_id}")
    for k, v in res.counts.items():
        table.add_row(k, f"{v:,}")
    console.print(table)
    if res.withheld_by_check:
        rs = in_force(ws)
        table = Table("check", "withheld items", "citation", title="Withheld, by failing check")
        for cid, n in res.withheld_by_check.items():
            table.add_row(cid, f"{n:,}", rs.checks[cid].citation)
        console.print(table)
    with ws.engine.connect() as conn:
        state = current_state(conn, request_id)
    if state == "in_review":
        n = rel.resolve(
            ws,
            request_id,
            "WITHHOLD",
            "demo: every review item withheld automatically",
            actor="demo-officer",
        )
        console.print(
            f"[yellow]Review: {n:,} item(s) resolved automatically to WITHHOLD by the "
            "demo (an officer does this with 'custodes review').[/]"
        )
    t = time.perf_counter()
    if state in ("decided", "in_review"):
        rel.prepare(ws, request_id, actor="demo-officer")
        state = "prepared"
    if state == "prepared":
        rel.approve(ws, request_id, actor="demo-approver")
        console.print("Prepared by demo-officer, approved by demo-approver (two people).")
    out = ws.home / "demo-response"
    done = rel.release(ws, request_id, out, actor="demo-officer")
    timings.append(("prepare, approve, release + ledger", time.perf_counter() - t))
    console.print(
        f"Released: {done.disclosed:,} item(s) disclosed, {done.withheld:,} withheld; response "
        f"in {out}/ (response.csv, response.json)."
    )
    cp, note = ledger.checkpoint(ws)
    console.print(f"Ledger: {cp.size:,} events, signed checkpoint:")
    console.print(note.render(), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
