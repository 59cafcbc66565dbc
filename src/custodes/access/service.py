"""Access: users, roles, server-side sessions checked on every call, immediate suspension,
time-limited grants, separation of duties, and the access log.

- Passwords are hashed with argon2id (argon2-cffi); session tokens and API keys are random and
  stored only as SHA-256 hashes, so a copy of the store yields no usable credential.
- Every call looks its session up: suspending a user deletes their sessions and keys and sets
  the status in one transaction, so the very next call is refused. A business transaction that
  was already in flight re-checks the session inside its own transaction (`session_guard`), so
  it cannot commit after the suspension either.
- Separation of duties is data (`EXCLUSIVE`, `ACTIONS`) and is checked by the store, not by the
  goodwill of whoever runs the command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update

from custodes.errors import ConflictError, CustodesError, InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.store.tables import access_log, grants, sensitive_records, sessions, users
from custodes.workspace import Workspace

ROLES = ("requester", "officer", "approver", "rule_steward", "auditor", "administrator")

# Separation of duties: roles one person may not hold together, and why.
EXCLUSIVE: dict[frozenset[str], str] = {
    frozenset({"administrator", "approver"}): "an administrator cannot approve releases",
    frozenset({"requester", "officer"}): "a requesting agency's account cannot decide requests",
    frozenset({"requester", "approver"}): "a requesting agency's account cannot approve",
}

# Which roles may perform each action the faces offer. The table is the rule.
ACTIONS: dict[str, tuple[str, ...]] = {
    "status": ("officer", "approver", "auditor", "administrator", "rule_steward"),
    "records.import": ("administrator",),
    "records.generate": ("administrator",),
    "records.summary": ("officer", "approver", "auditor", "administrator"),
    "requests.generate": ("administrator",),
    "requests.list": ("officer", "approver", "auditor", "requester"),
    "submit": ("requester", "officer"),
    "withdraw": ("requester", "officer"),
    "rules.read": ("officer", "approver", "auditor", "rule_steward", "requester"),
    "rules.check": ("officer", "rule_steward", "requester"),
    "rules.change": ("rule_steward",),
    "registry.read": ("officer", "approver", "auditor", "administrator", "rule_steward"),
    "registry.change": ("administrator",),
    "match.train": ("officer",),
    "match.link": ("officer",),
    "match.evaluate": ("officer", "auditor"),
    "process": ("officer",),
    "explain": ("officer", "approver", "auditor"),
    "outcomes": ("officer", "approver", "auditor"),
    "review.read": ("officer", "approver"),
    "review.resolve": ("officer",),
    "prepare": ("officer",),
    "approve": ("approver",),
    "release": ("officer",),
    "recall": ("officer",),
    "recalls.read": ("officer", "auditor"),
    "recall.certify": ("officer",),
    "ledger.read": ("auditor", "administrator", "officer"),
    "ledger.sign": ("administrator",),
    "users.read": ("administrator", "auditor"),
    "users.change": ("administrator",),
    "audit": ("auditor",),
    "records.show": ("officer", "auditor"),
    "records.flag": ("administrator",),
}

SESSION_HOURS = 12
# Roles whose holders must sign in with a one-time code (comma-separated role names).
TOTP_ROLES_ENV = "CUSTODES_TOTP_ROLES"
MIN_PASSWORD = 12
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_hasher = PasswordHasher()


class AccessDenied(CustodesError):
    """Not signed in, session ended, suspended, or the role does not allow the action."""

    code = "forbidden"


@dataclass(frozen=True)
class Actor:
    name: str
    roles: frozenset[str]
    token_sha256: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes for UTC values; PostgreSQL returns aware ones."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise InputError(
            "A user name is 2-64 characters: lower-case letters, digits, '.', '_' or '-'.",
            code="bad_user_name",
        )
    return name


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise InputError(
            f"A password needs at least {MIN_PASSWORD} characters.", code="weak_password"
        )


def _check_roles(roles: set[str]) -> None:
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise InputError(
            f"Unknown role(s): {', '.join(unknown)} (roles: {', '.join(ROLES)}).",
            code="bad_role",
        )
    for pair, why in EXCLUSIVE.items():
        if pair <= roles:
            raise ConflictError(
                f"Roles {' and '.join(sorted(pair))} cannot be held together: {why}.",
                code="separation_of_duties",
            )


def _record(
    conn: Connection,
    user: str | None,
    action: str,
    allowed: bool,
    reason: str | None = None,
    **extra: Any,
) -> None:
    conn.execute(
        insert(access_log).values(
            at=_now(), user_name=user, action=action, allowed=allowed, reason=reason, **extra
        )
    )


def roles_of(conn: Connection, name: str, at: dt.datetime | None = None) -> frozenset[str]:
    """The user's roles in force now: grants that have not expired."""
    at = at or _now()
    rows = conn.execute(
        select(grants.c.role, grants.c.expires_at).where(grants.c.user_name == name)
    ).all()
    return frozenset(r for r, exp in rows if exp is None or _aware(exp) > at)


def active_holders(conn: Connection, role: str) -> set[str]:
    """Active users who hold `role` now (grant not expired)."""
    now = _now()
    rows = conn.execute(
        select(grants.c.user_name, grants.c.expires_at)
        .join(users, users.c.name == grants.c.user_name)
        .where(grants.c.role == role, users.c.status == "active")
    ).all()
    return {u for u, exp in rows if exp is None or _aware(exp) > now}


def has_users(ws: Workspace) -> bool:
    with ws.engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(users)).scalar())


# --- users and grants -------------------------------------------------------------------------


def create_user(
    ws: Workspace,
    name: str,
    password: str,
    roles: list[str],
    *,
    by: Actor | None,
    basis: str | None = None,
    expires: dt.datetime | None = None,
) -> dict[str, Any]:
    """Create a user with roles. `by` is an administrator, or None only for the first user of
    a workspace, who must be an administrator."""
    _check_name(name)
    _check_password(password)
    wanted = set(roles)
    if not wanted:
        raise InputError("Give the user at least one role (--role).", code="bad_role")
    _check_roles(wanted)
    now = _now()
    with ws.engine.begin() as conn:
        n = conn.execute(select(func.count()).select_from(users)).scalar()
        if by is None:
            if n:
                raise AccessDenied("Only an administrator can create users.", code="forbidden")
            if wanted != {"administrator"}:
                raise InputError(
                    "The first user is the administrator, with that role only.", code="bad_role"
                )
        else:
            _require(conn, by, "users.change")
        if conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise ConflictError(f"User {name} already exists.", code="user_exists")
        conn.execute(
            insert(users).values(
                name=name,
                status="active",
                password_hash=_hasher.hash(password),
                created_at=now,
                created_by=by.name if by else None,
            )
        )
        conn.execute(
            insert(grants),
            [
                {
                    "user_name": name,
                    "role": r,
                    "basis": basis,
                    "expires_at": expires,
                    "granted_by": by.name if by else name,
                    "granted_at": now,
                }
                for r in sorted(wanted)
            ],
        )
        log.append(
            conn,
            [
                Event(
                    "user.created",
                    actor=by.name if by else name,
                    data={
                        "user": name,
                        "roles": sorted(wanted),
                        "expires": expires.isoformat() if expires else None,
                    },
                )
            ],
        )
    return {"user": name, "roles": sorted(wanted), "expires": expires}


def grant(
    ws: Workspace,
    name: str,
    role: str,
    *,
    by: Actor,
    basis: str | None,
    expires: dt.datetime | None = None,
) -> dict[str, Any]:
    """Grant a role (optionally time-limited, with its legal basis). Never to oneself."""
    with ws.engine.begin() as conn:
        _require(conn, by, "users.change")
        if name == by.name:
            raise AccessDenied(
                "Nobody grants roles to themselves; ask another administrator.",
                code="separation_of_duties",
            )
        if not conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise InputError(f"No user {name}.", code="unknown_user")
        _check_roles(set(roles_of(conn, name)) | {role})
        conn.execute(delete(grants).where(grants.c.user_name == name, grants.c.role == role))
        conn.execute(
            insert(grants).values(
                user_name=name,
                role=role,
                basis=basis,
                expires_at=expires,
                granted_by=by.name,
                granted_at=_now(),
            )
        )
        log.append(
            conn,
            [
                Event(
                    "user.granted",
                    actor=by.name,
                    data={
                        "user": name,
                        "role": role,
                        "expires": expires.isoformat() if expires else None,
                    },
                )
            ],
        )
    return {"user": name, "role": role, "basis": basis, "expires": expires}


def suspend(ws: Workspace, name: str, reason: str, *, by: Actor) -> dict[str, Any]:
    """Suspend at once: sessions and keys deleted and the status set in one transaction."""
    if not reason or not reason.strip():
        raise InputError("A suspension needs a reason.", code="bad_argument")
    with ws.engine.begin() as conn:
        _require(conn, by, "users.change")
        row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise InputError(f"No user {name}.", code="unknown_user")
        if row.status == "suspended":
            raise ConflictError(f"User {name} is already suspended.", code="already_suspended")
        ended = conn.execute(delete(sessions).where(sessions.c.user_name == name)).rowcount
        conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(
                status="suspended",
                status_reason=reason.strip(),
                status_at=_now(),
                status_by=by.name,
                reinstate_requested_by=None,
            )
        )
        log.append(
            conn,
            [Event("user.suspended", actor=by.name, data={"user": name, "sessions_ended": ended})],
        )
    return {"user": name, "status": "suspended", "sessions_ended": ended}


def reinstate(ws: Workspace, name: str, *, by: Actor) -> dict[str, Any]:
    """Reinstating needs two administrators: the first asks, a second one confirms."""
    with ws.engine.begin() as conn:
        _require(conn, by, "users.change")
        row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise InputError(f"No user {name}.", code="unknown_user")
        if row.status != "suspended":
            raise ConflictError(f"User {name} is not suspended.", code="not_suspended")
        if name == by.name:
            raise AccessDenied("Nobody reinstates themselves.", code="separation_of_duties")
        if row.reinstate_requested_by is None:
            conn.execute(
                update(users).where(users.c.name == name).values(reinstate_requested_by=by.name)
            )
            log.append(
                conn, [Event("user.reinstate_requested", actor=by.name, data={"user": name})]
            )
            return {
                "user": name,
                "status": "suspended",
                "pending": f"a second administrator (not {by.name}) must confirm",
            }
        if row.reinstate_requested_by == by.name:
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
                status_at=_now(),
                status_by=by.name,
                reinstate_requested_by=None,
            )
        )
        log.append(
            conn,
            [
                Event(
                    "user.reinstated",
                    actor=by.name,
                    data={"user": name, "requested_by": row.reinstate_requested_by},
                )
            ],
        )
    return {"user": name, "status": "active"}


def listing(ws: Workspace) -> list[dict[str, Any]]:
    now = _now()
    with ws.engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
        out = []
        for u in rows:
            g = conn.execute(
                select(grants).where(grants.c.user_name == u.name).order_by(grants.c.role)
            ).all()
            out.append(
                {
                    "user": u.name,
                    "status": u.status,
                    "reason": u.status_reason,
                    "grants": [
                        {
                            "role": x.role,
                            "basis": x.basis,
                            "expires": _aware(x.expires_at),
                            "expired": x.expires_at is not None and _aware(x.expires_at) <= now,
                        }
                        for x in g
                    ],
                }
            )
    return out


# --- sessions ---------------------------------------------------------------------------------


def login(ws: Workspace, name: str, password: str, *, totp: str | None = None) -> str:
    """Check the password (and second factor) and open a server-side session; returns the
    token, which is stored only as a hash."""
    denied: AccessDenied
    with ws.engine.begin() as conn:  # refusals are recorded and committed, then raised
        row = conn.execute(select(users).where(users.c.name == name)).first()
        ok = False
        if row is not None:
            try:
                ok = _hasher.verify(row.password_hash, password or "")
            except (VerificationError, InvalidHashError):
                ok = False
        if not ok:
            _record(conn, name if row else None, "login", False, "bad credentials")
            denied = AccessDenied("Unknown user or wrong password.", code="bad_credentials")
        elif row.status != "active":
            _record(conn, name, "login", False, "suspended")
            denied = AccessDenied(f"User {name} is suspended.", code="suspended")
        elif not row.totp_secret and roles_of(conn, name) & _totp_roles():
            _record(conn, name, "login", False, "second factor not enrolled")
            denied = AccessDenied(
                f"User {name} holds a role that requires a one-time code and has none "
                "enrolled; an administrator runs 'custodes users totp'.",
                code="totp_required",
            )
        elif row.totp_secret and not _totp_ok(row.totp_secret, totp):
            _record(conn, name, "login", False, "second factor")
            denied = AccessDenied("The one-time code is missing or wrong.", code="bad_totp")
        else:
            token = _open_session(conn, name, "session", dt.timedelta(hours=SESSION_HOURS))
            _record(conn, name, "login", True)
            return token
    raise denied


def _open_session(
    conn: Connection, name: str, kind: str, lifetime: dt.timedelta, prefix: str = ""
) -> str:
    """A new random token for `name`; the store keeps only its hash."""
    token = prefix + secrets.token_urlsafe(32)
    now = _now()
    conn.execute(
        insert(sessions).values(
            token_sha256=_sha(token),
            user_name=name,
            kind=kind,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def _totp_roles() -> frozenset[str]:
    import os

    return frozenset(r.strip() for r in os.environ.get(TOTP_ROLES_ENV, "").split(",") if r)


def enroll_totp(ws: Workspace, name: str, *, by: Actor) -> str:
    """Give a user a TOTP secret; returns the provisioning URI for their authenticator app
    (shown once). Enrolling again replaces the secret."""
    import pyotp

    secret = pyotp.random_base32()
    with ws.engine.begin() as conn:
        _require(conn, by, "users.change")
        done = conn.execute(update(users).where(users.c.name == name).values(totp_secret=secret))
        if done.rowcount != 1:
            raise InputError(f"No user {name}.", code="unknown_user")
        log.append(conn, [Event("user.totp_enrolled", actor=by.name, data={"user": name})])
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name="custodes")


def _totp_ok(secret: str, code: str | None) -> bool:
    import pyotp

    return bool(code) and pyotp.TOTP(secret).verify(code, valid_window=1)


KEY_DAYS = 365


def issue_key(ws: Workspace, name: str, *, by: Actor, days: int = KEY_DAYS) -> str:
    """An API key for a user (typically an agency's requester account): a long-lived session
    stored only as a hash, ended like any session by logout or suspension."""
    if not 1 <= days <= 3 * KEY_DAYS:
        raise InputError("A key lives from 1 day to 3 years.", code="bad_argument")
    with ws.engine.begin() as conn:
        _require(conn, by, "users.change")
        row = conn.execute(select(users.c.status).where(users.c.name == name)).first()
        if row is None:
            raise InputError(f"No user {name}.", code="unknown_user")
        if row.status != "active":
            raise ConflictError(f"User {name} is suspended.", code="suspended")
        token = _open_session(conn, name, "key", dt.timedelta(days=days), prefix="ck_")
        log.append(
            conn, [Event("user.key_issued", actor=by.name, data={"user": name, "days": days})]
        )
    return token


def logout(ws: Workspace, token: str) -> bool:
    with ws.engine.begin() as conn:
        return bool(
            conn.execute(delete(sessions).where(sessions.c.token_sha256 == _sha(token))).rowcount
        )


def authenticate(conn: Connection, token: str | None) -> Actor:
    """The actor behind a session token, checked now: session alive, user active."""
    if not token:
        raise AccessDenied(
            "Not signed in: run 'custodes login USER' (or set CUSTODES_SESSION).",
            code="not_signed_in",
        )
    sha = _sha(token)
    row = conn.execute(
        select(sessions.c.user_name, sessions.c.expires_at, users.c.status)
        .join(users, users.c.name == sessions.c.user_name)
        .where(sessions.c.token_sha256 == sha)
    ).first()
    if row is None:
        raise AccessDenied(
            "The session has ended (signed out or suspended); sign in again.", code="session_ended"
        )
    if row.status != "active":
        raise AccessDenied("This user is suspended.", code="suspended")
    if _aware(row.expires_at) <= _now():
        raise AccessDenied("The session has expired; sign in again.", code="session_ended")
    return Actor(row.user_name, roles_of(conn, row.user_name), sha)


def _denied(actor: Actor, action: str) -> AccessDenied:
    allowed = ", ".join(ACTIONS[action])
    return AccessDenied(
        f"{actor.name} may not {action.replace('.', ' ')}: it needs one of the roles {allowed}.",
        code="forbidden",
    )


def _require(conn: Connection, actor: Actor, action: str) -> None:
    if not roles_of(conn, actor.name) & set(ACTIONS[action]):
        raise _denied(actor, action)


def authorize(ws: Workspace, token: str | None, action: str, **extra: Any) -> Actor:
    """Authenticate the token and check the action against the role table. Every decision,
    allowed or refused, is written to the access log."""
    if action not in ACTIONS:
        raise KeyError(action)
    denied: AccessDenied
    with ws.engine.begin() as conn:
        try:
            actor = authenticate(conn, token)
        except AccessDenied as exc:
            _record(conn, None, action, False, exc.code, **extra)
            denied = exc
        else:
            if actor.roles & set(ACTIONS[action]):
                _record(conn, actor.name, action, True, **extra)
                return actor
            _record(conn, actor.name, action, False, "forbidden", **extra)
            denied = _denied(actor, action)
    raise denied


def session_guard(token: str) -> Callable[[Connection], None]:
    """A check to run inside a business transaction: the session must still be alive there,
    so an action already in flight when its user was suspended cannot commit."""

    def guard(conn: Connection) -> None:
        authenticate(conn, token)

    return guard


# --- inspections (UNAX) -----------------------------------------------------------------------


def record_inspection(
    conn: Connection,
    actor: str,
    record_id: str,
    *,
    allowed: bool,
    reason: str | None,
    purpose: str | None,
    request_id: str | None,
) -> None:
    _record(
        conn,
        actor,
        "records.show",
        allowed,
        reason,
        record_id=record_id,
        purpose=purpose,
        request_id=request_id,
    )


def flag_sensitive(ws: Workspace, record_id: str, reason: str, *, by: Actor) -> None:
    """Mark a record sensitive (e.g. a public figure, a victim): every inspection of it is
    reported to auditors."""
    if not reason or not reason.strip():
        raise InputError("Flagging a record sensitive needs a reason.", code="bad_argument")
    with ws.engine.begin() as conn:
        _require(conn, by, "records.flag")
        conn.execute(delete(sensitive_records).where(sensitive_records.c.record_id == record_id))
        conn.execute(
            insert(sensitive_records).values(
                record_id=record_id, reason=reason.strip(), flagged_by=by.name, flagged_at=_now()
            )
        )
        log.append(conn, [Event("record.flagged_sensitive", actor=by.name, record_id=record_id)])


def audit_inspections(ws: Workspace, *, spike: int = 50) -> dict[str, Any]:
    """What an auditor looks for: inspections without a linked open request (refused, so
    attempted), inspections of sensitive records, days on which one user inspected more than
    `spike` records, and any action by a suspended user after the suspension (must be none)."""
    with ws.engine.connect() as conn:
        shows = conn.execute(
            select(access_log)
            .where(access_log.c.action == "records.show", access_log.c.record_id.is_not(None))
            .order_by(access_log.c.at)
        ).all()
        sensitive = {r[0] for r in conn.execute(select(sensitive_records.c.record_id))}
        suspended = {
            u.name: _aware(u.status_at)
            for u in conn.execute(select(users).where(users.c.status == "suspended"))
        }
        after = []
        for name, since in suspended.items():
            rows = conn.execute(
                select(access_log).where(access_log.c.user_name == name, access_log.c.allowed)
            ).all()
            after += [r for r in rows if since is not None and _aware(r.at) > since]

    def row(r: Any) -> dict[str, Any]:
        return {
            "at": _aware(r.at),
            "user": r.user_name,
            "record_id": r.record_id,
            "request_id": r.request_id,
            "allowed": r.allowed,
            "reason": r.reason,
        }

    per_day: dict[tuple[str, str], int] = {}
    for r in shows:
        if r.allowed:
            key = (r.user_name, str(_aware(r.at).date()))
            per_day[key] = per_day.get(key, 0) + 1
    return {
        "inspections": len(shows),
        "without_open_request": [
            row(r) for r in shows if r.reason in ("no_case", "request_closed", "unknown_request")
        ],
        "sensitive": [row(r) for r in shows if r.record_id in sensitive],
        "volume_spikes": [
            {"user": u, "day": d, "inspections": n}
            for (u, d), n in sorted(per_day.items())
            if n > spike
        ],
        "actions_by_suspended_users": [row(r) | {"action": r.action} for r in after],
    }
