"""Sessions and API keys: opened by sign-in (staff) or issued by an administrator (agencies),
looked up on every call, ended by sign-out, suspension or expiry.

A session row is never deleted: ending it records when and why, so a call with an ended
session is told "ended (signed out / suspended)" and a made-up token "not a session of this
workspace".

Sign-in failures are throttled per account *and source* (NIST SP 800-63B section 5.2.2): after
`FREE_FAILURES` in a row for one name from one source (the client's address, or `local` for the
command line) that pair waits a doubling delay, so nobody elsewhere is locked out by someone
guessing a name. Only an existing account counts failures from every source, and after
`ACCOUNT_LOCK_FAILURES` (100) in a row it locks (recorded in the ledger): an unknown name never
locks anyone. Every answer for an unknown name looks and takes the same as for a known one (a
dummy argon2 verification, the same message). The source is the connection's peer address;
`X-Forwarded-For` counts only when the peer is a configured proxy (`CUSTODES_TRUSTED_PROXY`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from custodes import settings
from custodes.access import credentials as cred
from custodes.access.policy import totp_roles
from custodes.access.roles import ROLES
from custodes.access.users import aware, now, roles_of
from custodes.errors import (
    AccessDenied,
    ConflictError,
    CustodesError,
    InputError,
    NotFound,
    RateLimited,
    Unauthenticated,
    WorkspaceError,
)
from custodes.ledger import anchors, log
from custodes.ledger.event_types import Access, UserKeyIssued, UserLocked
from custodes.store import changes
from custodes.store.tables import access_log, login_throttle, sessions, users
from custodes.workspace import Call, Workspace

SESSION_HOURS = 12
KEY_DAYS = 365
FREE_FAILURES = 5  # failed sign-ins in a row for one name from one source before back-off
LOCK_SECONDS = 60  # first back-off; doubles with every further failure, up to MAX_LOCK_SECONDS
MAX_LOCK_SECONDS = 3600
# NIST SP 800-63B 5.2.2: no more than 100 consecutive failed attempts on one account. The
# account then locks for ACCOUNT_LOCK_SECONDS, and every failure after that locks it again.
ACCOUNT_LOCK_FAILURES = 100
ACCOUNT_LOCK_SECONDS = 3600
LOCAL_SOURCE = "local"  # sign-ins with no network peer (the command line)
TRUSTED_PROXY_ENV = "CUSTODES_TRUSTED_PROXY"

ENDED = {
    "signed_out": "the session was signed out",
    "suspended": "the user was suspended",
    "issuer_suspended": "the administrator who issued the key was suspended",
    "credentials_reset": "the user's credentials were reset",
    "idle": "nothing was done with it for longer than the inactivity timeout",
}
IDLE_MINUTES = 15.0  # AC-11/AC-12; CUSTODES_IDLE_MINUTES sets another


def record(
    conn: Connection,
    user: str | None,
    action: str,
    allowed: bool,
    reason: str | None = None,
    **extra: Any,
) -> str | None:
    """One row of the access log, and its ledger leaf (so a deleted row is detected). Returns
    the keyed commitment to the row's purpose (None for none), which an event about the same
    act carries in place of the purpose."""
    at = now()
    key = conn.execute(
        insert(access_log).values(
            at=at, user_name=user, action=action, allowed=allowed, reason=reason, **extra
        )
    ).inserted_primary_key
    assert key is not None  # an insert of one row always has its key
    log_id = key[0]
    purpose = extra.get("purpose")
    purpose_hmac = None if purpose is None else purpose_commit(anchors.key(conn), log_id, purpose)
    log.append_one(
        conn,
        Access(
            log_id=log_id, action=action, allowed=allowed, reason=reason, purpose_hmac=purpose_hmac
        ),
        actor=user or "anonymous",
        request_id=extra.get("request_id"),
        record_id=extra.get("record_id"),
        at=at,
    )
    return purpose_hmac


def purpose_commit(k: bytes, log_id: int, purpose: str | None) -> str | None:
    """The keyed commitment an access event carries to its row's purpose (None for none): the
    purpose stays out of the ledger's plain text, and the store audit compares."""
    return anchors.value_commit(k, "access_log", [log_id], "purpose", purpose)


def _open(
    conn: Connection,
    name: str,
    kind: str,
    lifetime: dt.timedelta,
    *,
    prefix: str = "",
    **extra: Any,
) -> str:
    token = cred.new_token(prefix)
    t = now()
    anchors.insert(
        conn,
        extra.get("issued_by") or name,
        sessions,
        token_sha256=cred.sha(token),
        user_name=name,
        kind=kind,
        created_at=t,
        expires_at=t + lifetime,
        last_used_at=t,
        **extra,
    )
    return token


def _throttle(conn: Connection, key: str, t: dt.datetime) -> None:
    row = conn.execute(select(login_throttle).where(login_throttle.c.name == key)).first()
    if row is not None and row.locked_until is not None and aware(row.locked_until) > t:
        wait = int((aware(row.locked_until) - t).total_seconds()) + 1
        raise RateLimited(
            f"Too many failed sign-ins; try again in {wait} seconds.",
            code="locked",
            retry_after=wait,
        )


def _count(conn: Connection, key: str, t: dt.datetime, delay: Any) -> int:
    """One more failure in a row for a throttle row; `delay(failures)` gives its lock in
    seconds (or None). Returns the failures in a row."""
    row = conn.execute(select(login_throttle).where(login_throttle.c.name == key)).first()
    failures = (row.failures if row else 0) + 1
    seconds = delay(failures)
    locked = t + dt.timedelta(seconds=seconds) if seconds else None
    values = {"failures": failures, "locked_until": locked, "last_failure": t}
    if row is None:
        conn.execute(insert(login_throttle).values(name=key, **values))
    else:
        conn.execute(update(login_throttle).where(login_throttle.c.name == key).values(**values))
    return failures


def _backoff(failures: int) -> int | None:
    if failures < FREE_FAILURES:
        return None
    return int(min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** min(failures - FREE_FAILURES, 16)))


def _account_lock(failures: int) -> int | None:
    return ACCOUNT_LOCK_SECONDS if failures >= ACCOUNT_LOCK_FAILURES else None


def _failed(conn: Connection, name: str, known: bool, source: str, t: dt.datetime) -> None:
    """A failed sign-in: the (name, source) pair backs off whatever the name; an existing
    account also counts it towards its lock, which is recorded in the ledger."""
    _count(conn, source_key(name, source), t, _backoff)
    if not known:
        return  # an unknown name has no account to lock
    failures = _count(conn, name, t, _account_lock)
    if failures >= ACCOUNT_LOCK_FAILURES:
        log.append_one(
            conn, UserLocked(user=name, failures=failures, seconds=ACCOUNT_LOCK_SECONDS), actor=name
        )


def _cleared(conn: Connection, name: str, source: str) -> None:
    conn.execute(
        update(login_throttle)
        .where(login_throttle.c.name.in_((name, source_key(name, source))))
        .values(failures=0, locked_until=None)
    )


def source_key(name: str, source: str) -> str:
    """The throttle row of one name tried from one source (hashed: the store keeps no
    addresses)."""
    return "@pair:" + hashlib.sha256(f"{name}\0{source}".encode()).hexdigest()[:40]


def _trusted_proxies() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for part in settings.items(TRUSTED_PROXY_ENV):
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            continue  # `custodes serve --trusted-proxy` refuses a malformed address up front
    return out


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def source(peer: str | None, forwarded_for: str | None = None) -> str:
    """The source a sign-in is throttled by: the connection's peer address; when the peer is a
    configured proxy (`CUSTODES_TRUSTED_PROXY`: addresses or networks), the right-most address
    in `X-Forwarded-For` that is not itself a trusted proxy. Anyone else's `X-Forwarded-For`
    is ignored, so a client cannot choose its own source."""
    if not peer:
        return LOCAL_SOURCE
    proxies = _trusted_proxies()

    def trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return addr is not None and any(addr in net for net in proxies)

    if not forwarded_for or not trusted(_address(peer)):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        addr = _address(hop)
        if addr is None:
            return peer  # a malformed chain: fall back on the proxy itself
        if not trusted(addr):
            return str(addr)
    return peer


def login(
    ws: Workspace,
    name: str,
    password: str,
    *,
    totp: str | None = None,
    client: str | None = None,
    forwarded_for: str | None = None,
    kind: str = "session",
) -> str:
    """Check the password (and second factor) and open a server-side session of `kind` ("session"
    for the command line and the API, "console" for the web console: each face takes only its own);
    returns the token, which is stored only as a hash. Every refusal is recorded. Failures are
    throttled per account name and source (`client`: the HTTP peer's address; `forwarded_for`: its
    `X-Forwarded-For`, honoured only from a trusted proxy; none: the command line), and an existing
    account locks after ACCOUNT_LOCK_FAILURES in a row from anywhere."""
    name = (name or "")[:128]
    src = source(client, forwarded_for)
    t = now()
    refused: CustodesError
    with ws.engine.begin() as conn:  # refusals are recorded and committed, then raised
        row = conn.execute(select(users).where(users.c.name == name)).first()
        try:
            _throttle(conn, source_key(name, src), t)
            if row is not None:
                _throttle(conn, name, t)
        except RateLimited as exc:
            record(conn, None, "login", False, "locked")
            refused = exc
        else:
            ok = cred.password_ok(row.password_hash if row else None, password)
            if not ok or row is None:  # (no row is never ok: it is checked against a dummy hash)
                _failed(conn, name, row is not None, src, t)
                record(conn, name if row else None, "login", False, "bad credentials")
                refused = Unauthenticated("Unknown user or wrong password.", code="bad_credentials")
            elif (tampered := _tampered(conn, row)) is not None:
                record(conn, name, "login", False, tampered.code)
                refused = tampered
            elif row.status != "active":
                record(conn, name, "login", False, "suspended")
                refused = AccessDenied(f"User {name} is suspended.", code="suspended")
            elif not row.totp_secret and (set(roles_of(conn, name)) & totp_roles(conn)):
                record(conn, name, "login", False, "second factor not enrolled")
                refused = AccessDenied(
                    f"User {name} holds a role that requires a one-time code and has none "
                    "enrolled; an administrator issues a new enrolment code "
                    "('custodes users totp').",
                    code="totp_required",
                )
            else:
                step = None
                if row.totp_secret:
                    secret = cred.unseal(ws, row.totp_secret)
                    step = cred.totp_step(secret, totp, row.totp_last_step, time.time())
                if row.totp_secret and step is None:
                    if totp:  # a wrong code counts as a failure; a missing one is a question
                        _failed(conn, name, True, src, t)
                    record(conn, name, "login", False, "second factor")
                    refused = Unauthenticated(
                        "The one-time code is missing, wrong or already used.", code="bad_totp"
                    )
                else:
                    if step is not None:
                        conn.execute(
                            update(users).where(users.c.name == name).values(totp_last_step=step)
                        )
                    _cleared(conn, name, src)
                    assert kind in ("session", "console"), kind
                    token = _open(conn, name, kind, dt.timedelta(hours=SESSION_HOURS))
                    record(conn, name, "login", True)
                    return token
    raise refused


def _tampered(conn: Connection, user: Any) -> AccessDenied | None:
    """The refusal when the user's row (its password hash, second factor, status, agency), a
    grant of theirs or the second-factor policy is not what its ledger event anchors."""
    try:
        anchors.check(conn, [(users, user)])
        roles_of(conn, user.name)  # its grants
        totp_roles(conn)  # the policy on second factors
    except anchors.AuthorityTampered as exc:
        return exc
    return None


def logout(ws: Workspace, token: str) -> bool:
    with ws.engine.begin() as conn:
        who = conn.execute(
            select(sessions.c.user_name).where(sessions.c.token_sha256 == cred.sha(token))
        ).scalar()
        return bool(
            who
            and anchors.update_rows(
                conn,
                who,
                sessions,
                (sessions.c.token_sha256 == cred.sha(token)) & sessions.c.ended_at.is_(None),
                ended_at=now(),
                ended_reason="signed_out",
            )
        )


def issue_key(call: Call, name: str, *, days: int = KEY_DAYS) -> dict[str, Any]:
    """An API key for an agency's requester account: a long-lived session stored only as a
    hash. It works once a second administrator confirms it ('custodes users confirm'), and
    ends like any session (suspension, or its issuer's suspension while unconfirmed)."""
    if not 1 <= days <= 3 * KEY_DAYS:
        raise InputError("A key lives from 1 day to 3 years.", code="bad_argument")
    with call.transaction() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise NotFound("No such user.", code="unknown_user")
        if row.agency is None:
            raise AccessDenied(
                "API keys are only for agency (requester) accounts; staff sign in with their "
                "own password.",
                code="key_not_allowed",
            )
        if row.status != "active":
            raise ConflictError(f"User {name} is suspended.", code="user_suspended")
        token = _open(
            conn, name, "key", dt.timedelta(days=days), prefix="ck_", issued_by=call.actor
        )
        change = changes.propose(
            conn,
            call.actor,
            "key",
            name,
            f"API key for {name}, valid {days} days",
            {"key": cred.sha(token), "days": days},
            slot=f"key:{cred.sha(token)}",
        )
        log.append_one(conn, UserKeyIssued(user=name, days=days, change=change), actor=call.actor)
    return {"user": name, "key": token, "days": days, "pending": True, "change": change}


def live(
    conn: Connection, token_sha256: str, *, claimed: str | None = None, lock: bool = False
) -> Any:
    """The session row behind a token hash, checked now: it exists, has not ended or expired,
    its key (if a key) is confirmed, and its user is active; and both the session's and the
    user's rows match the ledger events that anchor them (`authority_tampered` otherwise: a
    session inserted, or a user's agency changed, outside custodes). `lock` holds the session
    and user rows until the transaction ends (PostgreSQL), so a suspension cannot commit in
    between. Returns the session row, with `status` and `agency` of its user."""
    s_cols = [c.label(f"s_{c.name}") for c in sessions.c]
    u_cols = [c.label(f"u_{c.name}") for c in users.c]
    q = (
        select(*s_cols, *u_cols)
        .join(users, users.c.name == sessions.c.user_name)
        .where(sessions.c.token_sha256 == token_sha256)
    )
    if lock:
        q = q.with_for_update(read=True)
    found = conn.execute(q).first()
    row = user = None
    if found is not None:
        m = found._mapping
        row = SimpleNamespace(**{c.name: m[f"s_{c.name}"] for c in sessions.c})
        user = SimpleNamespace(**{c.name: m[f"u_{c.name}"] for c in users.c})
        row.status, row.agency = user.status, user.agency
    if row is None or (claimed is not None and row.user_name != claimed):
        status = None
        if claimed is not None:
            status = conn.execute(select(users.c.status).where(users.c.name == claimed)).scalar()
        if status == "suspended":
            raise AccessDenied("This user is suspended.", code="suspended")
        raise Unauthenticated(
            "Not signed in: that is not a session or key of this workspace (run 'custodes "
            "login USER', or set CUSTODES_SESSION to a current token).",
            code="not_signed_in",
        )
    anchors.check(conn, [(sessions, row), (users, user)])
    # A key never confirmed never worked: its holder learns why it does not (ended, expired,
    # not confirmed), never that its user has since been suspended.
    unconfirmed = row.kind == "key" and row.confirmed_by is None
    if row.status != "active" and not unconfirmed:
        raise AccessDenied("This user is suspended.", code="suspended")
    if row.ended_at is not None:
        why = ENDED.get(row.ended_reason or "", "it was ended")
        raise Unauthenticated(
            f"The session has ended ({why}); sign in again.", code="session_ended"
        )
    if aware(row.expires_at) <= now():
        raise Unauthenticated("The session has expired; sign in again.", code="session_ended")
    if unconfirmed:
        raise Unauthenticated(
            "This API key is not confirmed yet: a second administrator must confirm it "
            "('custodes users confirm').",
            code="not_signed_in",
        )
    return row


__all__ = ["ROLES", "issue_key", "live", "login", "logout", "record"]


NOTICE = Path(__file__).with_name("system_use.txt")


def system_use_notice() -> str:
    """The system-use notification shown before sign-in (NIST SP 800-53 AC-8, as IRS
    Publication 1075 asks of systems holding FTI): the text in the file named by
    CUSTODES_SYSTEM_USE_NOTICE, else the packaged default. Configuration, not code: an agency
    puts its own approved wording there."""
    path = Path(settings.raw("CUSTODES_SYSTEM_USE_NOTICE") or NOTICE)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise WorkspaceError(
            "The system-use notice (CUSTODES_SYSTEM_USE_NOTICE) cannot be read as UTF-8 text.",
            code="bad_configuration",
        ) from None
    return " ".join(text.split())


def idle_minutes() -> float:
    value = settings.raw("CUSTODES_IDLE_MINUTES")
    if value is None:
        return IDLE_MINUTES
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes <= 7 * 24 * 60:
        raise WorkspaceError(
            "CUSTODES_IDLE_MINUTES is the inactivity timeout in minutes (more than 0, at most "
            "a week).",
            code="bad_configuration",
        )
    return minutes


def idle(conn: Connection, token_sha256: str) -> bool:
    """The inactivity timeout (NIST SP 800-53 AC-11/AC-12, as IRS Publication 1075 asks):
    whether a person's session (console, API, command line) has gone unused for longer than
    it. An agency's API key never idles. Reads only; `keep_alive` writes what follows."""
    row = conn.execute(
        select(sessions.c.user_name, sessions.c.kind, sessions.c.last_used_at).where(
            sessions.c.token_sha256 == token_sha256
        )
    ).first()
    if row is None or row.kind == "key" or row.last_used_at is None:
        return False
    limit = dt.timedelta(minutes=idle_minutes())
    last_used: dt.datetime = row.last_used_at
    return aware(last_used) + limit < now()


def idle_refusal() -> Unauthenticated:
    return Unauthenticated(
        f"The session has ended ({ENDED['idle']}, {idle_minutes():g} minutes); sign in again.",
        code="session_ended",
    )


def keep_alive(
    conn: Connection, token_sha256: str, *, ended_idle: bool = False, user: str | None = None
) -> None:
    """A person's session is marked used now, or, when `idle` found it unused too long, ended
    as idle by `user`'s own call (an agency's key is never marked: the update finds no such
    row to change)."""
    t = now()
    if ended_idle:
        anchors.update_rows(
            conn,
            user or "anonymous",
            sessions,
            (sessions.c.token_sha256 == token_sha256) & sessions.c.ended_at.is_(None),
            ended_at=t,
            ended_reason="idle",
        )
        return
    # Never moved back: a clock that steps back and is then put right would otherwise make
    # a session in use look idle for the whole step, and end it.
    conn.execute(
        update(sessions)
        .where(
            sessions.c.token_sha256 == token_sha256,
            sessions.c.kind != "key",
            or_(sessions.c.last_used_at.is_(None), sessions.c.last_used_at < t),
        )
        .values(last_used_at=t)
    )
