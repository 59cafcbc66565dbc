"""The tamper campaign's small run (bench/tamper.py, issue #23): single random edits of the
store and of the files of a workspace that lived a full cycle, each on a fresh copy; every edit
that changes what custodes does or shows must be detected (by `ledger verify`, or refused at use
with a coded error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "tamper.py"


@pytest.mark.slow
@pytest.mark.parametrize(("store", "n"), [("sqlite", 16), ("postgresql", 8)])
def test_a_small_campaign_misses_nothing(store: str, n: int, tmp_path: Path) -> None:
    """A handful of mutations on each store, each run in a child forked from the campaign's
    process (the campaign's way); any MISSED fails, and so does a child that dies or hangs.
    The campaign runs as the command a user runs, in a process of its own: forking the test
    runner itself (its threads: DuckDB's, the server tests', Spark's) is not what the campaign
    does, and a child forked from it can die of what those threads held."""
    out = tmp_path / "missed.json"
    args = ["--mutations", str(n), "--store", store, "--seed", "7", "--people", "200"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--items", "16", "--missed", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(done.stdout[-4000:])
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(out.read_text())[store]
    assert found["tried"] == n
    assert not found["missed"], found["missed"]


@pytest.mark.parametrize("column", ["at", "request_id", "record_id"])
def test_an_access_log_row_edited_beside_its_event_is_reported(
    column: str, workspace, staff
) -> None:  # type: ignore[no-untyped-def]
    """Found by the campaign: the access log's time, request and record (what `audit
    inspections` lists) were not compared with the row's `access` event."""
    import datetime as dt

    import sqlalchemy as sa

    from custodes.services import ledger as ledger_svc
    from custodes.store.tables import access_log

    auditor = staff["auditor"]
    assert ledger_svc.verify_store(workspace, auditor).problems == []
    value = {"at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}.get(column, "req-0123456789ab")
    with workspace.engine.begin() as conn:
        first = conn.execute(sa.select(sa.func.min(access_log.c.id))).scalar()
        conn.execute(sa.update(access_log).where(access_log.c.id == first).values({column: value}))
    problems = ledger_svc.verify_store(workspace, auditor).problems
    assert any(p.startswith("access_log:") for p in problems), problems


def test_the_last_access_log_row_deleted_and_its_number_taken_again_is_reported(
    workspace, staff
) -> None:  # type: ignore[no-untyped-def]
    """Found by the campaign (SQLite, seed 71207): the last row of the access log deleted;
    the next access (here the audit itself) took its number, and its event stood for both,
    so verify passed and the trace was gone."""
    import sqlalchemy as sa

    from custodes.services import ledger as ledger_svc
    from custodes.store.tables import access_log

    auditor = staff["auditor"]
    assert ledger_svc.verify_store(workspace, auditor).problems == []
    with workspace.engine.begin() as conn:
        last = conn.execute(sa.select(sa.func.max(access_log.c.id))).scalar()
        conn.execute(sa.delete(access_log).where(access_log.c.id == last))
    ledger_svc.verify_store(workspace, auditor)  # an access: it takes the number again
    problems = ledger_svc.verify_store(workspace, auditor).problems
    assert any("two accesses as row" in p for p in problems), problems


@pytest.mark.parametrize("where", ["store", "outside"])
def test_a_garbled_checkpoint_note_is_reported_never_a_crash(where: str, workspace, staff) -> None:  # type: ignore[no-untyped-def]
    """Found by the campaign (SQLite, seed 2312): the latest checkpoint's note edited in the
    store, or a byte of the copy kept outside flipped, crashed verify with a NoteError (an
    uncoded error) instead of a reported problem."""
    import json

    import sqlalchemy as sa

    from custodes.services import ledger as ledger_svc
    from custodes.store.tables import ledger_checkpoints

    auditor = staff["auditor"]
    ledger_svc.checkpoint(workspace, staff.admin)
    assert ledger_svc.verify_store(workspace, auditor).problems == []
    if where == "store":
        with workspace.engine.begin() as conn:
            size, note = conn.execute(
                sa.select(ledger_checkpoints.c.size, ledger_checkpoints.c.note)
                .order_by(ledger_checkpoints.c.size.desc())
                .limit(1)
            ).one()
            conn.execute(
                sa.update(ledger_checkpoints)
                .where(ledger_checkpoints.c.size == size)
                .values(note=note.rstrip("\n")[:-3] + "!x\n")
            )
    else:
        path = workspace.keys / "checkpoints"
        lines = path.read_text().splitlines()
        doc = json.loads(lines[-1])
        doc["note"] = doc["note"].rstrip("\n")[:-3] + "!x\n"
        path.write_text("\n".join([*lines[:-1], json.dumps(doc)]) + "\n")
    report = ledger_svc.verify_store(workspace, auditor)
    assert not report.ok and report.problems


def test_a_garbled_cosignature_row_is_reported_and_the_note_still_checked(workspace, staff) -> None:  # type: ignore[no-untyped-def]
    """Found in review: one garbage row in ledger_cosignatures made the latest note unreadable
    as a whole, and verify then skipped the checks that need it (the witness's cosignature)."""
    import datetime as dt

    import sqlalchemy as sa

    from custodes.services import ledger as ledger_svc
    from custodes.store.tables import ledger_checkpoints, ledger_cosignatures

    auditor = staff["auditor"]
    ledger_svc.checkpoint(workspace, staff.admin)
    with workspace.engine.begin() as conn:
        size = conn.execute(sa.select(sa.func.max(ledger_checkpoints.c.size))).scalar()
        conn.execute(
            sa.insert(ledger_cosignatures).values(
                size=size, witness="rogue", line="not a signature", at=dt.datetime.now(dt.UTC)
            )
        )
    problems = ledger_svc.verify_store(workspace, auditor).problems
    assert any("cosignature is not a signature line" in p for p in problems), problems


@pytest.mark.parametrize("column", ["at", "actor", "request_id", "record_id"])
def test_an_event_row_column_edited_beside_its_body_is_reported(
    column: str, workspace, staff
) -> None:  # type: ignore[no-untyped-def]
    """Found by the campaign: the columns beside an event's body (copies for lookups by
    request or record, and the time) were not compared with the body."""
    import datetime as dt

    import sqlalchemy as sa

    from custodes.services import ledger as ledger_svc
    from custodes.store.tables import ledger_events

    auditor = staff["auditor"]
    assert ledger_svc.verify_store(workspace, auditor).problems == []
    value = {"at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}.get(column, "someone-else")
    with workspace.engine.begin() as conn:
        conn.execute(
            sa.update(ledger_events).where(ledger_events.c.idx == 3).values({column: value})
        )
    problems = ledger_svc.verify_store(workspace, auditor).problems
    assert any("event 3: a column beside its body" in p for p in problems), problems


def test_an_event_body_whose_time_is_no_time_is_reported_never_a_crash(workspace, staff) -> None:  # type: ignore[no-untyped-def]
    """Found in review: an edited body whose `time` does not parse made the new comparison of
    an event row with its body raise ValueError, losing the report."""
    import sqlalchemy as sa

    from custodes.services import ledger as ledger_svc
    from custodes.store.tables import ledger_events

    auditor = staff["auditor"]
    with workspace.engine.begin() as conn:
        idx, body = conn.execute(
            sa.select(ledger_events.c.idx, ledger_events.c.body).order_by(ledger_events.c.idx)
        ).first()
        doc = json.loads(body)
        doc["time"] = "not a time"
        conn.execute(
            sa.update(ledger_events)
            .where(ledger_events.c.idx == idx)
            .values(body=json.dumps(doc, sort_keys=True, separators=(",", ":")))
        )
    report = ledger_svc.verify_store(workspace, auditor)
    assert not report.ok and report.problems


def test_a_stored_agreement_that_no_longer_parses_is_store_tampered(workspace) -> None:  # type: ignore[no-untyped-def]
    """Found in review: a stored agreement body edited to YAML whose value does not fit its
    tag (`!!int m`) raised PyYAML's ValueError at every rule evaluation."""
    import datetime as dt

    import sqlalchemy as sa

    from custodes.errors import CustodesError
    from custodes.rules import registry
    from custodes.store.tables import agreements

    with workspace.engine.begin() as conn:
        conn.execute(
            sa.insert(agreements).values(
                id="agr-x",
                provision="irc-6103-i-2",
                agency="ICE",
                body="id: agr-x\nmax_items: !!int m\n",
                sha256="0" * 64,
                added_at=dt.datetime.now(dt.UTC),
            )
        )
    with workspace.engine.connect() as conn, pytest.raises(CustodesError) as exc:
        registry.read(conn)
    assert exc.value.code == "store_tampered"
