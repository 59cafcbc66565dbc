"""Audit and reports: the inspection audit's findings, and a report as a file."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi.responses import Response

from custodes.errors import InputError
from custodes.http.media import REPORT_TYPES
from custodes.services import audit, reports
from custodes.web.console import Console, page, router, simple_page

AUDIT_FINDINGS = (
    ("without_open_request", "Inspections without an open request (refused)"),
    ("by_submitter", "Inspections by the person who submitted or keyed in the request"),
    ("sensitive", "Inspections of sensitive records"),
    ("volume_spikes", "Days with a spike of inspections by one user"),
    ("actions_by_suspended_users", "Actions by suspended users (must be none)"),
    ("incidents_overdue", "Incidents whose 24-hour report is overdue"),
)

pages = router()


@simple_page(pages, "/audit", "audit.html", "Audit and reports")
def audit_page(c: Console) -> dict[str, Any]:
    """The inspection audit's findings, and the reports to download."""
    return {
        "a": audit.inspections(c.ws, c.who),
        "findings": AUDIT_FINDINGS,
        "year": dt.datetime.now(dt.UTC).year,
    }


@pages.get("/reports")
def report_download(
    c: Annotated[Console, page("/audit")],
    kind: str = "jct",
    year: int | None = None,
    format: str = "html",
) -> Response:
    """A report as a file (recorded in the ledger with its hash, like every report)."""
    services = {
        "accounting": lambda: reports.accounting(c.ws, c.who, year=year, fmt=format),
        "jct": lambda: reports.jct(c.ws, c.who, year=year, fmt=format),
        "recalls": lambda: reports.recalls(c.ws, c.who, fmt=format),
        "safeguards": lambda: reports.safeguards(c.ws, c.who, year=year, fmt=format),
    }
    c.check()
    if kind not in services or f".{format}" not in REPORT_TYPES:
        raise InputError("Choose a report and a format from the list.", code="bad_argument")
    res = services[kind]()
    disposition = "inline" if format == "html" else "attachment"
    return Response(
        res["data"],
        media_type=REPORT_TYPES[f".{format}"],
        headers={
            "Content-Disposition": f'{disposition}; filename="{kind}{res["format"]}"',
            "X-Content-SHA256": res["sha256"],
            # A report page is a document: its own styles, no script at all.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; sandbox",
        },
    )
