"""The ledger's event bodies, as the reports read them: from the workspace's store, or from
an export with bodies (`custodes ledger export --bodies`) that an outsider holds.

Reports are computed from these bodies and nothing else (apart from a request's own words, such
as its reason, which the ledger holds as a hash), so that the same function recomputes a report
from an export and every figure can be checked.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from custodes.errors import InputError
from custodes.ledger import event_types as et
from custodes.ledger.event_types import Declared, parse_as
from custodes.store.tables import ledger_events
from custodes.tlog.note import NoteError, unb64
from custodes.workspace import Workspace

# The event types the reports read; everything else (access rows, files, users) is skipped
# when reading from the store, so a year of access events costs nothing here.
REPORTED = tuple(
    c.TYPE
    for c in (
        et.RequestReceived,
        et.Disclosure,
        et.ReleaseDone,
        et.DisclosureRecalled,
        et.RecallCertified,
        et.RecallAcknowledged,
        et.MasterImported,
        et.IncidentOpened,
        et.IncidentReported,
        et.IncidentClosed,
        et.ReportGenerated,
    )
)


T = TypeVar("T", bound=Declared)


@dataclass(frozen=True)
class Entry:
    idx: int
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body.get("type"))

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.body["time"])

    @property
    def request_id(self) -> Any:
        return self.body.get("request_id")

    @property
    def actor(self) -> Any:
        return self.body.get("actor")

    def as_(self, cls: builtins.type[T]) -> T | None:
        """The body as its declared type `cls` (None when it is of another type); a key an
        older version did not write reads as the field's default or None."""
        return parse_as(cls, self.body)


def from_store(
    ws: Workspace, *, before: int | None = None, request_id: str | None = None
) -> list[Entry]:
    """The reported events of the workspace's ledger (those before index `before`), or every
    event about one request."""
    q = select(ledger_events.c.idx, ledger_events.c.body).order_by(ledger_events.c.idx)
    if request_id is not None:
        q = q.where(ledger_events.c.request_id == request_id)
    else:
        q = q.where(ledger_events.c.type.in_(REPORTED))
    if before is not None:
        q = q.where(ledger_events.c.idx < before)
    with ws.engine.connect() as conn:
        return [Entry(r.idx, json.loads(r.body)) for r in conn.execute(q)]


# Rows fetched from the store at a time when a report streams its events.
PAGE = 20_000


class Paged:
    """The store's events of `types` below index `before`, in ledger order, read and parsed a
    page at a time each time it is iterated: a report streams a million disclosures through
    this without holding their bodies (a server-side cursor on PostgreSQL; SQLite's cursor
    steps through the rows as they are fetched)."""

    def __init__(self, ws: Workspace, types: Sequence[str], before: int | None) -> None:
        self.ws, self.types, self.before = ws, tuple(types), before

    def __iter__(self) -> Iterator[Entry]:
        q = (
            select(ledger_events.c.idx, ledger_events.c.body)
            .where(ledger_events.c.type.in_(self.types))
            .order_by(ledger_events.c.idx)
        )
        if self.before is not None:
            q = q.where(ledger_events.c.idx < self.before)
        loads = json.loads
        with self.ws.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(q)
            for page in result.partitions():
                yield from (Entry(idx, loads(body)) for idx, body in page)


def split_from_store(ws: Workspace, *, before: int | None) -> tuple[list[Entry], Paged]:
    """The reported events other than disclosures (a few per request: held), and the
    disclosures themselves (one per person disclosed: streamed, see `Paged`)."""
    others = list(Paged(ws, [t for t in REPORTED if t != "disclosure"], before))
    return others, Paged(ws, ["disclosure"], before)


def first_time(ws: Workspace, *, before: int | None) -> dt.datetime | None:
    """The time of the ledger's first reported event (None when there is none)."""
    q = (
        select(ledger_events.c.body)
        .where(ledger_events.c.type.in_(REPORTED))
        .order_by(ledger_events.c.idx)
        .limit(1)
    )
    if before is not None:
        q = q.where(ledger_events.c.idx < before)
    with ws.engine.connect() as conn:
        body = conn.execute(q).scalar()
    return None if body is None else Entry(0, json.loads(body)).time


def from_export(folder: Path) -> list[Entry]:
    """The reported events of an export's `bodies.jsonl` (an export made with bodies)."""
    path = folder / "bodies.jsonl"
    if not path.is_file():
        raise InputError(
            f"{folder}: no bodies.jsonl; a report is recomputed from an export with event "
            "bodies ('custodes ledger export DIR --bodies', auditors only).",
            code="no_bodies",
        )
    out = []
    for lineno, line in enumerate(_lines(path), start=1):
        try:
            d = json.loads(line)
            unb64(d["salt"], "salt")
            body = json.loads(d["body"])
            idx = int(d["idx"])
        except (ValueError, KeyError, TypeError, NoteError):
            raise InputError(
                f"bodies.jsonl:{lineno}: not an event body line.", code="bad_export"
            ) from None
        if body.get("type") in REPORTED:
            out.append(Entry(idx, body))
    return sorted(out, key=lambda e: e.idx)


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line
