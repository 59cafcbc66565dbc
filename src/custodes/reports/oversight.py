"""Oversight reports: recalls (affected items, recipients, notices, certifications received and
overdue) and the safeguards evidence an agency attaches to its annual Safeguard Security Report
(IRS Publication 1075): users by role, grants, suspensions, inspections, disclosures, recalls,
incidents, checkpoints and cosignatures."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Connection, func, select

from custodes.access.inspections import audit_inspections
from custodes.access.users import last_day
from custodes.ledger.event_types import (
    Disclosure,
    DisclosureRecalled,
    IncidentReported,
    RecallAcknowledged,
    RecallCertified,
    RecordInspected,
    RecordInspectionRefused,
    ReleaseDone,
    RequestReceived,
    UserReinstated,
    UserSuspended,
    parse,
)
from custodes.reports.document import Document, Table
from custodes.reports.incidents import listing as incident_listing
from custodes.reports.source import Entry
from custodes.store.tables import (
    grants,
    ledger_checkpoints,
    ledger_cosignatures,
    ledger_events,
    users,
)

RETURN_WITHIN = dt.timedelta(days=30)  # as the recall notice says (decisions.recall)


def recalls(entries: list[Entry], *, today: dt.date | None = None) -> Document:
    """Every recall, from its ledger events: when, how many disclosures of which requests, to
    which recipients the notice went, and whether destruction was certified in time."""
    today = today or dt.date.today()
    recipients: dict[str, list[str]] = {}
    agency: dict[str, str | None] = {}
    # By recall id (a body without one is kept under None, as it always was).
    items: dict[str | None, Counter[str]] = defaultdict(Counter)
    at: dict[str | None, dt.datetime] = {}
    certified: dict[str | None, str | None] = {}
    acknowledged: dict[str | None, set[str]] = defaultdict(set)
    for e in entries:
        what = parse(e.body)
        if isinstance(what, ReleaseDone):
            recipients[e.body["request_id"]] = what.recipients or []
        elif isinstance(what, RequestReceived):
            agency[e.body["request_id"]] = what.agency
        elif isinstance(what, DisclosureRecalled):
            items[what.recall_id][e.body["request_id"]] += 1
            at.setdefault(what.recall_id, e.time)
        elif isinstance(what, RecallCertified):
            certified[what.recall_id] = what.certified_on
        elif isinstance(what, RecallAcknowledged):
            acknowledged[what.recall_id].add(str(what.agency))
    rows = []
    for rid in sorted(items, key=lambda r: at[r]):
        due = at[rid].date() + RETURN_WITHIN
        status = "certified" if rid in certified else ("overdue" if today > due else "open")
        reqs = sorted(items[rid])
        rows.append(
            {
                "recall_id": rid,
                "recalled_on": at[rid].date().isoformat(),
                "requests": reqs,
                "agencies": sorted({str(agency.get(r)) for r in reqs}),
                "disclosures": sum(items[rid].values()),
                "notice_to": sorted({x for r in reqs for x in recipients.get(r, [])}),
                "return_by": due.isoformat(),
                "acknowledged_by": sorted(acknowledged[rid]),
                "certified_on": certified.get(rid),
                "status": status,
            }
        )
    return Document(
        "recalls",
        "Recalls of disclosures and certifications of destruction",
        {"as_of": today.isoformat()},
        [
            Table(
                "Recalls",
                [
                    ("recall_id", "Recall"),
                    ("recalled_on", "Recalled on"),
                    ("requests", "Requests"),
                    ("agencies", "Recipient agencies"),
                    ("disclosures", "Disclosures recalled"),
                    ("notice_to", "Notice to (official ids)"),
                    ("return_by", "Return or destroy by"),
                    ("acknowledged_by", "Receipt acknowledged by"),
                    ("certified_on", "Destruction certified on"),
                    ("status", "Status"),
                ],
                rows,
            )
        ],
        figures={
            "recalls": len(rows),
            "disclosures_recalled": sum(r["disclosures"] for r in rows),
            "certified": sum(r["status"] == "certified" for r in rows),
            "overdue": sum(r["status"] == "overdue" for r in rows),
        },
        notes=[
            f"A recipient has {RETURN_WITHIN.days} days from the notice to return or destroy "
            "the information and certify it; past that the recall is overdue."
        ],
    )


def safeguards(conn: Connection, entries: list[Entry], *, year: int) -> Document:
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
    grant_rows = _grant_rows(conn)
    incidents = [i for i in incident_listing(conn) if i["opened_at"][:4] == str(year)]
    figures = _safeguard_figures(conn, entries, start, end, grant_rows, incidents)
    return Document(
        "safeguards",
        f"Safeguards evidence for calendar year {year} (annex to the Safeguard Security Report)",
        {"year": year},
        [
            Table(
                "Grants",
                [
                    ("user", "User"),
                    ("role", "Role"),
                    ("basis", "Legal basis"),
                    ("last_day", "Last day"),
                    ("expires", "Access ends (00:00 UTC)"),
                    ("granted_by", "Granted by"),
                    ("confirmed_by", "Confirmed by"),
                    ("status", "Account"),
                ],
                grant_rows,
            ),
            Table(
                "Incidents",
                [
                    ("incident_id", "Incident"),
                    ("kind", "Kind"),
                    ("opened_at", "Opened"),
                    ("due_at", "Report due"),
                    ("reported_at", "Reported"),
                    ("status", "Status"),
                    ("finding", "Finding"),
                ],
                incidents,
            ),
        ],
        figures=figures,
        notes=[
            "Users are counted by role among active accounts; grants are listed as they stand "
            "today, with the legal basis recorded when each was granted.",
            "Flagged inspections: inspections not tied to a candidate of an open request, and "
            "inspections of records flagged sensitive. Actions by suspended users must be zero.",
        ],
    )


def _grant_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every grant as it stands today, with its user's account status."""
    return [
        {
            "user": g.user_name,
            "role": g.role,
            "basis": g.basis,
            # the grant's last day, as the administrator gave it; `expires` (a column kept for
            # its readers) is the moment after it, midnight UTC
            "last_day": d.isoformat() if (d := last_day(g.expires_at)) else None,
            "expires": g.expires_at.date().isoformat() if g.expires_at else None,
            "granted_by": g.granted_by,
            "confirmed_by": g.confirmed_by,
            "status": g.status,
        }
        for g in conn.execute(
            select(grants, users.c.status)
            .join(users, users.c.name == grants.c.user_name)
            .order_by(grants.c.role, grants.c.user_name)
        )
    ]


# Ledger events the safeguards figures count by type, within the year.
COUNTED_EVENTS = (
    UserSuspended.TYPE,
    UserReinstated.TYPE,
    RecordInspected.TYPE,
    RecordInspectionRefused.TYPE,
)


def _safeguard_figures(
    conn: Connection,
    entries: list[Entry],
    start: dt.datetime,
    end: dt.datetime,
    grant_rows: list[dict[str, Any]],
    incidents: list[dict[str, Any]],
) -> dict[str, Any]:
    def in_year(e: Entry) -> bool:
        return start <= e.time < end

    by_role = Counter(r["role"] for r in grant_rows if r["status"] == "active")
    events = Counter(
        t
        for (t,) in conn.execute(
            select(ledger_events.c.type).where(
                ledger_events.c.at >= start,
                ledger_events.c.at < end,
                ledger_events.c.type.in_(COUNTED_EVENTS),
            )
        )
    )
    audit = audit_inspections(conn)
    checkpoints = conn.execute(select(func.count()).select_from(ledger_checkpoints)).scalar()
    cosignatures = conn.execute(select(func.count()).select_from(ledger_cosignatures)).scalar()
    return {
        **{f"users_with_role_{r}": n for r, n in sorted(by_role.items())},
        "suspensions": events[UserSuspended.TYPE],
        "reinstatements": events[UserReinstated.TYPE],
        "inspections": events[RecordInspected.TYPE],
        "inspections_refused": events[RecordInspectionRefused.TYPE],
        "inspections_flagged": len(audit["without_open_request"])
        + len(audit["by_submitter"])
        + len(audit["sensitive"]),
        "actions_by_suspended_users": len(audit["actions_by_suspended_users"]),
        "disclosures": sum(1 for e in entries if e.type == Disclosure.TYPE and in_year(e)),
        "disclosures_recalled": sum(
            1 for e in entries if e.type == DisclosureRecalled.TYPE and in_year(e)
        ),
        "incidents": len(incidents),
        "incidents_reported_late": sum(
            1
            for e in entries
            if (r := e.as_(IncidentReported)) is not None and r.late and in_year(e)
        ),
        "incidents_overdue": sum(i["status"] == "overdue" for i in incidents),
        "ledger_checkpoints": checkpoints,
        "ledger_cosignatures": cosignatures,
    }
