"""Users and access: users, grants, keys, enrolment codes, suspension, policy, and the changes
a second administrator confirms."""

from __future__ import annotations

from typing import Any

from fastapi import status

from custodes.api import common
from custodes.api import models as m
from custodes.http.deps import WS, Who
from custodes.services import users

staff = common.staff()
ROUTERS = (staff,)


@staff.get("/users", response_model=list[m.Document])
def list_users(who: Who, ws: WS) -> Any:
    """Users, their status, and every grant with its legal basis, last day and confirmation."""
    return users.listing(ws, who)


@staff.post("/users", response_model=m.Document, status_code=status.HTTP_201_CREATED)
def add_user(body: m.NewUser, who: Who, ws: WS) -> Any:
    """Add a staff member; the answer carries their one-time enrolment code (shown once).
    A privileged role counts once a second administrator confirms it."""
    return users.add(
        ws,
        who,
        body.name,
        [body.role],
        basis=body.basis,
        last_day=body.last_day,
        agency=body.agency,
    )


@staff.post("/users/{name}/grants", response_model=m.Document, status_code=201)
def grant(name: str, body: m.NewGrant, who: Who, ws: WS) -> Any:
    """Grant a further role with its legal basis (a privileged role counts once a second
    administrator confirms it; roles that separation of duties keeps apart are refused)."""
    return users.grant(ws, who, name, body.role, basis=body.basis, last_day=body.last_day)


@staff.post("/users/{name}/keys", response_model=m.Document, status_code=201)
def new_key(name: str, body: m.NewKey, who: Who, ws: WS) -> Any:
    """An API key for an agency account: shown once, in force once a second administrator
    confirms it (`POST /v1/users/{name}/confirm`)."""
    return users.key(ws, who, name, days=body.days)


@staff.get("/policy", response_model=list[m.Document])
def policy(who: Who, ws: WS) -> Any:
    """The access policy in force and any change waiting for a second administrator."""
    return users.policy(ws, who)


@staff.post("/policy/{key}", response_model=m.Document)
def propose_policy(key: str, body: m.PolicyChange, who: Who, ws: WS) -> Any:
    """Propose a policy value (e.g. `totp_roles`); a second administrator confirms."""
    return users.propose_policy(ws, who, key, body.value)


@staff.post("/policy/{key}/confirm", response_model=m.Document)
def confirm_policy(key: str, who: Who, ws: WS) -> Any:
    """A second administrator puts the proposed value in force."""
    return users.confirm_policy(ws, who, key)


@staff.post("/users/{name}/suspend", response_model=m.Document)
def suspend_user(name: str, body: m.Reason, who: Who, ws: WS) -> Any:
    """Suspend now: sessions and keys end in the same transaction."""
    return users.suspend(ws, who, name, body.reason)


@staff.post("/users/{name}/code", response_model=m.Document)
def new_code(name: str, who: Who, ws: WS) -> Any:
    """Reset the user's credentials: their sessions end now; the answer carries the first
    half of a new enrolment code (shown once) and the id of the change whose confirmation, by
    a second administrator, issues the second half."""
    return users.reset(ws, who, name)


@staff.post("/users/{name}/confirm", response_model=m.Document)
def confirm_user(name: str, who: Who, ws: WS) -> Any:
    """A second administrator confirms the one change pending for this user (409
    `ambiguous_change`, listing them, when there are several: confirm one by its id)."""
    return users.confirm(ws, who, name)


@staff.get("/changes", response_model=list[m.Document])
def list_changes(who: Who, ws: WS) -> Any:
    """Changes waiting for a second administrator: id (the hash a confirmation names), kind,
    what it changes, who proposed it and when."""
    return users.pending_changes(ws, who)


@staff.post("/changes/{id}/confirm", response_model=m.Document)
def confirm_change(id: str, who: Who, ws: WS) -> Any:
    """A second administrator confirms one change by its id; for a new user or a credential
    reset, the answer carries the second half of the enrolment code (shown once)."""
    return users.confirm_change(ws, who, id)


@staff.post("/users/{name}/reinstate", response_model=m.Document)
def reinstate_user(name: str, who: Who, ws: WS) -> Any:
    """Reinstate (takes two administrators)."""
    return users.reinstate(ws, who, name)
