"""The workspace's access policy (which roles must sign in with a one-time code), changed only
when a second administrator confirms."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from custodes.access.grants import confirm_change
from custodes.access.roles import ROLES
from custodes.access.users import now
from custodes.errors import ConflictError, InputError
from custodes.ledger import anchors, log
from custodes.ledger.event_types import PolicyProposed
from custodes.store import changes as queue
from custodes.store.tables import policy
from custodes.workspace import Call

TOTP_ROLES = "totp_roles"  # policy key: roles whose holders must sign in with a one-time code


POLICY_KEYS = (TOTP_ROLES,)


def totp_roles(conn: Connection) -> frozenset[str]:
    row = conn.execute(select(policy).where(policy.c.key == TOTP_ROLES)).first()
    if row is None:
        return frozenset()
    anchors.check_one(conn, policy, row)
    return frozenset(r for r in (row.value or "").split(",") if r)


def _policy_value(key: str, value: str) -> str:
    if key != TOTP_ROLES:
        raise InputError(f"Unknown policy (known: {', '.join(POLICY_KEYS)}).", code="bad_argument")
    # A policy names roles whose holders need a second factor: roles that one person may
    # not hold together (administrator and approver) may well share a policy, so only the
    # names are checked here, never separation of duties.
    roles = sorted({r.strip() for r in value.split(",") if r.strip()})
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InputError(
            f"Unknown role(s): {', '.join(unknown)} (roles: {', '.join(ROLES)}).", code="bad_role"
        )
    return ",".join(roles)


def propose_policy(call: Call, key: str, value: str) -> dict[str, Any]:
    """Propose a policy value; it takes effect when a second administrator confirms it."""
    value = _policy_value(key, value)
    with call.transaction() as conn:
        row = conn.execute(select(policy).where(policy.c.key == key)).first()
        values = {"pending": value, "pending_by": call.actor, "pending_at": now()}
        if row is None:
            anchors.insert(conn, call.actor, policy, key=key, **values)
        else:
            anchors.update_rows(conn, call.actor, policy, policy.c.key == key, **values)
        change = queue.propose(
            conn, call.actor, "policy", key, f"policy {key} = '{value}'", {"value": value}
        )
        log.append_one(conn, PolicyProposed(key=key, value=value, change=change), actor=call.actor)
    return {"key": key, "pending": value, "proposed_by": call.actor, "change": change}


def confirm_policy(call: Call, key: str) -> dict[str, Any]:
    """Confirm the change to `key` waiting now ('custodes users policy --confirm'): the same
    as confirming that change by its id."""
    with call.transaction() as conn:
        waiting = [c for c in queue.pending(conn, subject=key) if c["kind"] == "policy"]
    if not waiting:
        raise ConflictError("No change to that policy is waiting.", code="not_pending")
    done = confirm_change(call, waiting[-1]["id"])
    return {
        "key": key,
        "value": done["value"],
        "proposed_by": done["proposed_by"],
        "confirmed_by": call.actor,
        "change": done["change"],
    }


def policy_listing(conn: Connection) -> list[dict[str, Any]]:
    rows = {r.key: r for r in conn.execute(select(policy))}
    return [
        {
            "key": k,
            "value": rows[k].value if k in rows else None,
            "pending": rows[k].pending if k in rows else None,
            "pending_by": rows[k].pending_by if k in rows else None,
        }
        for k in POLICY_KEYS
    ]
