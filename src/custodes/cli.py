"""The `custodes` command: every capability reachable from the shell.

A face only: each command parses its arguments, calls a service function and renders the
result (a Rich table for people, JSON with --json for scripts). Errors a user can cause are
printed as one line (or a JSON object with a machine-readable code) with exit status 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from custodes import __version__
from custodes.errors import CustodesError

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="custodes: a disclosure gateway for confidential government records.\n\n"
    "Every request and every person in it is checked against the statute, matched with a "
    "measured error rate, released at the minimum, approved by two people and recorded in a "
    "ledger outsiders can verify.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold personal data: never print them
    add_completion=False,
    rich_markup_mode="rich",
)
records_app = typer.Typer(
    help="The confidential master file: import, generate, summarise.", no_args_is_help=True
)
requests_app = typer.Typer(help="Requests in the interchange format.", no_args_is_help=True)
app.add_typer(records_app, name="records")
app.add_typer(requests_app, name="requests")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="CUSTODES_HOME",
        show_default="./custodes-data",
        help="Workspace folder (or set CUSTODES_HOME).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def handles_errors(fn: F) -> F:
    """Turn a CustodesError into one line (or a JSON error) and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CustodesError as exc:
            if kwargs.get("json_out"):
                _emit_json({"error": exc.to_dict()})
            else:
                err.print(
                    f"[bold red]error[/] ({exc.code}): {exc.message}",
                    highlight=False,
                    markup=True,
                    soft_wrap=True,
                )
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            # Unexpected: never print the message or locals (they may hold personal data).
            if os.environ.get("CUSTODES_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error[/]: {type(exc).__name__}. Nothing was "
                "committed by the failing step. Set CUSTODES_DEBUG=1 for a traceback "
                "(it may contain personal data)."
            )
            raise typer.Exit(70) from None

    return wrapper  # type: ignore[return-value]


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows.items():
        table.add_row(
            k.replace("_", " "),
            f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v),
        )
    return table


def _version(value: bool) -> None:
    if value:
        out.print(f"custodes {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """custodes: a disclosure gateway for confidential government records."""


@app.command()
@handles_errors
def init(
    home: HomeOpt = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            envvar="CUSTODES_STORE_URL",
            help="SQLAlchemy URL of the transactional store (default: SQLite file in the "
            "workspace; postgresql://... for PostgreSQL).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace (or bring an existing one's store up to date)."""
    from custodes.workspace import init_workspace

    ws, created = init_workspace(home, store_url)
    info = {
        "home": str(ws.home),
        "store": ws.engine.url.render_as_string(hide_password=True),
        "created": created,
    }
    if json_out:
        _emit_json(info)
    else:
        verb = "Created" if created else "Updated"
        out.print(f"{verb} workspace at [bold]{ws.home}[/] (store: {info['store']}).")


@app.command()
@handles_errors
def status(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Summarise the workspace: its store and master file (counts only, no personal data)."""
    from custodes.records.master import summary
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    info = {
        "home": str(ws.home),
        "store": ws.engine.url.render_as_string(hide_password=True),
        "master_file": summary(ws),
    }
    if json_out:
        _emit_json(info)
        return
    out.print(f"Workspace [bold]{ws.home}[/] (store: {info['store']})")
    out.print(_kv_table("Master file", info["master_file"]))  # type: ignore[arg-type]


@records_app.command("import")
@handles_errors
def records_import(
    people: Annotated[
        Path,
        typer.Argument(
            help="People file (.csv or .parquet): "
            "tin,tin_type,first_name,middle_name,last_name,"
            "suffix,dob[,record_id]."
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
    are keyed by TIN, so re-importing the same files changes nothing.
    """
    from custodes.records.importer import import_master
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    t0 = time.perf_counter()
    with err.status("Validating and loading…"):
        result = import_master(ws, people, addresses)
    info = result.to_dict() | {"seconds": round(time.perf_counter() - t0, 2)}
    if json_out:
        _emit_json(info)
        return
    if result.unchanged:
        out.print("Nothing changed: the master file already holds exactly these rows.")
    out.print(_kv_table("Import", info))


@records_app.command("generate")
@handles_errors
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
    from custodes.records.generator import generate_master
    from custodes.records.master import summary
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    t0 = time.perf_counter()
    with err.status(f"Generating {people:,} people…"):
        generate_master(ws, people, seed, replace=replace)
    info = summary(ws) | {"seconds": round(time.perf_counter() - t0, 2)}
    if json_out:
        _emit_json(info)
    else:
        out.print(_kv_table("Synthetic master file", info))


@records_app.command("summary")
@handles_errors
def records_summary(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Counts that describe the master file without revealing anyone in it."""
    from custodes.records.master import summary
    from custodes.workspace import open_workspace

    info = summary(open_workspace(home))
    if json_out:
        _emit_json(info)
    else:
        out.print(_kv_table("Master file", info))


@requests_app.command("generate")
@handles_errors
def requests_generate(
    provision: Annotated[str, typer.Option("--provision", help="Provision id, e.g. irc-6103-i-2.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the request to.")],
    items: Annotated[int, typer.Option("--items", min=1, help="How many persons.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty folder.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a synthetic request (envelope.json, items.csv) and its truth.csv, drawn from the
    master file plus people not in it, with realistic defects."""
    from custodes.requests.generator import generate_request
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    result = generate_request(ws, provision, items, seed, out_dir, overwrite=overwrite)
    if json_out:
        _emit_json(result.to_dict())
        return
    out.print(
        f"Wrote {result.items:,} items to [bold]{result.folder}[/] "
        "(envelope.json, items.csv, truth.csv)."
    )
    table = Table("defect", "items", title="Items by defect (ground truth)", title_justify="left")
    for k, v in result.by_defect.items():
        table.add_row(k, f"{v:,}")
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
