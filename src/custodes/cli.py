"""The `custodes` command: every capability reachable from the shell.

A face only: each command parses its arguments, calls a service function and renders the
result (a Rich table for people, JSON with --json for scripts). Errors a user can cause are
printed as one line (or a JSON object with a machine-readable code) with exit status 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
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
    rich_markup_mode="markdown",
)
records_app = typer.Typer(
    help="The confidential master file: import, generate, summarise.", no_args_is_help=True
)
requests_app = typer.Typer(help="Requests in the interchange format.", no_args_is_help=True)
ledger_app = typer.Typer(
    help="The ledger: an append-only Merkle log of every event that "
    "outsiders can verify (RFC 9162, C2SP checkpoints and tiles).",
    no_args_is_help=True,
)
witness_app = typer.Typer(
    help="A witness that cosigns a ledger's consistent growth "
    "(C2SP tlog-witness), for an oversight body to run.",
    no_args_is_help=True,
)
rules_app = typer.Typer(
    help="The law as data: provisions, checks with citations, evaluation.", no_args_is_help=True
)
agencies_app = typer.Typer(
    help="Registry of requesting agencies and their safeguard status.", no_args_is_help=True
)
officials_app = typer.Typer(
    help="Registry of officials authorised to sign requests.", no_args_is_help=True
)
agreements_app = typer.Typer(
    help="Registered data-sharing agreements (overlays that can only add requirements).",
    no_args_is_help=True,
)
app.add_typer(rules_app, name="rules")
app.add_typer(agencies_app, name="agencies")
app.add_typer(officials_app, name="officials")
app.add_typer(agreements_app, name="agreements")
app.add_typer(records_app, name="records")
app.add_typer(requests_app, name="requests")
app.add_typer(ledger_app, name="ledger")
app.add_typer(witness_app, name="witness")
match_app = typer.Typer(
    help="Matching: identify each requested person in the master file, never the wrong one.",
    no_args_is_help=True,
)
app.add_typer(match_app, name="match")

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
RequestArg = Annotated[str, typer.Argument(help="The request's id.")]

# The signed-in actor of the command being run (one command per process; reset after each).
_SIGNED_IN: dict[str, Any] = {}


def _session_file(home: Path) -> Path:
    import getpass

    return home / ".sessions" / getpass.getuser()


def _open(home: Path | None, action: str) -> Any:
    """Open the workspace and sign the caller in for `action`: the session (CUSTODES_SESSION,
    else the one `custodes login` stored for this shell user) is checked now, against the
    role table, and again inside every transaction the command commits."""
    from custodes.access import service as acc
    from custodes.ledger import log
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    token = os.environ.get("CUSTODES_SESSION")
    if not token:
        stored = _session_file(ws.home)
        token = stored.read_text().strip() if stored.exists() else None
    actor = acc.authorize(ws, token, action)
    log.append_guard.set(acc.session_guard(token or ""))
    _SIGNED_IN.update(ws=ws, token=token, actor=actor)
    return ws


def _who() -> str:
    return _SIGNED_IN["actor"].name


def _recheck() -> None:
    """A long job re-checks its actor's session at every chunk and stops if it ended."""
    if _SIGNED_IN:
        from custodes.access import service as acc

        with _SIGNED_IN["ws"].engine.connect() as conn:
            acc.authenticate(conn, _SIGNED_IN["token"])


def _password(stdin: bool, prompt: str = "Password") -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt(prompt, hide_input=True)


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
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
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
        finally:
            if _SIGNED_IN:
                from custodes.ledger import log

                log.append_guard.set(None)
                _SIGNED_IN.clear()

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
    admin: Annotated[
        str | None,
        typer.Option(
            "--admin",
            help="Create the first administrator (a workspace has one "
            "bootstrap user; every other user is created by an administrator).",
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace (or bring an existing one's store up to date), optionally with its
    first administrator."""
    from custodes.access import service as acc
    from custodes.workspace import init_workspace

    ws, created = init_workspace(home, store_url)
    info: dict[str, Any] = {
        "home": str(ws.home),
        "store": ws.engine.url.render_as_string(hide_password=True),
        "created": created,
    }
    if admin:
        acc.create_user(ws, admin, _password(password_stdin), ["administrator"], by=None)
        info["admin"] = admin
    elif not acc.has_users(ws):
        info["note"] = "no users yet: run 'custodes init --admin NAME' to create the first"
    if json_out:
        _emit_json(info)
    else:
        verb = "Created" if created else "Updated"
        out.print(f"{verb} workspace at [bold]{ws.home}[/] (store: {info['store']}).")
        if admin:
            out.print(f"Administrator [bold]{admin}[/] created; sign in with 'custodes login'.")
        elif "note" in info:
            out.print(f"[yellow]Note:[/] {info['note']}.")


@app.command()
@handles_errors
def status(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Summarise the workspace: its store and master file (counts only, no personal data)."""
    from custodes.records.master import summary

    ws = _open(home, "status")
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

    ws = _open(home, "records.import")
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

    ws = _open(home, "records.generate")
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

    info = summary(_open(home, "records.summary"))
    if json_out:
        _emit_json(info)
    else:
        out.print(_kv_table("Master file", info))


@app.command()
@handles_errors
def submit(
    request_dir: Annotated[
        Path,
        typer.Argument(
            help="A request directory: envelope.json and its items file (CSV or Parquet, UTF-8)."
        ),
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Receive a request into the workspace: shape-checked, copied, hashed, given an id.
    Submitting the same directory again is recognised, not duplicated."""
    from custodes.requests.intake import submit as do_submit

    sub = do_submit(_open(home, "submit"), request_dir, actor=_who())
    if json_out:
        _emit_json(sub.to_dict())
    elif sub.duplicate:
        out.print(f"Already received as [bold]{sub.request_id}[/] ({sub.state}); nothing new.")
    else:
        out.print(
            f"Received [bold]{sub.request_id}[/]: {sub.provision}, {sub.items:,} items "
            f"from {sub.agency}."
        )


@app.command()
@handles_errors
def withdraw(
    request_id: Annotated[str, typer.Argument(help="The request's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a request that has not been released."""
    from custodes.requests.lifecycle import withdraw as do_withdraw

    ws = _open(home, "withdraw")
    before = do_withdraw(ws, request_id, reason, actor=_who())
    info = {"request_id": request_id, "from": before, "state": "withdrawn"}
    _emit_json(info) if json_out else out.print(f"{request_id}: {before} → withdrawn.")


@requests_app.command("list")
@handles_errors
def requests_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Received requests with their state (no personal data)."""
    from custodes.requests.intake import listing

    rows = listing(_open(home, "requests.list"))
    if json_out:
        _emit_json(rows)
        return
    table = Table(
        "id",
        "provision",
        "agency",
        "items",
        "state",
        "submitted",
        title="Requests",
        title_justify="left",
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["provision"]),
            str(r["agency"]),
            f"{r['items']:,}",
            str(r["state"]),
            str(r["submitted_at"])[:19],
        )
    out.print(table)


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

    ws = _open(home, "requests.generate")
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


def _vkey(value: str) -> Any:
    """A verifier key given as the key string itself or as a file holding it."""
    from custodes.errors import InputError
    from custodes.ledger.note import NoteError, Verifier

    text = value
    if "+" not in value or Path(value).exists():
        path = Path(value)
        if not path.exists():
            raise InputError(f"{value}: neither a verifier key nor a file.", code="bad_key")
        text = path.read_text().strip()
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise InputError(f"Verifier key: {exc}.", code="bad_key") from None


def _print_report(report: Any, json_out: bool) -> None:
    if json_out:
        _emit_json(report.to_dict())
    else:
        for line in report.checked:
            out.print(f"[green]ok[/]   {line}", highlight=False)
        for line in report.problems:
            out.print(f"[bold red]FAIL[/] {line}", highlight=False)
        out.print("[bold green]Verified.[/]" if report.ok else "[bold red]Verification failed.[/]")
    if not report.ok:
        raise typer.Exit(1)


@ledger_app.command("keygen")
@handles_errors
def ledger_keygen(
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="The log's origin, a schema-less URL (fixed for life)."),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the ledger's Ed25519 signing key (kept outside the database) and print the
    verifier key to publish."""
    from custodes.ledger.keys import key_path, keygen

    ws = _open(home, "ledger.sign")
    signer = keygen(ws, origin)
    info = {"origin": signer.name, "vkey": signer.verifier.vkey, "key_file": str(key_path(ws))}
    if json_out:
        _emit_json(info)
    else:
        err.print(f"Private key written to {info['key_file']} (mode 0600; back it up).")
        sys.stdout.write(signer.verifier.vkey + "\n")


@ledger_app.command("key")
@handles_errors
def ledger_key(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Print the ledger's verifier key (name+id+base64), for auditors and witnesses."""
    from custodes.ledger.service import verifier

    vkey = verifier(_open(home, "ledger.read")).vkey
    _emit_json({"vkey": vkey}) if json_out else sys.stdout.write(vkey + "\n")


@ledger_app.command("status")
@handles_errors
def ledger_status(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Size, root and latest checkpoint of the ledger."""
    from custodes.ledger.service import status as ledger_state

    info = ledger_state(_open(home, "ledger.read"))
    _emit_json(info) if json_out else out.print(_kv_table("Ledger", info))


@ledger_app.command("checkpoint")
@handles_errors
def ledger_checkpoint(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Sign a checkpoint of the current tree (only if it extends the last one) and print it."""
    from custodes.ledger.service import checkpoint

    cp, note = checkpoint(_open(home, "ledger.sign"))
    if json_out:
        _emit_json({"origin": cp.origin, "size": cp.size, "note": note.render()})
    else:
        sys.stdout.write(note.render())


@ledger_app.command("export")
@handles_errors
def ledger_export(
    folder: Annotated[Path, typer.Argument(help="Folder to write the tlog-tiles export to.")],
    bodies: Annotated[
        bool,
        typer.Option(
            "--bodies",
            help="Also write bodies.jsonl (event bodies and salts: for authorised auditors only).",
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the ledger as a C2SP tlog-tiles directory: checkpoint, hash tiles, entry bundles.
    The export reveals no personal data and can be verified offline with the verifier key."""
    from custodes.ledger.service import export

    info = export(_open(home, "ledger.read"), folder, bodies=bodies)
    _emit_json(info) if json_out else out.print(_kv_table("Export", info))


@ledger_app.command("verify")
@handles_errors
def ledger_verify(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="An export folder or a receipt file; omit to audit the workspace's store."
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The log's verifier key (or a file "
            "holding it). Required for exports and receipts.",
        ),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="A checkpoint seen earlier: prove the log only grew."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="A tlog-policy file naming the witnesses that must have cosigned."
        ),
    ] = None,
    body: Annotated[
        Path | None,
        typer.Option(
            "--body",
            help="With a receipt: the event body file, to check it against the commitment.",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify the ledger: the workspace store (no PATH), an export folder, or a receipt.
    Exit status 1 when anything does not verify; each problem says where."""
    from custodes.errors import InputError
    from custodes.ledger.policy import Policy, PolicyError
    from custodes.ledger.verify import verify_export, verify_receipt

    pol = None
    if policy is not None:
        try:
            pol = Policy.parse(policy.read_text())
        except (PolicyError, OSError) as exc:
            raise InputError(f"{policy}: {exc}", code="bad_policy") from None
    if path is None:
        from custodes.ledger.service import audit_store

        report = audit_store(_open(home, "ledger.read"), _vkey(key) if key else None)
    else:
        if key is None:
            raise InputError(
                "--key is required to verify an export or a receipt.", code="missing_key"
            )
        vkey = _vkey(key)
        if path.is_dir():
            prev = previous.read_text() if previous else None
            report = verify_export(path, vkey, previous=prev, policy=pol)
        elif path.is_file():
            body_doc = json.loads(body.read_text()) if body else None
            report = verify_receipt(path.read_text(), vkey, policy=pol, body=body_doc)
        else:
            raise InputError(f"{path}: no such file or folder.", code="file_not_found")
    _print_report(report, json_out)


@ledger_app.command("prove")
@handles_errors
def ledger_prove(
    index: Annotated[int, typer.Argument(help="The event's index in the ledger.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the receipt here (default: print it).")
    ] = None,
    body_out: Annotated[
        Path | None,
        typer.Option(
            "--body-out", help="Also write the event body and salt (for the receipt's holder)."
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """A self-contained receipt (c2sp.org/tlog-proof@v1) that one event is in the ledger:
    inclusion proof plus signed checkpoint. Check it with 'custodes ledger verify FILE --key'."""
    from custodes.ledger.service import prove

    receipt, body_doc = prove(_open(home, "ledger.read"), index)
    if out_file:
        out_file.write_text(receipt)
        err.print(f"Receipt written to {out_file}.")
    else:
        sys.stdout.write(receipt)
    if body_out:
        body_out.write_text(json.dumps(body_doc, ensure_ascii=False) + "\n")


@ledger_app.command("cosign")
@handles_errors
def ledger_cosign(
    witness_url: Annotated[str, typer.Option("--witness", help="The witness's submission URL.")],
    witness_key: Annotated[
        str, typer.Option("--witness-key", help="The witness's verifier key (cosignature/v1).")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask a witness to cosign the latest checkpoint (proving consistency with what it saw)."""
    from custodes.ledger.service import cosign

    info = cosign(_open(home, "ledger.sign"), witness_url, _vkey(witness_key))
    _emit_json(info) if json_out else out.print(
        f"Cosigned by {info['witness']} at size {info['size']:,}."
    )


@witness_app.command("keygen")
@handles_errors
def witness_keygen(
    name: Annotated[str, typer.Argument(help="The witness's name, e.g. witness.oig.example.")],
    key_file: Annotated[Path, typer.Option("--out", help="Where to write the private key.")],
    json_out: JsonOpt = False,
) -> None:
    """Create a witness key (Ed25519 cosignature/v1) and print its verifier key."""
    from custodes.errors import ConflictError
    from custodes.ledger.witness import keygen

    if key_file.exists():
        raise ConflictError(f"{key_file} already exists.", code="key_exists")
    signer = keygen(name, key_file)
    _emit_json({"vkey": signer.verifier.vkey}) if json_out else sys.stdout.write(
        signer.verifier.vkey + "\n"
    )


@witness_app.command("serve")
@handles_errors
def witness_serve(
    key_file: Annotated[Path, typer.Option("--key", help="The witness's private key file.")],
    logs: Annotated[
        list[str], typer.Option("--log", help="Verifier key of a log to witness (repeatable).")
    ],
    state: Annotated[
        Path, typer.Option("--state", help="SQLite file for the witness's state.")
    ] = Path("witness.db"),
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 7380,
) -> None:
    """Run a witness: POST <url>/add-checkpoint cosigns only consistent growth."""
    from custodes.errors import InputError
    from custodes.ledger.note import NoteError, Signer
    from custodes.ledger.witness import Witness, make_server

    try:
        signer = Signer.decode(key_file.read_text())
    except (OSError, NoteError) as exc:
        raise InputError(f"{key_file}: {exc}", code="bad_key") from None
    server = make_server(Witness(state, signer, [_vkey(v) for v in logs]), host, port)
    err.print(
        f"Witness {signer.name} listening on http://{host}:{server.server_port}/ "
        f"({len(logs)} log(s)); Ctrl-C to stop."
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="A rule set folder (default: the reference §6103 rule set)."),
]


@rules_app.command("list")
@handles_errors
def rules_list(rules: RulesOpt = None, json_out: JsonOpt = False) -> None:
    """The provisions of the rule set, with its version and hash."""
    from custodes.rules.ruleset import load

    rs = load(rules)
    rows = [
        {"id": p.id, "citation": p.citation, "title": p.title, "releasable": p.releasable}
        for p in sorted(rs.provisions.values(), key=lambda p: p.id)
    ]
    if json_out:
        _emit_json(
            {"name": rs.name, "version": rs.version, "sha256": rs.sha256, "provisions": rows}
        )
        return
    table = Table(
        "provision",
        "citation",
        "title",
        "may release",
        title=f"{rs.name} {rs.version} (sha256 {rs.sha256[:12]}…)",
        title_justify="left",
    )
    for r in rows:
        table.add_row(r["id"], r["citation"], r["title"], ", ".join(r["releasable"]))
    out.print(table)
    out.print(f"[dim]{rs.disclaimer}[/]")


@rules_app.command("show")
@handles_errors
def rules_show(
    provision: Annotated[str, typer.Argument(help="Provision id, e.g. irc-6103-i-2.")],
    rules: RulesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One provision, readable: who may sign, every requirement with its citation."""
    from custodes.rules.ruleset import load

    rs = load(rules)
    p = rs.provision(provision)
    reqs = [rs.checks[c] for c in p.request_requirements + p.item_requirements]
    if json_out:
        _emit_json(
            {
                "provision": p.__dict__,
                "checks": [c.__dict__ for c in reqs],
                "parameters": {
                    k: {"value": v, "rationale": rs.rationale.get(k)}
                    for k, v in rs.parameters.items()
                },
            }
        )
        return
    out.print(f"[bold]{p.citation}[/] — {p.title}")
    out.print(
        f"Source: {p.source_url}\nMay sign: {', '.join(p.signer_roles)}"
        f"\nMay release: {', '.join(p.releasable)}\nUse limits: {p.use_limits}"
        f"\nRetention: {p.retention}\nApprovals: {p.approvals}"
    )
    table = Table("check", "level", "if it fails", "citation", "requirement")
    for c in reqs:
        table.add_row(
            c.id,
            c.level + (" (after matching)" if c.phase == "after_matching" else ""),
            c.severity,
            c.citation,
            c.sentence,
        )
    out.print(table)
    out.print(f"[dim]{p.note}[/]")


@rules_app.command("check")
@handles_errors
def rules_check(
    request_dir: Annotated[
        Path, typer.Argument(help="A request directory (envelope.json + items).")
    ],
    rules: RulesOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a request: request-level verdicts, then per check how many items fail, with
    example item ids (never personal data). Exit status 1 when the request must be refused."""
    from custodes.rules.service import check_request

    ev = check_request(_open(home, "rules.check"), request_dir, rules)
    if json_out:
        _emit_json(ev.to_dict())
    else:
        table = Table(
            "check", "verdict", "citation", "detail", title="Request", title_justify="left"
        )
        for v in ev.request:
            table.add_row(
                v.check,
                "[green]pass[/]" if v.passed else f"[red]{v.severity}[/]",
                v.citation,
                v.detail or "",
            )
        out.print(table)
        table = Table(
            "check",
            "failing items",
            "if it fails",
            "citation",
            "examples",
            title=f"Items ({ev.items:,})",
            title_justify="left",
        )
        for v in ev.item:
            table.add_row(
                v.check,
                "pending (after matching)" if v.passed is None else f"{v.failing:,}",
                v.severity,
                v.citation,
                ", ".join(v.examples),
            )
        out.print(table)
        out.print(f"Rule set {ev.ruleset} sha256 {ev.ruleset_sha256}")
        out.print(
            "[bold red]The request must be refused.[/]"
            if ev.refused
            else "The request may proceed to matching."
        )
    if ev.refused:
        raise typer.Exit(1)


@rules_app.command("lint")
@handles_errors
def rules_lint(
    folder: Annotated[Path, typer.Argument(help="A rule set folder.")], json_out: JsonOpt = False
) -> None:
    """Validate a rule set: unknown checks, missing citations, SQL that does not parse, TRI
    released without a court order... Each problem with its file and line."""
    from custodes.rules.ruleset import lint

    rs, problems = lint(folder)
    if json_out:
        _emit_json(
            {
                "ok": not problems,
                "sha256": rs.sha256 if rs else None,
                "problems": [p.__dict__ for p in problems],
            }
        )
    else:
        for p in problems:
            out.print(f"[red]{p}[/]", highlight=False, soft_wrap=True)
        if rs:
            out.print(
                f"[green]ok[/] {len(rs.provisions)} provisions, {len(rs.checks)} checks, "
                f"sha256 {rs.sha256}"
            )
    if problems:
        raise typer.Exit(1)


@agencies_app.command("add")
@handles_errors
def agencies_add(
    name: Annotated[str, typer.Argument(help="The agency's name as requests give it.")],
    safeguards_current: Annotated[
        bool, typer.Option("--safeguards-current", help="Its safeguard review is current.")
    ] = False,
    open_findings: Annotated[
        int, typer.Option("--open-findings", help="Open safeguard findings.")
    ] = 0,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add or update an agency (recorded in the ledger)."""
    from custodes.rules.registry import add_agency

    row = add_agency(
        _open(home, "registry.change"),
        name,
        safeguards_current=safeguards_current,
        open_findings=open_findings,
    )
    _emit_json(row) if json_out else out.print(f"Agency [bold]{row['name']}[/] recorded.")


@officials_app.command("add")
@handles_errors
def officials_add(
    agency: Annotated[str, typer.Option("--agency")],
    name: Annotated[str, typer.Option("--name")],
    title: Annotated[str, typer.Option("--title")],
    role: Annotated[str, typer.Option("--role", help="e.g. head_of_agency, us_attorney.")],
    valid_from: Annotated[str, typer.Option("--from", help="YYYY-MM-DD")],
    valid_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register an official authorised to sign, with validity dates (recorded in the ledger)."""
    import datetime as dt

    from custodes.errors import InputError
    from custodes.rules.registry import add_official

    try:
        start = dt.date.fromisoformat(valid_from)
        end = dt.date.fromisoformat(valid_to) if valid_to else None
    except ValueError:
        raise InputError("--from and --to take dates as YYYY-MM-DD.", code="bad_argument") from None
    row = add_official(
        _open(home, "registry.change"),
        agency=agency,
        name=name,
        title=title,
        role=role,
        valid_from=start,
        valid_to=end,
    )
    _emit_json(row) if json_out else out.print(f"Official #{row['id']} recorded.")


@agreements_app.command("add")
@handles_errors
def agreements_add(
    file: Annotated[Path, typer.Argument(help="An agreement overlay (YAML).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a data-sharing agreement; it can only add requirements (recorded in the
    ledger)."""
    from custodes.rules.registry import add_agreement

    agr = add_agreement(_open(home, "registry.change"), file)
    _emit_json(agr.__dict__) if json_out else out.print(
        f"Agreement [bold]{agr.id}[/] registered for {agr.provision}."
    )


def _registry_list(table: str, home: Path | None, json_out: bool) -> None:
    from custodes.rules.registry import listing

    rows = listing(_open(home, "registry.read"), table)
    if json_out:
        _emit_json(rows)
        return
    if not rows:
        out.print(f"No {table} registered.")
        return
    t = Table(*rows[0].keys(), title=table.capitalize(), title_justify="left")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r.values()))
    out.print(t)


@agencies_app.command("list")
@handles_errors
def agencies_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """The agencies in the registry."""
    _registry_list("agencies", home, json_out)


@officials_app.command("list")
@handles_errors
def officials_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """The officials in the registry, with their validity dates."""
    _registry_list("officials", home, json_out)


@agreements_app.command("list")
@handles_errors
def agreements_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """The registered agreements."""
    _registry_list("agreements", home, json_out)


STAGE_LABELS = {
    "prepare": "Standardizing names and addresses",
    "train": "Training (prior, u by sampling, m by EM)",
    "score": "Scoring candidate pairs",
    "decide": "Ranking, person gate, flags, address on record",
}


@contextlib.contextmanager
def _stages(json_out: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A Rich progress bar per stage on stderr (none with --json)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    if json_out:
        yield lambda stage, done, total: _recheck()
        return
    with Progress(
        TextColumn("{task.description:<48}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            _recheck()
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Where Splink scores pairs: duckdb (embedded) or spark (CUSTODES_SPARK_MASTER, "
        "default local[2]).",
    ),
]
MinPOpt = Annotated[
    float | None,
    typer.Option("--min-probability", help="Best candidate's match probability must reach this."),
]
MarginOpt = Annotated[
    float | None,
    typer.Option("--margin", help="Bits of match weight the best must beat the runner-up by."),
]
NamesakeOpt = Annotated[
    float | None,
    typer.Option(
        "--namesake-margin",
        help="Bits beyond log2(master) + log2(items at risk) that "
        "a match resting on name and DOB alone must carry (default 0).",
    ),
]
ReviewPOpt = Annotated[
    float | None,
    typer.Option("--review-probability", help="Below identification, at least this: review."),
]


@match_app.command("train")
@handles_errors
def match_train(
    request: Annotated[
        str | None,
        typer.Option(
            "--request",
            help="The received request whose items teach the model how requests differ from "
            "the records (default: the latest received).",
        ),
    ] = None,
    backend: BackendOpt = "duckdb",
    min_probability: MinPOpt = None,
    margin: MarginOpt = None,
    review_probability: ReviewPOpt = None,
    namesake_margin: NamesakeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for u sampling.")] = 1,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the linkage model (Fellegi–Sunter, unsupervised) on the master file and a request,
    save it with its content hash and make it current. Retraining is always explicit."""
    from custodes.matching import service
    from custodes.matching.model import Thresholds

    t = Thresholds().replace(
        min_probability=min_probability,
        min_margin_bits=margin,
        review_probability=review_probability,
        namesake_margin_bits=namesake_margin,
    )
    ws = _open(home, "match.train")
    with _stages(json_out) as progress:
        info = service.train(
            ws, request, backend=backend, thresholds=t, seed=seed, progress=progress
        )
    if json_out:
        _emit_json(info)
        return
    out.print(
        _kv_table(
            "Model trained and made current",
            {
                "model": info["model_sha256"],
                "trained on": info["trained_on"],
                "master file": info["master_sha256"][:16],
                "prior (λ)": f"{info['prior']:.3g}",
                **{k: v for k, v in info["thresholds"].items()},
                "seconds": info["seconds"],
            },
        )
    )


@match_app.command("link")
@handles_errors
def match_link(
    request_id: Annotated[str, typer.Argument(help="The request's id.")],
    backend: BackendOpt = "duckdb",
    min_probability: MinPOpt = None,
    margin: MarginOpt = None,
    review_probability: ReviewPOpt = None,
    namesake_margin: NamesakeOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Identify every item of a request: best candidate and runner-up, their probabilities and
    per-field weights, ambiguity flags, the person gate and whether the supplied address is on
    record. Writes requests/<id>/match/linked.parquet; changes no request state."""
    from custodes.matching import service

    ws = _open(home, "match.link")
    t0 = time.perf_counter()
    with _stages(json_out) as progress:
        res = service.link(
            ws,
            request_id,
            backend=backend,
            overrides={
                "min_probability": min_probability,
                "min_margin_bits": margin,
                "review_probability": review_probability,
                "namesake_margin_bits": namesake_margin,
            },
            progress=progress,
        )
    info = res.to_dict() | {"seconds": round(time.perf_counter() - t0, 2)}
    if json_out:
        _emit_json(info)
        return
    out.print(_kv_table(f"Linked {request_id}", info))


@match_app.command("evaluate")
@handles_errors
def match_evaluate(
    truth: Annotated[
        Path,
        typer.Option(
            "--truth",
            help="CSV with item_id, record_id (empty: not on file), "
            "optional defect (absent_relative marks a household member).",
        ),
    ],
    request_id: Annotated[
        str | None, typer.Argument(help="The linked request (default: the latest received).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for evaluation.json and evaluation.png "
            "(default: the request's match folder).",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Precision, recall, wrong-person accepts by kind (in file, absent relative, absent
    stranger) and review rate at the model's thresholds and over a grid; writes a report and
    a plot of wrong-person accepts and recall against the threshold."""
    from custodes.matching import evaluate as ev
    from custodes.matching import service

    ws = _open(home, "match.evaluate")
    request_id = request_id or service.latest_request(ws)
    linked = service.linked_path(ws, request_id)
    report = ev.evaluate(linked, truth, out_dir or linked.parent)
    if json_out:
        _emit_json(report)
        return
    at = report["at_thresholds"]
    out.print(_kv_table(f"Evaluation of {request_id} at the model's thresholds", at))
    table = Table(
        "kind",
        "identified",
        "review",
        "not identified",
        title="Status by kind of item",
        title_justify="left",
    )
    for kind, counts in report["status_by_kind"].items():
        table.add_row(
            kind, *(f"{counts.get(s, 0):,}" for s in ("identified", "review", "not_identified"))
        )
    out.print(table)
    grid = Table(
        "min p",
        "margin",
        "gate",
        "identified",
        "wrong",
        "recall",
        title="Grid",
        title_justify="left",
    )
    for g in report["grid"]:
        if g["min_margin_bits"] in (0.0, 3.0):
            grid.add_row(
                str(g["min_probability"]),
                str(g["min_margin_bits"]),
                "yes" if g["gate"] else "no",
                f"{g['identified']:,}",
                f"{g['wrong']:,}",
                f"{100 * (g['recall'] or 0):.2f}%",
            )
    out.print(grid)
    out.print(f"Report: {report['report']}  Plot: {report['plot']}")


@app.command()
@handles_errors
def process(
    request_id: RequestArg,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rules (before matching), matching, rules (after matching), then one outcome per item:
    DISCLOSE, CONFIRM / NOT_CONFIRMED, WITHHOLD (failing checks) or REVIEW (why). Resumable:
    run it again after an interruption and it finishes with identical outcomes."""
    from custodes.decisions.pipeline import process as do_process

    ws = _open(home, "process")
    with _stages(json_out) as progress:
        res = do_process(ws, request_id, actor=_who(), progress=progress)
    if json_out:
        _emit_json(res.to_dict())
        return
    if res.refused:
        out.print(f"[bold red]{request_id} refused[/]: the request itself fails the statute.")
        table = Table("check", "citation", "requirement", title_justify="left")
        for c in res.failing_request_checks:
            table.add_row(c["check"], c["citation"], c["sentence"])
        out.print(table)
        return
    table = Table("outcome", "items", title=f"{request_id}: {res.state}", title_justify="left")
    for k, v in res.counts.items():
        table.add_row(k, f"{v:,}")
    out.print(table)
    if res.withheld_by_check:
        out.print(_kv_table("Withheld, by failing check", res.withheld_by_check))
    out.print(f"rule set {res.ruleset_sha256[:12]}…  model {(res.model_sha256 or '')[:12]}…")


@app.command()
@handles_errors
def explain(
    request_id: RequestArg,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Why one item got its outcome: every check with its citation, and the match evidence."""
    from custodes.decisions.pipeline import explain as do_explain

    info = do_explain(_open(home, "explain"), request_id, item_id)
    if json_out:
        _emit_json(info)
        return
    out.print(f"[bold]{request_id} / {item_id}: {info['outcome']}[/]")
    table = Table("check", "result", "severity", "citation", "requirement")
    for c in info["checks"]:
        mark = {True: "pass", False: "[red]FAIL[/]", None: "review"}[c["passed"]]
        table.add_row(c["check"], mark, c["severity"], c["citation"], c["sentence"])
    out.print(table)
    m = info["match"]
    out.print(_kv_table("Match evidence", {k: v for k, v in m.items() if k != "weights"}))
    out.print(
        _kv_table(
            "Match weight per field (bits)",
            {k: round(v, 2) if v is not None else None for k, v in m["weights"].items()},
        )
    )
    if info["resolution"]:
        out.print(_kv_table("Review resolution", info["resolution"]))
    out.print(f"rule set {info['ruleset_sha256']}  model {info['model_sha256']}")


@app.command()
@handles_errors
def outcomes(
    request_id: RequestArg,
    out_file: Annotated[
        Path, typer.Option("--out", help="File to write: .csv, .parquet or .json.")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export the per-item view for officers: item_id, outcome, checks, record_id and one
    column per field that would be released."""
    from custodes.decisions.pipeline import export_outcomes

    info = export_outcomes(_open(home, "outcomes"), request_id, out_file)
    _emit_json(info) if json_out else out.print(f"Wrote {info['rows']:,} rows to {out_file}.")


@app.command()
@handles_errors
def review(
    request_id: RequestArg,
    item: Annotated[
        list[str] | None, typer.Option("--item", help="Resolve this item (repeatable).")
    ] = None,
    withhold: Annotated[bool, typer.Option("--withhold", help="Resolve to withhold.")] = False,
    disclose: Annotated[
        bool, typer.Option("--disclose", help="Resolve to disclose (only if every rule passes).")
    ] = False,
    withhold_all: Annotated[
        bool, typer.Option("--withhold-all", help="Resolve every open review item to withhold.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the items in review with their evidence, or resolve them (--item ID --withhold |
    --disclose --reason TEXT, or --withhold-all --reason TEXT)."""
    from custodes.decisions import release as rel
    from custodes.errors import InputError

    ws = _open(home, "review.resolve" if (withhold_all or item) else "review.read")
    if withhold_all or item:
        if withhold_all and item:
            raise InputError("Use --withhold-all or --item, not both.", code="bad_argument")
        if not withhold_all and withhold == disclose:
            raise InputError("Say --withhold or --disclose for the items.", code="bad_argument")
        decision = "DISCLOSE" if disclose else "WITHHOLD"
        n = rel.resolve(
            ws,
            request_id,
            decision,
            reason,
            actor=_who(),
            items=None if withhold_all else item,
        )
        info = {"request_id": request_id, "resolved": n, "decision": decision}
        _emit_json(info) if json_out else out.print(f"Resolved {n:,} item(s): {decision}.")
        return
    rows = rel.open_reviews(ws, request_id)
    if json_out:
        _emit_json(rows)
        return
    table = Table(
        "item",
        "candidate",
        "p",
        "margin",
        "why",
        "flags",
        title=f"{len(rows):,} item(s) in review",
        title_justify="left",
    )
    for r in rows[:200]:
        table.add_row(
            r["item_id"],
            r["candidate"] or "",
            f"{r['probability'] or 0:.4f}",
            f"{r['margin_bits'] or 0:.1f}",
            ", ".join(r["review_reasons"]),
            ", ".join(r["flags"] or []),
        )
    out.print(table)
    if len(rows) > 200:
        out.print(f"… and {len(rows) - 200:,} more (--json lists all; explain shows one).")


@app.command()
@handles_errors
def prepare(
    request_id: RequestArg,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Prepare the release of a decided request (no item may still be in review)."""
    from custodes.decisions.release import prepare as do_prepare

    info = do_prepare(_open(home, "prepare"), request_id, actor=_who())
    if json_out:
        _emit_json(info)
        return
    out.print(f"{request_id} prepared by {info['prepared_by']}; a second person must approve it.")
    if not info["eligible_approvers"]:
        out.print(
            "[yellow]No eligible approver is active (an approver who neither prepared nor "
            "submitted it): the release stays blocked until one is.[/]"
        )


@app.command()
@handles_errors
def approve(
    request_id: RequestArg,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Approve a prepared release: never one you prepared or a request you submitted."""
    from custodes.decisions.release import approve as do_approve

    info = do_approve(_open(home, "approve"), request_id, actor=_who())
    _emit_json(info) if json_out else out.print(
        f"{request_id} approved by {info['approved_by']} (prepared by {info['prepared_by']})."
    )


@app.command()
@handles_errors
def release(
    request_id: RequestArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the response files.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the response of an approved release: permitted fields for disclosed items, one
    indistinguishable answer for record-dependent refusals, cited defects, a ledger checkpoint.
    Every disclosure gets its ledger leaf in the same transaction; safe to re-run."""
    from custodes.decisions.release import release as do_release

    res = do_release(_open(home, "release"), request_id, out_dir, actor=_who())
    if json_out:
        _emit_json(res.to_dict())
        return
    out.print(_kv_table(f"Released {request_id}", res.to_dict()))


@app.command()
@handles_errors
def recall(
    request_id: Annotated[
        str | None, typer.Argument(help="A released request: recall all its disclosures.")
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
    from custodes.decisions.recall import recall as do_recall

    info = do_recall(
        _open(home, "recall"),
        reason=reason,
        actor=_who(),
        request_id=request_id,
        items_file=items,
        out=out_dir,
    )
    if json_out:
        _emit_json(info)
        return
    out.print(
        _kv_table(
            f"Recall {info['recall_id']}",
            {
                "items recalled": info["items"],
                "requests": ", ".join(info["requests"]),
                "recipients": "; ".join(
                    f"{o.get('name')} ({o.get('id')})" for rs in info["recipients"] for o in rs
                ),
                "fields": ", ".join(info["fields"]),
                "notice": info["notice"],
            },
        )
    )
    out.print("Record the recipient's certification with 'custodes certify-destruction'.")


@app.command("recalls")
@handles_errors
def recalls_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Recalls and whether the recipient has certified destruction (open, overdue, certified)."""
    from custodes.decisions.recall import listing

    rows = listing(_open(home, "recalls.read"))
    if json_out:
        _emit_json(rows)
        return
    table = Table(
        "recall",
        "issued",
        "items",
        "status",
        "return by",
        "certified by",
        title="Recalls",
        title_justify="left",
    )
    for r in rows:
        table.add_row(
            r["recall_id"],
            str(r["at"])[:19],
            f"{r['items']:,}",
            r["status"],
            r["return_by"],
            r["certified_by"] or "",
        )
    out.print(table)


@app.command("certify-destruction")
@handles_errors
def certify_destruction(
    recall_id: Annotated[str, typer.Argument(help="The recall's id.")],
    by: Annotated[str, typer.Option("--by", help="Who certified it (name and title).")],
    on: Annotated[str, typer.Option("--on", help="Date of the certification, YYYY-MM-DD.")],
    certificate: Annotated[
        str | None, typer.Option("--certificate", help="Reference of the written certificate.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the recipient's certification that recalled information was destroyed."""
    import datetime as dt

    from custodes.decisions.recall import certify
    from custodes.errors import InputError

    try:
        day = dt.date.fromisoformat(on)
    except ValueError:
        raise InputError("--on must be a date, YYYY-MM-DD.", code="bad_argument") from None
    info = certify(
        _open(home, "recall.certify"),
        recall_id,
        certified_by=by,
        certified_on=day,
        certificate=certificate,
        actor=_who(),
    )
    _emit_json(info) if json_out else out.print(
        f"Recall {recall_id}: destruction certified by {info['certified_by']} on "
        f"{info['certified_on']}."
    )


users_app = typer.Typer(
    help="Users and roles (administrators): add, grant, suspend, reinstate, list.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
RoleOpt = Annotated[
    list[str],
    typer.Option(
        "--role",
        help="requester, officer, approver, rule_steward, auditor or administrator (repeatable).",
    ),
]
BasisOpt = Annotated[
    str | None, typer.Option("--basis", help="Legal basis of the grant (e.g. a detail order).")
]
ExpiresOpt = Annotated[
    str | None, typer.Option("--expires", help="Last day of the grant, YYYY-MM-DD (inclusive).")
]
PwStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def _expiry(value: str | None) -> Any:
    import datetime as dt

    from custodes.errors import InputError

    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InputError("--expires must be a date, YYYY-MM-DD.", code="bad_argument") from None
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


@app.command()
@handles_errors
def login(
    user: Annotated[str, typer.Argument(help="Your user name.")],
    password_stdin: PwStdinOpt = False,
    totp: Annotated[str | None, typer.Option("--totp", help="One-time code, if required.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign in: opens a server-side session, kept for this shell user in the workspace
    (CUSTODES_SESSION overrides it; --json prints the token)."""
    from custodes.access import service as acc
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    token = acc.login(ws, user, _password(password_stdin), totp=totp)
    path = _session_file(ws.home)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    if json_out:
        _emit_json({"user": user, "session": token})
    else:
        out.print(f"Signed in as [bold]{user}[/].")


@app.command()
@handles_errors
def logout(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Sign out: ends the session on the server and forgets it here."""
    from custodes.access import service as acc
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    path = _session_file(ws.home)
    token = os.environ.get("CUSTODES_SESSION") or (
        path.read_text().strip() if path.exists() else None
    )
    ended = acc.logout(ws, token) if token else False
    if path.exists() and not os.environ.get("CUSTODES_SESSION"):
        path.unlink()
    _emit_json({"ended": ended}) if json_out else out.print(
        "Signed out." if ended else "No session was open."
    )


def _actor_obj() -> Any:
    return _SIGNED_IN["actor"]


@users_app.command("add")
@handles_errors
def users_add(
    user: Annotated[str, typer.Argument(help="The new user's name.")],
    role: RoleOpt,
    password_stdin: PwStdinOpt = False,
    basis: BasisOpt = None,
    expires: ExpiresOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a user with roles (subject to separation of duties)."""
    from custodes.access import service as acc

    ws = _open(home, "users.change")
    info = acc.create_user(
        ws,
        user,
        _password(password_stdin),
        role,
        by=_actor_obj(),
        basis=basis,
        expires=_expiry(expires),
    )
    _emit_json(info) if json_out else out.print(
        f"User {user} created with role(s) {', '.join(info['roles'])}."
    )


@users_app.command("grant")
@handles_errors
def users_grant(
    user: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str, typer.Option("--role", help="The role to grant.")],
    basis: BasisOpt = None,
    expires: ExpiresOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Grant a role, optionally time-limited with its legal basis. Never to yourself."""
    from custodes.access import service as acc

    ws = _open(home, "users.change")
    info = acc.grant(ws, user, role, by=_actor_obj(), basis=basis, expires=_expiry(expires))
    _emit_json(info) if json_out else out.print(f"Granted {role} to {user}.")


@users_app.command("suspend")
@handles_errors
def users_suspend(
    user: Annotated[str, typer.Argument(help="The user.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Suspend a user at once: sessions and keys end in the same transaction, so their very
    next call (and any action of theirs not yet committed) is refused."""
    from custodes.access import service as acc

    ws = _open(home, "users.change")
    info = acc.suspend(ws, user, reason, by=_actor_obj())
    _emit_json(info) if json_out else out.print(
        f"{user} suspended; {info['sessions_ended']} session(s) ended."
    )


@users_app.command("reinstate")
@handles_errors
def users_reinstate(
    user: Annotated[str, typer.Argument(help="The user.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reinstate a suspended user: one administrator asks, a second one confirms."""
    from custodes.access import service as acc

    ws = _open(home, "users.change")
    info = acc.reinstate(ws, user, by=_actor_obj())
    _emit_json(info) if json_out else out.print(
        f"{user}: {info['status']}" + (f" ({info['pending']})" if "pending" in info else ".")
    )


@users_app.command("key")
@handles_errors
def users_key(
    user: Annotated[str, typer.Argument(help="The user (e.g. an agency's requester account).")],
    days: Annotated[int, typer.Option("--days", help="How long the key lives.")] = 365,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue an API key (shown once; stored only as a hash). Use it as CUSTODES_SESSION or as
    the API's bearer credential; suspension ends it at once."""
    from custodes.access import service as acc

    ws = _open(home, "users.change")
    key = acc.issue_key(ws, user, by=_actor_obj(), days=days)
    _emit_json({"user": user, "key": key, "days": days}) if json_out else out.print(
        f"Key for {user} (shown once, valid {days} days):\n{key}", soft_wrap=True
    )


@users_app.command("totp")
@handles_errors
def users_totp(
    user: Annotated[str, typer.Argument(help="The user.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Enrol a user's second factor: prints the provisioning URI once, for their authenticator
    app. CUSTODES_TOTP_ROLES=approver,administrator makes the code mandatory for those roles."""
    from custodes.access import service as acc

    ws = _open(home, "users.change")
    uri = acc.enroll_totp(ws, user, by=_actor_obj())
    _emit_json({"user": user, "provisioning_uri": uri}) if json_out else out.print(
        f"Second factor enrolled for {user}; give them this URI once (QR code):\n{uri}",
        soft_wrap=True,
    )


@users_app.command("list")
@handles_errors
def users_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Users, their status, and every grant's legal basis and expiry."""
    from custodes.access import service as acc

    rows = acc.listing(_open(home, "users.read"))
    if json_out:
        _emit_json(rows)
        return
    table = Table("user", "status", "role", "basis", "expires", title="Users", title_justify="left")
    for u in rows:
        for g in u["grants"] or [{"role": "", "basis": None, "expires": None, "expired": False}]:
            exp = str(g["expires"])[:10] if g["expires"] else ""
            table.add_row(
                u["user"],
                u["status"],
                g["role"] + (" (expired)" if g["expired"] else ""),
                g["basis"] or "",
                exp,
            )
    out.print(table)


audit_app = typer.Typer(help="What auditors look for (inspection trail).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@records_app.command("show")
@handles_errors
def records_show(
    record_id: Annotated[str, typer.Argument(help="The record's opaque id (rec-…).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why you need to see it (recorded).")],
    request: Annotated[
        str | None, typer.Option("--request", help="The open request the inspection serves.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Inspect one taxpayer record: needs a stated purpose and an open request it serves;
    every inspection, shown or refused, is recorded (UNAX)."""
    from custodes.decisions.inspection import inspect_record

    ws = _open(home, "records.show")
    rec = inspect_record(ws, record_id, actor=_who(), purpose=purpose, request_id=request)
    if json_out:
        _emit_json(rec)
        return
    out.print(
        _kv_table(
            f"Record {record_id} (inspection recorded)",
            {k: v for k, v in rec.items() if k != "addresses"},
        )
    )
    table = Table("tax year", "street", "unit", "city", "state", "zip", title="Addresses filed")
    for a in rec["addresses"]:  # type: ignore[union-attr]
        table.add_row(
            *(str(a[k] or "") for k in ("tax_year", "street", "unit", "city", "state", "zip"))
        )
    out.print(table)


@records_app.command("flag-sensitive")
@handles_errors
def records_flag_sensitive(
    record_id: Annotated[str, typer.Argument(help="The record's opaque id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Flag a record sensitive: every inspection of it is reported to auditors."""
    from custodes.access import service as acc

    ws = _open(home, "records.flag")
    acc.flag_sensitive(ws, record_id, reason, by=_actor_obj())
    _emit_json({"record_id": record_id, "sensitive": True}) if json_out else out.print(
        f"{record_id} flagged sensitive."
    )


@audit_app.command("inspections")
@handles_errors
def audit_inspections(
    spike: Annotated[
        int,
        typer.Option(
            "--spike", min=1, help="Inspections by one user in one day that count as a spike."
        ),
    ] = 50,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Inspections without a linked open request, of sensitive records, volume spikes per user,
    and any action by a suspended user (which must be none)."""
    from custodes.access import service as acc

    rep = acc.audit_inspections(_open(home, "audit"), spike=spike)
    if json_out:
        _emit_json(rep)
        return
    out.print(
        _kv_table(
            "Inspection audit",
            {
                "inspections recorded": rep["inspections"],
                "without an open request (refused)": len(rep["without_open_request"]),
                "of sensitive records": len(rep["sensitive"]),
                "volume spikes (user-days)": len(rep["volume_spikes"]),
                "actions by suspended users": len(rep["actions_by_suspended_users"]),
            },
        )
    )
    for key in ("without_open_request", "sensitive", "volume_spikes", "actions_by_suspended_users"):
        if rep[key]:
            table = Table(*rep[key][0].keys(), title=key.replace("_", " "), title_justify="left")
            for r in rep[key][:100]:
                table.add_row(*(str(v) for v in r.values()))
            out.print(table)


@rules_app.command("propose")
@handles_errors
def rules_propose(
    folder: Annotated[Path, typer.Argument(help="A rule-set folder (linted first).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose a changed rule set (rule steward). It takes effect only when a second rule
    steward approves its hash."""
    from custodes.rules.active import propose

    ws = _open(home, "rules.change")
    info = propose(ws, folder, actor=_who())
    _emit_json(info) if json_out else out.print(
        f"Proposed {info['name']} {info['version']} ({info['ruleset_sha256']}); a second rule "
        "steward must approve it ('custodes rules approve HASH').",
        soft_wrap=True,
    )


@rules_app.command("approve")
@handles_errors
def rules_approve(
    sha: Annotated[str, typer.Argument(help="The proposed rule set's hash (or a prefix).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Put a proposed rule set in force (a rule steward other than the proposer)."""
    from custodes.rules.active import approve as do_approve

    ws = _open(home, "rules.change")
    info = do_approve(ws, sha, actor=_who())
    _emit_json(info) if json_out else out.print(
        f"Rule set {info['ruleset_sha256'][:12]}… is in force (approved by {info['approved_by']})."
    )


@rules_app.command("changes")
@handles_errors
def rules_changes(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Rule-set changes: proposed, in force (active) and retired, with who did what."""
    from custodes.rules.active import listing

    rows = listing(_open(home, "rules.read"))
    if json_out:
        _emit_json(rows)
        return
    table = Table(
        "rule set",
        "version",
        "state",
        "proposed by",
        "approved by",
        title="Rule-set changes (none: the reference rule set is in force)",
        title_justify="left",
    )
    for r in rows:
        table.add_row(
            f"{r['name']} {r['sha256'][:12]}",
            r["version"],
            r["state"],
            r["proposed_by"],
            r["approved_by"] or "",
        )
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
