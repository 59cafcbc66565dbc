"""Admission control: a bounded wait and an honest answer when the server is full.

Every call that can reach the store (everything but the health check, the problem types, the
API's schema and the console's static files) is admitted before it runs:

- **Two classes, two limits.** Reads (GET, HEAD, OPTIONS) and writes (everything else) each
  have their own number of calls in flight, so a flood of reads never takes the slots a
  submission, a release or an approval needs.
- **A queue with a deadline, and early refusal.** A call that finds its class full waits, at
  most `wait_ms` (the budget). The queue always takes one call per slot; beyond that a
  newcomer is refused at once when the calls already waiting would take longer than a tenth
  of the budget (25 ms by default) to clear, at the rate calls have been ending (a running
  average of an admitted call's time, over the slots): it would not start in time, and past
  the server's capacity the queue would only grow. A refused call
  is answered `503 overloaded` with `Retry-After` and a problem body before it touches
  anything: it did nothing and recorded nothing. So a short stall at a low rate is waited
  out, while past the knee the excess is refused in about a millisecond instead of piling
  up: the calls that are answered stay fast, and the throughput does not collapse.
- **Fair shares.** Calls are counted per caller, keyed by a hash of the credential (the bearer
  token or the console's cookie; the client address for anonymous calls), never by anything
  in clear. A freed slot goes to the waiting caller that holds the fewest slots (callers take
  turns among equals), and a newcomer who finds the queue full takes the place of the newest
  waiter of the caller with the largest share (running and waiting): one agency's burst
  cannot crowd out another.
- **Stopping.** `drain()` (on SIGTERM or SIGINT, see `on_stop_signals`) refuses every waiting
  call and every new one `503 shutting_down`; the calls already admitted run to their end.

The limits come from `custodes serve` options or `CUSTODES_ADMIT_*` (docs/api.md); the store's
connection pool and the request threads are sized from them, so an admitted call never waits
for a connection.

Hand-written, as ASGI middleware: uvicorn's `--limit-concurrency` counts connections and tasks,
not calls, has one limit for everything and answers a bare 503 without `Retry-After` or a
problem body; rate limiters (slowapi and the like) count calls per period, not calls in flight,
and know no classes, no deadline and no fair share between callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from custodes import settings
from custodes.errors import REGISTRY, InputError
from custodes.http.problems import problem

READS = frozenset({"GET", "HEAD", "OPTIONS"})
# Served without the store: never queued (refused only while the server stops).
OPEN = ("/v1/health", "/v1/problems/", "/v1/openapi.json", "/v1/docs", "/static/")
DETAIL = {
    "overloaded": "The server is at its limit for this kind of call; nothing was done. "
    "Try again after the time in Retry-After.",
    "shutting_down": "The server is stopping; nothing was done. Try again after the time in "
    "Retry-After (another server, or this one restarted).",
}
RETRY_AFTER = {"overloaded": 1, "shutting_down": 5}


def _setting(name: str, default: int, low: int, high: int) -> int:
    raw = settings.text(name).strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InputError(
            f"{name} must be a whole number from {low} to {high}.", code="bad_argument"
        )
    return value


@dataclass(frozen=True)
class Limits:
    """How many calls of each class run at once, how many wait, for how long; and how long a
    stopping server gives the calls it holds."""

    reads: int = 2
    writes: int = 4
    wait_ms: int = 250
    queue: int = 64  # places in each class's queue (a bound on memory, not on waiting)
    grace: int = 10  # seconds

    @classmethod
    def from_env(cls) -> Limits:
        """`CUSTODES_ADMIT_READS`, `_WRITES`, `_WAIT_MS`, `_QUEUE` and `CUSTODES_GRACE` (what
        `custodes serve` sets from its options), the defaults otherwise."""
        d = cls()
        return cls(
            reads=_setting("CUSTODES_ADMIT_READS", d.reads, 1, 1024),
            writes=_setting("CUSTODES_ADMIT_WRITES", d.writes, 1, 1024),
            wait_ms=_setting("CUSTODES_ADMIT_WAIT_MS", d.wait_ms, 0, 60_000),
            queue=_setting("CUSTODES_ADMIT_QUEUE", d.queue, 1, 100_000),
            grace=_setting("CUSTODES_GRACE", d.grace, 0, 3600),
        )

    @property
    def connections(self) -> int:
        """Store connections a server process keeps: one per admitted call, one for the job
        worker and one spare (the pool allows as many again as overflow, for the few services
        that hold two at once)."""
        return self.reads + self.writes + 2

    @property
    def threads(self) -> int:
        """Request threads needed: one per admitted call, and a few for the open routes."""
        return self.reads + self.writes + 4


class _Waiter:
    __slots__ = ("future", "key", "timer")

    def __init__(self, key: bytes, future: asyncio.Future[str | None]) -> None:
        self.key = key
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class Gate:
    """One class of calls: at most `limit` in flight, at most `capacity` waiting, each for at
    most `wait` seconds; a newcomer is refused at once when the calls ahead of it would take
    more than `target` seconds to clear (a tenth of `wait` by default). Used from the
    event loop's thread only (no locks needed)."""

    def __init__(self, limit: int, capacity: int, wait: float, target: float | None = None) -> None:
        self.limit = limit
        self.capacity = capacity
        self.wait = wait
        self.target = wait / 10 if target is None else target
        self.service: float | None = None  # running average of an admitted call's time
        self.busy = 0
        self.waiting = 0
        self.queues: OrderedDict[bytes, deque[_Waiter]] = OrderedDict()  # caller -> FIFO
        self.held: dict[bytes, int] = {}  # caller -> calls admitted and not ended
        self.draining = False
        self.admitted = 0
        self.refused = 0

    async def enter(self, key: bytes) -> str | None:
        """Wait for a slot: None once admitted (then `leave(key)` when done), else the code
        of the refusal."""
        if self.draining:
            return self._refuse("shutting_down")
        if self.busy < self.limit and not self.waiting:
            self._take(key)
            self.admitted += 1
            return None
        loop = asyncio.get_running_loop()
        if self.wait <= 0 or (self._full() and not self._make_room(key)):
            return self._refuse("overloaded")
        w = _Waiter(key, loop.create_future())
        self.queues.setdefault(key, deque()).append(w)
        self.waiting += 1
        w.timer = loop.call_later(self.wait, self._expire, w, "overloaded")
        try:
            code = await w.future
        except asyncio.CancelledError:
            fut = w.future
            if fut.done() and not fut.cancelled() and fut.result() is None:
                self.leave(key)  # admitted just as the call was cancelled: give it back
            else:
                self._remove(w)
            raise
        if code is None:
            self.admitted += 1
        return code

    def leave(self, key: bytes, took: float | None = None) -> None:
        """An admitted call of `key` ended (after `took` seconds): its slot goes to the
        waiting caller that holds the fewest, the callers taking turns among equals."""
        if took is not None:
            last = self.service
            self.service = took if last is None else last + (took - last) / 10
        self.busy -= 1
        left = self.held[key] - 1
        if left:
            self.held[key] = left
        else:
            del self.held[key]
        while self.busy < self.limit and self.queues:
            nxt = min(self.queues, key=lambda k: self.held.get(k, 0))  # first of the fewest
            q = self.queues.pop(nxt)
            w = q.popleft()
            self.waiting -= 1
            if q:
                self.queues[nxt] = q  # back of the line of callers
            if w.timer is not None:
                w.timer.cancel()
            if not w.future.done():
                self._take(nxt)
                w.future.set_result(None)

    def _take(self, key: bytes) -> None:
        self.busy += 1
        self.held[key] = self.held.get(key, 0) + 1

    def drain(self) -> None:
        """Refuse every waiting call and every later one (the server is stopping)."""
        self.draining = True
        for q in list(self.queues.values()):
            for w in list(q):
                self._expire(w, "shutting_down")

    def _refuse(self, code: str) -> str:
        self.refused += 1
        return code

    def _full(self) -> bool:
        """No room for a newcomer: the queue is at its bound, or it holds at least one call per
        slot and the calls ahead would take longer than `target` to clear at the rate calls
        have been ending (a running average of how long an admitted call takes, over the
        slots). Past the server's
        capacity the excess is thus refused in a millisecond, instead of after the whole
        wait, and the calls answered stay fast; a short stall at a low rate still waits."""
        if self.waiting >= self.capacity:
            return True
        if self.waiting < self.limit or self.service is None:
            return False  # one place per slot always: a slow class still queues a little
        return (self.waiting + 1) * self.service / self.limit > self.target

    def _share(self, key: bytes) -> int:
        """What a caller has of this class now: calls running and calls waiting."""
        return self.held.get(key, 0) + len(self.queues.get(key, ()))

    def _make_room(self, key: bytes) -> bool:
        """The queue is full: refuse the newest waiter of the caller with the largest share
        (running and waiting), if it has more than the newcomer would; True if room was
        made."""
        if not self.queues:
            return False
        largest = max(self.queues, key=self._share)
        if self._share(largest) <= self._share(key) + 1:
            return False
        self._expire(self.queues[largest][-1], "overloaded")
        return True

    def _expire(self, w: _Waiter, code: str) -> None:
        if w.future.done():
            return
        self._remove(w)
        self.refused += 1
        w.future.set_result(code)

    def _remove(self, w: _Waiter) -> None:
        if w.timer is not None:
            w.timer.cancel()
        q = self.queues.get(w.key)
        if q is not None and w in q:
            q.remove(w)
            self.waiting -= 1
            if not q:
                del self.queues[w.key]


class Admission:
    """The two gates of one server process."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        wait = limits.wait_ms / 1000
        self.reads = Gate(limits.reads, limits.queue, wait)
        self.writes = Gate(limits.writes, limits.queue, wait)
        self.stopping = False
        self.stopping_since: float | None = None

    def gate(self, method: str) -> Gate:
        return self.reads if method in READS else self.writes

    def drain(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.stopping_since = asyncio.get_running_loop().time()
        self.reads.drain()
        self.writes.drain()

    def grace_left(self) -> float:
        """Seconds left of the grace period since the server began to stop."""
        if self.stopping_since is None:
            return float(self.limits.grace)
        spent = asyncio.get_running_loop().time() - self.stopping_since
        return max(0.0, self.limits.grace - spent)


def _caller_key(scope: Scope) -> bytes:
    """Whose call this is, for fair shares: a hash of the credential it carries (never kept
    in clear, never logged); the client address for a call without one."""
    auth = cookie = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            auth = value
        elif name == b"cookie":
            cookie = value
    if auth:
        material = b"a:" + auth
    elif cookie:
        material = b"c:" + cookie
    else:
        client = scope.get("client") or ("", 0)
        material = b"h:" + str(client[0]).encode()
    return hashlib.sha256(material).digest()


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


async def _refuse(code: str, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"Retry-After": str(RETRY_AFTER[code])}
    if code == "shutting_down" or _has_body(scope):
        headers["Connection"] = "close"  # the body is not read: do not reuse the connection
    response = problem(503, code, REGISTRY[code].title, DETAIL[code], headers=headers)
    await response(scope, receive, send)


class AdmissionMiddleware:
    """ASGI middleware: admit each call through its class's gate, or refuse it (503)."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(OPEN):
            if self.admission.stopping and not scope["path"].startswith("/static/"):
                await _refuse("shutting_down", scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        gate = self.admission.gate(scope["method"])
        key = _caller_key(scope)
        code = await gate.enter(key)
        if code is not None:
            await _refuse(code, scope, receive, send)
            return
        started = asyncio.get_running_loop().time()
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave(key, asyncio.get_running_loop().time() - started)


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Run `callback` in the event loop as soon as SIGTERM or SIGINT arrives, then hand the
    signal to the handler already installed (uvicorn's, which stops accepting connections and
    waits up to the grace period for the calls in flight). Only in the main thread (a test
    client runs the application elsewhere and sends no signals). uvicorn puts its own handlers
    back when it has stopped, so nothing of this outlives the server.

    Hand-written because uvicorn tells the application nothing before its lifespan's shutdown,
    which comes only after every connection has closed: too late to refuse the calls waiting."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(callback)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        signal.signal(sig, handler)
