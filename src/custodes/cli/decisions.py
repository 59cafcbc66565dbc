"""process, explain, outcomes, review, prepare, approve, release, recall, recalls,
certify-destruction, next."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, RequestArg, app, guarded, iso_date, run, stages
from custodes.errors import InputError
from custodes.services import decisions as svc


def _processed(res: Any) -> None:
    if res.refused:
        render.say(f"{res.request_id} refused: the request itself fails the statute.")
        render.rows(
            "Failing checks",
            res.failing_request_checks,
            [("check", "check"), ("citation", "citation"), ("requirement", "sentence")],
        )
        return
    render.rows(
        f"{res.request_id}: {res.state}",
        [{"outcome": k, "items": v} for k, v in res.counts.items()],
        [("outcome", "outcome"), ("items", "items")],
    )
    if res.withheld_by_check:
        render.kv("Withheld, by failing check", res.withheld_by_check)
    render.say(f"rule set {res.ruleset_sha256[:12]}…  model {(res.model_sha256 or '')[:12]}…")


@app.command()
def process(
    request_id: RequestArg,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            "--backend",
            help="Where matching and deciding run: duckdb (embedded) or spark "
            "(CUSTODES_SPARK_MASTER, default local[2]).",
        ),
    ] = "duckdb",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rules (before matching), matching, rules (after matching), then one outcome per item:
    DISCLOSE, CONFIRM / NOT_CONFIRMED, WITHHOLD (failing checks) or REVIEW (why). Resumable:
    run it again after an interruption and it finishes with identical outcomes. Exit status 1
    when the request is refused."""
    with stages(json_out) as progress:
        run(
            home,
            json_out,
            svc.process,
            request_id,
            engine=engine,
            progress=progress,
            view=_processed,
            exit_status=lambda r: int(r.refused),
        )


EXTRA = ("weights", "meaning")


@app.command()
def explain(
    request_id: RequestArg,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Why one item got its outcome: every check with its citation, and the match evidence."""

    def view(info: dict[str, Any]) -> None:
        render.say(f"{request_id} / {item_id}: {info['outcome']}")
        render.rows(
            "Checks",
            info["checks"],
            [
                ("check", "check"),
                ("result", lambda c: {True: "pass", False: "FAIL", None: "review"}[c["passed"]]),
                ("decided", lambda c: "yes" if c.get("decided") else ""),
                ("source", lambda c: c.get("source") or ""),
                ("severity", "severity"),
                ("citation", "citation"),
                ("requirement", "sentence"),
            ],
        )
        match = info["match"]
        render.kv("Match evidence", {k: v for k, v in match.items() if k not in EXTRA})
        render.kv("Match weight per field (bits)", match["weights"])
        if match["meaning"]:
            render.kv("What the match reasons and flags mean", match["meaning"])
        if info["resolution"]:
            render.kv("Review resolution", info["resolution"])
        render.say(f"rule set {info['ruleset_sha256']}  model {info['model_sha256']}")

    run(home, json_out, svc.explain, request_id, item_id, view=view)


@app.command()
def outcomes(
    request_id: RequestArg,
    out_file: Annotated[
        Path, typer.Option("--out", help="A new file to write: .csv, .parquet or .json.")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export the per-item view for officers: item_id, outcome, checks, record_id and one
    column per field that would be released. Writing it is recorded in the ledger."""
    run(
        home,
        json_out,
        svc.outcomes,
        request_id,
        out_file,
        view=lambda r: render.say(f"Wrote {r['rows']:,} rows to {r['out']}."),
    )


@app.command()
def review(
    request_id: RequestArg,
    item: Annotated[
        list[str] | None, typer.Option("--item", help="Resolve this item (repeatable).")
    ] = None,
    groups: Annotated[
        bool, typer.Option("--groups", help="List the review groups (reason, size, sample).")
    ] = False,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Resolve every item of this group (a name --groups lists)."),
    ] = None,
    withhold: Annotated[bool, typer.Option("--withhold", help="Resolve to withhold.")] = False,
    disclose: Annotated[
        bool,
        typer.Option(
            "--disclose",
            help="Resolve to disclose: one --item naming --record, or a --group (each item to "
            "its own candidate).",
        ),
    ] = False,
    record: Annotated[
        str | None,
        typer.Option("--record", help="With --disclose --item: the record you identified."),
    ] = None,
    withhold_all: Annotated[
        bool, typer.Option("--withhold-all", help="Resolve every open review item to withhold.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the items in review with their evidence (or --groups: grouped by reason, with a
    sample to inspect), or resolve them: --item ID --withhold, --item ID --disclose --record
    REC (the record you identified), --group NAME --withhold|--disclose, or --withhold-all;
    always with --reason TEXT (recorded for every item)."""
    if groups:
        run(home, json_out, svc.review_groups, request_id, view=_groups_table)
        return
    if not (withhold_all or item or group):
        run(home, json_out, svc.review_list, request_id, view=_review_table)
        return
    with guarded(json_out):
        _check_resolution(withhold_all, item, group, withhold, disclose, record)
    run(
        home,
        json_out,
        svc.review_resolve,
        request_id,
        "DISCLOSE" if disclose else "WITHHOLD",
        reason,
        items=item or None,
        records={item[0]: record} if disclose and item and record else None,
        group=group,
        view=lambda r: render.say(f"Resolved {r['resolved']:,} item(s): {r['decision']}."),
    )


def _check_resolution(
    withhold_all: bool,
    item: list[str] | None,
    group: str | None,
    withhold: bool,
    disclose: bool,
    record: str | None,
) -> None:
    if sum(map(bool, (withhold_all, item, group))) > 1:
        raise InputError("Use one of --withhold-all, --item, --group.", code="bad_argument")
    if not withhold_all and withhold == disclose:
        raise InputError("Say --withhold or --disclose for the items.", code="bad_argument")
    if disclose and item and (len(item) != 1 or record is None):
        raise InputError(
            "To disclose, resolve one --item and name the --record you identified.",
            code="bad_argument",
        )


def _review_table(rows: list[dict[str, Any]]) -> None:
    render.rows(
        f"{len(rows):,} item(s) in review",
        rows,
        [
            ("item", "item_id"),
            ("candidate", "candidate"),
            ("p", lambda r: f"{r['probability'] or 0:.4f}"),
            ("margin", lambda r: f"{r['margin_bits'] or 0:.1f}"),
            ("why", "review_reasons"),
            ("flags", "flags"),
        ],
        limit=200,
    )


def _groups_table(rows: list[dict[str, Any]]) -> None:
    render.rows(
        f"{sum(g['items'] for g in rows):,} item(s) in review, {len(rows):,} group(s)",
        rows,
        [
            ("group", "group"),
            ("items", "items"),
            ("disclosable", "disclosable"),
            ("why", lambda g: "; ".join(g["meaning"])),
            ("sample (see explain)", lambda g: " ".join(s["item_id"] for s in g["sample"])),
        ],
    )


@app.command()
def prepare(request_id: RequestArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Prepare the release of a decided request (no item may still be in review): records the
    hash of exactly what will be released."""

    def view(info: dict[str, Any]) -> None:
        render.say(
            f"{request_id} prepared by {info['prepared_by']}: {info['disclosures']:,} "
            f"disclosure(s) of {', '.join(info['fields']) or 'nothing'} to "
            f"{info['recipients']} recipient(s); a second person must approve it."
        )
        if not info["eligible_approvers"]:
            render.say(
                "No eligible approver is active (an approver who neither prepared nor "
                "submitted it): the release stays blocked until one is."
            )

    run(home, json_out, svc.prepare, request_id, view=view)


@app.command()
def approve(request_id: RequestArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Approve a prepared release: never one you prepared or a request you submitted."""
    run(
        home,
        json_out,
        svc.approve,
        request_id,
        view=lambda r: render.say(
            f"{request_id} approved by {r['approved_by']} (prepared by {r['prepared_by']})."
        ),
    )


@app.command()
def release(
    request_id: RequestArg,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the response files (new, or without them).")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the response of an approved release: permitted fields for disclosed items, one
    indistinguishable answer for record-dependent refusals, cited defects, a signed ledger
    checkpoint. Every disclosure gets its ledger leaf in the same transaction; safe to re-run
    (a repeated delivery is recorded)."""
    run(
        home,
        json_out,
        svc.release,
        request_id,
        out_dir,
        view=lambda r: render.kv(f"Released {request_id}", r.to_dict()),
    )


@app.command()
def recall(
    request_id: Annotated[
        str | None,
        typer.Argument(
            help="A released request: recall all its disclosures (those not recalled yet)."
        ),
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option("--items", help="CSV/Parquet with request_id, item_id: recall just these."),
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the disclosures were improper (recorded).")
    ] = "",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for the notice (default: recalls/<id> in the workspace)."
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Mark disclosures as improper (e.g. after a court ruling): lists the items, recipients
    and fields affected and writes the return-or-destroy notice for the recipient."""

    def view(info: dict[str, Any]) -> None:
        render.kv(
            f"Recall {info['recall_id']}",
            {
                "items recalled": info["items"],
                "requests": info["requests"],
                "recipients": [
                    f"{o.get('name')} ({o.get('id')})" for rs in info["recipients"] for o in rs
                ],
                "fields": info["fields"],
                "notice": info["notice"],
            },
        )
        render.say("Record the recipient's certification with 'custodes certify-destruction'.")

    run(
        home,
        json_out,
        svc.recall,
        reason=reason,
        request_id=request_id,
        items_file=items,
        out=out_dir,
        view=view,
    )


@app.command("recalls")
def recalls_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Recalls, whether the agency acknowledged the notice and whether the recipient has
    certified destruction (open, overdue, certified)."""
    columns: list[tuple[str, render.Cell]] = [
        ("recall", "recall_id"),
        ("issued", lambda r: str(r["at"])[:19]),
        ("items", "items"),
        ("status", "status"),
        ("return by", "return_by"),
        ("acknowledged", lambda r: "yes" if r["acknowledged"] else "no"),
        ("certified by", "certified_by"),
    ]
    run(
        home,
        json_out,
        svc.recalls,
        view=lambda rows: render.rows("Recalls", rows, columns, empty="No recalls."),
    )


@app.command("certify-destruction")
def certify_destruction(
    recall_id: Annotated[str, typer.Argument(help="The recall's id (rcl-…).")],
    by: Annotated[str, typer.Option("--by", help="Who certified it (name and title).")],
    on: Annotated[str, typer.Option("--on", help="Date of the certification, YYYY-MM-DD.")],
    certificate: Annotated[
        str | None, typer.Option("--certificate", help="Reference of the written certificate.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the recipient's certification that recalled information was destroyed."""
    with guarded(json_out):
        day = iso_date(on, "--on must be a date, YYYY-MM-DD.")
    run(
        home,
        json_out,
        svc.certify,
        recall_id,
        certified_by=by,
        certified_on=day,
        certificate=certificate,
        view=lambda r: render.say(
            f"Recall {r['recall_id']}: destruction certified by {r['certified_by']} on "
            f"{r['certified_on']}."
        ),
    )


@app.command("next")
def next_step(request_id: RequestArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Where a request stands, what comes next, who may do it, and whether you may."""
    run(
        home,
        json_out,
        svc.next_step,
        request_id,
        view=lambda r: render.kv(f"{request_id}: {r['state']}", r),
    )
