"""Grants: a role for a user, with its legal basis and last day. A privileged role
(`roles.PRIVILEGED`) counts only once a *second* administrator confirms the grant (`confirm`),
like an agency API key. The one exception is the bootstrap: while the first administrator is the
only administrator there has ever been, the second administrator they create is confirmed at
once (recorded as such in the ledger); from then on nothing privileged is ever the work of one
person."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, and_, select

from custodes.access.roles import PRIVILEGED
from custodes.access.users import all_roles, check_roles, expiry, now, roles_of, user_row
from custodes.errors import AccessDenied, ConflictError
from custodes.ledger import anchors, log
from custodes.ledger.event_types import UserGranted
from custodes.ledger.events import Event
from custodes.store import changes as queue
from custodes.store.tables import grants
from custodes.workspace import Call


def _bootstrapping(conn: Connection, by: str) -> bool:
    """True while `by` is the only administrator the workspace has ever had."""
    ever = set(
        conn.execute(
            select(grants.c.user_name).where(grants.c.role == "administrator").distinct()
        ).scalars()
    )
    return ever == {by}


def insert_grant(
    conn: Connection,
    name: str,
    role: str,
    by: str,
    basis: str | None,
    expires: dt.datetime | None,
) -> bool:
    """Insert a grant; returns whether it is in force at once (not privileged, or bootstrap)."""
    t = now()
    confirmed_by = None
    if role not in PRIVILEGED:
        confirmed_by = by
    elif role == "administrator" and _bootstrapping(conn, by):
        confirmed_by = "bootstrap"
    anchors.delete_rows(conn, by, grants, and_(grants.c.user_name == name, grants.c.role == role))
    anchors.insert(
        conn,
        by,
        grants,
        user_name=name,
        role=role,
        basis=basis,
        expires_at=expires,
        granted_by=by,
        granted_at=t,
        confirmed_by=confirmed_by,
        confirmed_at=t if confirmed_by else None,
    )
    return confirmed_by is not None


def _grant_event(
    by: str, name: str, role: str, expires: dt.datetime | None, in_force: bool, change: str | None
) -> Event:
    return Event(
        UserGranted(
            user=name,
            role=role,
            expires=expires.isoformat() if expires else None,
            pending_confirmation=not in_force,
            change=change,
        ),
        actor=by,
    )


def grant(
    call: Call, name: str, role: str, *, basis: str | None, last_day: dt.date | None = None
) -> dict[str, Any]:
    """Grant a role (optionally time-limited, with its legal basis). Never to oneself; a
    privileged role waits for a second administrator."""
    expires = expiry(last_day)
    with call.transaction() as conn:
        if name == call.actor:
            raise AccessDenied(
                "Nobody grants roles to themselves; ask another administrator.",
                code="separation_of_duties",
            )
        row = user_row(conn, name)
        check_roles(all_roles(conn, name) | {role})
        if role == "requester" or (row.agency and role != "requester"):
            raise AccessDenied(
                "A requester account is created as such and never holds staff roles.",
                code="separation_of_duties",
            )
        if role == "administrator" and "administrator" in roles_of(conn, name):
            raise ConflictError(
                f"{name} is already an administrator; a new grant would suspend that until a "
                "second administrator confirms it.",
                code="already_granted",
            )
        in_force = insert_grant(conn, name, role, call.actor, basis, expires)
        change = None
        if not in_force:
            change = queue.propose(
                conn,
                call.actor,
                "grant",
                name,
                f"grant {role} to {name}",
                {
                    "role": role,
                    "basis": basis,
                    "expires": expires.isoformat() if expires else None,
                },
                slot=f"grant:{name}:{role}",
            )
        log.append(conn, [_grant_event(call.actor, name, role, expires, in_force, change)])
    return {
        "user": name,
        "role": role,
        "basis": basis,
        "last_day": last_day,
        "pending": not in_force,
        "change": change,
    }


def confirm(call: Call, name: str) -> dict[str, Any]:
    """Confirm the one change pending for `name` ('custodes users confirm NAME'). With several
    pending, nothing is confirmed: the refusal lists them, and the administrator confirms one
    by its id ('custodes changes confirm ID'), having seen what it changes."""
    with call.transaction() as conn:
        user_row(conn, name)
        waiting = [c for c in queue.pending(conn, subject=name) if c["kind"] in queue.ABOUT_A_USER]
    if not waiting:
        raise ConflictError(f"Nothing is waiting for confirmation for {name}.", code="not_pending")
    if len(waiting) > 1:
        listed = "; ".join(f"{c['id']} ({c['summary']}, by {c['proposed_by']})" for c in waiting)
        raise ConflictError(
            f"{len(waiting)} changes are waiting for {name}; confirm one by its id with "
            f"'custodes changes confirm ID': {listed}.",
            code="ambiguous_change",
        )
    return confirm_change(call, waiting[0]["id"])


def confirm_change(call: Call, change_id: str) -> dict[str, Any]:
    """A second administrator confirms one pending change by its id (`store.changes.confirm`:
    never their own, never one about themselves)."""
    return queue.confirm(call, change_id)
