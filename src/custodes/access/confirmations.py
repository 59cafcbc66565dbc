"""What confirming each kind of access change does (the queue is `store.changes`): a new
user's privileged roles and the second half of their code, a further grant, an agency's key, a
credential reset's second half, the access policy. Each runs inside the confirmation's
transaction, re-checks the rows it changes, and records the confirmer beside the proposer.
Registered on import (the access package imports this module)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, select

from custodes.access.enrolment import ENROLMENT_HOURS, issue_second_half
from custodes.access.users import aware, check_roles, now, roles_of
from custodes.errors import ConflictError
from custodes.ledger import anchors, log
from custodes.ledger.event_types import PolicyConfirmed, UserConfirmed
from custodes.ledger.events import Event
from custodes.store import changes as queue
from custodes.store.tables import grants, policy, sessions
from custodes.workspace import Call


def _confirm_roles(
    conn: Connection, call: Call, name: str, roles: list[str], by: str, terms: dict[str, Any]
) -> list[str]:
    """Confirm the pending grants of `roles` that `by` made, on exactly the terms the change
    showed the confirmer (legal basis, last day): a grant re-issued on other terms since is
    not confirmed by it. Returns those confirmed."""
    waiting = [
        r.role
        for r in conn.execute(
            select(grants.c.role, grants.c.basis, grants.c.expires_at).where(
                grants.c.user_name == name,
                grants.c.role.in_(roles),
                grants.c.granted_by == by,
                grants.c.confirmed_at.is_(None),
            )
        )
        if r.basis == terms.get("basis")
        and (aware(r.expires_at).isoformat() if r.expires_at else None) == terms.get("expires")
    ]
    for role in waiting:
        check_roles(set(roles_of(conn, name)) | {role})
    anchors.update_rows(
        conn,
        call.actor,
        grants,
        and_(grants.c.user_name == name, grants.c.role.in_(waiting)),
        confirmed_by=call.actor,
        confirmed_at=now(),
    )
    return sorted(waiting)


def _confirmed_event(call: Call, change: dict[str, Any], **data: Any) -> Event:
    return Event(
        UserConfirmed(
            user=change["subject"], change=change["id"], proposed_by=change["proposed_by"], **data
        ),
        actor=call.actor,
    )


def _apply_user(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    p = change["payload"]
    roles = _confirm_roles(conn, call, change["subject"], p["roles"], change["proposed_by"], p)
    second = issue_second_half(conn, p["enrolment"], call.actor) if p["enrolment"] else None
    log.append(
        conn,
        [_confirmed_event(call, change, roles=roles, enrolment_second_half=second is not None)],
    )
    return _confirmed(change["subject"], roles, 0, second)


def _apply_grant(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    role = change["payload"]["role"]
    roles = _confirm_roles(
        conn, call, change["subject"], [role], change["proposed_by"], change["payload"]
    )
    if not roles:
        raise ConflictError("That grant is no longer pending.", code="not_pending")
    log.append(conn, [_confirmed_event(call, change, roles=roles)])
    return _confirmed(change["subject"], roles, 0, None)


def _apply_key(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    done = anchors.update_rows(
        conn,
        call.actor,
        sessions,
        and_(
            sessions.c.token_sha256 == change["payload"]["key"],
            sessions.c.user_name == change["subject"],
            sessions.c.kind == "key",
            sessions.c.confirmed_by.is_(None),
            sessions.c.ended_at.is_(None),
        ),
        confirmed_by=call.actor,
    )
    if not done:
        raise ConflictError("That key has ended or is already confirmed.", code="not_pending")
    log.append(conn, [_confirmed_event(call, change, keys=1)])
    return _confirmed(change["subject"], [], 1, None)


def _apply_reset(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    second = issue_second_half(conn, change["payload"]["enrolment"], call.actor)
    log.append(conn, [_confirmed_event(call, change, enrolment_second_half=True)])
    return _confirmed(change["subject"], [], 0, second)


def _confirmed(name: str, roles: list[str], keys: int, second: str | None) -> dict[str, Any]:
    return {
        "user": name,
        "confirmed_roles": roles,
        "confirmed_keys": keys,
        "enrolment_code_second_half": second,
        "enrolment_hours": ENROLMENT_HOURS if second else None,
    }


def _apply_policy(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    key, value = change["subject"], change["payload"]["value"]
    row = conn.execute(select(policy).where(policy.c.key == key)).first()
    if row is None or row.pending != value or row.pending_by != change["proposed_by"]:
        raise ConflictError("That policy change is no longer pending.", code="not_pending")
    anchors.update_rows(
        conn,
        call.actor,
        policy,
        policy.c.key == key,
        value=value,
        set_by=row.pending_by,
        confirmed_by=call.actor,
        set_at=now(),
        pending=None,
        pending_by=None,
        pending_at=None,
    )
    log.append_one(
        conn,
        PolicyConfirmed(key=key, value=value, proposed_by=row.pending_by, change=change["id"]),
        actor=call.actor,
    )
    return {"key": key, "value": value}


for _kind, _fn in (
    ("user", _apply_user),
    ("grant", _apply_grant),
    ("key", _apply_key),
    ("reset", _apply_reset),
    ("policy", _apply_policy),
):
    queue.register(_kind, _fn)
