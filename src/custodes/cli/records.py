"""records import | generate | summary | show | flag-sensitive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, ReasonOpt, group, run, spinner
from custodes.services import records as svc

records_app = group("records", "The confidential master file: import, generate, summarise.")


@records_app.command("import")
def records_import(
    people: Annotated[
        Path,
        typer.Argument(
            help="People file (.csv or .parquet): tin,tin_type,first_name,middle_name,"
            "last_name,suffix,dob[,record_id]."
        ),
    ],
    addresses: Annotated[
        Path,
        typer.Argument(
            help="Address file (.csv or .parquet): tin,tax_year,street,unit,city,state,zip."
        ),
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Load people and their address history into the master file: all rows or none.

    Every row is validated (TIN shape, dates, state codes, ZIP shape, duplicates) before
    anything is written; the first problems are listed with file, line and column. Records
    are keyed by TIN, so re-importing the same files changes nothing. What the import changes
    (the addresses that may be disclosed) is in use only once a second administrator confirms
    it ('custodes changes confirm ID').
    """

    def view(info: dict[str, Any]) -> None:
        if info["unchanged"]:
            render.say("Nothing changed: the master file already holds exactly these rows.")
        render.kv("Import", info)
        if info["pending"]:
            render.say(
                "Validated and written, not yet in use: the master file changes when a second "
                f"administrator confirms it: 'custodes changes confirm {info['change']}'."
            )

    with spinner(json_out, "Validating and loading…"):
        run(home, json_out, svc.import_, people, addresses, view=view)


@records_app.command("generate")
def records_generate(
    people: Annotated[int, typer.Option("--people", min=1, help="How many filers.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 1,
    replace: Annotated[
        bool, typer.Option("--replace", help="Discard the current master file first.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a synthetic master file with ground truth (households, Jr/Sr, twins, ITINs,
    movers, variant spellings). Deterministic for a seed."""
    with spinner(json_out, f"Generating {people:,} people…"):
        run(
            home,
            json_out,
            svc.generate,
            people,
            seed,
            replace=replace,
            view=lambda r: render.kv("Synthetic master file", r),
        )


@records_app.command("summary")
def records_summary(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Counts that describe the master file without revealing anyone in it."""
    run(home, json_out, svc.summary, view=lambda r: render.kv("Master file", r))


@records_app.command("show")
def records_show(
    record_id: Annotated[str, typer.Argument(help="The record's opaque id (rec-…).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why you need to see it (recorded).")],
    request: Annotated[
        str | None,
        typer.Option("--request", help="The open request whose candidate this record is."),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Inspect one taxpayer record: needs a stated purpose and an open request in whose match
    results it is a candidate; every inspection, shown or refused, is recorded (UNAX)."""

    def view(rec: dict[str, Any]) -> None:
        render.kv(
            f"Record {record_id} (inspection recorded)",
            {k: v for k, v in rec.items() if k != "addresses"},
        )
        render.rows(
            "Addresses filed",
            rec["addresses"],
            [
                (c.replace("_", " "), c)
                for c in ("tax_year", "street", "unit", "city", "state", "zip")
            ],
        )

    run(home, json_out, svc.show, record_id, purpose=purpose, request_id=request, view=view)


@records_app.command("flag-sensitive")
def records_flag_sensitive(
    record_id: Annotated[str, typer.Argument(help="The record's opaque id.")],
    reason: ReasonOpt,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Flag a record sensitive: every inspection of it is reported to auditors."""
    run(
        home,
        json_out,
        svc.flag_sensitive,
        record_id,
        reason,
        view=lambda r: render.say(f"{r['record_id']} flagged sensitive."),
    )
