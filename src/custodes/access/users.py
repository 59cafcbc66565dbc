"""Users: names, roles in force, the first administrator (`bootstrap_admin`, created with the
workspace), and the listing. Every other user comes in through `access.enrolment`; grants are
`access.grants`, suspension `access.suspension`, the access policy `access.policy`."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, overload

from sqlalchemy import Connection, func, or_, select

from custodes.access import credentials as cred
from custodes.access.roles import EXCLUSIVE, ROLES
from custodes.errors import AccessDenied, ConflictError, InputError, NotFound
from custodes.ledger import anchors, log
from custodes.ledger.event_types import UserCreated
from custodes.store.tables import grants, sessions, users
from custodes.workspace import Workspace

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@overload
def aware(t: dt.datetime) -> dt.datetime: ...
@overload
def aware(t: None) -> None: ...
def aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes for UTC values; PostgreSQL returns aware ones."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise InputError(
            "A user name is 2-64 characters: lower-case letters, digits, '.', '_' or '-'.",
            code="bad_user_name",
        )
    return name


def check_roles(roles: set[str]) -> None:
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise InputError(
            f"Unknown role(s): {', '.join(unknown)} (roles: {', '.join(ROLES)}).",
            code="bad_role",
        )
    for pair, why in EXCLUSIVE.items():
        if pair <= roles:
            raise AccessDenied(
                f"Roles {' and '.join(sorted(pair))} cannot be held together: {why}.",
                code="separation_of_duties",
            )


def expiry(last_day: dt.date | None) -> dt.datetime | None:
    """A grant's last day (inclusive) as the instant it stops counting; never in the past."""
    if last_day is None:
        return None
    if last_day < now().date():
        raise InputError(
            f"The grant's last day {last_day.isoformat()} is in the past.", code="bad_date"
        )
    return dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def last_day(expires_at: dt.datetime | None) -> dt.date | None:
    """The last day a grant counts, as the administrator gave it."""
    t = aware(expires_at)
    return None if t is None else (t - dt.timedelta(microseconds=1)).date()


def roles_of(conn: Connection, name: str, at: dt.datetime | None = None) -> frozenset[str]:
    """The user's roles in force now: confirmed grants that have not expired, each checked
    against its anchoring ledger event (`authority_tampered` otherwise)."""
    at = at or now()
    rows = conn.execute(
        select(grants).where(grants.c.user_name == name, grants.c.confirmed_at.is_not(None))
    ).all()
    anchors.check(conn, [(grants, r) for r in rows])
    return frozenset(r.role for r in rows if r.expires_at is None or aware(r.expires_at) > at)


def all_roles(conn: Connection, name: str) -> set[str]:
    """Confirmed and pending roles (separation of duties counts both)."""
    return {r for (r,) in conn.execute(select(grants.c.role).where(grants.c.user_name == name))}


def active_holders(conn: Connection, role: str) -> set[str]:
    """Active users who hold `role` now (confirmed, not expired)."""
    t = now()
    rows = conn.execute(
        select(grants.c.user_name, grants.c.expires_at)
        .join(users, users.c.name == grants.c.user_name)
        .where(
            grants.c.role == role, grants.c.confirmed_at.is_not(None), users.c.status == "active"
        )
    ).all()
    return {u for u, exp in rows if exp is None or aware(exp) > t}


def two_administrators_remain(conn: Connection, name: str, why: str) -> None:
    """Refuse (`last_administrators`, saying `why`) to take `name` out of action when they are
    one of the last two active administrators: every power takes two."""
    if "administrator" in roles_of(conn, name) and len(active_holders(conn, "administrator")) <= 2:
        raise ConflictError(
            f"{why}; confirm a third administrator first.", code="last_administrators"
        )


def has_users(ws: Workspace) -> bool:
    with ws.engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(users)).scalar())


def user_row(conn: Connection, name: str) -> Any:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        raise NotFound("No such user.", code="unknown_user")
    return row


def bootstrap_admin(ws: Workspace, name: str, password: str) -> dict[str, Any]:
    """The workspace's first user: an administrator with a password. Only once."""
    check_name(name)
    pw_hash = cred.hash_password(password)
    t = now()
    with ws.engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(users)).scalar():
            raise AccessDenied(
                "The workspace already has users; only an administrator creates more.",
                code="forbidden",
            )
        anchors.insert(
            conn,
            name,
            users,
            name=name,
            status="active",
            password_hash=pw_hash,
            created_at=t,
            created_by=name,
        )
        anchors.insert(
            conn,
            name,
            grants,
            user_name=name,
            role="administrator",
            granted_by=name,
            granted_at=t,
            confirmed_by="bootstrap",
            confirmed_at=t,
        )
        log.append_one(
            conn, UserCreated(user=name, roles=["administrator"], bootstrap=True), actor=name
        )
    return {"user": name, "roles": ["administrator"]}


def listing(conn: Connection) -> list[dict[str, Any]]:
    """Users, their status and agency, every grant with its basis, last day and whether it is
    confirmed, and pending keys."""
    t = now()
    out = []
    for u in conn.execute(select(users).order_by(users.c.name)).all():
        g = conn.execute(
            select(grants).where(grants.c.user_name == u.name).order_by(grants.c.role)
        ).all()
        keys = conn.execute(
            select(sessions.c.confirmed_by).where(
                sessions.c.user_name == u.name,
                sessions.c.kind == "key",
                sessions.c.ended_at.is_(None),
                or_(sessions.c.expires_at > t, sessions.c.expires_at.is_(None)),
            )
        ).all()
        out.append(
            {
                "user": u.name,
                "status": u.status,
                "reason": u.status_reason,
                "reinstate_requested_by": u.reinstate_requested_by,
                "agency": u.agency,
                "enrolled": u.password_hash is not None or u.agency is not None,
                "keys": len(keys),
                "keys_pending": sum(1 for k in keys if k.confirmed_by is None),
                "grants": [
                    {
                        "role": x.role,
                        "basis": x.basis,
                        "last_day": last_day(x.expires_at),
                        "expired": x.expires_at is not None and aware(x.expires_at) <= t,
                        "pending": x.confirmed_at is None,
                        "granted_by": x.granted_by,
                        "confirmed_by": x.confirmed_by,
                    }
                    for x in g
                ],
            }
        )
    return out
