"""The ledger as stored in the transactional store.

Appends run inside the caller's transaction, so a business event and its leaf commit or roll
back together. The tree state row is advanced by compare-and-swap: two concurrent appenders
can never both extend the same size, and signing uses a second compare-and-swap on the latest
checkpoint size so the log can never sign two views that are not consistent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from custodes import failpoints
from custodes.errors import ConflictError, fail
from custodes.ledger import event_types  # noqa: F401 - the declared types, registered
from custodes.ledger.events import Declared, Event, commitment, new_salts
from custodes.store.engine import bulk_insert, sqlite_time
from custodes.store.tables import (
    ledger_checkpoints,
    ledger_cosignatures,
    ledger_events,
    ledger_nodes,
    ledger_state,
)
from custodes.tlog.note import Checkpoint, Note, NoteSigner, Verifier
from custodes.tlog.tree import (
    CompactRange,
    Perfect,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    memory_perfect,
    range_hash,
    root,
    verify_consistency,
)

# Perfect-subtree hashes from this level up are stored; below it they are recomputed from at
# most 2^NODE_LEVEL leaves. Level 4 keeps the node table at 1/8 row per leaf.
NODE_LEVEL = 4


class LedgerError(ConflictError):
    code = "ledger"


@dataclass(frozen=True)
class TreeState:
    size: int
    frontier: CompactRange
    checkpoint_size: int | None

    @property
    def root(self) -> bytes:
        return self.frontier.root()


def state(conn: Connection, *, for_update: bool = False) -> TreeState:
    """The ledger's size, right border and last checkpoint. `for_update`: held until the
    caller's transaction ends, so no other appender, in this process or another, reads the
    same state (PostgreSQL: `SELECT … FOR UPDATE`; SQLite has no row locks, and Python's
    driver begins a transaction only at its first write: a write comes first, which takes the
    database's write lock (waiting for another writer, within the busy timeout) before the
    state is read — without it, two processes, a server and its job worker, read the same
    state and the second failed `ledger_conflict`)."""
    q = select(ledger_state).where(ledger_state.c.id == 1)
    if for_update and conn.dialect.name == "sqlite":
        conn.execute(update(ledger_state).where(ledger_state.c.id == 1).values(id=1))
    elif for_update:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        return TreeState(0, CompactRange(), None)
    try:
        frontier = CompactRange.from_bytes(row.size, row.frontier)
    except ValueError:  # a size and a right border that cannot go together: edited
        raise fail(
            "ledger_corrupt",
            "the ledger's state row is inconsistent (its size and its tree border disagree): "
            "it was edited (run 'custodes ledger verify')",
        ) from None
    return TreeState(row.size, frontier, row.checkpoint_size)


def append_one(
    conn: Connection,
    what: Declared,
    *,
    actor: str | None = None,
    request_id: str | None = None,
    record_id: str | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Append one event (what happened, by whom, about which opaque ids; when, if not now) in
    the caller's transaction, as `append` does; returns its index."""
    event = Event(what, actor=actor, request_id=request_id, record_id=record_id)
    if at is not None:
        event.at = at
    return append(conn, [event])[0]


def append(conn: Connection, events: Sequence[Event]) -> list[int]:
    """Append events as leaves in the caller's transaction; returns their indexes. Only events
    built from a declared type (event_types.py) are taken: anything else is a TypeError."""
    if not events:
        return []
    st = state(conn, for_update=True)
    cr = CompactRange(st.size, list(st.frontier.hashes))
    rows, nodes = [], []
    # The events of a batch mostly share a moment (a release's disclosures): each moment is
    # formatted once, for the body and for the column (bench/ledger.py).
    times: dict[dt.datetime, tuple[str, object]] = {}
    sqlite = conn.dialect.name == "sqlite"
    for ev, salt in zip(events, new_salts(len(events)), strict=True):
        if not isinstance(ev, Event):
            raise TypeError(
                f"the ledger appends Event(<a declared event type>, ...), not {type(ev).__name__}"
            )
        if type(ev) is not Event:  # Event.body() refuses an undeclared type; a subclass's may not
            ev.declared()
        t = times.get(ev.at)
        if t is None:
            t = times[ev.at] = (ev.time_text(), sqlite_time(ev.at) if sqlite else ev.at)
        body = ev.body(t[0])
        c = commitment(salt, body)
        idx = cr.size
        nodes.extend(cr.append(leaf_hash(c), NODE_LEVEL))
        # In the column order of ledger_events.
        rows.append(
            (idx, ev.type, t[1], ev.actor, ev.request_id, ev.record_id, body.decode(), salt, c)
        )
    # Claim the index range first (compare-and-swap), so a concurrent appender fails cleanly
    # here instead of colliding on event indexes.
    done = conn.execute(
        update(ledger_state)
        .where(ledger_state.c.id == 1, ledger_state.c.size == st.size)
        .values(size=cr.size, frontier=cr.to_bytes())
    )
    if done.rowcount != 1:
        raise ConflictError(
            "The ledger was extended concurrently; retry the action.", code="ledger_conflict"
        )
    try:
        bulk_insert(conn, ledger_events, rows)
        bulk_insert(conn, ledger_nodes, nodes)
    except DBIntegrityError:
        # Rows beyond the state the store says it has: put there behind the ledger's back.
        raise fail(
            "ledger_corrupt",
            f"the store already holds events or tree nodes from index {st.size} on, past the "
            "ledger's state: they were added behind its back (run 'custodes ledger verify')",
        ) from None
    failpoints.hit("ledger.append")
    return list(range(st.size, cr.size))


def _fetch(conn: Connection, keys: set[tuple[int, int]]) -> Perfect:
    """The given perfect subtrees, read in two queries: stored nodes, and the leaves below
    NODE_LEVEL from which the smaller subtrees are recomputed."""
    high = [k for k in keys if k[0] >= NODE_LEVEL]
    low = [k for k in keys if k[0] < NODE_LEVEL]
    found: dict[tuple[int, int], bytes] = {}
    # Plain SQL: every value inlined is an int this function computed, and building
    # SQLAlchemy expressions per proof cost more than the queries (bench/ledger.py).
    if high:
        by_level: dict[int, list[int]] = {}
        for lv, ix in high:
            by_level.setdefault(lv, []).append(ix)
        # One primary-key lookup per level (SQLite does not index row-value IN lists).
        cond = " OR ".join(
            f"(level = {int(lv)} AND idx IN ({','.join(map(str, map(int, ixs)))}))"
            for lv, ixs in by_level.items()
        )
        for lv, ix, h in conn.exec_driver_sql(
            f"SELECT level, idx, hash FROM ledger_nodes WHERE {cond}"
        ):
            found[(lv, ix)] = bytes(h)
    leaves: dict[int, bytes] = {}
    if low:
        wanted = sorted({i for lv, ix in low for i in range(ix << lv, (ix + 1) << lv)})
        for ix, c in conn.exec_driver_sql(
            f"SELECT idx, commitment FROM ledger_events WHERE idx IN ({','.join(map(str, wanted))})"
        ):
            leaves[ix] = leaf_hash(bytes(c))
    for lv, ix in low:
        lo, n = ix << lv, 1 << lv
        if any(i not in leaves for i in range(lo, lo + n)):
            raise fail("ledger_corrupt", f"the store lacks events in {lo}..{lo + n - 1}")
        found[(lv, ix)] = range_hash(memory_perfect([leaves[i] for i in range(lo, lo + n)]), 0, n)

    def perfect(level: int, index: int) -> bytes:
        try:
            return found[(level, index)]
        except KeyError:
            raise fail(
                "ledger_corrupt", f"the store lacks the tree node at level {level}, index {index}"
            ) from None

    return perfect


def subtrees(conn: Connection, keys: set[tuple[int, int]]) -> Perfect:
    """The given perfect subtrees (level, index), read from the store."""
    return _fetch(conn, keys)


def _from_store(conn: Connection, build: Callable[[Perfect], list[bytes]]) -> list[bytes]:
    """Run a proof builder twice: once to learn which subtrees it needs, once for real."""
    keys: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        keys.add((level, index))
        return bytes(32)

    try:
        build(record)
        return build(_fetch(conn, keys))
    except ProofError as exc:
        raise fail("bad_index", str(exc)) from None


def inclusion(conn: Connection, index: int, size: int | None = None) -> list[bytes]:
    size = state(conn).size if size is None else size
    return _from_store(conn, lambda p: inclusion_proof(p, index, size))


def root_at(conn: Connection, size: int) -> bytes:
    """The tree's root hash when it held `size` leaves."""
    return _from_store(conn, lambda p: [root(p, size)])[0]


def consistency(conn: Connection, old: int, new: int | None = None) -> list[bytes]:
    new = state(conn).size if new is None else new
    return _from_store(conn, lambda p: consistency_proof(p, old, new))


def latest_checkpoint(conn: Connection) -> tuple[Checkpoint, Note] | None:
    row = conn.execute(
        select(ledger_checkpoints).order_by(ledger_checkpoints.c.size.desc()).limit(1)
    ).first()
    if row is None:
        return None
    note = with_cosignatures(conn, row.size, Note.parse(row.note))
    return Checkpoint.parse_body(note.text), note


def with_cosignatures(conn: Connection, size: int, note: Note) -> Note:
    for line in conn.execute(
        select(ledger_cosignatures.c.line)
        .where(ledger_cosignatures.c.size == size)
        .order_by(ledger_cosignatures.c.witness)
    ).scalars():
        note.add(line)
    return note


def sign_checkpoint(conn: Connection, signer: NoteSigner, origin: str) -> tuple[Checkpoint, Note]:
    """Sign the current tree, only if it is consistent with the last signed checkpoint.

    Run in its own transaction. Re-signing an unchanged tree returns the existing checkpoint.
    """
    st = state(conn, for_update=True)
    last = latest_checkpoint(conn)
    cp = Checkpoint(origin, st.size, st.root)
    if last is not None:
        old, note = last
        if old.origin != origin:
            raise fail("origin_mismatch", f"the ledger's origin is {old.origin}, not {origin}")
        if old.size == st.size:
            if old.root != st.root:
                raise fail(
                    "ledger_corrupt",
                    "the tree no longer matches its last checkpoint: the "
                    "store was altered (run 'custodes ledger verify')",
                )
            return old, note
        if old.size > st.size:
            raise fail(
                "ledger_corrupt",
                "the tree is smaller than its last checkpoint: events were removed",
            )
        try:
            if old.size:
                verify_consistency(
                    old.size, st.size, old.root, st.root, consistency(conn, old.size, st.size)
                )
        except ProofError:
            raise fail(
                "ledger_corrupt",
                "the tree is not an extension of the last checkpoint: the store was altered",
            ) from None
    text = cp.body()
    note = Note.parse(text + "\n" + signer.sign(text.encode()))
    conn.execute(
        insert(ledger_checkpoints).values(
            size=cp.size, root=cp.root, note=note.render(), at=dt.datetime.now(dt.UTC)
        )
    )
    prev = None if last is None else last[0].size
    cond = (
        ledger_state.c.checkpoint_size.is_(None)
        if prev is None
        else ledger_state.c.checkpoint_size == prev
    )
    done = conn.execute(
        update(ledger_state).where(ledger_state.c.id == 1, cond).values(checkpoint_size=cp.size)
    )
    if done.rowcount != 1:
        raise ConflictError(
            "Another checkpoint was signed concurrently; retry.", code="ledger_conflict"
        )
    return cp, note


def add_cosignature(conn: Connection, size: int, witness: Verifier, line: str) -> None:
    """Store a witness's cosignature line after verifying it on our checkpoint."""
    row = conn.execute(
        select(ledger_checkpoints.c.note).where(ledger_checkpoints.c.size == size)
    ).scalar()
    if row is None:
        raise fail("bad_size", f"no checkpoint of size {size}")
    note = Note.parse(row)
    cosigned = Note(note.text)
    cosigned.add(line)
    if witness.name not in cosigned.verified_by([witness]):
        raise fail("bad_cosignature", f"the cosignature is not by {witness.name}")
    conn.execute(
        insert(ledger_cosignatures).values(
            size=size, witness=witness.name, line=line, at=dt.datetime.now(dt.UTC)
        )
    )


def count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(ledger_events)).scalar() or 0


__all__ = [
    "NODE_LEVEL",
    "Event",
    "LedgerError",
    "TreeState",
    "add_cosignature",
    "append",
    "consistency",
    "inclusion",
    "latest_checkpoint",
    "sign_checkpoint",
    "state",
]
