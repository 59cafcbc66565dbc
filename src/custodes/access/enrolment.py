"""Enrolment: every user but the first is created by an administrator *without a password*:
staff receive a one-time enrolment code (in two halves, the second from a second administrator)
and set their own password with it (`enrol`), so no administrator ever knows a colleague's
password. Agency (requester) accounts have no password at all: they use API keys."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from sqlalchemy import Connection, Row, and_, select

from custodes.access import credentials as cred
from custodes.access.grants import insert_grant
from custodes.access.policy import totp_roles
from custodes.access.suspension import end_sessions
from custodes.access.users import (
    all_roles,
    aware,
    check_name,
    check_roles,
    expiry,
    now,
    two_administrators_remain,
    user_row,
)
from custodes.errors import AccessDenied, ConflictError, InputError, NotFound, Unauthenticated
from custodes.ledger import anchors, log
from custodes.ledger.event_types import UserCreated, UserEnrolled, UserEnrolmentIssued
from custodes.store import changes as queue
from custodes.store.tables import agencies, enrolments, sessions, users
from custodes.workspace import Call, Workspace

ENROLMENT_HOURS = 72


FIRST_HALF, SECOND_HALF, WHOLE = "ce_", "ce2_", "ce_"


def _issue_enrolment(conn: Connection, name: str, by: str, *, halves: int = 2) -> str:
    """A new one-time code for `name` (earlier unused codes end). Split knowledge: the code
    comes in two halves, and this is the first one, for `by`; the second half is issued only
    to the second administrator who confirms the change. Only the bootstrap's second
    administrator gets a whole code (`halves=1`: nobody else could issue a second half)."""
    t = now()
    anchors.update_rows(
        conn,
        by,
        enrolments,
        and_(
            enrolments.c.user_name == name,
            enrolments.c.used_at.is_(None),
            enrolments.c.ended_at.is_(None),
        ),
        ended_at=t,
    )
    code = cred.new_token(FIRST_HALF if halves == 2 else WHOLE)
    anchors.insert(
        conn,
        by,
        enrolments,
        code_sha256=cred.sha(code),
        user_name=name,
        issued_by=by,
        issued_at=t,
        expires_at=t + dt.timedelta(hours=ENROLMENT_HOURS),
        halves=halves,
    )
    return code


def issue_second_half(conn: Connection, first_sha256: str, by: str) -> str:
    """The second half of a code whose first half another administrator holds."""
    row = conn.execute(select(enrolments).where(enrolments.c.code_sha256 == first_sha256)).first()
    if row is not None:
        anchors.check_one(conn, enrolments, row)
    if (
        row is None
        or row.halves != 2
        or row.used_at is not None
        or row.ended_at is not None
        or row.second_sha256 is not None
        or aware(row.expires_at) <= now()
    ):
        raise ConflictError(
            "The enrolment code this change completes has ended, expired or been used; "
            "issue a new one.",
            code="not_pending",
        )
    if row.issued_by == by:  # (the queue refuses this already; the halves never meet)
        raise AccessDenied(
            "A second administrator issues the second half.", code="separation_of_duties"
        )
    code = cred.new_token(SECOND_HALF)
    done = anchors.update_rows(
        conn,
        by,
        enrolments,
        and_(enrolments.c.code_sha256 == first_sha256, enrolments.c.second_sha256.is_(None)),
        second_sha256=cred.sha(code),
        second_by=by,
        second_at=now(),
    )
    if done != 1:
        raise ConflictError("That code's second half was already issued.", code="not_pending")
    return code


def _halves(code: str) -> tuple[str, str | None]:
    """The first (or whole) code and the second half, from what the user typed: the two
    halves in either order, separated by white space."""
    parts = (code or "").split()
    first = [p for p in parts if not p.startswith(SECOND_HALF)]
    second = [p for p in parts if p.startswith(SECOND_HALF)]
    if len(first) != 1 or len(second) > 1:
        return "", None
    return first[0], (second[0] if second else None)


def _new_user(name: str, roles: list[str], agency: str | None) -> tuple[set[str], str | None]:
    """The roles asked for a new user, checked, and for a requester account (which must name its
    agency, and is the only kind that may) its agency's name, stripped; None for staff."""
    check_name(name)
    wanted = set(roles)
    if not wanted:
        raise InputError("Give the user at least one role (--role).", code="bad_role")
    check_roles(wanted)
    requester = "requester" in wanted
    if requester and not (agency and agency.strip()):
        raise InputError(
            "A requester account acts for one agency: give --agency.", code="bad_argument"
        )
    if agency and not requester:
        raise InputError("Only a requester account belongs to an agency.", code="bad_argument")
    return wanted, agency.strip() if requester and agency else None


def _propose_the_rest(
    conn: Connection,
    actor: str,
    name: str,
    pending: list[str],
    basis: str | None,
    expires: dt.datetime | None,
    code: str | None,
    halves: int,
) -> str:
    """The change a second administrator confirms for a new user: the privileged roles that
    wait, and the second half of the enrolment code (none for a whole, bootstrap code)."""
    return queue.propose(
        conn,
        actor,
        "user",
        name,
        f"new user {name}: "
        + (f"role(s) {', '.join(pending)}" if pending else "no privileged role")
        + ("; second half of the enrolment code" if code else ""),
        {
            "roles": pending,
            "basis": basis,
            "expires": expires.isoformat() if expires else None,
            # the second half to issue: none for a whole (bootstrap) code
            "enrolment": cred.sha(code) if code and halves == 2 else None,
        },
    )


def create_user(
    call: Call,
    name: str,
    roles: list[str],
    *,
    basis: str | None = None,
    last_day: dt.date | None = None,
    agency: str | None = None,
) -> dict[str, Any]:
    """Create a user. Staff get a one-time enrolment code (returned, shown once) to set their
    own password; a requester account belongs to a registered agency and uses API keys."""
    wanted, account_agency = _new_user(name, roles, agency)
    requester = account_agency is not None
    expires = expiry(last_day)
    t = now()
    with call.transaction() as conn:
        if (
            account_agency is not None
            and not conn.execute(
                select(agencies.c.name).where(agencies.c.name == account_agency)
            ).first()
        ):
            raise NotFound(
                "No such agency in the registry; add it first with 'custodes agencies add'.",
                code="unknown_agency",
            )
        if conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise ConflictError(f"User {name} already exists.", code="user_exists")
        anchors.insert(
            conn,
            call.actor,
            users,
            name=name,
            status="active",
            created_at=t,
            created_by=call.actor,
            agency=account_agency,
        )
        in_force = {r: insert_grant(conn, name, r, call.actor, basis, expires) for r in wanted}
        pending = sorted(r for r, ok in in_force.items() if not ok)
        bootstrap = any(r == "administrator" and ok for r, ok in in_force.items())
        halves = 1 if bootstrap else 2
        code = None if requester else _issue_enrolment(conn, name, call.actor, halves=halves)
        change = None
        if pending or (halves == 2 and code):
            change = _propose_the_rest(
                conn, call.actor, name, pending, basis, expires, code, halves
            )
        log.append_one(
            conn,
            UserCreated(
                user=name,
                roles=sorted(wanted),
                expires=expires.isoformat() if expires else None,
                pending_confirmation=pending,
                bootstrap=bootstrap,
                change=change,
                enrolment_halves=halves if code else None,
            ),
            actor=call.actor,
        )
    return {
        "user": name,
        "roles": sorted(wanted),
        "pending": pending,
        "last_day": last_day,
        "agency": agency,
        "enrolment_code": code,
        "enrolment_halves": halves if code else None,
        "enrolment_hours": ENROLMENT_HOURS if code else None,
        "change": change,
    }


def issue_enrolment(call: Call, name: str) -> dict[str, Any]:
    """A credential reset (after a lost password or device): the user's sessions end and their
    password and second factor are cleared now, so they cannot act until they enrol again.
    The new one-time code comes in two halves: this administrator gets the first, and the
    second administrator who confirms the reset gets the second ('custodes changes confirm').
    Neither alone holds a usable code."""
    with call.transaction() as conn:
        row = user_row(conn, name)
        if row.agency:
            raise InputError(
                "A requester account has no password; issue it a key.", code="bad_argument"
            )
        if name == call.actor:
            raise AccessDenied(
                "Nobody resets their own credentials; ask another administrator.",
                code="separation_of_duties",
            )
        two_administrators_remain(
            conn,
            name,
            "Resetting this administrator would leave one who can act, and a reset needs a "
            "second administrator to complete (never the one reset)",
        )
        code = _issue_enrolment(conn, name, call.actor)
        anchors.update_rows(
            conn, call.actor, users, users.c.name == name, password_hash=None, totp_secret=None
        )
        end_sessions(conn, call.actor, sessions.c.user_name == name, "credentials_reset")
        change = queue.propose(
            conn,
            call.actor,
            "reset",
            name,
            f"credential reset for {name}: second half of the new enrolment code",
            {"enrolment": cred.sha(code)},
        )
        log.append_one(
            conn,
            UserEnrolmentIssued(user=name, change=change, enrolment_halves=2),
            actor=call.actor,
        )
    return {
        "user": name,
        "enrolment_code": code,
        "enrolment_halves": 2,
        "enrolment_hours": ENROLMENT_HOURS,
        "change": change,
    }


def _halves_match(row: Row[Any], second: str | None) -> bool:
    """A code in two halves needs its second half, the right one; a code in one has none."""
    if row.halves == 2:
        return (
            second is not None
            and row.second_sha256 is not None
            and hmac.compare_digest(cred.sha(second), row.second_sha256)
        )
    return second is None


def enrol(ws: Workspace, name: str, code: str, password: str) -> dict[str, Any]:
    """A user sets their own password with their one-time code; when a role of theirs needs a
    second factor, a new TOTP secret is made and its provisioning URI returned (to them)."""
    pw_hash = cred.hash_password(password)
    t = now()
    first, second = _halves(code)
    with ws.engine.begin() as conn:
        row = conn.execute(
            select(enrolments).where(enrolments.c.code_sha256 == cred.sha(first))
        ).first()
        user = conn.execute(select(users).where(users.c.name == name)).first()
        if (
            row is None
            or user is None
            or not (
                row.user_name == name
                and row.used_at is None
                and row.ended_at is None
                and aware(row.expires_at) > t
                and user.status == "active"
            )
            or not _halves_match(row, second)
        ):
            raise Unauthenticated(
                "The enrolment code is not valid for this user (unknown, used, expired or "
                "ended, or not both halves: one from the administrator who issued it and one "
                "from the administrator who confirmed it); ask an administrator for a new one.",
                code="bad_enrolment",
            )
        anchors.check(conn, [(enrolments, row), (users, user)])
        anchors.update_rows(
            conn, name, enrolments, enrolments.c.code_sha256 == row.code_sha256, used_at=t
        )
        needs_totp = bool(all_roles(conn, name) & totp_roles(conn))
        secret = cred.new_totp_secret() if needs_totp else None
        anchors.update_rows(
            conn,
            name,
            users,
            users.c.name == name,
            password_hash=pw_hash,
            totp_secret=cred.seal(ws, secret) if secret else None,
            totp_last_step=None,
        )
        log.append_one(conn, UserEnrolled(user=name, second_factor=needs_totp), actor=name)
    return {
        "user": name,
        "enrolled": True,
        "totp_uri": cred.totp_uri(secret, name) if secret else None,
    }
