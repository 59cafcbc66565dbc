"""report accounting|jct|person|request|recalls|safeguards|verify, and incident
open|reported|close|list|draft."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, RequestArg, group, guarded, run, show
from custodes.services import reports as svc

report_app = group(
    "report",
    "The accounting of disclosures and the oversight reports, computed from the ledger.",
)
incident_app = group(
    "incident", "Suspected improper disclosures or inspections, and their 24-hour report clock."
)

OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Write the report to this new file: .csv or .json (data), .html (with charts) or "
        ".pdf (for filing). Without it, the report is shown here.",
    ),
]
YearOpt = Annotated[int | None, typer.Option("--year", help="Calendar year (UTC).")]


def _show(res: dict[str, Any]) -> None:
    """A written report: where; otherwise the report's figures and tables on the screen."""
    if res["out"]:
        render.say(f"Wrote the {res['report']} report to {res['out']} (SHA-256 {res['sha256']}).")
        return
    doc = res["document"]
    render.say(doc["title"])
    if doc["figures"]:
        render.kv("Key figures", doc["figures"])
    for t in doc["tables"]:
        rows = t["rows"] + ([t["total"]] if t.get("total") else [])
        render.rows(
            t["title"],
            rows,
            [(c["label"], c["key"]) for c in t["columns"]],
            limit=50,
            empty=f"{t['title']}: none.",
        )
    for i, n in enumerate(doc["notes"], start=1):
        render.say(f"{i}. {n}")


@report_app.command("accounting")
def report_accounting(
    year: YearOpt = None,
    agency: Annotated[str | None, typer.Option("--agency", help="Only this agency.")] = None,
    provision: Annotated[
        str | None, typer.Option("--provision", help="Only this provision id, e.g. irc-6103-i-2.")
    ] = None,
    with_tins: Annotated[
        bool,
        typer.Option(
            "--with-tins",
            help="The authorised view with each taxpayer's TIN: an inspection of every record "
            "in it (needs --purpose and --request; recorded).",
        ),
    ] = False,
    purpose: Annotated[
        str | None, typer.Option("--purpose", help="Why you need the TINs (--with-tins).")
    ] = None,
    request: Annotated[
        str | None,
        typer.Option("--request", help="The request or case the TIN view serves (--with-tins)."),
    ] = None,
    out: OutOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The accounting record (26 U.S.C. 6103(p)(3)(A), IRM 11.3.37): one row per disclosure
    with its date, the request's date and reason, the authority, the recipients, what was
    disclosed, the taxpayer's record id, bulk or not, and the ledger index that proves it.
    Recalled disclosures stay, marked."""
    run(
        home,
        json_out,
        svc.accounting,
        year=year,
        agency=agency,
        provision=provision,
        out=out,
        tins_for=(purpose or "", request or "") if with_tins else None,
        view=_show,
    )


@report_app.command("jct")
def report_jct(
    year: Annotated[int, typer.Option("--year", help="Calendar year (UTC).")],
    office: Annotated[
        str | None,
        typer.Option(
            "--office",
            help="The office issuing the report, named on it (or set CUSTODES_ISSUING_OFFICE).",
        ),
    ] = None,
    out: OutOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The annual report to the Joint Committee on Taxation (26 U.S.C. 6103(p)(3)(C)):
    disclosures by recipient and subsection, bulk and other, with the counts of requests,
    taxpayers and purposes, and footnotes for recalls and disclosures found improper."""
    run(home, json_out, svc.jct, year=year, office=office, out=out, view=_show)


@report_app.command("person")
def report_person(
    record_id: Annotated[str, typer.Argument(help="The person's custodes record id.")],
    purpose: Annotated[
        str, typer.Option("--purpose", help="Why you look (an inspection; recorded as a hash).")
    ],
    request: Annotated[
        str,
        typer.Option(
            "--request",
            help="The request this answers: the person's own request for an accounting, or "
            "the case it serves.",
        ),
    ],
    privacy_act: Annotated[
        bool,
        typer.Option(
            "--privacy-act",
            help="The view the person receives: disclosures to law enforcement withheld "
            "(5 U.S.C. 552a(c)(3)).",
        ),
    ] = False,
    out: OutOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every disclosure of one person's information. Viewing it is an inspection, recorded
    with its purpose."""
    run(
        home,
        json_out,
        svc.person,
        record_id,
        purpose=purpose,
        request=request,
        privacy_act=privacy_act,
        out=out,
        view=_show,
    )


@report_app.command("request")
def report_request(
    request_id: RequestArg, out: OutOpt = None, home: HomeOpt = None, json_out: JsonOpt = False
) -> None:
    """One request: outcomes by check with citations, the match-probability histogram, the
    review rate and resolutions, the rule-of-three bound, time per stage, who did what."""
    run(home, json_out, svc.request, request_id, out=out, view=_show)


@report_app.command("recalls")
def report_recalls(out: OutOpt = None, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every recall: disclosures affected, recipients notified, certifications received and
    overdue."""
    run(home, json_out, svc.recalls, out=out, view=_show)


@report_app.command("safeguards")
def report_safeguards(
    year: YearOpt = None, out: OutOpt = None, home: HomeOpt = None, json_out: JsonOpt = False
) -> None:
    """Safeguards evidence for the year (the annex to the Safeguard Security Report): users by
    role, grants, suspensions, inspections, disclosures, recalls, incidents, checkpoints."""
    run(home, json_out, svc.safeguards, year=year, out=out, view=_show)


@report_app.command("verify")
def report_verify(
    report_file: Annotated[Path, typer.Argument(help="A report custodes wrote (.csv or .json).")],
    export: Annotated[
        Path,
        typer.Option(
            "--export", help="An exported ledger with bodies ('custodes ledger export --bodies')."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Recompute a report from an exported ledger and say whether every row and figure agrees
    (exit 1 naming each one that does not). Check the export itself with 'custodes ledger
    verify DIR --key KEY'."""

    def view(r: dict[str, Any]) -> None:
        render.say(
            f"{r['report']} report recorded at ledger index {r['ledger_index']} by "
            f"{r['generated_by']}, computed from {r['ledger_size']:,} events; "
            f"{r['rows']:,} rows recomputed."
        )
        if r["ok"]:
            render.say("Every row and figure agrees with the ledger.")
        for p in r["problems"]:
            render.say(f"DISAGREES: {p}")
        if r["problems_total"] > len(r["problems"]):
            render.say(f"… and {r['problems_total'] - len(r['problems']):,} more.")

    with guarded(json_out):
        result = svc.verify(report_file, export)
        show(result, json_out, view)
    if not result["ok"]:
        raise typer.Exit(1)


# --- incidents --------------------------------------------------------------------------------


@incident_app.command("open")
def incident_open(
    kind: Annotated[str, typer.Argument(help="disclosure or inspection")],
    summary: Annotated[
        str,
        typer.Option(
            "--summary",
            help="What was discovered (kept in the store; the ledger and the draft carry no "
            "personal data).",
        ),
    ],
    request_id: Annotated[
        str | None, typer.Option("--request", help="The request concerned, if any.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open an incident for a suspected improper disclosure or inspection: the report to the
    inspector general and the Office of Safeguards is due within 24 hours."""
    run(
        home,
        json_out,
        svc.incident_open,
        kind=kind,
        summary=summary,
        request_id=request_id,
        view=lambda r: render.say(f"Opened {r['incident_id']}; its report is due by {r['due']}."),
    )


@incident_app.command("reported")
def incident_reported(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record that the incident's report was sent."""
    run(
        home,
        json_out,
        svc.incident_reported,
        incident_id,
        view=lambda r: render.say(
            f"{r['incident_id']} reported at {r['reported_at']}"
            + (" (late: past its 24 hours)." if r["late"] else ".")
        ),
    )


@incident_app.command("close")
def incident_close(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    finding: Annotated[str, typer.Option("--finding", help="improper or unfounded")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Close a reported incident with its finding; 'improper' marks its request's disclosures
    in the annual report's footnotes."""
    run(
        home,
        json_out,
        svc.incident_close,
        incident_id,
        finding=finding,
        view=lambda r: render.say(f"{r['incident_id']} closed: {r['finding']}."),
    )


@incident_app.command("list")
def incident_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every incident with its status (open, overdue, reported, closed)."""
    run(
        home,
        json_out,
        svc.incidents,
        view=lambda rows: render.rows(
            "Incidents",
            rows,
            [
                (k.replace("_", " "), k)
                for k in (
                    "incident_id",
                    "kind",
                    "request_id",
                    "opened_at",
                    "due_at",
                    "reported_at",
                    "status",
                    "finding",
                )
            ],
            empty="No incidents.",
        ),
    )


@incident_app.command("draft")
def incident_draft(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    out: OutOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The draft report to the inspector general and the Office of Safeguards (ids, counts
    and times; no personal data)."""
    run(home, json_out, svc.incident_draft, incident_id, out=out, view=_show)
