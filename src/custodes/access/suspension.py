"""Suspension and reinstatement. Suspension ends the user's sessions and keys in the same
transaction; suspending an administrator also ends what they issued that nobody confirmed yet
(pending grants, keys, unused enrolment codes). Two active administrators always remain;
reinstatement needs two."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_

from custodes.access.users import now, two_administrators_remain, user_row
from custodes.errors import AccessDenied, ConflictError, InputError
from custodes.ledger import anchors, log
from custodes.ledger.event_types import UserReinstated, UserReinstateRequested, UserSuspended
from custodes.store import changes as queue
from custodes.store.tables import changes, enrolments, grants, sessions, users
from custodes.workspace import Call


def end_sessions(conn: Connection, actor: str, where: Any, reason: str) -> int:
    return anchors.update_rows(
        conn,
        actor,
        sessions,
        and_(where, sessions.c.ended_at.is_(None)),
        ended_at=now(),
        ended_reason=reason,
    )


def suspend(call: Call, name: str, reason: str) -> dict[str, Any]:
    """Suspend at once: sessions and keys end in the same transaction; an administrator's
    unconfirmed issues (grants, keys, enrolment codes) end with them."""
    if not reason or not reason.strip():
        raise InputError("A suspension needs a reason.", code="bad_argument")
    with call.transaction() as conn:
        row = user_row(conn, name)
        if row.status == "suspended":
            raise ConflictError(f"User {name} is already suspended.", code="already_suspended")
        two_administrators_remain(
            conn,
            name,
            "Suspending this administrator would leave fewer than two, and custodes needs "
            "two administrators to change anything (reinstatement included)",
        )
        ended = end_sessions(conn, call.actor, sessions.c.user_name == name, "suspended")
        issued = end_sessions(
            conn,
            call.actor,
            and_(sessions.c.issued_by == name, sessions.c.confirmed_by.is_(None)),
            "issuer_suspended",
        )
        codes = anchors.update_rows(
            conn,
            call.actor,
            enrolments,
            and_(
                enrolments.c.issued_by == name,
                enrolments.c.used_at.is_(None),
                enrolments.c.ended_at.is_(None),
            ),
            ended_at=now(),
        )
        withdrawn = anchors.delete_rows(
            conn,
            call.actor,
            grants,
            and_(grants.c.granted_by == name, grants.c.confirmed_at.is_(None)),
        )
        queue.end(conn, changes.c.proposed_by == name, "proposer_suspended")
        anchors.update_rows(
            conn,
            call.actor,
            users,
            users.c.name == name,
            status="suspended",
            status_reason=reason.strip(),
            status_at=now(),
            status_by=call.actor,
            reinstate_requested_by=None,
        )
        log.append_one(
            conn,
            UserSuspended(
                user=name,
                sessions_ended=ended,
                issued_keys_ended=issued,
                enrolment_codes_ended=codes,
                pending_grants_withdrawn=withdrawn,
            ),
            actor=call.actor,
        )
    return {
        "user": name,
        "status": "suspended",
        "sessions_ended": ended,
        "issued_keys_ended": issued,
        "enrolment_codes_ended": codes,
        "pending_grants_withdrawn": withdrawn,
    }


def reinstate(call: Call, name: str) -> dict[str, Any]:
    """Reinstating needs two administrators: the first asks, a second one confirms."""
    with call.transaction() as conn:
        row = user_row(conn, name)
        if row.status != "suspended":
            raise ConflictError(f"User {name} is not suspended.", code="not_suspended")
        if name == call.actor:
            raise AccessDenied("Nobody reinstates themselves.", code="separation_of_duties")
        if row.reinstate_requested_by is None:
            anchors.update_rows(
                conn, call.actor, users, users.c.name == name, reinstate_requested_by=call.actor
            )
            log.append_one(conn, UserReinstateRequested(user=name), actor=call.actor)
            return {
                "user": name,
                "status": "suspended",
                "pending": f"a second administrator (not {call.actor}) must confirm",
            }
        if row.reinstate_requested_by == call.actor:
            raise AccessDenied(
                "A second administrator must confirm the reinstatement.",
                code="separation_of_duties",
            )
        anchors.update_rows(
            conn,
            call.actor,
            users,
            users.c.name == name,
            status="active",
            status_reason=None,
            status_at=now(),
            status_by=call.actor,
            reinstate_requested_by=None,
        )
        log.append_one(
            conn,
            UserReinstated(user=name, requested_by=row.reinstate_requested_by),
            actor=call.actor,
        )
    return {"user": name, "status": "active"}
