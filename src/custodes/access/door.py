"""The one door every service goes through.

A face turns its credential (a CLI session file, an API key or session token, a browser
cookie) into a `Caller` with `caller()`, then calls a service with it. Every service is
declared with `@service(action)`: the decorator opens the door before the service body runs.
The door

1. looks the session up (alive, not ended, not expired, key confirmed, user active) and checks
   it belongs to the caller named,
2. reads the user's roles from the store and checks the action against `roles.ACTIONS`,
3. writes the access-log row (and its ledger leaf), allowed or refused, through the store's
   group commit (one transaction for the calls made at the same moment),

and hands the service a `CheckedCall`. Every transaction the service opens through
`CheckedCall.transaction()` re-checks the session *inside* that transaction, holding the
session and user rows, before it commits; long jobs call `recheck()` at every chunk. A
suspension therefore stops the very next call and any call in flight that has not committed.

A `Caller` grants nothing by itself: the door re-reads everything from the store each time,
so a forged or stale Caller is refused like a bad token.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, select

from custodes.access import credentials as cred
from custodes.access import sessions
from custodes.access.roles import ACTIONS, RESOURCES, SEES_EVERY_JOB
from custodes.access.users import roles_of
from custodes.errors import AccessDenied, CustodesError, NotFound
from custodes.labels import label
from custodes.ledger import anchors
from custodes.store import group
from custodes.store.tables import jobs, recall_items, requests
from custodes.workspace import Workspace

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the user, the credential (by hash) and what they held at sign-in."""

    name: str
    roles: frozenset[str]
    token_sha256: str = field(repr=False)
    kind: str  # "session" (command line, API), "console" (web console) or "key"
    agency: str | None = None  # a requester account's agency

    def __str__(self) -> str:
        return self.name


def caller(ws: Workspace, token: str | None, *, kinds: tuple[str, ...] | None = None) -> Caller:
    """Authenticate a credential now; a refusal is recorded and raised with its code.
    `kinds` limits the credentials a face accepts: the console takes only sign-in sessions
    (`("session",)`), never an agency's API key offered as a cookie."""
    refused: CustodesError
    with ws.engine.begin() as conn:
        try:
            if not token:
                from custodes.errors import Unauthenticated

                raise Unauthenticated(
                    "Not signed in: no session or API key was given ('custodes login USER' in a "
                    "shell; an 'Authorization: Bearer' header over HTTP).",
                    code="not_signed_in",
                )
            row = sessions.live(conn, cred.sha(token))
            if kinds is not None and row.kind not in kinds:
                from custodes.errors import Unauthenticated

                if "console" in kinds:
                    raise Unauthenticated(
                        "This credential does not sign in here: the console takes only a "
                        "session opened by signing in to the console (API keys and API "
                        "sessions are for the HTTP API).",
                        code="not_a_console_session",
                    )
                raise Unauthenticated(
                    "A console session works only in the console: sign in to the API with "
                    "POST /v1/sessions, or use an agency's API key.",
                    code="console_session",
                )
            return Caller(
                row.user_name,
                roles_of(conn, row.user_name),
                cred.sha(token),
                row.kind,
                row.agency,
            )
        except AccessDenied as exc:
            sessions.record(conn, None, "session", False, exc.code)
            refused = exc
    raise refused


@dataclass(frozen=True)
class CheckedCall:
    """A call that passed the door: the workspace, the caller as the store says now, and the
    action. Made only by `enter`."""

    ws: Workspace
    caller: Caller
    action: str

    @property
    def actor(self) -> str:
        return self.caller.name

    @property
    def agency(self) -> str | None:
        return self.caller.agency

    def _check(self, conn: Connection, *, lock: bool = False) -> None:
        sessions.live(conn, self.caller.token_sha256, claimed=self.caller.name, lock=lock)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A business transaction that commits only if the caller's session is still alive
        at the end of it (checked inside it, with the session row held)."""
        refused: AccessDenied | None = None
        try:
            with self.ws.engine.begin() as conn:
                yield conn
                try:
                    self._check(conn, lock=True)
                except AccessDenied as exc:
                    refused = exc
                    raise
        except AccessDenied:
            if refused is None:
                raise
        if refused is not None:  # rolled back; the refusal itself is recorded and raised
            with self.ws.engine.begin() as conn:
                sessions.record(conn, self.caller.name, self.action, False, refused.code)
            raise refused

    def recheck(self) -> None:
        """For long jobs: stop at the next chunk once the caller's session has ended."""
        with self.ws.engine.connect() as conn:
            self._check(conn)

    def progress(
        self, report: Callable[[str, int, int], None] | None = None
    ) -> Callable[[str, int, int], None]:
        """A progress callback that re-checks the caller at every chunk, then reports."""

        def update(stage: str, done: int, total: int) -> None:
            self.recheck()
            if report is not None:
                report(stage, done, total)

        return update


def _in_reach(
    conn: Connection, name: str, roles: frozenset[str], agency: str | None, scope: dict[str, Any]
) -> None:
    """The resources the call names are within the caller's reach (`roles.RESOURCES`): an
    agency account's request is its own agency's (as the request's anchoring ledger event
    says: `authority_tampered` otherwise), a recall one that names its requests, a job is its
    starter's (or the caller's role sees every job). Out of reach reads exactly like one that
    does not exist."""
    rid = scope.get("request")
    if isinstance(rid, str) and agency is not None:
        row = conn.execute(select(requests).where(requests.c.id == rid)).first()
        if row is None or row.agency != agency:
            raise NotFound("No such request.", code="unknown_request")
        anchors.check_one(conn, requests, row)  # its owner is what the ledger recorded
    recall = scope.get("recall")
    if isinstance(recall, str) and agency is not None:
        named = conn.execute(
            select(recall_items.c.recall_id)
            .join(requests, requests.c.id == recall_items.c.request_id)
            .where(recall_items.c.recall_id == recall, requests.c.agency == agency)
            .limit(1)
        ).first()
        if named is None:
            raise NotFound("No such recall.", code="unknown_recall")
    job = scope.get("job")
    if isinstance(job, str) and not roles & set(SEES_EVERY_JOB):
        starter = conn.execute(select(jobs.c.actor).where(jobs.c.id == job)).scalar()
        if starter != name:
            raise NotFound("No such job.", code="unknown_job")


# Reads that pages repeat without a person asking again: the console asks who the caller is
# on every page, and a job's page polls its job every second. The door still checks each of
# them; it records one when a credential first makes it and again when what it shows changes
# (other roles; the job's new state: queued, running, ended), not every repetition — and a
# repetition does not count as the person's activity for the inactivity timeout (a page left
# polling must not keep an unattended session open). Remembered per process, a bounded set:
# after a restart the first of each is recorded again.
_REPEATS: collections.OrderedDict[tuple[Any, ...], None] = collections.OrderedDict()
_REPEATS_KEPT = 8192
_repeats_lock = threading.Lock()


def _repeat_of(
    conn: Connection, who: Caller, action: str, roles: frozenset[str], scope: dict[str, Any]
) -> tuple[Any, ...] | None:
    if action == "session":
        return (who.token_sha256, action, roles)
    job = scope.get("job")
    if action == "jobs.read" and isinstance(job, str):
        state = conn.execute(select(jobs.c.state).where(jobs.c.id == job)).scalar()
        return (who.token_sha256, action, job, state)
    return None


def _seen_before(key: tuple[Any, ...] | None) -> bool:
    with _repeats_lock:
        if key is None or key not in _REPEATS:
            return False
        _REPEATS.move_to_end(key)
        return True


def _remember(key: tuple[Any, ...] | None) -> None:
    """After the first one's record is durable."""
    if key is None:
        return
    with _repeats_lock:
        _REPEATS[key] = None
        if len(_REPEATS) > _REPEATS_KEPT:
            _REPEATS.popitem(last=False)


def enter(
    ws: Workspace,
    who: Caller,
    action: str,
    *,
    scope: dict[str, Any] | None = None,
    **extra: Any,
) -> CheckedCall:
    """Check `who` may perform `action` now, on the resources the call names (`scope`:
    resource kind -> id), record the decision, and open the call.

    The checks read the store; the decision's record (the access-log row, its ledger leaf, and
    the session's last use) is written through the store's group commit: the call goes on,
    allowed or refused, only once that record is durable, and the records of calls made at
    the same moment share one transaction instead of queueing for the ledger one by one
    (docs/decisions/2026-12-06-group-commit-for-the-access-log.md)."""
    if action not in ACTIONS:
        raise KeyError(action)
    refused: AccessDenied | NotFound | None = None
    ended_idle = False
    repeat: tuple[Any, ...] | None = None
    with ws.engine.connect() as conn:
        try:
            row = sessions.live(conn, who.token_sha256, claimed=who.name)
            if sessions.idle(conn, who.token_sha256):  # a person's idle session ends here
                ended_idle = True
                raise sessions.idle_refusal()
            roles = roles_of(conn, who.name)
            if not roles & set(ACTIONS[action]):
                raise AccessDenied(
                    f"{who.name} may not {label(action)}: that takes the role of "
                    f"{' or '.join(label(r) for r in ACTIONS[action])}.",
                    code="forbidden",
                )
            _in_reach(conn, who.name, roles, row.agency, scope or {})
            repeat = _repeat_of(conn, who, action, roles, scope or {})
            if repeat is not None:  # per store: a process may serve several (copies share tokens)
                repeat = (ws.store_url, *repeat)
        except (AccessDenied, NotFound) as exc:
            refused = exc
    if refused is None:
        checked = CheckedCall(
            ws, Caller(who.name, roles, who.token_sha256, row.kind, row.agency), action
        )
        if _seen_before(repeat):
            return checked

    def record(conn: Connection) -> None:
        if refused is None or ended_idle:
            sessions.keep_alive(conn, who.token_sha256, ended_idle=ended_idle, user=who.name)
        reason = None if refused is None else refused.code
        sessions.record(conn, who.name, action, refused is None, reason, **extra)

    group.of(ws.engine).write(record)
    if refused is not None:
        raise refused
    _remember(repeat)
    return checked


# A custodes request id (intake makes them): only such a value goes into the access log's
# request column, so a made-up id in a URL is refused by the service, not written to the log.
REQUEST_ID = re.compile(r"req-[0-9a-f]{12}")


def _request_of(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """How to find the request a service's call is about (its `request_id` argument), for the
    access log: every call about a request is recorded with the request's id."""
    names = list(inspect.signature(fn).parameters)[1:]  # after the CheckedCall
    if "request_id" not in names:
        return lambda args, kwargs: None
    at = names.index("request_id")

    def find(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rid = kwargs.get("request_id", args[at] if at < len(args) else None)
        return rid if isinstance(rid, str) and REQUEST_ID.fullmatch(rid) else None

    return find


def _scope_of(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """The resources a service's call names, by its arguments (`roles.RESOURCES`)."""
    names = list(inspect.signature(fn).parameters)[1:]  # after the CheckedCall
    at = {arg: names.index(arg) for arg in RESOURCES if arg in names}

    def find(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            RESOURCES[arg]: kwargs.get(arg, args[i] if i < len(args) else None)
            for arg, i in at.items()
        }

    return find


# Every service, for the tests that walk them all: name -> (function, action).
SERVICES: dict[str, tuple[Callable[..., Any], str]] = {}


def service(
    action: str,
) -> Callable[
    [Callable[Concatenate[CheckedCall, P], R]], Callable[Concatenate[Workspace, Caller, P], R]
]:
    """Declare a service: called as ``fn(ws, caller, ...)``, it runs its body with the
    `CheckedCall` the door opened for `action`."""

    def wrap(
        fn: Callable[Concatenate[CheckedCall, P], R],
    ) -> Callable[Concatenate[Workspace, Caller, P], R]:
        request_of = _request_of(fn)
        scope_of = _scope_of(fn)

        @functools.wraps(fn)
        def run(ws: Workspace, who: Caller, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if not isinstance(who, Caller):
                raise TypeError("a service takes the Caller made by access.caller()")
            rid = request_of(args, kwargs)
            extra = {"request_id": rid} if rid else {}
            scope = scope_of(args, kwargs)
            return fn(enter(ws, who, action, scope=scope, **extra), *args, **kwargs)

        run.action = action  # type: ignore[attr-defined]
        SERVICES[f"{fn.__module__}.{fn.__qualname__}"] = (run, action)
        return run

    return wrap
