"""Users, grants, enrolment, suspension and reinstatement, and the workspace's access policy.

- The first administrator is created with the workspace (`bootstrap_admin`); every other user
  is created by an administrator *without a password*: staff receive a one-time enrolment code
  and set their own password with it (`enrol`), so no administrator ever knows a colleague's
  password. Agency (requester) accounts have no password at all: they use API keys.
- A privileged role (`roles.PRIVILEGED`) counts only once a *second* administrator confirms
  the grant (`confirm`), like an agency API key. The one exception is the bootstrap: while the
  first administrator is the only administrator there has ever been, the second administrator
  they create is confirmed at once (recorded as such in the ledger); from then on nothing
  privileged is ever the work of one person.
- Suspension ends the user's sessions and keys in the same transaction; suspending an
  administrator also ends what they issued that nobody confirmed yet (pending grants, keys,
  unused enrolment codes). Two active administrators always remain; reinstatement needs two.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from custodes.access import credentials as cred
from custodes.access.roles import EXCLUSIVE, PRIVILEGED, ROLES
from custodes.errors import AccessDenied, ConflictError, InputError, NotFound, Unauthenticated
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.store import changes as queue
from custodes.store.tables import agencies, changes, enrolments, grants, policy, sessions, users
from custodes.workspace import Call, Workspace

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
ENROLMENT_HOURS = 72
TOTP_ROLES = "totp_roles"  # policy key: roles whose holders must sign in with a one-time code
POLICY_KEYS = (TOTP_ROLES,)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    """The user's roles in force now: confirmed grants that have not expired."""
    at = at or now()
    rows = conn.execute(
        select(grants.c.role, grants.c.expires_at).where(
            grants.c.user_name == name, grants.c.confirmed_at.is_not(None)
        )
    ).all()
    return frozenset(r for r, exp in rows if exp is None or aware(exp) > at)


def _all_roles(conn: Connection, name: str) -> set[str]:
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


def _two_administrators_remain(conn: Connection, name: str, why: str) -> None:
    """Refuse (`last_administrators`, saying `why`) to take `name` out of action when they are
    one of the last two active administrators: every power takes two."""
    if "administrator" in roles_of(conn, name) and len(active_holders(conn, "administrator")) <= 2:
        raise ConflictError(
            f"{why}; confirm a third administrator first.", code="last_administrators"
        )


def has_users(ws: Workspace) -> bool:
    with ws.engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(users)).scalar())


def _user(conn: Connection, name: str) -> Any:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        raise NotFound(f"No user {name}.", code="unknown_user")
    return row


FIRST_HALF, SECOND_HALF, WHOLE = "ce_", "ce2_", "ce_"


def _issue_enrolment(conn: Connection, name: str, by: str, *, halves: int = 2) -> str:
    """A new one-time code for `name` (earlier unused codes end). Split knowledge: the code
    comes in two halves, and this is the first one, for `by`; the second half is issued only
    to the second administrator who confirms the change. Only the bootstrap's second
    administrator gets a whole code (`halves=1`: nobody else could issue a second half)."""
    t = now()
    conn.execute(
        update(enrolments)
        .where(
            enrolments.c.user_name == name,
            enrolments.c.used_at.is_(None),
            enrolments.c.ended_at.is_(None),
        )
        .values(ended_at=t)
    )
    code = cred.new_token(FIRST_HALF if halves == 2 else WHOLE)
    conn.execute(
        insert(enrolments).values(
            code_sha256=cred.sha(code),
            user_name=name,
            issued_by=by,
            issued_at=t,
            expires_at=t + dt.timedelta(hours=ENROLMENT_HOURS),
            halves=halves,
        )
    )
    return code


def _issue_second_half(conn: Connection, first_sha256: str, by: str) -> str:
    """The second half of a code whose first half another administrator holds."""
    row = conn.execute(select(enrolments).where(enrolments.c.code_sha256 == first_sha256)).first()
    if (
        row is None
        or row.halves != 2
        or row.used_at is not None
        or row.ended_at is not None
        or row.second_sha256 is not None
        or aware(row.expires_at) <= now()  # type: ignore[operator]
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
    done = conn.execute(
        update(enrolments)
        .where(enrolments.c.code_sha256 == first_sha256, enrolments.c.second_sha256.is_(None))
        .values(second_sha256=cred.sha(code), second_by=by, second_at=now())
    ).rowcount
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


def _bootstrapping(conn: Connection, by: str) -> bool:
    """True while `by` is the only administrator the workspace has ever had."""
    ever = set(
        conn.execute(
            select(grants.c.user_name).where(grants.c.role == "administrator").distinct()
        ).scalars()
    )
    return ever == {by}


def _insert_grant(
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
    conn.execute(delete(grants).where(grants.c.user_name == name, grants.c.role == role))
    conn.execute(
        insert(grants).values(
            user_name=name,
            role=role,
            basis=basis,
            expires_at=expires,
            granted_by=by,
            granted_at=t,
            confirmed_by=confirmed_by,
            confirmed_at=t if confirmed_by else None,
        )
    )
    return confirmed_by is not None


def _grant_event(
    by: str, name: str, role: str, expires: dt.datetime | None, in_force: bool
) -> Event:
    return Event(
        "user.granted",
        actor=by,
        data={
            "user": name,
            "role": role,
            "expires": expires.isoformat() if expires else None,
            "pending_confirmation": not in_force,
        },
    )


# --- creating users ---------------------------------------------------------------------------


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
        conn.execute(
            insert(users).values(
                name=name, status="active", password_hash=pw_hash, created_at=t, created_by=name
            )
        )
        conn.execute(
            insert(grants).values(
                user_name=name,
                role="administrator",
                granted_by=name,
                granted_at=t,
                confirmed_by="bootstrap",
                confirmed_at=t,
            )
        )
        log.append(
            conn,
            [
                Event(
                    "user.created",
                    actor=name,
                    data={"user": name, "roles": ["administrator"], "bootstrap": True},
                )
            ],
        )
    return {"user": name, "roles": ["administrator"]}


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
    check_name(name)
    wanted = set(roles)
    if not wanted:
        raise InputError("Give the user at least one role (--role).", code="bad_role")
    check_roles(wanted)
    expires = expiry(last_day)
    requester = "requester" in wanted
    if requester and not (agency and agency.strip()):
        raise InputError(
            "A requester account acts for one agency: give --agency.", code="bad_argument"
        )
    if agency and not requester:
        raise InputError("Only a requester account belongs to an agency.", code="bad_argument")
    t = now()
    with call.transaction() as conn:
        if (
            requester
            and not conn.execute(
                select(agencies.c.name).where(agencies.c.name == agency.strip())  # type: ignore[union-attr]
            ).first()
        ):
            raise NotFound(
                f"No agency '{agency}' in the registry; add it first with 'custodes agencies add'.",
                code="unknown_agency",
            )
        if conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise ConflictError(f"User {name} already exists.", code="user_exists")
        conn.execute(
            insert(users).values(
                name=name,
                status="active",
                created_at=t,
                created_by=call.actor,
                agency=agency.strip() if requester else None,  # type: ignore[union-attr]
            )
        )
        in_force = {r: _insert_grant(conn, name, r, call.actor, basis, expires) for r in wanted}
        pending = sorted(r for r, ok in in_force.items() if not ok)
        bootstrap = any(r == "administrator" and ok for r, ok in in_force.items())
        halves = 1 if bootstrap else 2
        code = None if requester else _issue_enrolment(conn, name, call.actor, halves=halves)
        change = None
        if pending or (halves == 2 and code):
            change = queue.propose(
                conn,
                call.actor,
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
        log.append(
            conn,
            [
                Event(
                    "user.created",
                    actor=call.actor,
                    data={
                        "user": name,
                        "roles": sorted(wanted),
                        "expires": expires.isoformat() if expires else None,
                        "pending_confirmation": pending,
                        "bootstrap": bootstrap,
                        "change": change,
                        "enrolment_halves": halves if code else None,
                    },
                )
            ],
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
        row = _user(conn, name)
        check_roles(_all_roles(conn, name) | {role})
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
        in_force = _insert_grant(conn, name, role, call.actor, basis, expires)
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
        event = _grant_event(call.actor, name, role, expires, in_force)
        event.data["change"] = change
        log.append(conn, [event])
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
        _user(conn, name)
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


def issue_enrolment(call: Call, name: str) -> dict[str, Any]:
    """A credential reset (after a lost password or device): the user's sessions end and their
    password and second factor are cleared now, so they cannot act until they enrol again.
    The new one-time code comes in two halves: this administrator gets the first, and the
    second administrator who confirms the reset gets the second ('custodes changes confirm').
    Neither alone holds a usable code."""
    with call.transaction() as conn:
        row = _user(conn, name)
        if row.agency:
            raise InputError(
                "A requester account has no password; issue it a key.", code="bad_argument"
            )
        if name == call.actor:
            raise AccessDenied(
                "Nobody resets their own credentials; ask another administrator.",
                code="separation_of_duties",
            )
        _two_administrators_remain(
            conn,
            name,
            "Resetting this administrator would leave one who can act, and a reset needs a "
            "second administrator to complete (never the one reset)",
        )
        code = _issue_enrolment(conn, name, call.actor)
        conn.execute(
            update(users).where(users.c.name == name).values(password_hash=None, totp_secret=None)
        )
        _end_sessions(conn, sessions.c.user_name == name, "credentials_reset")
        change = queue.propose(
            conn,
            call.actor,
            "reset",
            name,
            f"credential reset for {name}: second half of the new enrolment code",
            {"enrolment": cred.sha(code)},
        )
        log.append(
            conn,
            [
                Event(
                    "user.enrolment_issued",
                    actor=call.actor,
                    data={"user": name, "change": change, "enrolment_halves": 2},
                )
            ],
        )
    return {
        "user": name,
        "enrolment_code": code,
        "enrolment_halves": 2,
        "enrolment_hours": ENROLMENT_HOURS,
        "change": change,
    }


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
        ok = (
            row is not None
            and user is not None
            and row.user_name == name
            and row.used_at is None
            and row.ended_at is None
            and aware(row.expires_at) > t  # type: ignore[operator]
            and user.status == "active"
        )
        if ok and row.halves == 2:  # type: ignore[union-attr]
            ok = (
                second is not None
                and row.second_sha256 is not None  # type: ignore[union-attr]
                and hmac.compare_digest(cred.sha(second), row.second_sha256)  # type: ignore[union-attr]
            )
        elif ok:
            ok = second is None
        if not ok:
            raise Unauthenticated(
                "The enrolment code is not valid for this user (unknown, used, expired or "
                "ended, or not both halves: one from the administrator who issued it and one "
                "from the administrator who confirmed it); ask an administrator for a new one.",
                code="bad_enrolment",
            )
        conn.execute(
            update(enrolments).where(enrolments.c.code_sha256 == row.code_sha256).values(used_at=t)
        )
        needs_totp = bool(_all_roles(conn, name) & totp_roles(conn))
        secret = cred.new_totp_secret() if needs_totp else None
        conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(
                password_hash=pw_hash,
                totp_secret=cred.seal(ws, secret) if secret else None,
                totp_last_step=None,
            )
        )
        log.append(
            conn,
            [Event("user.enrolled", actor=name, data={"user": name, "second_factor": needs_totp})],
        )
    return {
        "user": name,
        "enrolled": True,
        "totp_uri": cred.totp_uri(secret, name) if secret else None,
    }


# --- suspension -------------------------------------------------------------------------------


def _end_sessions(conn: Connection, where: Any, reason: str) -> int:
    return conn.execute(
        update(sessions)
        .where(where, sessions.c.ended_at.is_(None))
        .values(ended_at=now(), ended_reason=reason)
    ).rowcount


def suspend(call: Call, name: str, reason: str) -> dict[str, Any]:
    """Suspend at once: sessions and keys end in the same transaction; an administrator's
    unconfirmed issues (grants, keys, enrolment codes) end with them."""
    if not reason or not reason.strip():
        raise InputError("A suspension needs a reason.", code="bad_argument")
    with call.transaction() as conn:
        row = _user(conn, name)
        if row.status == "suspended":
            raise ConflictError(f"User {name} is already suspended.", code="already_suspended")
        _two_administrators_remain(
            conn,
            name,
            "Suspending this administrator would leave fewer than two, and custodes needs "
            "two administrators to change anything (reinstatement included)",
        )
        ended = _end_sessions(conn, sessions.c.user_name == name, "suspended")
        issued = _end_sessions(
            conn,
            and_(sessions.c.issued_by == name, sessions.c.confirmed_by.is_(None)),
            "issuer_suspended",
        )
        codes = conn.execute(
            update(enrolments)
            .where(
                enrolments.c.issued_by == name,
                enrolments.c.used_at.is_(None),
                enrolments.c.ended_at.is_(None),
            )
            .values(ended_at=now())
        ).rowcount
        withdrawn = conn.execute(
            delete(grants).where(grants.c.granted_by == name, grants.c.confirmed_at.is_(None))
        ).rowcount
        queue.end(conn, changes.c.proposed_by == name, "proposer_suspended")
        conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(
                status="suspended",
                status_reason=reason.strip(),
                status_at=now(),
                status_by=call.actor,
                reinstate_requested_by=None,
            )
        )
        log.append(
            conn,
            [
                Event(
                    "user.suspended",
                    actor=call.actor,
                    data={
                        "user": name,
                        "sessions_ended": ended,
                        "issued_keys_ended": issued,
                        "enrolment_codes_ended": codes,
                        "pending_grants_withdrawn": withdrawn,
                    },
                )
            ],
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
        row = _user(conn, name)
        if row.status != "suspended":
            raise ConflictError(f"User {name} is not suspended.", code="not_suspended")
        if name == call.actor:
            raise AccessDenied("Nobody reinstates themselves.", code="separation_of_duties")
        if row.reinstate_requested_by is None:
            conn.execute(
                update(users).where(users.c.name == name).values(reinstate_requested_by=call.actor)
            )
            log.append(
                conn, [Event("user.reinstate_requested", actor=call.actor, data={"user": name})]
            )
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
        conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(
                status="active",
                status_reason=None,
                status_at=now(),
                status_by=call.actor,
                reinstate_requested_by=None,
            )
        )
        log.append(
            conn,
            [
                Event(
                    "user.reinstated",
                    actor=call.actor,
                    data={"user": name, "requested_by": row.reinstate_requested_by},
                )
            ],
        )
    return {"user": name, "status": "active"}


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
                        "expired": x.expires_at is not None and aware(x.expires_at) <= t,  # type: ignore[operator]
                        "pending": x.confirmed_at is None,
                        "granted_by": x.granted_by,
                        "confirmed_by": x.confirmed_by,
                    }
                    for x in g
                ],
            }
        )
    return out


# --- policy -----------------------------------------------------------------------------------


def totp_roles(conn: Connection) -> frozenset[str]:
    value = conn.execute(select(policy.c.value).where(policy.c.key == TOTP_ROLES)).scalar()
    return frozenset(r for r in (value or "").split(",") if r)


def _policy_value(key: str, value: str) -> str:
    if key != TOTP_ROLES:
        raise InputError(
            f"Unknown policy '{key}' (known: {', '.join(POLICY_KEYS)}).", code="bad_argument"
        )
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
            conn.execute(insert(policy).values(key=key, **values))
        else:
            conn.execute(update(policy).where(policy.c.key == key).values(**values))
        change = queue.propose(
            conn, call.actor, "policy", key, f"policy {key} = '{value}'", {"value": value}
        )
        log.append(
            conn,
            [
                Event(
                    "policy.proposed",
                    actor=call.actor,
                    data={"key": key, "value": value, "change": change},
                )
            ],
        )
    return {"key": key, "pending": value, "proposed_by": call.actor, "change": change}


def confirm_policy(call: Call, key: str) -> dict[str, Any]:
    """Confirm the change to `key` waiting now ('custodes users policy --confirm'): the same
    as confirming that change by its id."""
    with call.transaction() as conn:
        waiting = [c for c in queue.pending(conn, subject=key) if c["kind"] == "policy"]
    if not waiting:
        raise ConflictError(f"No change to '{key}' is waiting.", code="not_pending")
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
