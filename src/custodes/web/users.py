"""Users and access: the users' page, adding a user, granting a role, a new one-time code,
a second administrator's confirmations, suspension and reinstatement."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Form
from fastapi.responses import HTMLResponse, Response

from custodes.errors import InputError
from custodes.services import users
from custodes.web.console import Console, page, router, see_other

USERS_CHANGE = (
    "users.add",
    "users.grant",
    "users.confirm",
    "users.suspend",
    "users.reinstate",
    "users.reset",
)
BACK = "/users"
Admin = Annotated[Console, page(BACK)]

pages = router()


def _users(c: Console, code: dict[str, Any] | None = None) -> Response:
    return c.page(
        "users.html",
        {
            "title": "Users",
            "users": users.listing(c.ws, c.who),
            "changes": users.pending_changes(c.ws, c.who),
            "may_change": any(a in c.me["may"] for a in USERS_CHANGE),
            "code": code,
        },
    )


@pages.get("/users", response_class=HTMLResponse)
def users_page(c: Annotated[Console, page()]) -> Response:
    return _users(c)


@pages.post("/users", response_class=HTMLResponse)
def add_user(
    name: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=32)],
    basis: Annotated[str, Form(max_length=500)],
    c: Admin,
    last_day: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A new staff member: the one-time code is shown on this answer only (never in a URL)."""
    c.check()
    try:
        until = dt.date.fromisoformat(last_day) if last_day else None
    except ValueError:
        raise InputError("The last day is not a date (YYYY-MM-DD).", code="bad_date") from None
    made = users.add(c.ws, c.who, name, [role], basis=basis, last_day=until)
    return _users(c, code=made | {"user": name})


@pages.post("/users/grant")
def grant(
    user: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=32)],
    basis: Annotated[str, Form(max_length=500)],
    c: Admin,
    last_day: Annotated[dt.date | None, Form()] = None,
) -> Response:
    """A further role for an existing user, with its legal basis and last day."""
    users.grant(c.ws, c.who, user, role, basis=basis, last_day=last_day)
    return see_other("/users?done=granted")


@pages.post("/users/{name}/code", response_class=HTMLResponse)
def new_code(name: str, c: Admin) -> Response:
    """A new one-time code (the user's sessions end; they set a new password with it)."""
    return _users(c, code=users.reset(c.ws, c.who, name))


def _confirmed(c: Console, done: dict[str, Any]) -> Response:
    """After a confirmation: the second half of a code is shown on this answer only."""
    if done.get("enrolment_code_second_half"):
        return _users(c, code=done)
    return see_other("/users?done=confirmed")


@pages.post("/users/{name}/confirm")
def confirm(name: str, c: Admin) -> Response:
    """A second administrator confirms the one change pending for a user (refused, naming
    them, when several are: each is confirmed from the pending changes' table)."""
    return _confirmed(c, users.confirm(c.ws, c.who, name))


@pages.post("/changes/{change_id}/confirm")
def confirm_change(change_id: str, c: Admin) -> Response:
    """A second administrator confirms one pending change by its id, as shown in the table."""
    return _confirmed(c, users.confirm_change(c.ws, c.who, change_id))


@pages.post("/users/{name}/suspend")
def suspend(
    name: str,
    reason: Annotated[str, Form(max_length=500)],
    c: Admin,
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Suspend a user now, once the administrator ticked that the sessions and keys end."""
    c.check()
    if confirm != "yes":
        raise InputError(
            f"Tick the box to confirm that {name}'s sessions and keys end now.",
            code="not_confirmed",
        )
    users.suspend(c.ws, c.who, name, reason)
    return see_other("/users?done=suspended")


@pages.post("/users/{name}/reinstate")
def reinstate(name: str, c: Admin) -> Response:
    """Ask to reinstate a suspended user; a second administrator's click confirms it."""
    done = users.reinstate(c.ws, c.who, name)
    return see_other("/users?done=" + ("reinstated" if done["status"] == "active" else "reinstate"))
