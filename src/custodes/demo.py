"""The main job as `make demo` runs it, on the embedded default (SQLite + DuckDB).

Creates (or reuses) a workspace with its ledger key, signs in real demo users (two
administrators, an officer, an approver) through the same services every face uses, builds a
synthetic master file of DEMO_PEOPLE people, draws an (i)(2) request shaped like the 2025
ones, and prints what each stage produced and how long it took, what the rules say of each
check (with citations), and the ledger's signed checkpoint. Then the main job: train the
linkage model, process the request (rules, matching, decisions), resolve review items
(automatically, said on screen, with why each was there), prepare as the officer, approve as
the approver, release, write the request report (HTML, PDF) and this year's table for the
Joint Committee on Taxation, and sign a ledger checkpoint.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from custodes import settings
from custodes.access import Caller
from custodes.services import (
    decisions,
    ledger,
    matching,
    records,
    reports,
    requests,
    rules,
    users,
)
from custodes.services import workspace as ws_svc
from custodes.services.rules import register_parties
from custodes.synthetic import staff as demo_staff
from custodes.synthetic.requests import GeneratedRequest
from custodes.workspace import Workspace, init_workspace

OFFICER, APPROVER = "demo-officer", "demo-approver"
AGENCY, AGENCY_ACCOUNT = "U.S. Immigration and Customs Enforcement", "agency-ice"


def main() -> None:
    console = Console()
    people = int(os.environ.get("DEMO_PEOPLE", "20000"))
    items = int(os.environ.get("DEMO_ITEMS", str(max(people // 20, 100))))
    timings: list[tuple[str, float]] = []

    home = settings.raw("CUSTODES_HOME")
    ws_svc.init(home, origin=None if _has_key(home) else "custodes.demo/ledger")
    ws, _ = init_workspace(home)
    console.rule("[bold]custodes demo")
    console.print(
        f"Workspace: {ws.home}  (store: {ws.engine.url.render_as_string(hide_password=True)})"
    )
    staff = _sign_in(ws, console)
    admin, officer, approver = staff.admin, staff[OFFICER], staff[APPROVER]

    # A witness in its own process and folder, beside the workspace: it cosigns every checkpoint.
    wit = ledger.run_witness(ws, admin, Path(f"{ws.home}-witness"))
    console.print(
        f"Witness {wit['witness']} at {wit['url']} (pid {wit['pid']}, its own folder "
        f"{wit['folder']}) cosigns every checkpoint; it keeps running for the console "
        f"(stop it with 'kill {wit['pid']}').",
        soft_wrap=True,
        markup=False,
    )

    _master_file(ws, console, admin, people, timings)
    req = _request(ws, console, admin, items, timings)
    sub = requests.submit(ws, staff[AGENCY_ACCOUNT], req.folder)
    console.print(
        f"Submitted as [bold]{sub.request_id}[/] ({sub.state}"
        + (", recognised from an earlier run" if sub.duplicate else "")
        + ")."
    )

    register_parties(ws, admin, "irc-6103-i-2")
    _rules(ws, console, officer, req.folder, timings)
    _checkpoint(ws, console, admin, wit["vkey"], timings)
    _main_job(ws, console, sub.request_id, officer, approver, admin, timings)
    waiting = _work_waiting(ws, console, staff, items, timings)

    table = Table("stage", "seconds", title="Timings")
    for stage, secs in timings:
        table.add_row(stage, f"{secs:.2f}")
    console.print(table)
    _console_users(ws, console, staff)
    _how_to_get_in(ws, console, staff, sub.request_id, waiting)
    ws.close()


def _sign_in(ws: Workspace, console: Console) -> demo_staff.Staff:
    """The demo's users: two administrators, an officer, an approver and the agency's own
    account (a request in its name comes from it; staff key in only paper)."""
    staff = demo_staff.administrators(ws, password=_demo_password(ws))
    demo_staff.add(staff, OFFICER, ["officer"], basis="demo")
    demo_staff.add(staff, APPROVER, ["approver"], basis="demo")
    demo_staff.add(staff, AGENCY_ACCOUNT, ["requester"], agency=AGENCY)
    console.print(
        f"Signed in: {staff.admin.name} and {staff.second_admin.name} (administrators), "
        f"{OFFICER}, {APPROVER} — every step below goes through the services as one of them."
    )
    return staff


def _master_file(
    ws: Workspace, console: Console, admin: Caller, people: int, timings: list[tuple[str, float]]
) -> None:
    t = time.perf_counter()
    with console.status(f"Generating a synthetic master file of {people:,} people…"):
        info = records.generate(ws, admin, people, seed=2025, replace=True)
    timings.append(("generate master file", time.perf_counter() - t))
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


def _request(
    ws: Workspace, console: Console, admin: Caller, items: int, timings: list[tuple[str, float]]
) -> GeneratedRequest:
    """The (i)(2) request drawn from the master file, and its defects."""
    t = time.perf_counter()
    req = requests.generate(
        ws, admin, "irc-6103-i-2", items, 2025, ws.home / "demo-request", overwrite=True
    )
    timings.append(("generate (i)(2) request", time.perf_counter() - t))
    table = Table("defect", "items", title=f"Defects in the (i)(2) request ({items:,} items)")
    for k, v in sorted(req.by_defect.items(), key=lambda kv: -kv[1]):
        table.add_row(k, f"{v:,}")
    console.print(table)
    console.print(f"Request written to {req.folder} (envelope.json, items.csv, truth.csv).")
    return req


def _rules(
    ws: Workspace,
    console: Console,
    officer: Caller,
    folder: Path,
    timings: list[tuple[str, float]],
) -> None:
    """What the rules say of each check, with its citation."""
    t = time.perf_counter()
    ev = rules.check(ws, officer, folder)
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


def _checkpoint(
    ws: Workspace,
    console: Console,
    admin: Caller,
    witness_vkey: str,
    timings: list[tuple[str, float]],
) -> None:
    """A signed checkpoint of the ledger, and how to verify it offline."""
    t = time.perf_counter()
    cp = ledger.checkpoint(ws, admin)
    timings.append(("ledger checkpoint", time.perf_counter() - t))
    console.print(f"Ledger: {cp['size']:,} events, signed checkpoint:")
    console.print(cp["note"], highlight=False, soft_wrap=True, markup=False)
    vkey = ledger.key(ws, admin)["vkey"]
    console.print(
        f"Verify it offline: custodes ledger export DIR && custodes ledger verify DIR "
        f"--key '{vkey}'; check the store against the witness: custodes ledger verify "
        f"--witness '{witness_vkey}'",
        soft_wrap=True,
        markup=False,
    )


def _work_waiting(
    ws: Workspace,
    console: Console,
    staff: demo_staff.Staff,
    items: int,
    timings: list[tuple[str, float]],
) -> dict[str, str]:
    """Two more requests from the agency, left where a newcomer starts: one in review (for an
    officer) and one prepared, waiting for a second person's approval (for an approver). Drawn
    like the first, they go to review under the caseload rule (one official named on more
    investigations than counsel's cap) once a request has about 850 items or more; a smaller
    one may need no review and then waits to be prepared. On a rerun the same requests are
    recognised and left as they are. Returns state -> request."""
    officer = staff[OFFICER]
    t = time.perf_counter()
    waiting = {}
    for seed, goal in ((2026, "in_review"), (2027, "prepared")):
        folder = ws.home / f"demo-request-{goal.replace('_', '-')}"
        gen = requests.generate(
            ws,
            staff.admin,
            "irc-6103-i-2",
            items,
            seed,
            folder,
            overwrite=True,
        )
        rid = requests.submit(ws, staff[AGENCY_ACCOUNT], gen.folder).request_id
        if decisions.next_step(ws, officer, rid)["state"] == "received":
            decisions.process(ws, officer, rid)
        if goal == "prepared":
            if decisions.next_step(ws, officer, rid)["state"] == "in_review":
                for g in decisions.review_groups(ws, officer, rid):
                    decisions.review_resolve(
                        ws, officer, rid, "WITHHOLD", "demo: withheld", group=g["group"]
                    )
            if decisions.next_step(ws, officer, rid)["state"] in ("decided", "in_review"):
                decisions.prepare(ws, officer, rid)
        waiting[decisions.next_step(ws, officer, rid)["state"]] = rid
    timings.append(("two more requests: processed, one prepared", time.perf_counter() - t))
    return waiting


CONSOLE_USERS = (
    ("officer-1", "officer"),
    ("approver-1", "approver"),
    ("auditor-1", "auditor"),
    ("administrator-1", "administrator"),
)


def _console_users(ws: Workspace, console: Console, staff: demo_staff.Staff) -> None:
    """Demo users for the web console, each with a fresh one-time enrolment code (a new one on
    every run: the code is shown once and sets the user's own password). Outside a demo the
    two halves of a code come from two administrators; here the demo is both of them, and
    prints the two halves together."""
    # One line each, not a table: a table at 80 columns cut the codes short ("ce_tKBy…").
    console.print("Web console users, each with a one-time code (both halves; valid 72 h):")
    for name, role in CONSOLE_USERS:
        demo_staff.add(staff, name, [role], basis="demo", enrol=False)
        code = demo_staff.whole_code(ws, staff.second_admin, users.reset(ws, staff.admin, name))
        console.print(f"  {name} ({role}): {code}", soft_wrap=True, markup=False)
    home = "" if str(ws.home) == os.path.abspath("custodes-data") else f" --home {ws.home}"
    console.print(
        f"Web console: run 'custodes serve{home}' (or '.venv/bin/custodes serve{home}') and open "
        "http://127.0.0.1:8600/enrol to set a password with a code above (both halves), then "
        "sign in at "
        "http://127.0.0.1:8600/ — the API is under http://127.0.0.1:8600/v1/docs.",
        soft_wrap=True,
        markup=False,
    )


def _how_to_get_in(
    ws: Workspace,
    console: Console,
    staff: demo_staff.Staff,
    released: str,
    waiting: dict[str, str],
) -> None:
    """Where the work is, how the agency's system calls the API, and how an administrator
    gets in."""
    table = Table("request", "state", "who acts next", title="Work waiting in the console")
    table.add_row(released, "released", "officer-1 may recall; auditor-1 reads the reports")
    for state, who in (
        ("in_review", "officer-1 resolves the items in review"),
        ("decided", "officer-1 prepares the release"),
        ("prepared", "approver-1 approves (a second person)"),
    ):
        if state in waiting:
            table.add_row(waiting[state], state.replace("_", " "), who)
    console.print(table)
    key = staff.keys[AGENCY_ACCOUNT]
    console.print(
        f"Agency system: {AGENCY_ACCOUNT} acts for {AGENCY} with this API key (shown once; "
        f"a new one on every run):\n  {key}\n"
        f"  curl -H 'Authorization: Bearer {key}' http://127.0.0.1:8600/v1/requests\n"
        "  (its requests, responses and recalls; POST /v1/requests submits one).",
        soft_wrap=True,
        markup=False,
    )
    console.print(
        "Administrators: administrator-1 enrols with its code above like the other console "
        "users, then adds staff (Users) with a second administrator confirming; the demo's own "
        f"scripted administrators ({staff.admin.name}, {staff.second_admin.name}) sign in with "
        f"the random password in {ws.keys / 'demo-staff.password'} (owner-only).",
        soft_wrap=True,
        markup=False,
    )


def _demo_password(ws: Workspace) -> str:
    """The password the demo's own scripted users sign in with: random for each workspace,
    made on its first run and kept owner-only beside its keys (a rerun signs in again); no
    password is fixed in the source. The console's demo users set their own, with codes."""
    path = ws.keys / "demo-staff.password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def _has_key(home: str | None) -> bool:
    from custodes.workspace import resolve_home

    return (resolve_home(home) / "keys" / "ledger.key").exists()


def _main_job(
    ws: Workspace,
    console: Console,
    request_id: str,
    officer: Caller,
    approver: Caller,
    admin: Caller,
    timings: list[tuple[str, float]],
) -> None:
    """Train, process, review, prepare, approve (two people), release."""
    state = decisions.next_step(ws, officer, request_id)["state"]
    if state == "received":
        t = time.perf_counter()
        with console.status("Training the linkage model on the master file and the request…"):
            info = matching.train(ws, officer, request_id)
        timings.append(("matching: train model", time.perf_counter() - t))
        console.print(f"Model {info['model_sha256'][:12]}… trained in {info['seconds']} s.")
    with console.status("Processing: rules, matching, rules after matching, decisions…"):
        res = decisions.process(ws, officer, request_id)
    timings.extend((f"process: {k}", v) for k, v in res.stages.items())
    table = Table("outcome", "items", title=f"Outcomes of {request_id}")
    for k, v in res.counts.items():
        table.add_row(k, f"{v:,}")
    console.print(table)
    if res.withheld_by_check:
        table = Table("check", "withheld items", title="Withheld, by failing check")
        for cid, n in res.withheld_by_check.items():
            table.add_row(cid, f"{n:,}")
        console.print(table)
    step = decisions.next_step(ws, officer, request_id)
    if step["state"] == "in_review":
        groups = decisions.review_groups(ws, officer, request_id)
        _why_review(console, groups, sum(res.counts.values()))
        n = sum(
            decisions.review_resolve(
                ws, officer, request_id, "WITHHOLD", "demo: withheld without a look", group=g
            )["resolved"]
            for g in (g["group"] for g in groups)
        )
        console.print(
            f"[yellow]Review: {n:,} item(s) in {len(groups)} group(s) resolved to WITHHOLD by "
            "the demo, one decision per group, recorded per item (an officer does this with "
            "'custodes review REQUEST --groups', then --group NAME).[/]"
        )
    else:
        console.print(
            f"Review: 0 of {sum(res.counts.values()):,} items (0.0 %): none needs an officer."
        )
    t = time.perf_counter()
    step = decisions.next_step(ws, officer, request_id)
    if step["state"] in ("decided", "in_review"):  # in review with every item resolved
        decisions.prepare(ws, officer, request_id)
    step = decisions.next_step(ws, approver, request_id)
    if step["state"] == "prepared":
        decisions.approve(ws, approver, request_id)
        console.print(f"Prepared by {officer.name}, approved by {approver.name} (two people).")
    out = ws.home / "demo-response"
    shutil.rmtree(out, ignore_errors=True)
    done = decisions.release(ws, officer, request_id, out)
    timings.append(("prepare, approve, release + ledger", time.perf_counter() - t))
    console.print(
        f"Released: {done.disclosed:,} item(s) disclosed, {done.withheld:,} withheld; response "
        f"in {out}/ (response.csv, response.json)."
    )
    _reports(ws, console, request_id, officer)
    cp = ledger.checkpoint(ws, admin)
    console.print(f"Ledger: {cp['size']:,} events, signed checkpoint:")
    console.print(cp["note"], highlight=False, soft_wrap=True, markup=False)


def _reports(ws: Workspace, console: Console, request_id: str, officer: Caller) -> None:
    """The request report (HTML with charts, PDF) and this year's table for the Joint
    Committee on Taxation, each recorded in the ledger."""
    folder = ws.home / "demo-reports"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    year = dt.datetime.now(dt.UTC).year
    written = [
        reports.request(ws, officer, request_id, out=folder / f"request-{request_id}.html"),
        reports.request(ws, officer, request_id, out=folder / f"request-{request_id}.pdf"),
        reports.jct(ws, officer, year=year, out=folder / f"jct-{year}.csv"),
        reports.jct(ws, officer, year=year, out=folder / f"jct-{year}.html"),
    ]
    console.print("Reports (each one a ledger event with its SHA-256):")
    for r in written:
        console.print(f"  {r['out']}", markup=False)
    console.print(
        f"Check the JCT table against the ledger: custodes ledger export DIR --bodies && "
        f"custodes report verify {folder / f'jct-{year}.csv'} --export DIR",
        soft_wrap=True,
        markup=False,
    )


def _why_review(console: Console, groups: list[dict[str, Any]], total: int) -> None:
    """The review rate and why each item is there, grouped by reason."""
    n = sum(g["items"] for g in groups)
    table = Table(
        "group",
        "items",
        "why in review",
        title=f"Review: {n:,} of {total:,} items ({100 * n / max(total, 1):.1f} %), "
        f"{len(groups)} group(s) an officer resolves with 'custodes review --group'",
    )
    for g in groups:
        table.add_row(g["group"], f"{g['items']:,}", "; ".join(g["meaning"]))
    console.print(table)


if __name__ == "__main__":
    main()
