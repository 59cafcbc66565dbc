"""What auditors look for."""

from __future__ import annotations

from typing import Any

from custodes.access import CheckedCall, service
from custodes.access.inspections import audit_inspections
from custodes.reports.incidents import listing as incident_listing


@service("audit")
def inspections(call: CheckedCall, *, spike: int = 50) -> dict[str, Any]:
    """Inspections not tied to a candidate of an open request, of sensitive records, volume
    spikes per user, any action by a suspended user (which must be none), and incidents whose
    24-hour report is overdue."""
    with call.ws.engine.connect() as conn:
        found = audit_inspections(conn, spike=spike)
        found["incidents_overdue"] = [i for i in incident_listing(conn) if i["status"] == "overdue"]
    return found
