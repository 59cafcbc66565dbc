"""What the business tables' audit (`integrity`) reports, and how it reads the ledger: the
findings (the first few problems per check, and what was checked), the event bodies by type,
and the comparison of rows with the events that recorded them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select

from custodes.store.tables import ledger_events

MAX_PER_CHECK = 5
# Event bodies by type (`read_events`).
Events = dict[str, list[dict[str, Any]]]


class Findings:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked: list[str] = []
        self._per: dict[str, int] = defaultdict(int)

    def fail(self, table: str, message: str) -> None:
        self._per[table] += 1
        if self._per[table] <= MAX_PER_CHECK:
            self.problems.append(f"{table}: {message}")

    def ok(self, table: str, message: str) -> None:
        if not self._per[table]:
            self.checked.append(message)


def read_events(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Every event body by its type — the type the body itself says (committed to by its
    leaf), not the `type` column beside it, which is a copy for lookups that a store writer
    can change without touching the tree (the tamper campaign did, and crashed this audit)."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rows = conn.execution_options(yield_per=10_000).execute(
        select(ledger_events.c.idx, ledger_events.c.body).order_by(ledger_events.c.idx)
    )
    for idx, body in rows:
        doc = json.loads(body)
        by_type[str(doc.get("type"))].append(doc | {"_idx": idx})
    return by_type


def diff(
    found: Findings,
    table: str,
    rows: dict[Any, tuple[Any, ...]],
    events: dict[Any, tuple[Any, ...]],
    what: str,
) -> None:
    """Rows and events keyed alike, each with the values that must agree."""
    for key in sorted(rows.keys() - events.keys(), key=str):
        found.fail(table, f"row {key} has no {what} event (added or altered behind the ledger)")
    for key in sorted(events.keys() - rows.keys(), key=str):
        found.fail(table, f"the ledger's {what} event for {key} has no row (the row was deleted)")
    for key in sorted(rows.keys() & events.keys(), key=str):
        if rows[key] != events[key]:
            found.fail(table, f"row {key} says {rows[key]}, its {what} event says {events[key]}")
    found.ok(table, f"{len(rows)} {table} rows agree with their {what} events")


def last(items: Iterator[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in items:
        out[key] = value
    return out
