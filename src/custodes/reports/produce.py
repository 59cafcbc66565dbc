"""Making a report from the ledger, writing it as a recorded file, and checking a report file
against an exported ledger.

Every report file custodes writes is a ledger event (`report.generated`: who, which report, its
parameters, the ledger size it was computed from, the file's SHA-256). `verify` finds that event
in an export by the file's hash, recomputes the report from the export's event bodies with the
same parameters and the same events, and compares every row and figure, naming each one that
disagrees.
"""

from __future__ import annotations

import base64
import csv
import gc
import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import select

from custodes.access.credentials import item_key
from custodes.access.sessions import record as record_access
from custodes.errors import InputError, fail
from custodes.ledger import log
from custodes.ledger.event_types import RecordInspected, RecordInspectionRefused, ReportGenerated
from custodes.ledger.events import Event, item_commitment, item_salt
from custodes.records import master
from custodes.records.exports import file_kind
from custodes.reports import disclosures as disc
from custodes.reports.document import Document
from custodes.reports.render import FORMATS, encode
from custodes.reports.source import Entry, from_export, from_store, split_from_store
from custodes.requests.format import item_id_ok
from custodes.requests.intake import text_sha256
from custodes.rules.types import RuleSet
from custodes.store.files import out_file, recorded
from custodes.store.tables import disclosures, requests
from custodes.workspace import Call, Workspace

# Reports that `verify` recomputes from an export (their every figure comes from event bodies).
VERIFIABLE = ("accounting", "jct")


def snapshot(ws: Workspace) -> tuple[int, list[Entry]]:
    """The ledger's size now and its reported events below that size: a report computed from
    these is recomputed from an export by the same cut, whatever was appended meanwhile."""
    with ws.engine.connect() as conn:
        size = log.state(conn).size
    return size, from_store(ws, before=size)


def streamed(ws: Workspace) -> tuple[int, disc.Ledgered]:
    """As `snapshot`, for the disclosure reports: the disclosures are read in pages while the
    report is computed, not held (a million of them are ≈ 9 GB as parsed dicts)."""
    with ws.engine.connect() as conn:
        size = log.state(conn).size
    others, paged = split_from_store(ws, before=size)
    return size, disc.read(others, paged)


@contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The cyclic garbage collector paused while a report builds a million row dicts: each
    collection walks every dict still held, so the work grew faster than the rows (an
    accounting's rows took 0.8× the floor at 100,000 disclosures, 2.4× at a million). The
    rows hold no cycles; reference counting still frees everything, and the collector runs
    again afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# An accounting laid out as a PDF above this many rows is refused: fpdf lays out ~170 rows a
# second here (100,000 rows: 10 minutes, 4,002 pages), and the filing formats are CSV and JSON.
PDF_MAX_ROWS = 10_000


def pdf_fits(doc: Document, fmt: str | None) -> None:
    """Refuse an accounting too long to lay out as a PDF (`PDF_MAX_ROWS`), naming the formats
    that take any size. `fmt`: the file's extension (or None: no file)."""
    if fmt != ".pdf" or doc.kind != "accounting" or len(doc.tables[0].rows) <= PDF_MAX_ROWS:
        return
    raise fail(
        "too_many_rows",
        f"An accounting of {len(doc.tables[0].rows):,} disclosures is too long for a PDF (at "
        f"most {PDF_MAX_ROWS:,} rows): write it as CSV or JSON, the filing formats, or narrow "
        "it (year, agency, provision).",
    )


def compute(kind: str, params: dict[str, Any], entries: list[Entry] | disc.Ledgered) -> Document:
    led = entries if isinstance(entries, disc.Ledgered) else disc.read(entries)
    if kind == "accounting":
        return disc.accounting(
            led,
            year=params.get("year"),
            agency=params.get("agency"),
            provision=params.get("provision"),
            with_tins=bool(params.get("with_tins")),
        )
    if kind == "jct":
        return disc.jct(led, year=int(params["year"]), office=params.get("office"))
    raise fail("bad_report", "This kind of report is not recomputed from the ledger.")


def with_reasons(ws: Workspace, doc: Document) -> Document:
    """Fill in each request's stated reason (the agency's words, kept in the store; the ledger
    holds its hash, which `verify` checks)."""
    ids = {r["request_id"] for t in doc.tables for r in t.rows if "reason" in r}
    reasons: dict[str, str] = {}
    for rid in ids:
        path = ws.request_folder(rid) / "envelope.json"
        try:
            reasons[rid] = str(json.loads(path.read_text(encoding="utf-8-sig")).get("reason", ""))
        except (OSError, ValueError):
            reasons[rid] = ""
    for t in doc.tables:
        for r in t.rows:
            if "reason" in r:
                r["reason"] = reasons.get(r["request_id"])
    return doc


def with_items(ws: Workspace, doc: Document) -> Document:
    """Fill in each row's item id (the agency's, kept in the store's disclosures; the ledger
    holds its salted commitment) and the salt that opens the commitment, which `verify`
    checks. A row whose commitment no stored disclosure opens keeps an empty item."""
    ids = {r["request_id"] for t in doc.tables for r in t.rows if r.get("item_sha256")}
    if not ids:
        return doc
    key = item_key(ws)
    opened: dict[tuple[str, str], tuple[str, str]] = {}
    with ws.engine.connect() as conn:
        for rid, item in conn.execute(
            select(disclosures.c.request_id, disclosures.c.item_id).where(
                disclosures.c.request_id.in_(ids)
            )
        ):
            salt = item_salt(key, rid, item)
            opened[(rid, item_commitment(salt, item))] = (item, salt.hex())
    for t in doc.tables:
        for r in t.rows:
            if r.get("item_sha256"):
                r["item_id"], r["item_salt"] = opened.get(
                    (r["request_id"], r["item_sha256"]), (None, None)
                )
    return doc


def target(out: Path) -> str:
    """Check a report's output file before any work (its format by extension, a new file in
    an existing folder); returns the format."""
    kind = file_kind(out, FORMATS)
    out_file(out)
    return kind


def kind_of(fmt: str | None) -> str | None:
    """A format asked for by name (`csv`, `.pdf`) as its extension; refused if unknown."""
    return None if fmt is None else file_kind(Path(f"report.{fmt.lstrip('.')}"), FORMATS)


def write(call: Call, doc: Document, out: Path | None, *, fmt: str | None = None) -> dict[str, Any]:
    """The report as a new file (format by its extension), or as bytes in `fmt` (.csv, .json,
    .html, .pdf) for a face to send, or as the document itself; recorded in the ledger either
    way (who, which report, parameters, and the SHA-256 of the bytes handed out)."""
    if doc.ledger_size is not None and doc.ledger_root is None:
        with call.ws.engine.connect() as conn:
            doc.ledger_root = base64.b64encode(log.root_at(conn, doc.ledger_size)).decode()
    data, digest = None, None
    fmt = target(out) if out is not None else kind_of(fmt)
    pdf_fits(doc, fmt)
    if fmt is not None:
        data = encode(doc, fmt)
        digest = hashlib.sha256(data).hexdigest()
    params = {k: v for k, v in doc.parameters.items() if k != "record_id"}
    staged = recorded(out, data) if out is not None and data is not None else nullcontext()
    with staged, call.transaction() as conn:  # the event first, then the file
        log.append_one(
            conn,
            ReportGenerated(
                report=doc.kind,
                parameters=params,
                ledger_size=doc.ledger_size,
                format=fmt,
                sha256=digest,
                rows=len(doc.tables[0].rows) if doc.tables else 0,
            ),
            actor=call.actor,
            request_id=doc.parameters.get("request_id"),
            record_id=doc.parameters.get("record_id"),
        )
    result: dict[str, Any] = {
        "report": doc.kind,
        "out": str(out) if out else None,
        "format": fmt,
        "sha256": digest,
        "document": doc.to_json(),
    }
    if out is None and data is not None:
        result["data"] = data
    return result


def person_inspection(call: Call, record_id: str, *, purpose: str, reference: str) -> None:
    """A person's accounting shows everything disclosed about one person: an inspection, with
    a stated purpose and the reference of the request it answers (the person's own request for
    an accounting, or the case it serves), recorded whether allowed or refused."""
    inspection(
        call, [record_id], purpose=purpose, reference=reference, what="accounting_of_disclosures"
    )


def inspection(
    call: Call, record_ids: list[str], *, purpose: str, reference: str, what: str
) -> None:
    """Showing these records' disclosures (or their TINs) is an inspection of each: a stated
    purpose and a reference are required, and each record's inspection is recorded (one access
    row for the call, one ledger event per record), the refusal too."""
    purpose = (purpose or "").strip()
    record_id = record_ids[0] if len(record_ids) == 1 else None
    refusal = None
    if not all(item_id_ok(r or "") for r in record_ids):
        refusal = ("bad_record_id", "That is not a custodes record id (ids are opaque).")
    elif len(purpose) < 10:
        refusal = ("no_purpose", "State the purpose of the inspection (at least 10 characters).")
    elif not item_id_ok(reference or ""):
        refusal = (
            "no_case",
            "Name the request this accounting answers (--request: the person's request for an "
            "accounting or the case it serves; letters, digits and . _ : -).",
        )
    with call.transaction() as conn:
        purpose_hmac = record_access(
            conn,
            call.actor,
            "reports.person",
            refusal is None,
            refusal[0] if refusal else None,
            record_id=record_id if item_id_ok(record_id or "") else None,
            purpose=purpose or None,
        )
        log.append(
            conn,
            [
                Event(
                    (RecordInspected if refusal is None else RecordInspectionRefused)(
                        what=what,
                        reference=reference if item_id_ok(reference or "") else None,
                        purpose_hmac=purpose_hmac,
                        refusal=refusal[0] if refusal else None,
                    ),
                    actor=call.actor,
                    record_id=r if item_id_ok(r or "") else None,
                )
                for r in (record_ids if refusal is None else [record_id])
            ],
        )
    if refusal is not None:
        raise fail(refusal[0], refusal[1])


def with_tins(call: Call, doc: Document, *, purpose: str, reference: str) -> Document:
    """The authorised view of the accounting: each row's TIN, after the inspection of every
    record in it is recorded."""
    rows = doc.tables[0].rows
    ids = sorted({r["record_id"] for r in rows})
    inspection(call, ids, purpose=purpose, reference=reference, what="accounting_tin")
    found = master.tins(call.ws, set(ids))
    for r in rows:
        r["tin"] = found.get(r["record_id"])
    return doc


def law_enforcement(rs: RuleSet) -> set[str]:
    return {p.id for p in rs.provisions.values() if p.law_enforcement}


def known_request(ws: Workspace, request_id: str) -> None:
    with ws.engine.connect() as conn:
        if (
            not item_id_ok(request_id)
            or conn.execute(select(requests.c.id).where(requests.c.id == request_id)).first()
            is None
        ):
            raise fail("unknown_request", "No such request.")


# --- checking a report against an export ------------------------------------------------------


def verify(report_file: Path, export: Path) -> dict[str, Any]:
    """Recompute a CSV or JSON report from an exported ledger with bodies and compare."""
    if not report_file.is_file():
        raise fail("file_not_found", f"{report_file}: no such file.")
    kind = file_kind(report_file, (".csv", ".json"))
    data = report_file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    entries = from_export(export)
    found = (
        (e, r) for e in entries if (r := e.as_(ReportGenerated)) is not None and r.sha256 == digest
    )
    made, gen = next(found, (None, None))
    if made is None or gen is None:
        raise InputError(
            f"{report_file.name}: no report with this file's SHA-256 is recorded in the export "
            "(an altered file, or an export older than the report).",
            code="bad_report",
        )
    if gen.report not in VERIFIABLE:
        raise InputError(
            f"A '{gen.report}' report is not recomputed from the ledger; "
            f"{' and '.join(VERIFIABLE)} reports are.",
            code="bad_report",
        )
    size = int(gen.ledger_size or 0)
    doc = compute(gen.report, gen.parameters or {}, [e for e in entries if e.idx < size])
    problems: list[str] = []
    if kind == ".json":
        try:
            theirs = json.loads(data)
        except ValueError:
            raise InputError(f"{report_file.name}: not JSON.", code="bad_report") from None
        _compare_figures(theirs.get("figures", {}), doc.figures, problems)
        table = theirs["tables"][0]
        their_rows = [_texts(r) for r in table["rows"]]
        their_total = _texts(table["total"]) if table.get("total") else None
    else:
        their_rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        their_total = their_rows.pop() if doc.tables[0].total and their_rows else None
    _compare_rows(doc, their_rows, problems)
    if doc.tables[0].total:
        _compare_total(doc, their_total or {}, problems)
    return {
        "report": gen.report,
        "parameters": gen.parameters,
        "generated_by": made.actor,
        "generated_at": made.body.get("time"),
        "ledger_index": made.idx,
        "ledger_size": size,
        "rows": len(doc.tables[0].rows),
        "ok": not problems,
        "problems": problems[:50],
        "problems_total": len(problems),
    }


def _text(v: Any) -> str:
    """A value as the CSV writes it (formula-neutralising apostrophe removed)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return str(v)


def _texts(row: dict[str, Any]) -> dict[str, str]:
    return {k: _text(v) for k, v in row.items()}


def _key(kind: str, row: dict[str, Any]) -> str:
    if kind == "accounting":
        return f"ledger index {row.get('ledger_index')}"
    return f"{row.get('disclosure_to')} {row.get('subsection')}".strip()


def _compare_rows(doc: Document, theirs: list[dict[str, str]], problems: list[str]) -> None:
    t = doc.tables[0]
    ours = {_key(doc.kind, r): r for r in t.rows}
    seen = set()
    if len(theirs) != len(t.rows):
        problems.append(f"rows: the report has {len(theirs):,}, the ledger gives {len(t.rows):,}")
    for r in theirs:
        key = _key(doc.kind, r)
        seen.add(key)
        mine = ours.get(key)
        if mine is None:
            problems.append(f"{key}: in the report, not in the ledger")
            continue
        for col, label in t.columns:
            got = str(r.get(col) or "").removeprefix("'")
            if col == "tin":  # not in the ledger: shown only in an authorised view
                continue
            if col == "reason":
                want_hash = mine.get("reason_sha256")
                if want_hash and text_sha256(got) != want_hash:
                    problems.append(f"{key}: '{label}' is not the reason the request stated")
                continue
            if col == "item_salt":  # checked with the item it opens
                continue
            if col == "item_id" and mine.get("item_sha256"):
                if not _opens(str(r.get("item_salt") or ""), got, mine["item_sha256"]):
                    problems.append(
                        f"{key}: '{label}' and its salt do not open the disclosure's item "
                        "commitment in the ledger"
                    )
                continue
            want = _text(mine.get(col))
            if got != want:
                problems.append(
                    f"{key}: '{label}' is {got or 'empty'} in the report, "
                    f"{want or 'empty'} in the ledger"
                )
    for key in sorted(ours.keys() - seen):
        problems.append(f"{key}: in the ledger, missing from the report")


def _opens(salt_hex: str, item: str, commitment: str) -> bool:
    try:
        salt = bytes.fromhex(salt_hex.removeprefix("'"))
    except ValueError:
        return False
    return len(salt) == 32 and item_commitment(salt, item) == commitment


def _compare_total(doc: Document, theirs: dict[str, str], problems: list[str]) -> None:
    t = doc.tables[0]
    assert t.total is not None
    for col, label in t.columns:
        if isinstance(t.total.get(col), int) and theirs.get(col) != str(t.total[col]):
            problems.append(
                f"total '{label}': {theirs.get(col) or 'empty'} in the report, "
                f"{t.total[col]} in the ledger"
            )


def _compare_figures(theirs: dict[str, Any], ours: dict[str, Any], problems: list[str]) -> None:
    for name, want in ours.items():
        got = theirs.get(name)
        if got != want:
            problems.append(f"figure '{name}': {got} in the report, {want} in the ledger")
