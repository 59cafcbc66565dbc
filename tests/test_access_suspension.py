"""Access: suspension is immediate (the next call, an action in flight, a long job),
reinstatement takes a second administrator, and the command line's enrolment, roles and
suspension."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PASSWORD as PW
from custodes.access import (
    caller,
    enter,
    sessions,
    users,
)
from custodes.cli import app
from custodes.errors import (
    AccessDenied,
    ConflictError,
    InputError,
    NotFound,
)
from custodes.ledger import log
from custodes.ledger.event_types import RequestTransition
from custodes.ledger.events import Event
from custodes.services import users as svc
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_access import runner


def test_suspension_is_immediate(staff: Staff) -> None:
    ws = staff.ws
    officer = staff["officer"]
    other = caller(ws, sessions.login(ws, "officer", PW))
    assert enter(ws, officer, "process") and enter(ws, other, "process")
    with pytest.raises(InputError):
        svc.suspend(ws, staff.admin, "officer", " ")
    with ws.engine.connect() as conn:
        assert users.active_holders(conn, "approver") == {"approver"}
    svc.suspend(ws, staff.admin, "approver", "on leave")
    with ws.engine.connect() as conn:  # suspending an approver unlocks nothing
        assert users.active_holders(conn, "approver") == set()
    res = svc.suspend(ws, staff.admin, "officer", "left the agency")
    assert res["sessions_ended"] == 2
    for who in (officer, other):
        with pytest.raises(AccessDenied) as exc:
            enter(ws, who, "process")
        assert exc.value.code == "suspended"
    with pytest.raises(AccessDenied) as exc:
        sessions.login(ws, "officer", PW)
    assert exc.value.code == "suspended"
    with pytest.raises(ConflictError):
        svc.suspend(ws, staff.admin, "officer", "again")
    for fn in (
        lambda: svc.suspend(ws, staff.admin, "nobody", "r"),
        lambda: svc.grant(ws, staff.admin, "nobody", "officer", basis="b"),
        lambda: svc.key(ws, staff.admin, "nobody"),
        lambda: svc.reinstate(ws, staff.admin, "nobody"),
    ):
        with pytest.raises(NotFound) as exc:
            fn()
        assert exc.value.code == "unknown_user"


def test_an_action_in_flight_cannot_commit_after_suspension(staff: Staff) -> None:
    ws = staff.ws
    call = enter(ws, staff["officer"], "process")  # allowed when it starts
    started, suspended = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def action() -> None:
        try:
            with call.transaction() as conn:
                started.set()
                suspended.wait(10)
                log.append(
                    conn,
                    [Event(RequestTransition(from_="received", to="checked"), actor="officer")],
                )
            outcome["ok"] = True
        except AccessDenied as exc:
            outcome["refused"] = exc.code

    t = threading.Thread(target=action)
    t.start()
    started.wait(10)
    svc.suspend(ws, staff.admin, "officer", "insider risk")
    suspended.set()
    t.join(20)
    assert outcome == {"refused": "suspended"}
    with ws.engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM ledger_events WHERE type = 'request.transition'")
        ).scalar()
    assert n == 0


def test_reinstatement_needs_a_second_administrator(staff: Staff) -> None:
    ws, admin, second = staff.ws, staff.admin, staff.second_admin
    svc.suspend(ws, admin, "officer", "review")
    with pytest.raises(ConflictError) as exc:
        svc.reinstate(ws, admin, "auditor")
    assert exc.value.code == "not_suspended"
    first = svc.reinstate(ws, admin, "officer")
    assert first["status"] == "suspended" and "second administrator" in first["pending"]
    with pytest.raises(AccessDenied) as exc:
        svc.reinstate(ws, admin, "officer")
    assert exc.value.code == "separation_of_duties"
    assert svc.reinstate(ws, second, "officer")["status"] == "active"
    assert sessions.login(ws, "officer", PW)


# --- the command line -------------------------------------------------------------------------


def _json(r) -> dict:  # type: ignore[no-untyped-def]
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_cli_enrolment_roles_and_suspension(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "w")]
    r = runner.invoke(
        app, ["init", *home, "--admin", "chief", "--password-stdin", "--json"], input=PW + "\n"
    )
    assert _json(r)["admin"] == "chief"
    r = runner.invoke(app, ["status", *home])
    assert r.exit_code == 2 and "not_signed_in" in r.output
    r = runner.invoke(app, ["login", "chief", "--password-stdin", *home], input="nope\n")
    assert r.exit_code == 2 and "bad_credentials" in r.output
    r = runner.invoke(app, ["login", "chief", "--password-stdin", *home], input="")
    assert r.exit_code == 2 and "standard input" in r.output  # not "Aborted."
    chief = {
        "CUSTODES_SESSION": _json(
            runner.invoke(
                app, ["login", "chief", "--password-stdin", *home, "--json"], input=PW + "\n"
            )
        )["session"]
    }
    code = _json(
        runner.invoke(
            app, ["users", "add", "deputy", "--role", "administrator", *home, "--json"], env=chief
        )
    )["enrolment_code"]
    r = runner.invoke(
        app, ["enrol", "deputy", "--stdin", *home], input=f"{code}\ndeputy's own password\n"
    )
    assert r.exit_code == 0, r.output
    deputy = {
        "CUSTODES_SESSION": _json(
            runner.invoke(
                app,
                ["login", "deputy", "--password-stdin", *home, "--json"],
                input="deputy's own password\n",
            )
        )["session"]
    }
    info = _json(
        runner.invoke(
            app,
            [
                "users",
                "add",
                "olga",
                "--role",
                "officer",
                "--basis",
                "detail order 7",
                "--expires",
                "2099-12-31",
                *home,
                "--json",
            ],
            env=chief,
        )
    )
    assert info["pending"] == ["officer"]
    r = runner.invoke(app, ["users", "confirm", "olga", *home], env=chief)
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    done = _json(runner.invoke(app, ["users", "confirm", "olga", *home, "--json"], env=deputy))
    r = runner.invoke(  # the first half alone enrols nobody
        app,
        ["enrol", "olga", "--stdin", *home],
        input=f"{info['enrolment_code']}\nolga's own password\n",
    )
    assert r.exit_code == 2 and "bad_enrolment" in r.output
    r = runner.invoke(
        app,
        ["enrol", "olga", "--stdin", *home],
        input=f"{info['enrolment_code']} {done['enrolment_code_second_half']}\n"
        "olga's own password\n",
    )
    assert r.exit_code == 0
    r = runner.invoke(
        app,
        ["users", "add", "self", "--role", "administrator", "--role", "approver", *home],
        env=chief,
    )
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    r = runner.invoke(app, ["users", "grant", "chief", "--role", "officer", *home], env=chief)
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    olga = {
        "CUSTODES_SESSION": _json(
            runner.invoke(
                app,
                ["login", "olga", "--password-stdin", *home, "--json"],
                input="olga's own password\n",
            )
        )["session"]
    }
    r = runner.invoke(app, ["users", "list", *home], env=olga)
    assert r.exit_code == 2 and "forbidden" in r.output
    assert _json(runner.invoke(app, ["requests", "list", *home, "--json"], env=olga)) == []
    rows = _json(runner.invoke(app, ["users", "list", *home, "--json"], env=chief))
    grant = next(u for u in rows if u["user"] == "olga")["grants"][0]
    assert grant["basis"] == "detail order 7" and grant["last_day"] == "2099-12-31"
    r = runner.invoke(app, ["users", "suspend", "olga", "--reason", "left", *home], env=chief)
    assert r.exit_code == 0 and "1 session(s) ended" in r.output
    r = runner.invoke(app, ["requests", "list", *home], env=olga)
    assert r.exit_code == 2 and "suspended" in r.output
    r = runner.invoke(app, ["users", "reinstate", "olga", *home], env=chief)
    assert r.exit_code == 0 and "second administrator" in r.output
    # The stored session: login without --json keeps it for this shell user; logout ends it.
    r = runner.invoke(app, ["login", "chief", "--password-stdin", *home], input=PW + "\n")
    assert r.exit_code == 0
    assert runner.invoke(app, ["requests", "list", *home]).exit_code == 2  # chief: not a role
    assert runner.invoke(app, ["users", "list", *home]).exit_code == 0
    assert runner.invoke(app, ["logout", *home]).exit_code == 0
    r = runner.invoke(app, ["users", "list", *home])
    assert r.exit_code == 2 and "not_signed_in" in r.output


def test_a_long_job_stops_when_its_caller_is_suspended(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    """The service re-checks the session at every chunk; here the officer is suspended after
    the first stage and the link stops before writing anything."""
    from custodes.services import matching, requests

    officer = people["officer"]
    requests.generate(master_ws, people.admin, "irc-6103-i-2", 300, 2, tmp_path / "req")
    rid = requests.submit(master_ws, people["requester"], tmp_path / "req").request_id
    matching.train(master_ws, officer, rid)
    seen: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append(stage)
        if stage == "prepare":
            svc.suspend(master_ws, people.admin, "officer", "mid-run")

    with pytest.raises(AccessDenied) as exc:
        matching.link(master_ws, officer, rid, progress=progress)
    assert exc.value.code == "suspended" and seen == ["prepare"]
    assert not (master_ws.request_folder(rid) / "match" / "linked.parquet").exists()
