"""Rule sets as files and as changes: lint names the file, the line and the reason; the
registries; what the gate trusts takes two administrators; the `rules` commands."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from custodes.cli import app
from custodes.errors import AccessDenied, ConflictError, InputError, NotFound
from custodes.rules import registry as reg_room
from custodes.rules.provisions import REFERENCE, lint
from custodes.services import users as users_svc
from custodes.services.rules import add_agency, add_agreement, add_official
from custodes.store.tables import ledger_events
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_rules import AGENCY, RS, TODAY

# --- lint ------------------------------------------------------------------------------------


@pytest.fixture
def ruleset_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "rs"
    shutil.copytree(REFERENCE, dest)
    return dest


@pytest.mark.parametrize(
    ("file", "old", "new", "at", "message"),
    [
        (
            "irc6103/i-2.yaml",
            "address-substantive,",
            "address-substantial,",
            "address-substantial",
            "unknown check",
        ),
        (
            "irc6103/m-2.yaml",
            "releasable: [mailing_address]",
            "releasable: [unearned_income]",
            "releasable",
            "without requiring a court order",
        ),
        (
            "irc6103/m-2.yaml",
            'citation: "26 U.S.C. 6103(m)(2)"\n',
            "",
            "id:",
            "missing key(s): citation",
        ),
        (
            "checks.yaml",
            'citation: "26 U.S.C. 6103(i)(2)(B)(iii)"',
            'citation: ""',
            "- id: statute-designated",
            "has no citation",
        ),
        (
            "checks.yaml",
            "sql: \"nullif(trim(case_number), '') IS NOT NULL\"",
            "sql: \"nullif(trim(case_number), '') IS NOT (\"",
            "- id: case-number",
            "does not parse",
        ),
        (
            "irc6103/d.yaml",
            "id: irc-6103-d",
            "id: irc-6103-d\n  bad: [",
            "bad: [",
            "not valid YAML",
        ),
        (
            "irc6103/l-6.yaml",
            'note: "Reference reading, not legal advice."',
            'note: ""',
            "note:",
            "not legal advice",
        ),
    ],
)
def test_lint_names_file_line_and_reason(
    ruleset_copy: Path, file: str, old: str, new: str, at: str, message: str
) -> None:
    path = ruleset_copy / file
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text)
    _, problems = lint(ruleset_copy)
    hit = [p for p in problems if message in p.message]
    assert hit, problems
    assert hit[0].file == file
    line = text[: text.index(at)].count("\n") + 1
    assert hit[0].line is not None and line <= hit[0].line <= line + 1, (hit[0], line)
    r = CliRunner().invoke(app, ["rules", "lint", str(ruleset_copy)])
    assert r.exit_code == 1 and message in r.output


# --- registries and CLI ----------------------------------------------------------------------


def test_registries(workspace: Workspace, staff: Staff) -> None:
    admin = staff.admin

    def confirm(proposed: dict) -> None:  # by the second administrator, by the change's id
        users_svc.confirm_change(workspace, staff.second_admin, proposed["change"])

    with pytest.raises(NotFound, match="add it first"):
        add_official(
            workspace,
            admin,
            agency="An Agency Nobody Registered",
            name="X",
            title="Y",
            role="head_of_agency",
            valid_from=TODAY,
        )
    proposed = add_agency(workspace, admin, AGENCY, safeguards_current=True, open_findings=0)
    assert proposed["pending"] and proposed["change"]
    confirm(proposed)
    with pytest.raises(InputError, match="Unknown role"):
        add_official(
            workspace, admin, agency=AGENCY, name="X", title="Y", role="janitor", valid_from=TODAY
        )
    with pytest.raises(InputError, match="before --from"):
        add_official(
            workspace,
            admin,
            agency=AGENCY,
            name="X",
            title="Y",
            role="head_of_agency",
            valid_from=TODAY,
            valid_to=TODAY - dt.timedelta(days=1),
        )
    confirm(
        add_official(
            workspace,
            admin,
            agency=AGENCY,
            name="X",
            title="Y",
            role="head_of_agency",
            valid_from=TODAY,
        )
    )
    confirm(add_agreement(workspace, admin, REFERENCE.parent / "agreements" / "irs-ice-2025.yaml"))
    with pytest.raises(ConflictError):
        add_agreement(workspace, admin, REFERENCE.parent / "agreements" / "irs-ice-2025.yaml")
    with workspace.engine.connect() as conn:
        reg = reg_room.read(conn)
    assert AGENCY in reg.agencies and len(reg.officials) == 1 and "irs-ice-2025" in reg.agreements
    from custodes.ledger.audit import audit_store
    from custodes.store.tables import ledger_events

    rep = audit_store(workspace)
    with workspace.engine.connect() as conn:
        types = [
            r[0]
            for r in conn.execute(sa.select(ledger_events.c.type).order_by(ledger_events.c.idx))
        ]
    assert rep.ok  # every registry change is a ledger event, named by its actor
    assert types.count("registry.agency") == 2 and types.count("registry.official") == 1
    assert types.count("registry.agreement") == 1


def test_what_the_gate_trusts_takes_two_administrators(workspace: Workspace, staff: Staff) -> None:
    """Issue #22, item 4: `officials add`, `agencies add --safeguards-current` and
    `agreements add` each took effect on one administrator's say. Now each is a proposal in
    the queue, in force only when a second administrator confirms that exact change; the
    ledger records both people."""
    admin = staff.admin
    other = "U.S. Department of Justice"
    proposed = add_agency(workspace, admin, other, safeguards_current=True, open_findings=0)
    with workspace.engine.connect() as conn:  # proposed: not in force
        assert other not in reg_room.read(conn).agencies
    with pytest.raises(AccessDenied) as exc:  # not by the administrator who proposed it
        users_svc.confirm_change(workspace, admin, proposed["change"])
    assert exc.value.code == "separation_of_duties"
    queued = {c["id"]: c for c in users_svc.pending_changes(workspace, staff.second_admin)}
    assert queued[proposed["change"]]["kind"] == "agency"
    assert "safeguards current" in queued[proposed["change"]]["summary"]
    # a newer proposal for the same agency supersedes it: the old id confirms nothing
    newer = add_agency(workspace, admin, other, safeguards_current=False, open_findings=3)
    with pytest.raises(ConflictError):
        users_svc.confirm_change(workspace, staff.second_admin, proposed["change"])
    users_svc.confirm_change(workspace, staff.second_admin, newer["change"])
    with workspace.engine.connect() as conn:
        row = reg_room.read(conn).agencies[other]
    assert row["safeguards_current"] is False and row["open_findings"] == 3
    with workspace.engine.connect() as conn:
        body = json.loads(
            conn.execute(
                sa.select(ledger_events.c.body)
                .where(ledger_events.c.type == "registry.agency")
                .order_by(ledger_events.c.idx.desc())
                .limit(1)
            ).scalar()
        )
    assert body["actor"] == "admin2" and body["proposed_by"] == "admin"
    assert body["change_id"] == newer["change"]


def test_rules_cli(master_ws: Workspace, people: Staff, tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    from custodes.services.requests import generate as generate_request

    runner = CliRunner()
    home = ["--home", str(master_ws.home)]
    envs = sign_in(master_ws.home, master_ws.store_url)
    env, admin = envs["officer"], envs["administrator"]
    generate_request(master_ws, people.admin, "irc-6103-i-2", 200, 1, tmp_path / "req")
    r = runner.invoke(app, ["rules", "check", str(tmp_path / "req"), *home, "--json"], env=env)
    assert r.exit_code == 1, r.output  # no registry yet: refused
    out = json.loads(r.stdout)
    assert out["refused"] and out["ruleset_sha256"] == RS.sha256
    assert "ANA" not in r.stdout  # no personal data, only item ids
    second = envs["second_administrator"]
    for cmd in (
        ["agencies", "add", AGENCY, "--safeguards-current"],
        [
            "officials",
            "add",
            "--agency",
            AGENCY,
            "--name",
            "Synthetic Director",
            "--title",
            "Director",
            "--role",
            "head_of_agency",
            "--from",
            "2025-01-01",
        ],
        ["agreements", "add", str(REFERENCE.parent / "agreements" / "irs-ice-2025.yaml")],
    ):
        r = runner.invoke(app, [*cmd, *home, "--json"], env=admin)
        assert r.exit_code == 0, r.output
        change = json.loads(r.stdout)["change"]  # proposed; a second administrator confirms
        r = runner.invoke(app, ["changes", "confirm", change, *home], env=second)
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["rules", "check", str(tmp_path / "req"), *home, "--json"], env=env)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    failing = {v["check"]: v["failing"] for v in out["item"]}
    with open(tmp_path / "req" / "truth.csv") as fh:
        truth = list(csv.DictReader(fh))
    no_addr = sum(
        t["defect"] in ("tin_only", "placeholder_address", "partial_address") for t in truth
    )
    assert failing["address-substantive"] == no_addr
    for cmd in (
        ["agencies", "list"],
        ["officials", "list"],
        ["agreements", "list"],
        ["rules", "list"],
        ["rules", "show", "irc-6103-i-2"],
    ):
        r = runner.invoke(app, [*cmd, *(home if cmd[0] != "rules" else [])], env=env)
        assert r.exit_code == 0, (cmd, r.output)
    r = runner.invoke(app, ["rules", "show", "irc-6103-q"])
    assert r.exit_code == 2 and "unknown_provision" in r.output
