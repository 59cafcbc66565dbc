"""Access services: users, grants, confirmations, keys, enrolment codes, suspension, policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

from custodes.access import (
    CheckedCall,
    enrolment,
    grants,
    service,
    sessions,
    suspension,
    users,
)
from custodes.access import policy as access_policy
from custodes.records import importer as _importer  # noqa: F401 - see below
from custodes.rules import registry as _registry  # noqa: F401 - see below
from custodes.store import changes

# The rooms whose changes wait in the queue register what confirming each kind does when they
# are imported (`store.changes.register`): access (above), the registries and the master file
# (the two imports above). A confirmation must find every kind whichever face brought this
# module in — the command line imports only the modules of the command it runs.


@service("users.add")
def add(
    call: CheckedCall,
    name: str,
    roles: list[str],
    *,
    basis: str | None = None,
    last_day: dt.date | None = None,
    agency: str | None = None,
) -> dict[str, Any]:
    """Create a user: staff get a one-time enrolment code to set their own password; a
    requester account belongs to an agency. Privileged roles wait for a second
    administrator."""
    return enrolment.create_user(call, name, roles, basis=basis, last_day=last_day, agency=agency)


@service("users.grant")
def grant(
    call: CheckedCall, name: str, role: str, *, basis: str | None, last_day: dt.date | None = None
) -> dict[str, Any]:
    return grants.grant(call, name, role, basis=basis, last_day=last_day)


@service("users.confirm")
def confirm(call: CheckedCall, name: str) -> dict[str, Any]:
    """A second administrator confirms the one change pending for `name` (refused, with the
    list, when several are pending: confirm one by its id)."""
    return grants.confirm(call, name)


@service("users.read")
def pending_changes(call: CheckedCall) -> list[dict[str, Any]]:
    """Every change waiting for a second administrator: its id (the hash a confirmation
    names), kind, what it changes, and who proposed it when."""
    with call.ws.engine.connect() as conn:
        return changes.pending(conn)


@service("users.confirm")
def confirm_change(call: CheckedCall, change_id: str) -> dict[str, Any]:
    """A second administrator confirms one pending change by its id (never their own, never
    one about themselves); a credential's change answers with the second half of the code."""
    return grants.confirm_change(call, change_id)


@service("users.suspend")
def suspend(call: CheckedCall, name: str, reason: str) -> dict[str, Any]:
    return suspension.suspend(call, name, reason)


@service("users.reinstate")
def reinstate(call: CheckedCall, name: str) -> dict[str, Any]:
    return suspension.reinstate(call, name)


@service("users.key")
def key(call: CheckedCall, name: str, *, days: int = sessions.KEY_DAYS) -> dict[str, Any]:
    """An API key for an agency account (shown once; works once a second administrator
    confirms it)."""
    return sessions.issue_key(call, name, days=days)


@service("users.reset")
def reset(call: CheckedCall, name: str) -> dict[str, Any]:
    """Reset a user's credentials: their sessions end now; the first half of a new enrolment
    code comes back, the second goes to the administrator who confirms the reset."""
    return enrolment.issue_enrolment(call, name)


@service("users.read")
def listing(call: CheckedCall) -> list[dict[str, Any]]:
    with call.ws.engine.connect() as conn:
        return users.listing(conn)


@service("policy.change")
def propose_policy(call: CheckedCall, key: str, value: str) -> dict[str, Any]:
    return access_policy.propose_policy(call, key, value)


@service("policy.change")
def confirm_policy(call: CheckedCall, key: str) -> dict[str, Any]:
    return access_policy.confirm_policy(call, key)


@service("users.read")
def policy(call: CheckedCall) -> list[dict[str, Any]]:
    with call.ws.engine.connect() as conn:
        return access_policy.policy_listing(conn)
