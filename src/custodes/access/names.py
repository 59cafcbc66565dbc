"""What an agency sees of the people who handle its requests: their roles, never their names.

A requesting agency's account may read its requests' history and what comes next. Staff names
there would tell an agency (or whoever holds its key) whom to pressure, and which account to
target: the history and the next step show a requester the role that acted ("officer",
"approver"), and the agency's own accounts by name. Staff callers see names as before. The
services that answer requesters call `for_caller` on every name they return (issue #22, item 7).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from custodes.store.tables import grants, users

# The role an agency is shown for a staff member who holds several: the first one held, in this
# order (the roles that act on a request first).
SHOWN_ORDER = ("officer", "approver", "rule_steward", "auditor", "administrator")
STAFF = "staff"  # a name with no role on record (removed, or never granted one)


def roles_shown(
    conn: Connection, agency: str | None, names: Iterable[str | None]
) -> dict[str, str]:
    """Each name as an account of `agency` may see it: the agency's own accounts by name,
    anyone else by role. `agency` None (a staff caller): every name as it is."""
    wanted = {n for n in names if n}
    if agency is None or not wanted:
        return {n: n for n in wanted}
    own = {
        r.name
        for r in conn.execute(
            select(users.c.name).where(users.c.name.in_(wanted), users.c.agency == agency)
        )
    }
    held: dict[str, set[str]] = {}
    for name, role in conn.execute(
        select(grants.c.user_name, grants.c.role).where(
            grants.c.user_name.in_(wanted - own), grants.c.confirmed_at.is_not(None)
        )
    ):
        held.setdefault(name, set()).add(role)
    out = {n: n for n in own}
    for n in wanted - own:
        roles = held.get(n, set())
        if "requester" in roles:  # another agency's account: its role, not its name
            out[n] = "requester"
            continue
        out[n] = next((r for r in SHOWN_ORDER if r in roles), STAFF)
    return out


def rows_shown(
    conn: Connection, agency: str | None, rows: list[dict[str, Any]], key: str = "submitted_by"
) -> list[dict[str, Any]]:
    """Rows with the name under `key` as an account of `agency` may see it."""
    if agency is None:
        return rows
    names = roles_shown(conn, agency, [r.get(key) for r in rows])
    return [r | {key: names.get(r.get(key) or "")} for r in rows]


def for_caller(conn: Connection, agency: str | None, name: str | None) -> str | None:
    """One name as the caller may see it (see `roles_shown`)."""
    if name is None:
        return None
    return roles_shown(conn, agency, [name])[name]
