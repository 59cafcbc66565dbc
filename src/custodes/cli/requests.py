"""submit, withdraw, requests list | show | generate | confirm-paper."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, ReasonOpt, RequestArg, app, group, guarded, run
from custodes.errors import InputError
from custodes.labels import label
from custodes.services import requests as svc

requests_app = group("requests", "Requests in the interchange format.")


@app.command()
def submit(
    request_dir: Annotated[
        Path,
        typer.Argument(
            help="A request directory: envelope.json and its items file (CSV or Parquet, UTF-8)."
        ),
    ],
    paper: Annotated[
        Path | None,
        typer.Option(
            "--paper",
            help="Staff only: the scan of the paper request this folder was keyed in from "
            "(its SHA-256 is recorded; a second staff member confirms before processing).",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Receive a request into the workspace: shape-checked, copied, hashed, given an id.
    Submitting the same content again is recognised, not duplicated. A request in an agency's
    name comes from that agency's account; staff key in only one received on paper (--paper
    SCAN), which a second staff member confirms ('custodes requests confirm-paper REQ')."""
    with guarded(json_out):
        scan = _scan_sha256(paper) if paper is not None else None

    def view(sub: Any) -> None:
        if sub.duplicate:
            render.say(f"Already received as {sub.request_id} ({sub.state}); nothing new.")
        else:
            render.say(
                f"Received {sub.request_id}: {sub.provision}, {sub.items:,} items from "
                f"{sub.agency}."
            )
        for w in sub.warnings:
            render.say(f"warning: {w}")
        if sub.warnings_total > len(sub.warnings):
            render.say(f"… and {sub.warnings_total - len(sub.warnings):,} more warnings.")

    run(home, json_out, svc.submit, request_dir, paper_sha256=scan, view=view)


def _scan_sha256(path: Path) -> str:
    """The SHA-256 of the paper scan (read here, streamed; the scan itself is not kept)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (the paper request's scan).", code="file_not_found")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@app.command()
def withdraw(
    request_id: RequestArg,
    reason: ReasonOpt,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a request that has not been released."""
    run(
        home,
        json_out,
        svc.withdraw,
        request_id,
        reason,
        view=lambda r: render.say(f"{r['request_id']}: {r['from']} → withdrawn."),
    )


@requests_app.command("confirm-paper")
def confirm_paper(request_id: RequestArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Confirm, as a second staff member, that a request keyed in from paper matches its scan
    (never the one who keyed it in). It is processed only after this."""
    run(
        home,
        json_out,
        svc.confirm_paper,
        request_id,
        view=lambda r: render.say(
            f"{r['request_id']}: keyed in by {r['keyed_by']} from the scan {r['paper_sha256']}; "
            f"confirmed by {r['confirmed_by']}."
        ),
    )


@requests_app.command("list")
def requests_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Received requests with their state (no personal data)."""
    columns: list[tuple[str, render.Cell]] = [
        ("id", "id"),
        ("provision", "provision"),
        ("agency", "agency"),
        ("items", "items"),
        ("state", lambda r: label(r["state"])),
        ("submitted", lambda r: str(r["submitted_at"])[:16].replace("T", " ")),
    ]
    run(home, json_out, svc.listing, view=lambda rows: render.rows("Requests", rows, columns))


@requests_app.command("show")
def requests_show(request_id: RequestArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """One request: its state and every move it made, with who made it."""

    def view(r: dict[str, Any]) -> None:
        render.kv(f"Request {request_id}", {k: v for k, v in r.items() if k != "history"})
        render.rows(
            "History", r["history"], [("from", "from"), ("to", "to"), ("at", "at"), ("by", "actor")]
        )

    run(home, json_out, svc.status, request_id, view=view)


@requests_app.command("generate")
def requests_generate(
    provision: Annotated[str, typer.Option("--provision", help="Provision id, e.g. irc-6103-i-2.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the request to.")],
    items: Annotated[int, typer.Option("--items", min=1, help="How many persons.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty folder.")
    ] = False,
    corruption: Annotated[
        str,
        typer.Option(
            "--corruption",
            help="Corruption mix on top of the defects: none, typical (30 % of items, 1-2 "
            "modifications), heavy (60 %, 1-4; FEBRL4's density). See docs/formats.md.",
        ),
    ] = "none",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a synthetic request (envelope.json, items.csv) and its truth.csv, drawn from a
    synthetic master file plus people not in it, with realistic defects and, optionally,
    corrupted the way real lists are (OCR, keyboard, phonetic, swapped names, DOB digits...)."""

    def view(result: Any) -> None:
        render.say(
            f"Wrote {result.items:,} items to {result.folder} (envelope.json, items.csv, "
            "truth.csv)."
        )
        render.rows(
            "Items by defect (ground truth)",
            [{"defect": k, "items": v} for k, v in result.by_defect.items()],
            [("defect", "defect"), ("items", "items")],
        )

    run(
        home,
        json_out,
        svc.generate,
        provision,
        items,
        seed,
        out_dir,
        overwrite=overwrite,
        corruption=corruption,
        view=view,
    )
