"""Reports (accounting, JCT, a person, a request, recalls, safeguards) and incidents."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Response, status
from fastapi.responses import JSONResponse

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import Paged
from custodes.http.deps import WS, Who
from custodes.http.media import REPORT_TYPES
from custodes.services import reports

oversight = common.oversight()
ROUTERS = (oversight,)


ReportFormat = Annotated[
    Literal["json", "csv", "html", "pdf"] | None,
    Query(
        description="A file in this format (the bytes whose SHA-256 the ledger records, so "
        "`custodes report verify` checks it); without it, the report as a JSON document."
    ),
]


Year = Annotated[int | None, Query(ge=1900, le=9999)]
Name = Annotated[str | None, Query(max_length=200)]  # an agency's or an office's
Provision = Annotated[str | None, Query(max_length=64)]


REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, **{t: {} for t in REPORT_TYPES.values()}}}
}


def _report(result: dict[str, Any]) -> Response:
    if "data" not in result:
        return JSONResponse(result["document"], headers={"Cache-Control": "no-store"})
    return Response(
        result["data"],
        media_type=REPORT_TYPES[result["format"]],
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{result["report"]}{result["format"]}"',
            "X-Content-SHA256": result["sha256"],
        },
    )


@oversight.get("/reports/accounting", response_class=Response, responses=REPORT_RESPONSES)
def report_accounting(
    who: Who,
    ws: WS,
    year: Year = None,
    agency: Name = None,
    provision: Provision = None,
    format: ReportFormat = None,
) -> Response:
    """The accounting of disclosures (26 U.S.C. 6103(p)(3)(A)): one row per disclosure."""
    return _report(
        reports.accounting(ws, who, year=year, agency=agency, provision=provision, fmt=format)
    )


@oversight.get("/reports/jct", response_class=Response, responses=REPORT_RESPONSES)
def report_jct(
    who: Who, ws: WS, year: Year = None, office: Name = None, format: ReportFormat = None
) -> Response:
    """The year's table for the Joint Committee on Taxation (6103(p)(3)(C)); `office` names the
    issuing office on it."""
    return _report(reports.jct(ws, who, year=year, office=office, fmt=format))


@oversight.post("/reports/person", response_class=Response, responses=REPORT_RESPONSES)
def report_person(
    body: m.PersonAccounting, who: Who, ws: WS, format: ReportFormat = None
) -> Response:
    """One person's accounting (an inspection: purpose and request required, recorded); with
    `privacy_act`, the view the person receives."""
    return _report(
        reports.person(
            ws,
            who,
            body.record_id,
            purpose=body.purpose,
            request=body.request,
            privacy_act=body.privacy_act,
            fmt=format,
        )
    )


@oversight.get(
    "/reports/requests/{request_id}", response_class=Response, responses=REPORT_RESPONSES
)
def report_request(request_id: str, who: Who, ws: WS, format: ReportFormat = None) -> Response:
    """One request's checks, matching, review, stages and actors."""
    return _report(reports.request(ws, who, request_id, fmt=format))


@oversight.get("/reports/recalls", response_class=Response, responses=REPORT_RESPONSES)
def report_recalls(who: Who, ws: WS, format: ReportFormat = None) -> Response:
    """Every recall with its certifications, open and overdue."""
    return _report(reports.recalls(ws, who, fmt=format))


@oversight.get("/reports/safeguards", response_class=Response, responses=REPORT_RESPONSES)
def report_safeguards(who: Who, ws: WS, year: Year = None, format: ReportFormat = None) -> Response:
    """The safeguards evidence for a year (annex to the Safeguard Security Report)."""
    return _report(reports.safeguards(ws, who, year=year, fmt=format))


@oversight.get("/incidents", response_model=list[m.Incident])
def list_incidents(who: Who, ws: WS, paged: Paged) -> Any:
    """Every incident with its status (open, overdue, reported, closed); `limit` pages them."""
    return paged(reports.incidents(ws, who), "incident_id")


@oversight.post("/incidents", response_model=m.Incident, status_code=status.HTTP_201_CREATED)
def open_incident(body: m.IncidentOpening, who: Who, ws: WS) -> Any:
    """Open an incident: its report is due within 24 hours."""
    return reports.incident_open(
        ws, who, kind=body.kind, summary=body.summary, request_id=body.request_id
    )


@oversight.post("/incidents/{incident_id}/reported", response_model=m.Incident)
def incident_reported(incident_id: str, who: Who, ws: WS) -> Any:
    """Record that the incident's report was sent."""
    return reports.incident_reported(ws, who, incident_id)


@oversight.post("/incidents/{incident_id}/close", response_model=m.Incident)
def close_incident(incident_id: str, body: m.IncidentClosing, who: Who, ws: WS) -> Any:
    """Close a reported incident with its finding."""
    return reports.incident_close(ws, who, incident_id, finding=body.finding)


@oversight.get(
    "/incidents/{incident_id}/draft", response_class=Response, responses=REPORT_RESPONSES
)
def incident_draft(incident_id: str, who: Who, ws: WS, format: ReportFormat = None) -> Response:
    """The draft report to the inspector general and the Office of Safeguards."""
    return _report(reports.incident_draft(ws, who, incident_id, fmt=format))
