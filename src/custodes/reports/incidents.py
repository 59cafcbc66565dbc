"""Incidents: a suspected improper disclosure or inspection, and the 24-hour clock it starts.

IRS Publication 1075 (section 1.8) requires an agency to report a suspected improper inspection
or disclosure of federal tax information to the Treasury Inspector General for Tax
Administration and the IRS Office of Safeguards within 24 hours of discovering it. Opening an
incident here starts that clock; the draft report holds no personal data (ids, counts and times
only: the staff's own description stays in the store and reaches the ledger as a hash); an
incident not reported in time is overdue and listed in the audit report. Closing it records the
finding; "improper" marks the disclosures of its request in the annual report's footnotes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import Connection, func, select

from custodes.errors import ConflictError, InputError, NotFound
from custodes.ledger import anchors, log
from custodes.ledger.event_types import IncidentClosed, IncidentOpened, IncidentReported
from custodes.requests.format import item_id_ok
from custodes.store.tables import disclosures, incidents, requests
from custodes.workspace import Call

REPORT_WITHIN = dt.timedelta(hours=24)
KINDS = ("disclosure", "inspection")
FINDINGS = ("improper", "unfounded")


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def status(row: Any, now: dt.datetime) -> str:
    if row.closed_at is not None:
        return "closed"
    if row.reported_at is not None:
        return "reported"
    return "overdue" if now > _aware(row.due_at) else "open"


def open_incident(
    call: Call,
    *,
    kind: str,
    summary: str,
    request_id: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    if kind not in KINDS:
        raise InputError(f"An incident is a {' or an '.join(KINDS)}.", code="bad_incident")
    summary = (summary or "").strip()
    if len(summary) < 10:
        raise InputError(
            "Describe what was discovered (at least 10 characters); the description stays in "
            "the store, the ledger and the draft report carry no personal data.",
            code="bad_incident",
        )
    at = _now(now)
    with call.transaction() as conn:
        if request_id is not None:
            _known_request(conn, request_id)
        iid = f"inc-{secrets.token_hex(6)}"
        anchors.insert(
            conn,
            call.actor,
            incidents,
            id=iid,
            kind=kind,
            request_id=request_id,
            summary=summary,
            opened_by=call.actor,
            opened_at=at,
            due_at=at + REPORT_WITHIN,
        )
        log.append_one(
            conn,
            IncidentOpened(
                incident_id=iid,
                kind=kind,
                due=(at + REPORT_WITHIN).isoformat(timespec="seconds"),
                summary_sha256=hashlib.sha256(summary.encode()).hexdigest(),
            ),
            actor=call.actor,
            request_id=request_id,
            at=at,
        )
    return {"incident_id": iid, "due": (at + REPORT_WITHIN).isoformat(timespec="seconds")}


def _known_request(conn: Connection, request_id: str) -> None:
    if (
        not item_id_ok(request_id)
        or conn.execute(select(requests.c.id).where(requests.c.id == request_id)).first() is None
    ):
        raise NotFound("No such request.", code="unknown_request")


def _row(conn: Connection, incident_id: str) -> Any:
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
    if row is None:
        raise NotFound("No such incident.", code="unknown_incident")
    return row


def _update(conn: Connection, call: Call, incident_id: str, **values: Any) -> None:
    """Change the incident's row (anchored: its commitment follows the change)."""
    anchors.update_rows(conn, call.actor, incidents, incidents.c.id == incident_id, **values)


def mark_reported(
    call: Call, incident_id: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The report went to the inspector general and the Office of Safeguards."""
    at = _now(now)
    with call.transaction() as conn:
        row = _row(conn, incident_id)
        if row.reported_at is not None or row.closed_at is not None:
            raise ConflictError(
                f"Incident {incident_id} was already {status(row, at)}.", code="incident_done"
            )
        _update(conn, call, incident_id, reported_by=call.actor, reported_at=at)
        late = at > _aware(row.due_at)
        log.append_one(
            conn,
            IncidentReported(incident_id=incident_id, late=late),
            actor=call.actor,
            request_id=row.request_id,
            at=at,
        )
    return {
        "incident_id": incident_id,
        "reported_at": at.isoformat(timespec="seconds"),
        "late": late,
    }


def close(
    call: Call, incident_id: str, *, finding: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    if finding not in FINDINGS:
        raise InputError(f"The finding is {' or '.join(FINDINGS)}.", code="bad_incident")
    at = _now(now)
    with call.transaction() as conn:
        row = _row(conn, incident_id)
        if row.closed_at is not None:
            raise ConflictError(f"Incident {incident_id} is already closed.", code="incident_done")
        if row.reported_at is None:
            raise ConflictError(
                f"Incident {incident_id} has not been reported yet; report it before closing.",
                code="incident_not_reported",
            )
        _update(conn, call, incident_id, closed_by=call.actor, closed_at=at, finding=finding)
        log.append_one(
            conn,
            IncidentClosed(incident_id=incident_id, finding=finding),
            actor=call.actor,
            request_id=row.request_id,
            at=at,
        )
    return {"incident_id": incident_id, "finding": finding}


def listing(conn: Connection, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    at = _now(now)
    return [
        {
            "incident_id": r.id,
            "kind": r.kind,
            "request_id": r.request_id,
            "opened_at": _aware(r.opened_at).isoformat(timespec="seconds"),
            "due_at": _aware(r.due_at).isoformat(timespec="seconds"),
            "reported_at": _aware(r.reported_at).isoformat(timespec="seconds")
            if r.reported_at
            else None,
            "finding": r.finding,
            "status": status(r, at),
        }
        for r in conn.execute(select(incidents).order_by(incidents.c.opened_at))
    ]


def draft(conn: Connection, incident_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The report to the inspector general and the Office of Safeguards, as a draft: what
    happened by id, count and time; no name, TIN, date of birth, address or free text."""
    at = _now(now)
    row = _row(conn, incident_id)
    affected = None
    if row.request_id:
        affected = conn.execute(
            select(func.count())
            .select_from(disclosures)
            .where(disclosures.c.request_id == row.request_id)
        ).scalar()
    return {
        "to": [
            "Treasury Inspector General for Tax Administration",
            "IRS Office of Safeguards",
        ],
        "incident_id": row.id,
        "kind": f"suspected improper {row.kind}",
        "discovered_at": _aware(row.opened_at).isoformat(timespec="seconds"),
        "report_due_at": _aware(row.due_at).isoformat(timespec="seconds"),
        "hours_left": round((_aware(row.due_at) - at).total_seconds() / 3600, 1),
        "status": status(row, at),
        "request_id": row.request_id,
        "disclosures_in_request": affected,
        "reported_by_role": "the agency's disclosure or security office",
        "authority": "IRS Publication 1075, section 1.8 (incident reporting within 24 hours)",
    }
