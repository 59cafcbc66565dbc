"""#23 finding 1: a database writer cannot act as anyone or widen anyone's scope unnoticed.

Every row that confers authority or scope is anchored by a ledger event carrying a commitment
keyed by the workspace's secrets key (custodes.ledger.anchors). The attacker here writes the
store directly, as a DBA or a restored backup would: each edit is refused where the row is used
(`authority_tampered`, recorded in the access log) and reported by the store audit, which
names the table and primary key of the first row that differs."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PASSWORD, make_workspace
from custodes.access import caller, enter
from custodes.errors import AccessDenied, NotFound
from custodes.ledger import anchors
from custodes.ledger.audit import audit_store
from custodes.services import records, reports, requests, users
from custodes.services import workspace as ws_svc
from custodes.services.rules import register_parties
from custodes.store import tables
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

OTHER_AGENCY = "U.S. Department of Labor"


def _refused(ws: Workspace) -> list[str]:
    """The reasons of the refusals the access log recorded."""
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(tables.access_log.c.reason).where(tables.access_log.c.allowed.is_(False))
            ).scalars()
        )


def _audit_names(ws: Workspace, prefix: str) -> str:
    rep = audit_store(ws)
    assert not rep.ok
    found = [p for p in rep.problems if p.startswith(prefix)]
    assert found, rep.problems
    return found[0]


def _insert_session(ws: Workspace, user: str, token: str) -> None:
    """The attacker's session: a row for `user` with the hash of a token he chose."""
    t = dt.datetime.now(dt.UTC)
    with ws.engine.begin() as conn:
        conn.execute(
            sa.insert(tables.sessions).values(
                token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                user_name=user,
                kind="session",
                created_at=t,
                expires_at=t + dt.timedelta(hours=12),
                last_used_at=t,
            )
        )


def _assert_inserted_session_refused(ws: Workspace) -> None:
    token = "chosen-by-the-attacker"
    _insert_session(ws, "approver", token)
    with pytest.raises(AccessDenied) as exc:
        caller(ws, token)
    assert exc.value.code == "authority_tampered"
    assert "sessions row" in exc.value.message and "approver" not in exc.value.message
    assert "authority_tampered" in _refused(ws)
    token_sha = hashlib.sha256(token.encode()).hexdigest()
    problem = _audit_names(ws, "sessions row")
    assert token_sha in problem and "not anchored" in problem


def test_an_inserted_session_is_refused_and_reported(staff: Staff) -> None:
    _assert_inserted_session_refused(staff.ws)


def test_an_inserted_session_is_refused_and_reported_on_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    ws = make_workspace(tmp_path / "ws", pg_url)
    try:
        staff_mod.one_per_role(ws, password=PASSWORD)
        assert audit_store(ws).ok
        _assert_inserted_session_refused(ws)
    finally:
        ws.close()


def test_an_inserted_session_cannot_approve_over_the_api(staff: Staff) -> None:
    from custodes.api import create_app

    ws = staff.ws
    _insert_session(ws, "approver", "chosen-by-the-attacker")
    with TestClient(create_app(ws.home, str(ws.engine.url))) as client:
        r = client.post(
            "/v1/requests/req-000000000000/approve",
            headers={"Authorization": "Bearer chosen-by-the-attacker"},
        )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "authority_tampered"
    assert "approver" not in r.text


def test_an_agency_swapped_on_an_account_is_refused_and_reported(staff: Staff) -> None:
    ws = staff.ws
    staff_mod.add(staff, "agency-dol", ["requester"], agency=OTHER_AGENCY)
    assert enter(ws, staff["agency-dol"], "requests.list")
    with ws.engine.begin() as conn:  # the attacker: DoL's key now acts for ICE
        conn.execute(
            sa.text("UPDATE users SET agency = :a WHERE name = 'agency-dol'"),
            {"a": "U.S. Immigration and Customs Enforcement"},
        )
    with pytest.raises(AccessDenied) as exc:
        enter(ws, staff["agency-dol"], "requests.list")
    assert exc.value.code == "authority_tampered"
    assert "authority_tampered" in _refused(ws)
    assert "(name=agency-dol)" in _audit_names(ws, "users row")


def test_a_pushed_grant_expiry_is_refused_and_reported(staff: Staff) -> None:
    ws = staff.ws
    last = dt.date.today() + dt.timedelta(days=30)
    staff_mod.add(staff, "detailee", ["officer"], basis="detail order 26-04")
    users.grant(ws, staff.admin, "detailee", "auditor", basis="detail order 26-04", last_day=last)
    users.confirm(ws, staff.second_admin, "detailee")
    assert enter(ws, staff["detailee"], "audit")
    with ws.engine.begin() as conn:
        conn.execute(
            sa.update(tables.grants)
            .where(tables.grants.c.user_name == "detailee")
            .values(expires_at=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
        )
    with pytest.raises(AccessDenied) as exc:
        enter(ws, staff["detailee"], "audit")
    assert exc.value.code == "authority_tampered"
    assert "(user_name=detailee, role=auditor)" in _audit_names(ws, "grants row")


def test_a_request_moved_to_another_agency_is_refused_and_reported(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    ws = master_ws
    register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 20, 3, tmp_path / "req")
    rid = requests.submit(ws, people["requester"], tmp_path / "req").request_id
    staff_mod.add(people, "agency-dol", ["requester"], agency=OTHER_AGENCY)
    with pytest.raises(NotFound) as exc:  # another agency's: not found
        requests.status(ws, people["agency-dol"], rid)
    assert exc.value.code == "unknown_request"
    with ws.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE requests SET agency = :a WHERE id = :r"), {"a": OTHER_AGENCY, "r": rid}
        )
    with pytest.raises(AccessDenied) as refused:
        requests.status(ws, people["agency-dol"], rid)
    assert refused.value.code == "authority_tampered"
    assert f"(id={rid})" in _audit_names(ws, "requests row")


def test_a_session_rolled_back_to_before_its_end_is_reported(staff: Staff) -> None:
    """An old state of a row with its old (genuine) event: the audit sees it is not the
    latest event of that row."""
    ws = staff.ws
    with ws.engine.connect() as conn:
        before = conn.execute(
            sa.select(tables.sessions).where(tables.sessions.c.user_name == "auditor")
        ).first()
    users.suspend(ws, staff.admin, "auditor", "test")
    with ws.engine.begin() as conn:
        conn.execute(
            sa.update(tables.sessions)
            .where(tables.sessions.c.token_sha256 == before.token_sha256)
            .values(ended_at=None, ended_reason=None, anchor=before.anchor)
        )
    assert "latest anchoring event" in _audit_names(ws, "sessions row")


# --- every anchored table: the audit names the row that differs --------------------------------


@pytest.fixture
def lived(staff: Staff) -> Staff:
    """A workspace with rows in the anchored tables a staff workspace reaches without a master
    file: sessions, users, grants, enrolments, policy, the registries, sensitive records and
    incidents."""
    ws = staff.ws
    register_parties(ws, staff.admin, "irc-6103-i-2")
    users.propose_policy(ws, staff.admin, "totp_roles", "approver")
    records.flag_sensitive(ws, staff.admin, "rec-0000001", "public figure")
    reports.incident_open(
        ws, staff["officer"], kind="inspection", summary="a look nobody could explain"
    )
    staff_mod.add(staff, "newcomer", ["officer"], enrol=False)  # a code not used yet
    return staff


def _changed(value: object, column: sa.Column) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(days=1)
    if isinstance(value, dt.date):
        return value + dt.timedelta(days=1)
    if value is None:
        kind = column.type.python_type
        return {
            str: "x",
            int: 1,
            bool: True,
            dt.datetime: dt.datetime(2099, 1, 1),
            dt.date: dt.date(2099, 1, 1),
        }[kind]
    return str(value) + "x"


def test_every_anchored_table_is_checked(lived: Staff) -> None:
    ws = lived.ws
    assert audit_store(ws).ok
    with ws.engine.connect() as conn:
        filled = {
            name
            for name, t in anchors.TABLES.items()
            if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
        }
    # ruleset_changes and requests are covered by the request test above and
    # tests/test_rules_sets.py
    assert filled >= set(anchors.TABLES) - {"ruleset_changes", "requests"}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_single_column_edit_of_an_anchored_row_is_reported(lived: Staff, data) -> None:  # type: ignore[no-untyped-def]
    ws = lived.ws
    with ws.engine.connect() as conn:
        filled = [
            name
            for name, t in anchors.TABLES.items()
            if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
        ]
        name = data.draw(st.sampled_from(filled), label="table")
        table = anchors.TABLES[name]
        rows = conn.execute(sa.select(table)).all()
    row = data.draw(st.sampled_from(rows), label="row")
    column = data.draw(
        st.sampled_from([c for c in table.columns if c.name in anchors._COMMITTED[name]]),
        label="column",
    )
    pk = sa.and_(*(c == getattr(row, c.name) for c in table.primary_key.columns))
    old = getattr(row, column.name)
    with ws.engine.begin() as conn:
        conn.execute(sa.update(table).where(pk).values({column.name: _changed(old, column)}))
    try:
        rep = audit_store(ws)
        assert any(p.startswith(f"{name} row") for p in rep.problems), rep.problems
    finally:
        where = sa.and_(
            *(
                c == (_changed(old, column) if c.name == column.name else getattr(row, c.name))
                for c in table.primary_key.columns
            )
        )
        with ws.engine.begin() as conn:
            conn.execute(sa.update(table).where(where).values({column.name: old}))
    assert audit_store(ws).ok


def test_a_store_upgraded_to_anchors_adopts_its_rows_once(staff: Staff) -> None:
    """Rows made before migration 0017 are anchored by the upgrade that adds the column
    (`anchor.adopted`), and never afterwards: a row inserted later is reported."""
    ws = staff.ws
    with ws.engine.begin() as conn:  # as an older custodes left them: no anchors
        for t in anchors.TABLES.values():
            conn.execute(sa.update(t).values(anchor=None))
    assert not audit_store(ws).ok
    with ws.engine.begin() as conn:
        counts = anchors.adopt(conn)
    assert counts["users"] == len(staff.callers) and counts["sessions"] >= len(staff.callers)
    assert audit_store(ws).ok
    assert enter(ws, staff["officer"], "process")
    _insert_session(ws, "approver", "later")
    ws_svc.init(ws.home)  # upgrading an anchored store again adopts nothing
    with pytest.raises(AccessDenied) as exc:
        caller(ws, "later")
    assert exc.value.code == "authority_tampered"


def test_a_rule_set_made_active_in_the_store_is_refused_and_reported(
    staff: Staff, tmp_path: Path
) -> None:
    """A proposed rule set that no second steward approved, set active by the store writer."""
    import shutil

    import yaml

    from custodes.rules.active import in_force
    from custodes.rules.provisions import REFERENCE
    from custodes.services import rules

    ws = staff.ws
    changed = tmp_path / "rules"
    shutil.copytree(REFERENCE, changed)
    doc = yaml.safe_load((changed / "ruleset.yaml").read_text())
    doc["parameters"]["official_case_cap"]["value"] = 100_000  # the writer's lax rule set
    (changed / "ruleset.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sha = rules.propose(ws, staff["rule-steward"], changed)["ruleset_sha256"]
    with ws.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ruleset_changes SET state = 'active' WHERE sha256 = :s"), {"s": sha}
        )
    with pytest.raises(AccessDenied) as exc:
        in_force(ws)
    assert exc.value.code == "authority_tampered"
    assert f"(sha256={sha})" in _audit_names(ws, "ruleset_changes row")
