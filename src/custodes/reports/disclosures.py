"""The accounting of disclosures, the annual table for the Joint Committee on Taxation and one
person's accounting, each computed from the ledger's event bodies alone.

26 U.S.C. 6103(p)(3)(A) requires a standardized record of every disclosure; IRM 11.3.37 lists
what it holds (date, the request's date and reason, the authority, the recipient, the nature of
what was disclosed, the taxpayer). (p)(3)(C) requires the year's totals to be reported to the
Joint Committee; 5 U.S.C. 552a(c) gives the person an accounting, except disclosures to law
enforcement ((c)(3), (b)(7)).

A disclosure here is one `disclosure` event (one person, one request); the other events give
what it needs: `request.received` (when, periods, the reason's hash), `release.done` (the named
recipients), `disclosure.recalled`, `master.imported` (which master file it came from) and
`incident.closed` (a request later found improper).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from custodes.ledger.event_types import (
    Disclosure,
    DisclosureRecalled,
    IncidentClosed,
    MasterImported,
    ReleaseDone,
    RequestReceived,
    parse,
)
from custodes.reports.document import Document, Table
from custodes.reports.source import Entry

# A request that names more than this many people is a bulk disclosure of master-file data
# (a list matched by machine, as in 2025), as opposed to a disclosure about one case.
BULK_ITEMS = 100

ACCOUNTING_COLUMNS = [
    ("disclosed_on", "Date of disclosure"),
    ("request_id", "Request"),
    ("requested_on", "Date of request"),
    ("reason", "Reason for the request"),
    ("provision", "Provision"),
    ("subsection", "IRC 6103 subsection"),
    ("agency", "Recipient agency"),
    ("recipients", "Named recipients"),
    ("fields", "Information disclosed"),
    ("tax_periods", "Tax periods"),
    ("source", "Source"),
    ("record_id", "Taxpayer (record id)"),
    ("bulk", "Bulk"),
    ("item_id", "Item"),
    ("item_salt", "Item salt"),
    ("ledger_index", "Ledger index"),
    ("recall_id", "Recalled by"),
    ("recalled_on", "Recalled on"),
]

# What one request's disclosures share: shown once per request when the accounting is read
# (HTML, PDF), kept in every row of the data (CSV, JSON).
REQUEST_COLUMNS = (
    "requested_on",
    "reason",
    "provision",
    "subsection",
    "agency",
    "recipients",
    "fields",
    "tax_periods",
    "source",
    "bulk",
)

JCT_COLUMNS = [
    ("disclosure_to", "Disclosure To/For"),
    ("subsection", "IRC 6103 subsection"),
    ("bulk", "Bulk master-file data"),
    ("other", "Other disclosures"),
    ("total", "Total"),
]

PERSON_COLUMNS = [
    ("disclosed_on", "Date of disclosure"),
    ("agency", "Recipient agency"),
    ("subsection", "Authority (IRC 6103)"),
    ("fields", "Information disclosed"),
    ("request_id", "Request"),
    ("ledger_index", "Ledger index"),
    ("recalled_on", "Recalled on"),
]

PRIVACY_ACT_NOTE = (
    "Disclosures to law-enforcement agencies for an enforcement activity are withheld from "
    "this accounting, as 5 U.S.C. 552a(c)(3) permits for disclosures under 552a(b)(7)."
)


@functools.lru_cache(maxsize=1024)  # a handful of provisions, a million rows: one string each
def subsection(provision: str) -> str:
    """`irc-6103-i-2` -> `(i)(2)`; an id of another shape is shown as it is."""
    m = re.fullmatch(r"irc-6103-([a-z])((?:-[0-9a-z]+)*)", provision or "")
    if not m:
        return provision or ""
    return f"({m.group(1)})" + "".join(f"({p})" for p in m.group(2).split("-")[1:])


@dataclass
class Ledgered:
    """What the ledger says about disclosures, indexed for the reports."""

    # A list (from an export), or the store's disclosure events read in pages each time it is
    # iterated (`source.Paged`): a million disclosure bodies are never held at once.
    disclosures: Iterable[Entry]
    received: dict[str, tuple[str, RequestReceived]]  # request id -> (its time, its event)
    recipients: dict[str, list[str]]
    recalled: dict[tuple[str, str | None], Entry]
    improper: dict[str, str]  # request id -> incident id that found it improper
    masters: list[tuple[int, str]]  # (ledger index, master sha256) in order


def read(entries: Iterable[Entry], disclosures: Iterable[Entry] | None = None) -> Ledgered:
    """The events indexed; `disclosures`, when given, are the disclosure events read apart
    (and `entries` hold none)."""
    held: list[Entry] = []
    led = Ledgered(held if disclosures is None else disclosures, {}, {}, {}, {}, [])
    for e in entries:
        b = e.body
        if e.type == Disclosure.TYPE:
            held.append(e)
            continue
        what = parse(b)
        if isinstance(what, RequestReceived):
            led.received[b["request_id"]] = (b["time"], what)
        elif isinstance(what, ReleaseDone):
            led.recipients[b["request_id"]] = list(what.recipients or [])
        elif isinstance(what, DisclosureRecalled):
            led.recalled[(b["request_id"], item_of(b))] = e
        elif isinstance(what, MasterImported):
            sha = what.master_sha256
            led.masters.append((e.idx, "" if sha is None else str(sha)))
        elif isinstance(what, IncidentClosed) and what.finding == "improper" and e.request_id:
            led.improper[b["request_id"]] = what.incident_id or ""
    return led


def item_of(body: dict[str, Any]) -> str | None:
    """How a body names its item: the salted commitment (`item_sha256`); bodies written before
    ids were committed carry the agency's id itself (a key no declared type may carry now, so
    read from the body as it is; so is the hot loop's disclosure, see iter_rows)."""
    return body.get("item_sha256") or body.get("item_id")


def _source(led: Ledgered, idx: int) -> str:
    sha = ""
    for i, s in led.masters:
        if i > idx:
            break
        sha = s
    return f"master file {sha[:12]}" if sha else "master file"


def accounting_rows(
    led: Ledgered,
    *,
    year: int | None = None,
    agency: str | None = None,
    provision: str | None = None,
    record_id: str | None = None,
) -> list[dict[str, Any]]:
    return list(iter_rows(led, year=year, agency=agency, provision=provision, record_id=record_id))


def iter_rows(
    led: Ledgered,
    *,
    year: int | None = None,
    agency: str | None = None,
    provision: str | None = None,
    record_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The accounting's rows one at a time, as the disclosures are read. A disclosure's body is
    read by its keys, not parsed into `Disclosure`: a million rows, and the parse would cost
    as much as the JSON (docs/decisions/2026-12-06-typed-events.md); its keys are pinned by
    tests/test_docs_events.py."""
    for e in led.disclosures:
        b = e.body
        when = e.time
        if year is not None and when.year != year:
            continue
        if agency is not None and b.get("agency") != agency:
            continue
        if provision is not None and b.get("provision") != provision:
            continue
        if record_id is not None and b.get("record_id") != record_id:
            continue
        got = led.received.get(b["request_id"])
        req = got[1] if got else None
        recall = led.recalled.get((b["request_id"], item_of(b)))
        recalled = recall.as_(DisclosureRecalled) if recall else None
        yield (
            {
                "disclosed_on": when.date().isoformat(),
                "request_id": b["request_id"],
                "requested_on": got[0][:10] if got else None,
                "reason": None,  # the request's own words: filled in from the store
                "reason_sha256": req.reason_sha256 if req else None,
                "provision": b.get("provision"),
                "subsection": subsection(b.get("provision", "")),
                "agency": b.get("agency"),
                "recipients": led.recipients.get(b["request_id"], []),
                "fields": list(b.get("fields") or []),
                "tax_periods": list((req.taxable_periods if req else None) or []),
                "source": _source(led, e.idx),
                "record_id": b.get("record_id"),
                "bulk": int((req.items if req else None) or 0) > BULK_ITEMS,
                # The agency's id is not in the ledger: filled in from the store with the salt
                # that opens the body's commitment, which `verify` checks.
                "item_id": b.get("item_id"),
                "item_salt": None,
                "item_sha256": b.get("item_sha256"),
                "ledger_index": e.idx,
                "recall_id": recalled.recall_id if recalled else None,
                "recalled_on": recall.time.date().isoformat() if recall else None,
            }
        )


def accounting(
    led: Ledgered,
    *,
    year: int | None = None,
    agency: str | None = None,
    provision: str | None = None,
    with_tins: bool = False,
) -> Document:
    """The accounting; `with_tins` adds a TIN column for the authorised view, which the
    service fills after recording the inspection (the ledger never holds a TIN)."""
    rows = accounting_rows(led, year=year, agency=agency, provision=provision)
    columns = list(ACCOUNTING_COLUMNS)
    params: dict[str, Any] = {"year": year, "agency": agency, "provision": provision}
    if with_tins:
        at = [k for k, _ in columns].index("record_id") + 1
        columns.insert(at, ("tin", "TIN"))
        params["with_tins"] = True
    recalled = sum(1 for r in rows if r["recall_id"])
    return Document(
        "accounting",
        "Accounting of disclosures (26 U.S.C. 6103(p)(3)(A))",
        params,
        [
            Table(
                "Disclosures",
                columns,
                rows,
                group_by="request_id",
                group_columns=REQUEST_COLUMNS,
            )
        ],
        figures={
            "disclosures": len(rows),
            "requests": len({r["request_id"] for r in rows}),
            "taxpayers": len({r["record_id"] for r in rows}),
            "recalled": recalled,
            "bulk": sum(1 for r in rows if r["bulk"]),
        },
        notes=[
            "One row per disclosure of one person's information. Recalled disclosures stay in "
            "the accounting, marked with the recall.",
            "The taxpayer is shown by the custodes record id; the TIN only in an authorised "
            "view, which is an inspection.",
            f"Bulk: the request named more than {BULK_ITEMS:,} people.",
            "Item: the requesting agency's id for the person, which the ledger holds only as a "
            "salted commitment; SHA-256('custodes/item/v1\\n' || item salt || item) is the "
            "commitment in the disclosure's ledger event.",
        ],
    )


@dataclass
class _JctCounts:
    """What one pass over the year's disclosure rows counts (a year's million rows are never
    held): per (recipient, subsection) group, and the distinct requests and taxpayers."""

    groups: dict[tuple[str, str], dict[str, Any]]
    request_ids: set[str]
    record_ids: set[Any]
    n: int


def _jct_count(led: Ledgered, year: int) -> _JctCounts:
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"bulk": 0, "other": 0, "total": 0, "recalled": 0, "improper": 0}
    )
    # Counted as the rows are read (a year's million rows are never held).
    request_ids: set[str] = set()
    record_ids: set[Any] = set()
    n = 0
    for r in iter_rows(led, year=year):
        n += 1
        request_ids.add(r["request_id"])
        record_ids.add(r["record_id"])
        g = groups[(r["agency"] or "", r["subsection"])]
        g["bulk" if r["bulk"] else "other"] += 1
        g["total"] += 1
        g["recalled"] += bool(r["recall_id"])
        g["improper"] += r["request_id"] in led.improper
    return _JctCounts(groups, request_ids, record_ids, n)


def _jct_table(
    groups: dict[tuple[str, str], dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The table's rows, one per group in order, each marked with its footnotes' numbers, and
    the footnotes (recalls, disclosures later found improper)."""
    table_rows = []
    notes = []
    for (to, sub), g in sorted(groups.items()):
        marks = []
        if g["recalled"]:
            notes.append(
                f"{to} {sub}: {g['recalled']:,} of these disclosures were recalled as improper "
                "(the recipient was told to return or destroy them)."
            )
            marks.append(len(notes))
        if g["improper"]:
            notes.append(
                f"{to} {sub}: {g['improper']:,} of these disclosures answered a request that an "
                "incident's finding later declared improper."
            )
            marks.append(len(notes))
        table_rows.append(
            {
                "disclosure_to": to + "".join(f" [{m}]" for m in marks),
                "subsection": sub,
                "bulk": g["bulk"],
                "other": g["other"],
                "total": g["total"],
            }
        )
    return table_rows, notes


def _jct_total(table_rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "disclosure_to": "Total",
        "subsection": "",
        "bulk": sum(r["bulk"] for r in table_rows),
        "other": sum(r["other"] for r in table_rows),
        "total": sum(r["total"] for r in table_rows),
    }


def _jct_figures(led: Ledgered, c: _JctCounts) -> dict[str, int]:
    """The counts the statute also names; purposes are the distinct reasons (by their hash)."""
    reasons = {
        (rr[1].reason_sha256 if (rr := led.received.get(rid)) else None) or rid
        for rid in c.request_ids
    }
    return {
        "disclosures": c.n,
        "requests": len(c.request_ids),
        "taxpayers": len(c.record_ids),
        "purposes": len(reasons),
        "recalled": sum(g["recalled"] for g in c.groups.values()),
        "improper": sum(g["improper"] for g in c.groups.values()),
    }


def jct(led: Ledgered, *, year: int, office: str | None = None) -> Document:
    """The year's volume of disclosures in the published layout, plus the counts the statute
    also names, with footnotes for recalls and disclosures later found improper. `office`: the
    office that issues the report (named on it, and kept in its parameters so that `report
    verify` recomputes the same document)."""
    counts = _jct_count(led, year)
    table_rows, notes = _jct_table(counts.groups)
    return Document(
        "jct",
        f"Volume of disclosures required to be accounted for pursuant to 26 USC 6103(p)(3)(A), "
        f"calendar year {year}",
        {"year": year, **({"office": office} if office else {})},
        [Table("Disclosures", JCT_COLUMNS, table_rows, _jct_total(table_rows))],
        figures=_jct_figures(led, counts),
        notes=[
            f"Issued by: {office}."
            if office
            else "Issuing office: not named (see 'custodes report jct --office').",
            *notes,
            f"Bulk master-file data: disclosures answering a request that named more than "
            f"{BULK_ITEMS:,} people.",
            "Purposes: distinct reasons stated in the requests (compared by their hash).",
        ],
    )


def person(
    led: Ledgered, record_id: str, *, withheld_provisions: set[str], privacy_act: bool
) -> Document:
    """Every disclosure of one person's information; the Privacy Act view leaves out the
    disclosures to law enforcement and says so."""
    rows = accounting_rows(led, record_id=record_id)
    notes = []
    if privacy_act:
        rows = [r for r in rows if r["provision"] not in withheld_provisions]
        notes.append(PRIVACY_ACT_NOTE)
    else:
        notes.append(
            "Full accounting for the agency's own use; the person concerned receives the "
            "Privacy Act view, which withholds disclosures to law enforcement (5 U.S.C. "
            "552a(c)(3))."
        )
    return Document(
        "person",
        "Accounting of disclosures of one person's information",
        {"record_id": record_id, "view": "privacy_act" if privacy_act else "full"},
        [Table("Disclosures", PERSON_COLUMNS, rows)],
        figures={"disclosures": len(rows)},
        notes=notes,
    )
