"""What auditors look for."""

from __future__ import annotations

from typing import Any

from custodes.access import CheckedCall, service
from custodes.access.inspections import audit_inspections


@service("audit")
def inspections(call: CheckedCall, *, spike: int = 50) -> dict[str, Any]:
    """Inspections not tied to a candidate of an open request, of sensitive records, volume
    spikes per user, and any action by a suspended user (which must be none)."""
    with call.ws.engine.connect() as conn:
        return audit_inspections(conn, spike=spike)
