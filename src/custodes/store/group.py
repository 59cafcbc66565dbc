"""Group commit: many callers' small writes, made durable together in one transaction.

Each caller hands over a write (a function of a connection) and waits until the transaction
that holds it has committed; only then does it go on (a call is answered only once what it
recorded is durable). Whoever finds no commit under way leads: it takes every write waiting
at that moment, runs them in one transaction, commits once, and wakes their callers; writes
that arrive meanwhile wait for the next leader, who is one of them. With one caller at a time
this is exactly one transaction per write, with no added wait; with many, one commit (one
fsync, one pass through the ledger's compare-and-swap) serves them all — PostgreSQL's
`commit_delay` and Tessera's integration batching do the same. No thread of its own: the
leader is a caller. Hand-written because no library offers a leader/follower batch over a
SQLAlchemy connection; it is a condition variable and a list.

A write that fails fails its batch: the transaction is rolled back and every caller in it gets
the error (a batch is retried one write at a time first, so one bad write does not take the
others' down with it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from custodes import failpoints

Write = Callable[[Connection], None]


@dataclass
class _Entry:
    write: Write
    done: bool = False
    error: BaseException | None = None


class GroupCommit:
    """The writes of one engine's callers, committed in groups (one per engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cv = threading.Condition()
        self._waiting: list[_Entry] = []
        self._leading = False
        self.commits = 0  # transactions committed (for the benchmark's report)
        self.writes = 0

    def write(self, fn: Write) -> None:
        """Run `fn` in a transaction shared with other callers' writes; return once committed."""
        entry = _Entry(fn)
        with self._cv:
            self._waiting.append(entry)
            while not entry.done and self._leading:
                self._cv.wait()
            if entry.done:
                if entry.error is not None:
                    raise entry.error
                return
            # Every write waiting now (this one among them): as many as there are callers in
            # flight, which the server's admission control bounds.
            self._leading = True
            batch, self._waiting = self._waiting, []
        try:
            self._commit(batch)
        finally:
            with self._cv:
                for e in batch:
                    e.done = True
                self._leading = False
                self._cv.notify_all()
        if entry.error is not None:
            raise entry.error

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            with self.engine.begin() as conn:
                for e in batch:
                    e.write(conn)
                failpoints.hit("group_commit.before_commit")
            self.commits += 1
            self.writes += len(batch)
            return
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
        for e in batch:  # one bad write must not fail the others: one transaction each
            try:
                with self.engine.begin() as conn:
                    e.write(conn)
                self.commits += 1
                self.writes += 1
            except BaseException as exc:
                e.error = exc


_groups: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def of(engine: Engine) -> GroupCommit:
    """The group commit of an engine (one per engine, made on first use)."""
    with _groups_lock:
        found = _groups.get(engine)
        if found is None:
            found = _groups[engine] = GroupCommit(engine)
        return found
