"""Anchors: every store row that confers authority or scope is committed to by a ledger event.

Whoever can write the store (a DBA, a restored backup) can insert a session, widen a grant or
move a request to another agency, and can append rows to the ledger table too. So the
commitment an `anchor` event carries is keyed by a secret that is *not* in the store: the
workspace's secrets key (``keys/secrets.key``, from which the item key and the console's
anti-forgery key are derived as well). The anchor key is HMAC(secrets key,
"custodes/anchor-key/v1"), and

- ``commit`` = HMAC(anchor key, canonical JSON of {table, the event's own ledger index, every
  committed column of the row}): nobody without the key can make one for an edited row, and
  an old event replayed at another index does not match (its index is inside the MAC);
- ``row`` = HMAC(anchor key, table and primary key): an opaque reference that groups a row's
  events (the body names no person and no credential);
- the row's ``anchor`` column holds the index of its latest event (row -> event), and the
  latest event for a ``row`` reference must be the one the row names (event -> row), so a row
  rolled back to an older state, or deleted, is reported by the store audit.

A deletion is an event too (``gone``, with its own keyed commitment), so a row custodes deleted
is not reported missing, and a row deleted outside custodes is. The door checks one row with
one keyed hash and one lookup of its event by index, the first time (`check`); the store audit
walks every anchored table (`Audit`). Columns that change in normal use without conferring
anything are left out of the commitment, each with its reason (`MUTABLE`; docs/security.md
lists them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, and_, delete, select, update
from sqlalchemy import insert as sql_insert
from sqlalchemy.engine import Row

from custodes.errors import AccessDenied, WorkspaceError
from custodes.ledger import log
from custodes.ledger.event_types import Anchor, AnchorAdopted, parse_as
from custodes.ledger.events import Event
from custodes.store.tables import (
    agencies,
    agreements,
    enrolments,
    grants,
    incidents,
    ledger_events,
    officials,
    policy,
    requests,
    ruleset_changes,
    sensitive_records,
    sessions,
    users,
)
from custodes.workspace import secrets_key_of

EVENT = Anchor.TYPE
COLUMN = "anchor"

# Every anchored table. Their rows are written only through `insert`, `update` and `delete`
# below (or stamped with `stamp` right after a write), which append the anchoring events.
TABLES: dict[str, Table] = {
    str(t.name): t
    for t in (
        sessions,
        users,
        grants,
        enrolments,
        policy,
        agencies,
        officials,
        agreements,
        ruleset_changes,
        requests,
        sensitive_records,
        incidents,
    )
}

# Columns left out of the commitment: they change in normal use, and what they govern is
# checked another way. Keep docs/security.md ("Rows anchored in the ledger") in step.
MUTABLE: dict[str, dict[str, str]] = {
    "sessions": {
        "last_used_at": "touched by every call (the inactivity timeout); moving it back only "
        "ends a session sooner, moving it forward keeps alive a session whose token the "
        "writer would still need",
    },
    "users": {
        "totp_last_step": "advanced by every sign-in with a one-time code; rolling it back "
        "re-opens a code only within its 90-second window, and only to someone who also "
        "holds the password and the code",
    },
    "requests": {
        "state": "moves at every step of the lifecycle; each step is its own ledger event "
        "(request.*), and a release needs its prepared and approved rows and their events",
    },
}


class AuthorityTampered(AccessDenied):
    """A row that confers authority does not match the ledger event that anchors it."""

    code = "authority_tampered"


def _committed(table: Table) -> list[str]:
    skip = MUTABLE.get(table.name, {})
    return [str(c.name) for c in table.columns if c.name != COLUMN and c.name not in skip]


_COMMITTED = {name: _committed(t) for name, t in TABLES.items()}
_PK = {name: [str(c.name) for c in t.primary_key.columns] for name, t in TABLES.items()}


# --- the key --------------------------------------------------------------------------------

_KEYS: dict[tuple[str, int, int], bytes] = {}


def key(conn: Connection) -> bytes:
    """The anchor key of the workspace whose store `conn` is on (derived from the secrets key,
    read again only when the key file changes)."""
    return key_of(conn.engine)


def key_of(engine: Engine) -> bytes:
    """The anchor key of the workspace whose store `engine` opens (`key`)."""
    path = secrets_key_of(engine)
    try:
        st = path.stat() if path is not None else None
    except OSError:
        st = None
    if path is None or st is None:
        raise WorkspaceError(
            "No secrets key for this store: run 'custodes init' on the workspace.",
            code="no_secrets_key",
        )
    at = (str(path), st.st_mtime_ns, st.st_size)
    found = _KEYS.get(at)
    if found is None:
        secret = path.read_bytes().strip()
        found = hmac.new(secret, b"custodes/anchor-key/v1", hashlib.sha256).digest()
        _KEYS[at] = found
    return found


def _value(v: Any) -> Any:
    """One column's value in canonical form (the same from SQLite and from PostgreSQL)."""
    if isinstance(v, dt.datetime):
        v = v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)
        return v.isoformat(timespec="microseconds")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bytes | memoryview):
        return bytes(v).hex()
    return v


def _mac(k: bytes, doc: dict[str, Any]) -> str:
    return hmac.new(
        k, b"custodes/anchor/v1\n" + orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), hashlib.sha256
    ).hexdigest()


def ref(k: bytes, table: str, row: Any) -> str:
    """The opaque reference of a row (table and primary key) that its events carry."""
    pk = [_value(getattr(row, c)) for c in _PK[table]]
    return _mac(k, {"t": table, "pk": pk})


def commit(k: bytes, table: str, idx: int, row: Any) -> str:
    return _mac(
        k, {"t": table, "i": idx, "r": {c: _value(getattr(row, c)) for c in _COMMITTED[table]}}
    )


def value_commit(k: bytes, table: str, pk: Sequence[Any], column: str, value: Any) -> str | None:
    """A keyed commitment to one value of a row that stays out of the ledger's plain text (free
    text that may name a person: an inspection's purpose, a transition's reason) or that is
    not in the ledger at all (an idempotent answer): an event or the row carries it, the store
    audit or the use compares. None for no value, so a value put in where there was none
    differs too."""
    if value is None:
        return None
    return _mac(k, {"t": table, "pk": [_value(p) for p in pk], "c": column, "v": _value(value)})


def gone_commit(k: bytes, table: str, idx: int, reference: str) -> str:
    return _mac(k, {"t": table, "i": idx, "gone": reference})


# --- writing --------------------------------------------------------------------------------


def _pk_clause(table: Table, pk: Sequence[Any]) -> Any:
    return and_(*(table.c[c] == v for c, v in zip(_PK[table.name], pk, strict=True)))


def _append(conn: Connection, actor: str, docs: list[tuple[str, Any, bool]]) -> list[int]:
    """Append one anchor event per (table, row, gone), each committing to its own index."""
    if not docs:
        return []
    k = key(conn)
    first = log.state(conn, for_update=True).size
    events = []
    for i, (table, row, gone) in enumerate(docs):
        r = ref(k, table, row)
        if gone:
            what = Anchor(table=table, row=r, gone=True, commit=gone_commit(k, table, first + i, r))
        else:
            what = Anchor(table=table, row=r, commit=commit(k, table, first + i, row))
        events.append(Event(what, actor=actor))
    got = log.append(conn, events)
    if got != list(range(first, first + len(docs))):  # pragma: no cover - the state row is held
        raise log.LedgerError(
            "The ledger was extended concurrently; retry.", code="ledger_conflict"
        )
    return got


def stamp(conn: Connection, actor: str, table: Table, pks: Iterable[Sequence[Any]]) -> None:
    """Anchor the current state of these rows (by primary key), in the caller's transaction."""
    rows = []
    for pk in dict.fromkeys(tuple(p) for p in pks):
        row = conn.execute(select(table).where(_pk_clause(table, pk))).first()
        if row is not None:
            rows.append((pk, row))
    idxs = _append(conn, actor, [(table.name, row, False) for _, row in rows])
    for (pk, _), idx in zip(rows, idxs, strict=True):
        conn.execute(update(table).where(_pk_clause(table, pk)).values({COLUMN: idx}))


def insert(conn: Connection, actor: str, table: Table, **values: Any) -> tuple[Any, ...]:
    """Insert one row and anchor it; returns its primary key."""
    key = conn.execute(sql_insert(table).values(**values)).inserted_primary_key
    assert key is not None  # an insert of one row has its key
    pk = tuple(key)
    stamp(conn, actor, table, [pk])
    return pk


def update_rows(conn: Connection, actor: str, table: Table, where: Any, **values: Any) -> int:
    """Update the rows `where` selects and anchor their new state; returns how many."""
    pk_cols = [table.c[c] for c in _PK[table.name]]
    done = conn.execute(update(table).where(where).values(**values).returning(*pk_cols)).all()
    stamp(conn, actor, table, [tuple(r) for r in done])
    return len(done)


def delete_rows(conn: Connection, actor: str, table: Table, where: Any) -> int:
    """Delete the rows `where` selects, each deletion an anchoring event; returns how many."""
    rows = conn.execute(select(table).where(where)).all()
    if rows:
        _append(conn, actor, [(table.name, row, True) for row in rows])
        for row in rows:
            pk = [getattr(row, c) for c in _PK[table.name]]
            conn.execute(delete(table).where(_pk_clause(table, pk)))
    return len(rows)


# --- checking where authority is used ------------------------------------------------------


def refusal(table: str) -> AuthorityTampered:
    return AuthorityTampered(
        f"A {table} row this call relies on does not match the ledger event that anchors it: "
        "it was written outside custodes. Nothing was done; an administrator runs "
        "'custodes ledger verify' to find it.",
        code="authority_tampered",
    )


def _committed_by(body: str | None, table: str) -> str | None:
    """The commitment an anchoring event's body carries for a row of `table` (None if the body
    is not such an event)."""
    if body is None:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    a = parse_as(Anchor, doc)
    ok = a is not None and a.table == table and not a.gone
    c = a.commit if a is not None else None
    return c if ok and isinstance(c, str) else None


# Commitments of events already matched by this process, by (anchor key, table, index): an
# event is never rewritten by custodes, so a match once read needs no second lookup (the row is
# still hashed at every check). Only matches are kept, and a row that differs from what is kept
# is looked up again (a copy of the workspace, or a restored store, shares the key but not the
# events after the copy): the remembered match only ever saves a lookup. Bounded.
_MATCHED: dict[tuple[bytes, str, int], str] = {}
_MATCHED_MAX = 100_000


def check(conn: Connection, checks: Sequence[tuple[Table, Any]]) -> None:
    """Refuse (`authority_tampered`) unless each (table, full row) matches its anchoring
    event: one keyed hash per row, and one lookup of the events by index for those this
    process has not matched before."""
    if not checks:
        return
    k = key(conn)
    todo = []
    for table, row in checks:
        idx = getattr(row, COLUMN)
        if idx is None:
            raise refusal(table.name)
        mine = commit(k, table.name, idx, row)
        known = _MATCHED.get((k, table.name, idx))
        if known is None or not hmac.compare_digest(known, mine):
            todo.append((table.name, idx, mine))  # never matched here, or not this: look
    if not todo:
        return
    bodies = dict(
        conn.execute(
            select(ledger_events.c.idx, ledger_events.c.body).where(
                ledger_events.c.idx.in_([idx for _, idx, _ in todo])
            )
        ).all()
    )
    for name, idx, mine in todo:
        theirs = _committed_by(bodies.get(idx), name)
        if theirs is None or not hmac.compare_digest(theirs, mine):
            raise refusal(name)
        if len(_MATCHED) >= _MATCHED_MAX:
            _MATCHED.clear()
        _MATCHED[(k, name, idx)] = mine


def check_one(conn: Connection, table: Table, row: Any) -> None:
    check(conn, [(table, row)])


# --- the store audit ------------------------------------------------------------------------


@dataclass
class Audit:
    """Fed every ledger event in order (`add`), then checks every anchored table (`run`):
    each row carries its latest anchoring event and matches it; no anchored row is missing;
    every deletion was custodes's own."""

    latest: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def add(self, idx: int, type_: str, body: str) -> None:
        if type_ != EVENT:
            return
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # the ledger's own audit reports an edited body
        self.latest[(doc.get("table", ""), doc.get("row", ""))] = (idx, doc)

    def run(self, conn: Connection) -> tuple[list[str], int]:
        """Problems (the first differing row of each table, by table and primary key, and how
        many more), and how many rows were checked."""
        k = key(conn)
        problems: list[str] = []
        checked = 0
        seen: set[tuple[str, str]] = set()
        for name, table in TABLES.items():
            first: str | None = None
            bad = 0
            pk_cols = [table.c[c] for c in _PK[name]]
            for row in conn.execute(select(table).order_by(*pk_cols)):
                checked += 1
                r = ref(k, name, row)
                seen.add((name, r))
                why = self._row_problem(k, name, r, row)
                if why:
                    bad += 1
                    if first is None:
                        pk = ", ".join(f"{c}={getattr(row, c)}" for c in _PK[name])
                        first = f"{name} row ({pk}): {why}"
            for (t, r), (idx, doc) in self.latest.items():
                if t != name or (t, r) in seen:
                    continue
                if doc.get("gone"):
                    if not hmac.compare_digest(
                        str(doc.get("commit", "")), gone_commit(k, name, idx, r)
                    ):
                        bad += 1
                        first = first or (
                            f"{name}: event {idx} records a deletion custodes did not make"
                        )
                    continue
                bad += 1
                first = first or (
                    f"{name}: the row anchored by event {idx} is missing (deleted outside custodes)"
                )
            if first:
                more = f" ({bad - 1} more rows of {name} differ)" if bad > 1 else ""
                problems.append(first + more)
        for t, _ in self.latest:
            if t not in TABLES:
                problems.append(f"an anchor event names table '{t}', which custodes does not keep")
                break
        return problems, checked

    def _row_problem(self, k: bytes, name: str, r: str, row: Row[Any]) -> str | None:
        idx = getattr(row, COLUMN)
        if idx is None:
            return "not anchored in the ledger (written outside custodes)"
        last = self.latest.get((name, r))
        if last is None:
            return f"its anchor, event {idx}, is not an anchoring event of this row"
        if last[0] != idx:
            return (
                f"it names event {idx}, but its latest anchoring event is {last[0]} "
                "(rolled back, or copied from another row)"
            )
        if last[1].get("gone"):
            return f"event {idx} recorded its deletion (put back outside custodes)"
        c = commit(k, name, idx, row)
        if not hmac.compare_digest(str(last[1].get("commit", "")), c):
            return f"it differs from what event {idx} committed (edited outside custodes)"
        return None


# --- rows made before anchoring existed --------------------------------------------------------

ADOPTED_BY = "migration-0017"
FIRST_ANCHORED_REVISION = "0017"


def adopt(conn: Connection) -> dict[str, int]:
    """Anchor every row the store holds that no event anchors yet, once: run by 'custodes
    init' in the upgrade that adds the anchors (from a revision before 0017), never later, so
    a row inserted afterwards outside custodes is never adopted. Trusts the store as it is at
    that moment (run 'custodes ledger verify' before upgrading); recorded as one
    `anchor.adopted` event with the counts, after the rows' own anchoring events."""
    counts: dict[str, int] = {}
    for name, table in TABLES.items():
        pk_cols = [table.c[c] for c in _PK[name]]
        pks = [
            tuple(r)
            for r in conn.execute(
                select(*pk_cols).where(table.c[COLUMN].is_(None)).order_by(*pk_cols)
            )
        ]
        stamp(conn, ADOPTED_BY, table, pks)
        counts[name] = len(pks)
    log.append_one(conn, AnchorAdopted(rows=counts), actor=ADOPTED_BY)
    return counts
