"""The master file: flagging a record sensitive, its summary, an inspection, and the
inspection audit."""

from __future__ import annotations

from typing import Any

from custodes.api import common
from custodes.api import models as m
from custodes.http.deps import WS, Who
from custodes.services import audit, records

staff = common.staff()
ROUTERS = (staff,)


@staff.post("/records/{record_id}/sensitive", response_model=m.Document)
def flag_sensitive(record_id: str, body: m.Reason, who: Who, ws: WS) -> Any:
    """Mark a record sensitive (its every inspection is then flagged for the auditors)."""
    return records.flag_sensitive(ws, who, record_id, body.reason)


@staff.get("/records/summary", response_model=m.Document)
def records_summary(who: Who, ws: WS) -> Any:
    """Counts that describe the master file without revealing anyone in it."""
    return records.summary(ws, who)


@staff.post("/records/inspect", response_model=m.Document)
def inspect(body: m.Inspection, who: Who, ws: WS) -> Any:
    """One taxpayer record, for a stated purpose, when it is a candidate of the open request
    named; every inspection, shown or refused, is recorded."""
    return records.show(ws, who, body.record_id, purpose=body.purpose, request_id=body.request_id)


@staff.get("/audit/inspections", response_model=m.Document)
def audit_inspections(who: Who, ws: WS) -> Any:
    """Unlinked and sensitive inspections, spikes, actions by suspended users, overdue
    incidents."""
    return audit.inspections(ws, who)
