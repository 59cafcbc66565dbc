"""The ledger on a real store: no personal data enters it, appends roll back with their
transaction, checkpoints grow only consistently, tampering is detected (and a consistent
rewrite caught by the signed checkpoint), concurrent appenders never fork, PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import make_workspace
from custodes.errors import CustodesError
from custodes.ledger import audit, checkpoints, log
from custodes.ledger.events import (
    Event,
    PersonalDataInEvent,
    commitment,
)
from custodes.store.tables import ledger_events, ledger_nodes
from custodes.workspace import Workspace
from shared_ledger import Direct, Probe, events, record


def test_personal_data_never_enters_the_ledger(workspace: Workspace) -> None:
    for bad in (
        {"first_name": "ANA"},
        {"person": {"tin": "x"}},
        {"note": "ssn 123-45-6789"},
        {"ids": ["123456789"]},
        # an agency's item id goes in only as its salted commitment (issue #22, item 6)
        {"item_id": "CHERYL.BARKLEY.19840811.2"},
        {"item_ids": ["item-1"]},
    ):
        with pytest.raises(PersonalDataInEvent):
            record(workspace, [Event(Probe(extra=bad), actor="t")])
    with workspace.engine.connect() as conn:
        assert log.state(conn).size == 0
    record(workspace, [Event(Probe(extra={"sha256": "0123456789abcdef" * 4}), actor="t")])


def test_a_count_of_nine_digits_is_no_tin(workspace: Workspace) -> None:
    """A field declared as an integer (a count, a size) takes nine digits: a 25M-person master
    file has 125M address rows, and its import was refused at the very end for recording
    them. A nine-digit number anywhere else (free-form data) is still refused as a TIN."""
    from custodes.ledger.event_types import MasterImported

    imported = MasterImported(
        kind="generate",
        people_sha256="a" * 64,
        addresses_sha256="b" * 64,
        master_sha256="c" * 64,
        people_added=25_000_000,
        people_changed=0,
        addresses_added=124_987_561,
        addresses_changed=0,
    )
    record(workspace, [Event(imported, actor="t"), Event(Probe(seq=123_456_789), actor="t")])
    for bad in ({"n": 123_456_789}, {"ns": [987_654_321]}):
        with pytest.raises(PersonalDataInEvent):
            record(workspace, [Event(Probe(extra=bad), actor="t")])
    with workspace.engine.connect() as conn:
        assert log.state(conn).size == 2


def test_append_rolls_back_with_its_business_transaction(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError), workspace.engine.begin() as conn:
        log.append(conn, events(3))
        raise RuntimeError("the business action failed")
    with workspace.engine.connect() as conn:
        assert log.state(conn).size == 0 and log.count(conn) == 0


def test_checkpoints_advance_only_by_consistent_growth(signed_ws: Workspace) -> None:
    cp1, note1 = checkpoints.checkpoint(Direct(signed_ws))
    cp2, note2 = checkpoints.checkpoint(
        Direct(signed_ws)
    )  # unchanged tree: same checkpoint, no re-sign
    assert cp1 == cp2 and note1.render() == note2.render() and cp1.size == 65
    # Rewrite the stored tree under the checkpoint: the log refuses to sign a fork. (Edits
    # to event rows under intact nodes are the audit's to find: test_tampering_... below.)
    with signed_ws.engine.begin() as conn:
        conn.execute(
            sa.update(ledger_nodes)
            .where(ledger_nodes.c.level == 6, ledger_nodes.c.idx == 0)
            .values(hash=b"\x00" * 32)
        )
    record(signed_ws, events(1, 65))
    with pytest.raises(CustodesError) as exc:
        checkpoints.checkpoint(Direct(signed_ws))
    assert exc.value.code == "ledger_corrupt"


def test_clean_store_audits(signed_ws: Workspace) -> None:
    rep = audit.audit_store(signed_ws)
    assert rep.ok, rep.problems
    assert rep.size == 65


def _exec(ws: Workspace, sql: str) -> None:
    with ws.engine.begin() as conn:
        conn.execute(sa.text(sql))


TAMPERS = {
    "delete an event": ("DELETE FROM ledger_events WHERE idx = 20", "event 20 is missing"),
    "edit a body": (
        "UPDATE ledger_events SET body = replace(body, 'officer1', 'officer2') WHERE idx = 33",
        "event 33: its body does not match its commitment",
    ),
    "reorder two events": (
        "UPDATE ledger_events SET idx = -1 WHERE idx = 5; UPDATE "
        "ledger_events SET idx = 5 WHERE idx = 6; UPDATE ledger_events "
        "SET idx = 6 WHERE idx = -1",
        "events 0..15",
    ),
    "insert an event": (
        "UPDATE ledger_events SET idx = idx + 1000 WHERE idx >= 50; "
        "UPDATE ledger_events SET idx = idx - 999 WHERE idx >= 1000",
        "event 50 is missing",
    ),
    "edit a tree node": (
        "UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 2",
        "events 32..47",
    ),
    "delete the last events": (
        "DELETE FROM ledger_events WHERE idx >= 60",
        "checkpoint 65: the log now holds only 60 events",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampering_with_the_store_is_detected(signed_ws: Workspace, name: str) -> None:
    sql, where = TAMPERS[name]
    for stmt in sql.split("; "):
        _exec(signed_ws, stmt)
    rep = audit.audit_store(signed_ws)
    assert not rep.ok
    assert any(where in p for p in rep.problems), rep.problems


def test_consistent_rewrite_is_caught_by_the_signed_checkpoint(signed_ws: Workspace) -> None:
    """An insider who rewrites bodies, commitments, nodes and state together cannot forge the
    checkpoint signature: the audit and every exported verification see the rewrite."""
    with signed_ws.engine.begin() as conn:
        rows = conn.execute(sa.select(ledger_events).order_by(ledger_events.c.idx)).all()
        conn.execute(sa.delete(ledger_events))
        conn.execute(sa.delete(ledger_nodes))
        conn.execute(sa.text("UPDATE ledger_state SET size = 0, frontier = x''"))
        evs = [
            Event(
                Probe(seq=i),
                actor=r.actor,
                request_id=r.request_id,
                record_id=r.record_id,
                at=r.at,
            )
            for i, r in enumerate(rows)
            if i != 12
        ]
        log.append(conn, evs)
    rep = audit.audit_store(signed_ws)
    assert any("the log was rewritten" in p for p in rep.problems), rep.problems


# --- concurrency and PostgreSQL ------------------------------------------------------------


def test_concurrent_appenders_never_fork(workspace: Workspace) -> None:
    """Appenders on connections of their own (as a server and its job worker process are)
    wait for each other: none forks the log, and none is refused `ledger_conflict` (a long
    job's appends failed so beside a busy server, found by the soak)."""
    errors: list[Exception] = []

    def worker(start: int) -> None:
        for i in range(10):
            try:
                record(workspace, events(3, start + 3 * i))
            except Exception as exc:  # ledger_conflict, or anything else: a failure
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rep = audit.audit_store(workspace)
    assert rep.ok and rep.size == 90, rep.problems


@pytest.mark.postgres
def test_ledger_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    ws = make_workspace(tmp_path / "pg", pg_url)
    for k in range(4):
        record(ws, events(50, 50 * k))
        checkpoints.checkpoint(Direct(ws))
    assert audit.audit_store(ws).ok
    with ws.engine.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_events SET body = body || ' ' WHERE idx = 77"))
    rep = audit.audit_store(ws)
    assert any("event 77" in p for p in rep.problems)
    ws.close()


def test_commitment_is_salted() -> None:
    body = Event(Probe(), actor="t", at=Event(Probe(), actor="t").at).body()
    assert commitment(b"\x00" * 32, body) != commitment(b"\x01" * 32, body)


def _rebuild_without(ws: Workspace, drop: set[int]) -> None:
    """What an insider with the workspace's files does: rewrite the events without some,
    rebuild nodes and state consistently, delete the signed checkpoints."""
    with ws.engine.begin() as conn:
        rows = conn.execute(sa.select(ledger_events).order_by(ledger_events.c.idx)).all()
        conn.execute(sa.delete(ledger_events))
        conn.execute(sa.delete(ledger_nodes))
        conn.execute(sa.text("DELETE FROM ledger_checkpoints"))
        conn.execute(
            sa.text("UPDATE ledger_state SET size = 0, frontier = x'', checkpoint_size = NULL")
        )
        log.append(
            conn,
            [
                Event(
                    Probe(), actor=r.actor, request_id=r.request_id, record_id=r.record_id, at=r.at
                )
                for r in rows
                if r.idx not in drop
            ],
        )


def test_rewrite_and_resign_is_caught_by_the_checkpoint_kept_outside(signed_ws: Workspace) -> None:
    """Deleting events, rebuilding nodes and state, deleting the checkpoint rows and signing
    again with the workspace's own key used to verify clean; the last signed checkpoint is
    also kept outside the store, and the store must extend it."""
    _rebuild_without(signed_ws, {10, 11, 12})
    checkpoints.checkpoint(Direct(signed_ws))  # re-signed with the key that sits in the workspace
    rep = audit.audit_store(signed_ws)
    assert not rep.ok
    assert any("kept outside" in p for p in rep.problems), rep.problems


def test_deleting_only_the_checkpoint_rows_is_caught(signed_ws: Workspace) -> None:
    with signed_ws.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ledger_checkpoints"))
    rep = audit.audit_store(signed_ws)
    assert any("missing from the store" in p for p in rep.problems), rep.problems


def test_an_event_without_an_actor_is_refused(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="no actor"):
        record(workspace, [Event(Probe())])


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_events_put_ahead_of_the_ledgers_state_are_ledger_corrupt(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A row written behind the ledger's back at the next index makes the next append a coded
    `ledger_corrupt` on both stores (on PostgreSQL the rows go through COPY, whose driver error
    is raised as SQLAlchemy's: it was a bare psycopg UniqueViolation)."""
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    ws = make_workspace(tmp_path / "ws", url)
    size = record(ws, events(3))[-1] + 1
    with ws.engine.begin() as conn:
        row = conn.execute(sa.select(ledger_events).where(ledger_events.c.idx == 0)).one()
        conn.execute(sa.insert(ledger_events).values({**row._asdict(), "idx": size}))
    with pytest.raises(CustodesError) as exc:
        record(ws, events(1, size))
    assert exc.value.code == "ledger_corrupt"
    ws.close()
