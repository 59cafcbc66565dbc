"""Incidents: the list, opening one, its steps (reported, closed), and its draft report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form
from fastapi.responses import Response

from custodes.errors import InputError
from custodes.services import reports
from custodes.web.console import Console, page, router, see_other, simple_page

BACK = "/incidents"

pages = router()


@simple_page(
    pages,
    "/incidents",
    "incidents.html",
    "Incidents",
    may_open="incident.open",
    may_close="incident.close",
)
def incidents_page(c: Console) -> dict[str, Any]:
    """Every incident with its report's due time and status."""
    return {"incidents": reports.incidents(c.ws, c.who)}


@pages.post("/incidents")
def open_incident(
    kind: Annotated[str, Form(max_length=16)],
    summary: Annotated[str, Form(max_length=5000)],
    c: Annotated[Console, page(BACK)],
    request_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    reports.incident_open(
        c.ws, c.who, kind=kind, summary=summary, request_id=request_id.strip() or None
    )
    return see_other("/incidents?done=opened")


@pages.post("/incidents/{incident_id}/{step}")
def incident_step(
    incident_id: str,
    step: str,
    c: Annotated[Console, page(BACK)],
    finding: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    if step == "reported":
        reports.incident_reported(c.ws, c.who, incident_id)
    elif step == "close":
        reports.incident_close(c.ws, c.who, incident_id, finding=finding)
    else:
        c.check()
        raise InputError("No such step.", code="bad_argument")
    return see_other(f"/incidents?done={'reported' if step == 'reported' else 'closed'}")


@pages.get("/incidents/{incident_id}/draft")
def incident_draft(incident_id: str, c: Annotated[Console, page(BACK)]) -> Response:
    res = reports.incident_draft(c.ws, c.who, incident_id, fmt="pdf")
    return Response(
        res["data"],
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{incident_id}.pdf"',
            "X-Content-SHA256": res["sha256"],
        },
    )
