"""Access: the role × action table, separation of duties (hypothesis over role assignments
and over every access-management command), expired grants, inspections, and the second
rule steward."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from custodes.access import (
    ACTIONS,
    EXCLUSIVE,
    PRIVILEGED,
    ROLES,
    caller,
    enrolment,
    enter,
    users,
)
from custodes.access import policy as access_policy
from custodes.errors import (
    AccessDenied,
    ConflictError,
    CustodesError,
    InputError,
    NotFound,
    Unauthenticated,
)
from custodes.ledger import anchors
from custodes.services import users as svc
from custodes.store.tables import access_log
from custodes.store.tables import grants as grants_table
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


def test_role_action_table(staff: Staff) -> None:
    ws = staff.ws
    by_role = {
        "administrator": staff.admin,
        "requester": staff["requester"],
        **{r: staff[r.replace("_", "-")] for r in PRIVILEGED if r != "administrator"},
    }
    for action, allowed in ACTIONS.items():
        for role, who in by_role.items():
            if role in allowed:
                assert enter(ws, who, action).actor == who.name
            else:
                with pytest.raises(AccessDenied) as exc:
                    enter(ws, who, action)
                assert exc.value.code == "forbidden"
    with ws.engine.connect() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar()
    assert logged >= len(ACTIONS) * len(by_role)


def test_expired_grant_behaves_like_a_missing_role(staff: Staff) -> None:
    ws = staff.ws
    last = dt.date.today() + dt.timedelta(days=120)
    staff_mod.add(staff, "detailee", ["officer"], basis="detail order 26-04")
    svc.grant(ws, staff.admin, "detailee", "auditor", basis="detail order 26-04", last_day=last)
    svc.confirm(ws, staff.second_admin, "detailee")
    who = staff["detailee"]
    assert enter(ws, who, "audit")
    listed = {u["user"]: u for u in svc.listing(ws, staff.admin)}
    g = next(g for g in listed["detailee"]["grants"] if g["role"] == "auditor")
    assert g["last_day"] == last  # shown as given, not as the next day
    with ws.engine.begin() as conn:  # day 121 (time moved on, as custodes records it)
        anchors.update_rows(
            conn,
            "admin",
            grants_table,
            (grants_table.c.user_name == "detailee") & (grants_table.c.role == "auditor"),
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        )
    with pytest.raises(AccessDenied) as exc:
        enter(ws, who, "audit")
    assert exc.value.code == "forbidden"
    listed = {u["user"]: u for u in svc.listing(ws, staff.admin)}
    g = next(g for g in listed["detailee"]["grants"] if g["role"] == "auditor")
    assert g["basis"] == "detail order 26-04" and g["expired"] is True
    with pytest.raises(InputError) as exc:  # a past expiry is refused
        svc.grant(ws, staff.admin, "detailee", "auditor", basis="b", last_day=dt.date(2020, 1, 1))
    assert exc.value.code == "bad_date"


def test_separation_of_duties(staff: Staff) -> None:
    ws, admin = staff.ws, staff.admin
    with pytest.raises(AccessDenied) as exc:
        svc.add(ws, admin, "boss2", ["administrator", "approver"])
    assert exc.value.code == "separation_of_duties"
    with pytest.raises(AccessDenied) as exc:
        svc.grant(ws, admin, "admin", "officer", basis="self")
    assert exc.value.code == "separation_of_duties"
    with pytest.raises(AccessDenied):
        svc.grant(ws, admin, "requester", "officer", basis="b")
    with pytest.raises(AccessDenied) as exc:  # an officer cannot create users
        svc.add(ws, staff["officer"], "mine", ["approver"])
    assert exc.value.code == "forbidden"


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sets(st.sampled_from(ROLES), min_size=1, max_size=3), min_size=1, max_size=3))
def test_no_role_assignment_breaks_separation(fresh_staff, role_sets) -> None:  # type: ignore[no-untyped-def]
    """Whatever roles are asked for and granted, nobody ends up holding an exclusive pair."""
    with fresh_staff() as staff:  # each example from the same start: reproducible
        _no_exclusive_pair_after(staff, role_sets)


def _no_exclusive_pair_after(staff: Staff, role_sets: list[set[str]]) -> None:
    ws, admin, second = staff.ws, staff.admin, staff.second_admin
    for i, roles in enumerate(role_sets):
        name = f"u{i}"
        try:
            svc.add(
                ws,
                admin,
                name,
                sorted(roles),
                agency="U.S. Immigration and Customs Enforcement" if "requester" in roles else None,
            )
        except (AccessDenied, InputError, NotFound):
            continue
        for extra in ROLES:
            with contextlib.suppress(CustodesError):
                svc.grant(ws, admin, name, extra, basis="b")
        with contextlib.suppress(CustodesError):
            svc.confirm(ws, second, name)
    with ws.engine.connect() as conn:
        for u in users.listing(conn):
            held = users.roles_of(conn, u["user"])
            assert not any(pair <= held for pair in EXCLUSIVE), (u["user"], held)


# --- one administrator alone changes nothing privileged --------------------------------------

ACCESS_COMMANDS = (
    "add",
    "grant",
    "confirm",
    "confirm_change",
    "enrol",
    "key",
    "reset",
    "policy",
    "confirm_policy",
    "suspend",
    "reinstate",
)
TARGETS = ("officer", "approver", "auditor", "requester", "admin2", "new-a", "new-b")


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(
    steps=[("add", "new-a"), ("confirm", "new-a"), ("key", "requester"), ("confirm", "requester")]
)
@example(steps=[("policy", "officer"), ("confirm_policy", "officer"), ("suspend", "admin2")])
@example(  # the 2026 attack: reset a colleague, then enrol as them with what one holds
    steps=[("reset", "approver"), ("confirm_change", "approver"), ("enrol", "approver")]
)
@example(steps=[("reset", "admin2"), ("confirm", "admin2"), ("enrol", "admin2")])
@example(steps=[("key", "requester"), ("suspend", "requester")])  # unconfirmed, then suspended
@given(
    st.lists(
        st.tuples(st.sampled_from(ACCESS_COMMANDS), st.sampled_from(TARGETS)),
        min_size=1,
        max_size=8,
    )
)
def test_one_administrator_completes_no_two_person_change_alone(fresh_staff, steps) -> None:  # type: ignore[no-untyped-def]
    """Whatever one administrator does with every access-management command, no privileged
    role they grant takes effect, no key they issue works, no policy they propose is in
    force, nobody they suspended is reinstated, and no account ends up with a password the
    administrator set: every code and change id they were shown is tried, in any
    combination, and none enrols anyone. (Each example starts from the same workspace.)"""
    with fresh_staff() as staff:
        _rogue_alone(staff, steps)


def _rogue_alone(staff: Staff, steps: list[tuple[str, str]]) -> None:
    ws, rogue = staff.ws, staff.admin
    with ws.engine.connect() as conn:
        before = {u["user"]: users.roles_of(conn, u["user"]) for u in users.listing(conn)}
        policy_before = access_policy.totp_roles(conn)
    keys: list[str] = []
    codes: list[str] = []  # every code or half a code the rogue was ever shown
    ids: list[str] = []  # every change id they saw
    taken: list[str] = []
    for n, (command, target) in enumerate(steps):
        with contextlib.suppress(CustodesError):
            if command == "add":
                made = svc.add(ws, rogue, f"{target}-{n}", ["approver"])
                codes.append(made["enrolment_code"])
                ids.append(made["change"])
            elif command == "grant":
                ids.append(svc.grant(ws, rogue, target, "approver", basis="b")["change"])
            elif command == "confirm":
                codes.append(svc.confirm(ws, rogue, target)["enrolment_code_second_half"] or "")
            elif command == "confirm_change":
                ids += [c["id"] for c in svc.pending_changes(ws, rogue)]
                for cid in ids:
                    with contextlib.suppress(CustodesError):
                        done = svc.confirm_change(ws, rogue, cid)
                        codes.append(done["enrolment_code_second_half"] or "")
            elif command == "enrol":
                for name in {target, *(f"{t}-{i}" for i, (_, t) in enumerate(steps))}:
                    for a in codes:
                        for b in ["", *codes]:
                            with contextlib.suppress(CustodesError):
                                enrolment.enrol(ws, name, f"{a} {b}", "the rogue's password")
                                taken.append(name)
            elif command == "key":
                issued = svc.key(ws, rogue, target)
                keys.append(issued["key"])
                ids.append(issued["change"])
            elif command == "reset":
                reset = svc.reset(ws, rogue, target)
                codes.append(reset["enrolment_code"])
                ids.append(reset["change"])
            elif command == "policy":
                svc.propose_policy(ws, rogue, "totp_roles", "")
            elif command == "confirm_policy":
                svc.confirm_policy(ws, rogue, "totp_roles")
            elif command == "suspend":
                svc.suspend(ws, rogue, target, "r")
            else:
                svc.reinstate(ws, rogue, target)
    with ws.engine.connect() as conn:
        for u in users.listing(conn):
            held = users.roles_of(conn, u["user"])
            gained = held - before.get(u["user"], frozenset())
            assert not gained & set(PRIVILEGED), (u["user"], gained)
            if u["status"] == "suspended":
                assert u["user"] not in before or before[u["user"]] is not None
        assert access_policy.totp_roles(conn) == policy_before
        for u in users.listing(conn):
            if u["user"] in before and u["status"] == "suspended":
                reinstated = conn.execute(
                    sa.text("SELECT count(*) FROM ledger_events WHERE type = 'user.reinstated'")
                ).scalar()
                assert reinstated == 0
    for key in keys:
        with pytest.raises(Unauthenticated):
            caller(ws, key)
    assert taken == [], f"the rogue enrolled as {taken}"


def test_inspections_only_of_candidates(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from custodes.records import master
    from custodes.services import audit, decisions, matching, records, requests

    officer = people["officer"]
    requests.generate(master_ws, people.admin, "irc-6103-i-2", 30, 1, tmp_path / "req")
    rid = requests.submit(master_ws, people["requester"], tmp_path / "req").request_id
    matching.train(master_ws, officer, rid)
    matching.link(master_ws, officer, rid)
    linked = pq.read_table(master_ws.request_folder(rid) / "match" / "linked.parquet")
    candidate = next(r for r in linked["record_id"].to_pylist() if r)
    everyone = set(pq.read_table(master.current(master_ws).path("people"))["record_id"].to_pylist())
    stranger = sorted(
        everyone
        - set(linked["record_id"].to_pylist())
        - set(linked["runner_up_record_id"].to_pylist())
    )[0]
    shown = records.show(
        master_ws, officer, candidate, purpose="locate for case review", request_id=rid
    )
    assert shown["record_id"] == candidate and shown["addresses"]
    refusals = [
        ((candidate,), {"purpose": "curious", "request_id": rid}, "no_purpose"),
        ((candidate,), {"purpose": "just looking around here", "request_id": None}, "no_case"),
        ((stranger,), {"purpose": "locate for case review", "request_id": rid}, "not_a_candidate"),
        (
            ("123-45-6789",),
            {"purpose": "locate for case review", "request_id": rid},
            "bad_record_id",
        ),
    ]
    for args, kw, code in refusals:
        with pytest.raises(CustodesError) as exc:
            records.show(master_ws, officer, *args, **kw)
        assert exc.value.code == code
    with pytest.raises(AccessDenied):
        records.show(
            master_ws,
            people["approver"],
            candidate,
            purpose="locate for case review",
            request_id=rid,
        )
    with pytest.raises(InputError):
        records.flag_sensitive(master_ws, people.admin, candidate, " ")
    records.flag_sensitive(master_ws, people.admin, candidate, "public figure")
    records.show(master_ws, officer, candidate, purpose="locate for case review", request_id=rid)
    rep = audit.inspections(master_ws, people["auditor"], spike=1)
    assert rep["inspections"] == 5  # the approver's attempt and the bad id never reached a record
    assert sorted(x["reason"] for x in rep["without_open_request"]) == [
        "no_case",
        "not_a_candidate",
    ]
    assert {x["record_id"] for x in rep["sensitive"]} == {candidate}
    assert rep["volume_spikes"][0]["inspections"] == 2
    assert rep["actions_by_suspended_users"] == []
    with pytest.raises(AccessDenied):
        audit.inspections(master_ws, officer)
    assert decisions  # the services module is the one the faces call


def test_rule_set_change_needs_a_second_steward(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    import shutil

    import yaml

    from custodes.errors import IntegrityError
    from custodes.rules.active import in_force
    from custodes.rules.provisions import REFERENCE, load
    from custodes.services import rules

    staff_mod.add(people, "steward-two", ["rule_steward"])
    steward, second = people["rule-steward"], people["steward-two"]
    changed = tmp_path / "rules"
    shutil.copytree(REFERENCE, changed)
    doc = yaml.safe_load((changed / "ruleset.yaml").read_text())
    doc["parameters"]["official_case_cap"]["value"] = 100  # counsel tightens the cap
    (changed / "ruleset.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    before = in_force(master_ws).sha256
    assert before == load().sha256
    with pytest.raises(AccessDenied):
        rules.propose(master_ws, people["officer"], changed)
    sha = rules.propose(master_ws, steward, changed)["ruleset_sha256"]
    assert in_force(master_ws).sha256 == before  # proposed is not in force
    with pytest.raises(ConflictError) as exc:
        rules.propose(master_ws, second, changed)
    assert exc.value.code == "already_proposed"
    with pytest.raises(NotFound) as exc:
        rules.approve(master_ws, second, "ffff")
    assert exc.value.code == "unknown_ruleset"
    with pytest.raises(AccessDenied) as exc:
        rules.approve(master_ws, steward, sha[:12])
    assert exc.value.code == "separation_of_duties"
    rules.approve(master_ws, second, sha[:12])
    assert in_force(master_ws).sha256 == sha
    assert in_force(master_ws).parameters["official_case_cap"] == 100
    assert [c["state"] for c in rules.changes(master_ws, second)] == ["active"]
    kept = master_ws.home / "rules" / sha / "ruleset.yaml"
    kept.write_text(kept.read_text().replace("100", "5000"))
    with pytest.raises(IntegrityError) as exc:
        in_force(master_ws)
    assert exc.value.code == "ruleset_tampered"
