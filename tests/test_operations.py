"""docs/operations.md, done as it says (#24 item 5): custodes runs as the least-privileged
database user the guide's grants make, and a workspace that has released is backed up, restored
elsewhere, verified, and goes on releasing without forking its ledger."""

from __future__ import annotations

import re
import shutil
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

from conftest import PASSWORD, PG_ADMIN_URL, Template, copy_template, keyed_in, make_workspace
from custodes.requests.lifecycle import current_state
from custodes.services import decisions as decisions_svc
from custodes.services import ledger as ledger_svc
from custodes.services import matching as matching_svc
from custodes.services import workspace as ws_svc
from custodes.services.requests import generate as generate_request
from custodes.services.rules import register_parties
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.tlog.note import Checkpoint, Note
from custodes.workspace import RECORD, Workspace, open_workspace

GUIDE = Path(__file__).parent.parent / "docs" / "operations.md"


def _guide_grants() -> list[str]:
    """The statements of the guide's grants block (the one marked `custodes-app-grants`)."""
    block = re.search(r"```sql\n-- custodes-app-grants[^\n]*\n(.*?)```", GUIDE.read_text(), re.S)
    assert block, "docs/operations.md lost its grants block"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("--")]
    return [s.strip() for s in " ".join(lines).split(";") if s.strip()]


@pytest.mark.postgres
def test_custodes_runs_as_the_least_privileged_database_user(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "w"
    make_workspace(home, pg_url).close()  # the owner makes the schema (here: the test server's)
    role = f"custodes_app_{uuid.uuid4().hex[:10]}"
    database = sa.engine.make_url(pg_url).database
    owner = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for statement in _guide_grants():
            statement = statement.replace("DATABASE custodes ", f'DATABASE "{database}" ')
            conn.exec_driver_sql(statement.replace("custodes_app", f'"{role}"'))
    app_url = sa.engine.make_url(pg_url).set(username=role).render_as_string(False)
    ws = None
    try:
        # Another database user for the same store: accepted (the store's id is the record's).
        ws = open_workspace(home, app_url)
        people = staff_mod.administrators(
            ws, password=PASSWORD
        )  # bootstrap, enrolment, sign-in: rows only
        staff_mod.add(people, "officer", ["officer"], basis="test")
        ledger_svc.checkpoint(ws, people.admin)
        report = ledger_svc.verify_store(ws, people.admin)
        assert report.ok, report.problems
        # ... and nothing beyond rows: no DDL, no rewriting the ledger, no schema version.
        for refused in (
            "UPDATE ledger_events SET body = body",
            "DELETE FROM ledger_checkpoints",
            "UPDATE alembic_version SET version_num = 'x'",
            "CREATE TABLE intruder (i int)",
            "DROP TABLE users",
        ):
            with (
                pytest.raises(ProgrammingError, match=r"permission denied|must be owner"),
                ws.engine.begin() as conn,
            ):
                conn.exec_driver_sql(refused)
    finally:
        if ws is not None:
            ws.close()
        with owner.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
        owner.dispose()
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


def _released(ws: Workspace, people: Staff, folder: Path, out: Path, seed: int) -> str:
    """A small (i)(2) request keyed in, processed, prepared, approved and released."""
    generate_request(ws, people.admin, "irc-6103-i-2", 40, seed, folder)
    rid = keyed_in(ws, people["dual"], people["officer"], folder).request_id
    decisions_svc.process(ws, people["officer"], rid)
    with ws.engine.connect() as conn:
        in_review = current_state(conn, rid) == "in_review"
    if in_review:
        decisions_svc.review_resolve(ws, people["officer"], rid, "WITHHOLD", "not sure enough")
    decisions_svc.prepare(ws, people["officer"], rid)
    decisions_svc.approve(ws, people["approver"], rid)
    assert decisions_svc.release(ws, people["officer"], rid, out).disclosed > 0
    return rid


def _sqlite_backup(source: Path, target: Path) -> None:
    """SQLite's online backup API (what the sqlite3 shell's .backup and .restore run)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _checkpoint(folder: Path) -> Checkpoint:
    return Checkpoint.parse_body(Note.parse((folder / "checkpoint").read_text()).text)


def test_a_released_workspace_restored_elsewhere_verifies_and_continues_without_forking(
    _master_template: Template, tmp_path: Path
) -> None:
    # A workspace with its store inside the folder (the default layout), that has released.
    ws, people = copy_template(_master_template, tmp_path / "site")
    home = ws.home
    ws.close()
    shutil.move(tmp_path / "site" / "master-ws.db", home / "custodes.db")
    ws_svc.init(home, f"sqlite:///{home / 'custodes.db'}")  # a new location: re-recorded
    ws = open_workspace(home)
    people = Staff(ws, dict(people.callers), people.password)
    register_parties(ws, people.admin, "irc-6103-i-2")
    staff_mod.add(people, "dual", ["officer", "approver"])
    generate_request(ws, people.admin, "irc-6103-i-2", 40, 3, tmp_path / "train-req")
    train_rid = keyed_in(ws, people["dual"], people["officer"], tmp_path / "train-req").request_id
    matching_svc.train(ws, people["officer"], train_rid)
    _released(ws, people, tmp_path / "req1", tmp_path / "out1", 5)
    ledger_svc.export(ws, people["auditor"], tmp_path / "published")  # what the world saw
    vkey = ledger_svc.key(ws, people["auditor"])["vkey"]
    ws.close()

    # Back up as docs/operations.md says: writers stopped; the store with SQLite's backup API
    # (sqlite3 ".backup"), then the folder without the store's files.
    backup = tmp_path / "backup"
    backup.mkdir()
    _sqlite_backup(home / "custodes.db", backup / "custodes.db")
    shutil.copytree(home, backup / "folder", ignore=shutil.ignore_patterns("custodes.db*"))
    # The original site is retired (the guide: only one copy of a deployment runs).
    shutil.rmtree(tmp_path / "site")

    # Restore elsewhere: the folder, then the store back inside it (".restore").
    restored = tmp_path / "elsewhere" / "custodes"
    shutil.copytree(backup / "folder", restored)
    _sqlite_backup(backup / "custodes.db", restored / "custodes.db")
    assert "elsewhere" not in (restored / RECORD).read_text()  # recorded relative to the folder
    ws = open_workspace(restored)
    people = Staff(ws, dict(people.callers), people.password)
    assert Path(ws.engine.url.database or "") == restored / "custodes.db"
    report = ledger_svc.verify_store(ws, people["auditor"])
    assert report.ok, report.problems

    # It goes on: another request processed and released, and the log is still one log.
    _released(ws, people, tmp_path / "req2", tmp_path / "out2", 7)
    report = ledger_svc.verify_store(ws, people["auditor"])
    assert report.ok, report.problems
    ledger_svc.export(ws, people["auditor"], tmp_path / "later")
    ws.close()
    assert _checkpoint(tmp_path / "later").size > _checkpoint(tmp_path / "published").size
    later = ledger_svc.verify_path(
        tmp_path / "later",
        ledger_svc.parse_key(vkey),
        previous=tmp_path / "published" / "checkpoint",
    )
    assert later.ok, later.problems  # consistent with what was published before the backup
