"""Reports the law requires, computed from the ledger: the accounting of disclosures, the annual
table for the Joint Committee on Taxation, one person's accounting, the request report, recalls,
safeguards evidence; incidents and their 24-hour clock; and checking a report file against an
exported ledger (no caller: anyone holding the export may check)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from custodes import settings
from custodes.access import CheckedCall, enter, service
from custodes.decisions.pipeline import checked
from custodes.errors import InputError
from custodes.reports import disclosures as disc
from custodes.reports import incidents as inc
from custodes.reports import oversight, produce
from custodes.reports.document import Document, Table
from custodes.reports.request import request_report
from custodes.reports.source import Entry, first_time, from_store
from custodes.rules.active import in_force


def _this_year() -> int:
    return dt.datetime.now(dt.UTC).year


def _year(year: int | None, entries: list[Entry] | dt.datetime | None) -> int | None:
    """A report's year: refused when the ledger cannot hold it (before its first reported
    event, or in the future), instead of answering with an empty table. `entries`: the
    reported events, or the first one's time."""
    if year is None:
        return None
    this = _this_year()
    if isinstance(entries, list):
        entries = entries[0].time if entries else None
    first = entries.year if entries else this
    if not first <= year <= this:
        raise InputError(
            f"No report for {year}: this ledger holds events from {first} to {this}.",
            code="bad_year",
        )
    return year


@service("reports.read")
def accounting(
    call: CheckedCall,
    *,
    year: int | None = None,
    agency: str | None = None,
    provision: str | None = None,
    out: Path | None = None,
    fmt: str | None = None,
    tins_for: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One row per disclosure (IRM 11.3.37's elements), recalled ones marked. `tins_for`
    (purpose, reference) asks for the authorised view with each row's TIN: an inspection of
    every record in it, recorded, and open only to the roles that may inspect a person's
    accounting."""
    if out is not None:  # a bad output name is refused before any inspection is recorded
        produce.target(out)
    if tins_for is not None:  # the door decides (and records) this part too
        call = enter(call.ws, call.caller, "reports.person")
    size, led = produce.streamed(call.ws)
    year = _year(year, first_time(call.ws, before=size))
    with produce.no_gc_pauses():
        doc = produce.compute(
            "accounting",
            {"year": year, "agency": agency, "provision": provision, "with_tins": bool(tins_for)},
            led,
        )
    doc.ledger_size = size
    # Refused before any TIN is looked up (and before the inspection is recorded).
    produce.pdf_fits(doc, produce.target(out) if out is not None else produce.kind_of(fmt))
    if tins_for is not None:
        doc = produce.with_tins(call, doc, purpose=tins_for[0], reference=tins_for[1])
    with produce.no_gc_pauses():
        doc = produce.with_items(call.ws, produce.with_reasons(call.ws, doc))
    return produce.write(call, doc, out, fmt=fmt)


@service("reports.read")
def jct(
    call: CheckedCall,
    *,
    year: int | None = None,
    office: str | None = None,
    out: Path | None = None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """The year's disclosures in the Joint Committee's published layout, with footnotes;
    `office` names the issuing office (else $CUSTODES_ISSUING_OFFICE, else none is named)."""
    size, led = produce.streamed(call.ws)
    office = (office or settings.raw("CUSTODES_ISSUING_OFFICE") or "").strip() or None
    if office is not None and (len(office) > 200 or not office.isprintable()):
        raise InputError(
            "The issuing office is a name of at most 200 printable characters.", code="bad_argument"
        )
    params: dict[str, Any] = {"year": _year(year, first_time(call.ws, before=size)) or _this_year()}
    if office:
        params["office"] = office
    doc = produce.compute("jct", params, led)
    doc.ledger_size = size
    return produce.write(call, doc, out, fmt=fmt)


@service("reports.person")
def person(
    call: CheckedCall,
    record_id: str,
    *,
    purpose: str,
    request: str,
    privacy_act: bool = False,
    out: Path | None = None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """Every disclosure of one person's information (an inspection: purpose and request
    required, recorded); the Privacy Act view leaves out disclosures to law enforcement."""
    produce.person_inspection(call, record_id, purpose=purpose, reference=request)
    size, entries = produce.snapshot(call.ws)
    doc = disc.person(
        disc.read(entries),
        record_id,
        withheld_provisions=produce.law_enforcement(in_force(call.ws)),
        privacy_act=privacy_act,
    )
    doc.ledger_size = size
    return produce.write(call, doc, out, fmt=fmt)


@service("reports.read")
def request(
    call: CheckedCall, request_id: str, *, out: Path | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """Checks with citations, match probabilities, review, the wrong-person bound, stages and
    who did what, for one request (HTML with charts, PDF, or data)."""
    produce.known_request(call.ws, request_id)
    checked(call, request_id)  # the match results it charts, as recorded
    size, _ = produce.snapshot(call.ws)
    events = [e for e in from_store(call.ws, request_id=request_id) if e.idx < size]
    doc = request_report(call.ws, request_id, events, in_force(call.ws))
    doc.ledger_size = size
    return produce.write(call, doc, out, fmt=fmt)


@service("reports.read")
def recalls(
    call: CheckedCall, *, out: Path | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """Every recall: affected disclosures, recipients, notices, certifications and overdue."""
    size, entries = produce.snapshot(call.ws)
    doc = oversight.recalls(entries)
    doc.ledger_size = size
    return produce.write(call, doc, out, fmt=fmt)


@service("reports.read")
def safeguards(
    call: CheckedCall,
    *,
    year: int | None = None,
    out: Path | None = None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """The annex to the Safeguard Security Report for one calendar year."""
    size, entries = produce.snapshot(call.ws)
    with call.ws.engine.connect() as conn:
        doc = oversight.safeguards(conn, entries, year=_year(year, entries) or _this_year())
    doc.ledger_size = size
    return produce.write(call, doc, out, fmt=fmt)


def verify(report_file: Path, export: Path) -> dict[str, Any]:
    """Recompute a report (CSV or JSON) from an exported ledger with bodies and say whether
    every row and figure agrees. Needs no caller: the export is what an outsider holds."""
    return produce.verify(report_file, export)


# --- incidents ---------------------------------------------------------------------------------


@service("incident.open")
def incident_open(
    call: CheckedCall, *, kind: str, summary: str, request_id: str | None = None
) -> dict[str, Any]:
    """Open an incident: the 24-hour clock for the report to the inspector general and the
    Office of Safeguards starts now."""
    return inc.open_incident(call, kind=kind, summary=summary, request_id=request_id)


@service("incident.open")
def incident_reported(call: CheckedCall, incident_id: str) -> dict[str, Any]:
    """Record that the incident report was sent (late if past its 24 hours)."""
    return inc.mark_reported(call, incident_id)


@service("incident.close")
def incident_close(call: CheckedCall, incident_id: str, *, finding: str) -> dict[str, Any]:
    """Close a reported incident with its finding (improper or unfounded)."""
    return inc.close(call, incident_id, finding=finding)


@service("incident.read")
def incidents(call: CheckedCall) -> list[dict[str, Any]]:
    """Every incident with its status (open, overdue, reported, closed)."""
    with call.ws.engine.connect() as conn:
        return inc.listing(conn)


@service("incident.read")
def incident_draft(
    call: CheckedCall, incident_id: str, *, out: Path | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """The draft report to the inspector general and the Office of Safeguards (no personal
    data), as a file or for the screen; recorded like every report."""
    size, _ = produce.snapshot(call.ws)
    with call.ws.engine.connect() as conn:
        d = inc.draft(conn, incident_id)
    doc = Document(
        "incident",
        f"Incident report {incident_id} (draft)",
        {"incident_id": incident_id, "request_id": d["request_id"]},
        [
            Table(
                "Report",
                [("item", "Item"), ("value", "Value")],
                [{"item": k.replace("_", " "), "value": v} for k, v in d.items()],
            )
        ],
        figures={"hours_left": d["hours_left"]},
        notes=[
            "Draft: ids, counts and times only. Describe the circumstances in the secure "
            "channel the recipients name, not in this file."
        ],
        ledger_size=size,
    )
    return produce.write(call, doc, out, fmt=fmt)
