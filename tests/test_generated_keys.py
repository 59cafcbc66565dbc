"""A row put by a store writer at the next key the store generates (issue #23, the tamper
campaign's PostgreSQL finding): on PostgreSQL the table's sequence is left behind, so the next
genuine insert draws that key again. It must be refused with a coded error (`store_tampered`,
nothing written), never the database's own IntegrityError (an uncoded internal error), and
`ledger verify` must name the foreign row where it can still run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PASSWORD, make_workspace
from custodes.errors import CustodesError
from custodes.services import ledger as ledger_svc
from custodes.services import records, requests
from custodes.services.rules import register_parties
from custodes.store import engine as store_engine
from custodes.store.tables import access_log, request_transitions
from custodes.synthetic import staff as staff_mod

GENERATED = {"access_log", "imports", "officials", "request_transitions"}


def test_every_table_with_a_generated_key_is_covered() -> None:
    assert set(store_engine._generated_keys()) == GENERATED


def _put_next(engine: sa.Engine, table: sa.Table) -> None:
    """The attacker's edit: the table's last row copied under the next id (the sequence is not
    advanced: an explicit id never is)."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(table).order_by(table.c.id.desc()).limit(1)).one()._asdict()
        conn.execute(sa.insert(table).values(row | {"id": row["id"] + 1}))


def _problems(ws, auditor) -> list[str]:  # type: ignore[no-untyped-def]
    return ledger_svc.verify_store(ws, auditor).problems


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_row_at_the_next_generated_key_is_refused_with_a_code_and_reported(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    ws = make_workspace(tmp_path / "ws", url)
    try:
        staff = staff_mod.one_per_role(ws, password=PASSWORD)
        records.generate(ws, staff.admin, 60, 5)
        register_parties(ws, staff.admin, "irc-6103-i-2")
        first, folder = tmp_path / "req-1", tmp_path / "req-2"
        requests.generate(ws, staff.admin, "irc-6103-i-2", 4, 1, first)
        requests.generate(ws, staff.admin, "irc-6103-i-2", 4, 2, folder)
        agency, auditor = staff["requester"], staff["auditor"]
        requests.submit(ws, agency, first)
        assert _problems(ws, auditor) == []

        # A transition row put in: the next request received would draw its id on PostgreSQL.
        _put_next(ws.engine, request_transitions)
        if store == "postgresql":
            with pytest.raises(CustodesError) as exc:
                requests.submit(ws, agency, folder)
            assert exc.value.code == "store_tampered"
            assert "request_transitions" in str(exc.value)
        else:  # SQLite draws max(rowid) + 1: no collision, the row is only reported
            requests.submit(ws, agency, folder)
        assert any(p.startswith("request_transitions:") for p in _problems(ws, auditor))

        # An access-log row put in: every call writes one, so every call is refused on
        # PostgreSQL (verify too, which says why); SQLite's verify names the row.
        _put_next(ws.engine, access_log)
        if store == "postgresql":
            with pytest.raises(CustodesError) as exc:
                ledger_svc.verify_store(ws, auditor)
            assert exc.value.code == "store_tampered"
            assert "access_log" in str(exc.value)
        else:
            assert any(p.startswith("access_log:") for p in _problems(ws, auditor))
    finally:
        ws.close()


def test_every_generated_key_taken_on_postgresql_is_a_coded_refusal(pg_url: str) -> None:
    """officials and imports too: a row at the next id, then a genuine insert without one."""
    engine = store_engine.make_engine(pg_url)
    try:
        store_engine.upgrade(engine)
        from custodes.store.tables import metadata

        now = dt.datetime.now(dt.UTC)
        for name in sorted(GENERATED):
            table = metadata.tables[name]
            values = {
                c.name: _filler(c, now)
                for c in table.columns
                if not c.primary_key and (not c.nullable or c.name == "at")
            }
            with engine.begin() as conn:  # the attacker's row, at id 1 (the sequence's next)
                conn.execute(sa.insert(table).values(values | {"id": 1}))
            with pytest.raises(CustodesError) as exc, engine.begin() as conn:
                conn.execute(sa.insert(table).values(values))
            assert exc.value.code == "store_tampered", name
            assert name in str(exc.value)
            with engine.connect() as conn:  # nothing written
                assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1
    finally:
        engine.dispose()


def _filler(col: sa.Column, now: dt.datetime) -> object:
    t = col.type
    if isinstance(t, sa.Boolean):
        return False
    if isinstance(t, sa.Integer):
        return 0
    if isinstance(t, sa.DateTime) or isinstance(getattr(t, "impl", None), sa.DateTime):
        return now
    if isinstance(t, sa.Date):
        return now.date()
    if isinstance(t, sa.LargeBinary):
        return b"x"
    return "x"
