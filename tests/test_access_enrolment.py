"""Access: bootstrap, enrolment with one-time codes in two halves, resets, the one queue of
changes confirmed by their id, keys, and the second-factor policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa

from conftest import PASSWORD as PW
from custodes.access import (
    caller,
    credentials,
    enrolment,
    enter,
    sessions,
    users,
)
from custodes.access import policy as access_policy
from custodes.cli import app
from custodes.errors import (
    AccessDenied,
    ConflictError,
    InputError,
    NotFound,
    Unauthenticated,
)
from custodes.services import users as svc
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_access import _events, runner


def test_first_user_is_the_only_bootstrap(workspace: Workspace) -> None:
    with pytest.raises(InputError) as exc:
        users.bootstrap_admin(workspace, "boss", "short")
    assert exc.value.code == "weak_password"
    with pytest.raises(InputError) as exc:
        users.bootstrap_admin(workspace, "Bad Name!", PW)
    assert exc.value.code == "bad_user_name"
    users.bootstrap_admin(workspace, "boss", PW)
    with pytest.raises(AccessDenied):  # a second bootstrap is refused
        users.bootstrap_admin(workspace, "other", PW)


def test_staff_set_their_own_password_with_a_one_time_code(staff: Staff) -> None:
    """Split knowledge: the administrator who adds a user holds half a code, the one who
    confirms holds the other half; neither half alone enrols anyone (issue #22, item 1)."""
    ws = staff.ws
    info = svc.add(ws, staff.admin, "olga", ["officer"], basis="detail order 7")
    first = info["enrolment_code"]
    assert info["pending"] == ["officer"] and first.startswith("ce_")
    assert info["enrolment_halves"] == 2 and info["change"]
    with pytest.raises(Unauthenticated):  # no password until she enrols
        sessions.login(ws, "olga", PW)
    with pytest.raises(Unauthenticated) as exc:  # the first half alone is not a code
        enrolment.enrol(ws, "olga", first, "her own long password")
    assert exc.value.code == "bad_enrolment"
    with pytest.raises(AccessDenied) as exc:  # not by the administrator who added her
        svc.confirm(ws, staff.admin, "olga")
    assert exc.value.code == "separation_of_duties"
    done = svc.confirm(ws, staff.second_admin, "olga")
    second = done["enrolment_code_second_half"]
    assert second.startswith("ce2_") and done["confirmed_roles"] == ["officer"]
    code = f"{first} {second}"
    for name, c in (
        ("olga", "ce_wrong " + second),
        ("olga", first + " ce2_wrong"),
        ("olga", second),
        ("officer", code),
    ):
        with pytest.raises(Unauthenticated) as exc:
            enrolment.enrol(ws, name, c, "her own long password")
        assert exc.value.code == "bad_enrolment"
    enrolment.enrol(ws, "olga", f"{second}  {first}", "her own long password")  # either order
    with pytest.raises(Unauthenticated):  # the code works once
        enrolment.enrol(ws, "olga", code, "another long password")
    olga = caller(ws, sessions.login(ws, "olga", "her own long password"))
    assert enter(ws, olga, "process").actor == "olga"
    # The administrator never knew the password: no command takes one for another user.
    r = runner.invoke(app, ["users", "add", "x", "--role", "approver", "--password-stdin"])
    assert r.exit_code == 2


def test_a_reset_takes_two_administrators_and_ends_access_at_once(staff: Staff) -> None:
    """Issue #22, item 1: one administrator resetting the officer and enrolling as them was
    the attack. The reset ends the officer's sessions at once; the first half alone enrols
    nobody; the second half comes only from another administrator's confirmation."""
    ws = staff.ws
    officer = staff["officer"]
    reset = svc.reset(ws, staff.admin, "officer")
    with pytest.raises(Unauthenticated) as exc:  # her session ended with the reset
        enter(ws, officer, "process")
    assert exc.value.code == "session_ended"
    with pytest.raises(Unauthenticated):  # and her old password is gone
        sessions.login(ws, "officer", PW)
    with pytest.raises(Unauthenticated) as exc:  # the resetting administrator alone: refused
        enrolment.enrol(ws, "officer", reset["enrolment_code"], "taken over password")
    assert exc.value.code == "bad_enrolment"
    with pytest.raises(AccessDenied) as exc:  # nor can they confirm their own reset
        svc.confirm_change(ws, staff.admin, reset["change"])
    assert exc.value.code == "separation_of_duties"
    done = svc.confirm_change(ws, staff.second_admin, reset["change"])
    assert done["kind"] == "reset" and done["proposed_by"] == "admin"
    with pytest.raises(Unauthenticated):  # the second half alone: refused too
        enrolment.enrol(ws, "officer", done["enrolment_code_second_half"], "taken over password")
    enrolment.enrol(
        ws,
        "officer",
        f"{reset['enrolment_code']} {done['enrolment_code_second_half']}",
        "her new long password",
    )
    assert caller(ws, sessions.login(ws, "officer", "her new long password"))
    with pytest.raises(ConflictError) as exc:  # a confirmed change is not confirmed twice
        svc.confirm_change(ws, staff.second_admin, reset["change"])
    assert exc.value.code == "not_pending"


def test_one_queue_of_changes_confirmed_by_their_id(staff: Staff) -> None:
    """Issue #22, items 4-5: every pending change is listed with its id; 'users confirm NAME'
    works when one change is pending for NAME, and otherwise names them and confirms none."""
    ws = staff.ws
    svc.add(ws, staff.admin, "olga", ["officer"])
    svc.grant(ws, staff.admin, "olga", "auditor", basis="detail order 8")
    listed = svc.pending_changes(ws, staff.second_admin)
    mine = [c for c in listed if c["subject"] == "olga"]
    assert [c["kind"] for c in mine] == ["user", "grant"]
    assert all(len(c["id"]) == 64 and c["proposed_by"] == "admin" for c in mine)
    with pytest.raises(ConflictError) as exc:
        svc.confirm(ws, staff.second_admin, "olga")
    assert exc.value.code == "ambiguous_change" and mine[1]["id"] in exc.value.message
    with pytest.raises(NotFound) as exc:  # an id the confirmer did not see: nothing happens
        svc.confirm_change(ws, staff.second_admin, "0" * 64)
    assert exc.value.code == "unknown_change"
    done = svc.confirm_change(ws, staff.second_admin, mine[1]["id"])
    assert done["confirmed_roles"] == ["auditor"]
    # The grant's change is gone from the queue; the user's own change remains.
    left = [c["kind"] for c in svc.pending_changes(ws, staff.admin) if c["subject"] == "olga"]
    assert left == ["user"]
    # Granting the same role again supersedes the older proposal: its id no longer works.
    first = svc.grant(ws, staff.admin, "olga", "rule_steward", basis="a")["change"]
    second = svc.grant(ws, staff.admin, "olga", "rule_steward", basis="b")["change"]
    with pytest.raises(ConflictError) as exc:
        svc.confirm_change(ws, staff.second_admin, first)
    assert exc.value.code == "not_pending"
    assert svc.confirm_change(ws, staff.second_admin, second)["confirmed_roles"] == ["rule_steward"]


def test_an_administrator_cannot_mint_keys_for_staff(staff: Staff) -> None:
    ws = staff.ws
    for name in ("officer", "approver", "admin2"):
        with pytest.raises(AccessDenied) as exc:
            svc.key(ws, staff.admin, name)
        assert exc.value.code == "key_not_allowed"
    key = svc.key(ws, staff.admin, "requester")["key"]
    with pytest.raises(Unauthenticated) as exc:  # not until a second administrator confirms
        caller(ws, key)
    assert "not confirmed" in exc.value.message
    svc.confirm(ws, staff.second_admin, "requester")
    agency = caller(ws, key)
    assert agency.agency == "U.S. Immigration and Customs Enforcement"


def test_suspending_an_administrator_ends_what_they_issued_unconfirmed(staff: Staff) -> None:
    ws = staff.ws
    staff_mod.add(staff, "admin3", ["administrator"])
    rogue = staff.admin
    pending_key = svc.key(ws, rogue, "requester")["key"]
    code = svc.add(ws, rogue, "sleeper", ["approver"])["enrolment_code"]
    svc.suspend(ws, staff.second_admin, "admin", "insider risk")
    with pytest.raises(Unauthenticated):
        caller(ws, pending_key)
    with pytest.raises(Unauthenticated):
        enrolment.enrol(ws, "sleeper", code, "a password of my own")
    with ws.engine.connect() as conn:
        assert "approver" not in users.roles_of(conn, "sleeper")
        assert not conn.execute(
            sa.text("SELECT count(*) FROM grants WHERE user_name='sleeper'")
        ).scalar()
    ev = _events(ws, "user.suspended")[-1]
    assert ev["issued_keys_ended"] == 1 and ev["enrolment_codes_ended"] == 1
    assert ev["pending_grants_withdrawn"] == 1


def test_two_administrators_always_remain(staff: Staff) -> None:
    with pytest.raises(ConflictError) as exc:
        svc.suspend(staff.ws, staff.admin, "admin2", "lock out my colleague")
    assert exc.value.code == "last_administrators"


# --- the second factor -----------------------------------------------------------------------


def test_second_factor_policy_lives_in_the_store(staff: Staff, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = staff.ws
    monkeypatch.setenv("CUSTODES_TOTP_ROLES", "")  # the environment has no say any more
    svc.propose_policy(ws, staff.admin, "totp_roles", "approver")
    with ws.engine.connect() as conn:
        assert access_policy.totp_roles(conn) == frozenset()  # one administrator is not enough
    with pytest.raises(AccessDenied):
        svc.confirm_policy(ws, staff.admin, "totp_roles")
    svc.confirm_policy(ws, staff.second_admin, "totp_roles")
    with pytest.raises(AccessDenied) as exc:
        sessions.login(ws, "approver", PW)
    assert exc.value.code == "totp_required"
    code = staff_mod.whole_code(ws, staff.second_admin, svc.reset(ws, staff.admin, "approver"))
    uri = enrolment.enrol(ws, "approver", code, "approver's own password")["totp_uri"]
    import urllib.parse

    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    with ws.engine.connect() as conn:  # encrypted at rest, with the key outside the store
        stored = conn.execute(
            sa.text("SELECT totp_secret FROM users WHERE name='approver'")
        ).scalar()
    assert secret not in stored and credentials.unseal(ws, stored) == secret
    for bad in (None, "000000"):
        with pytest.raises(Unauthenticated) as exc:
            sessions.login(ws, "approver", "approver's own password", totp=bad)
        assert exc.value.code == "bad_totp"
    now = pyotp.TOTP(secret).now()
    assert sessions.login(ws, "approver", "approver's own password", totp=now)
    with pytest.raises(Unauthenticated) as exc:  # a code signs in once
        sessions.login(ws, "approver", "approver's own password", totp=now)
    assert exc.value.code == "bad_totp"


def test_the_code_is_never_on_the_command_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["login", "x", "--totp", "123456", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "process list" in r.output


def test_a_confirmation_covers_only_the_terms_it_showed(staff: Staff) -> None:
    """Review of #22: a grant re-issued on other terms (no last day) after a new user's
    change was proposed was made permanent by confirming that change. The confirmation now
    covers only the grant on the terms the change named; and the only other administrator
    can be neither reset nor re-granted into a pending state by one administrator."""
    ws = staff.ws
    made = svc.add(
        ws, staff.admin, "olga", ["officer"], basis="detail 7", last_day=dt.date(2099, 1, 31)
    )
    svc.grant(ws, staff.admin, "olga", "officer", basis="forever")  # other terms, after
    done = svc.confirm_change(ws, staff.second_admin, made["change"])
    assert done["confirmed_roles"] == []  # not the grant it never showed
    with ws.engine.connect() as conn:
        assert "officer" not in users.roles_of(conn, "olga")
    with pytest.raises(ConflictError) as exc:
        svc.reset(ws, staff.admin, "admin2")
    assert exc.value.code == "last_administrators"
    with pytest.raises(ConflictError) as exc:
        svc.grant(ws, staff.admin, "admin2", "administrator", basis="again")
    assert exc.value.code == "already_granted"
    with ws.engine.connect() as conn:
        assert "administrator" in users.roles_of(conn, "admin2")
