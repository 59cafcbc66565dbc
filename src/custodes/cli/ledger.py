"""ledger keygen | key | status | checkpoint | export | verify | prove | cosign | use-witness |
confirm-restore; witness keygen | serve."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, group, guarded, run, show
from custodes.services import ledger as svc

ledger_app = group(
    "ledger",
    "The ledger: an append-only Merkle log of every event that outsiders can verify "
    "(RFC 9162, C2SP checkpoints and tiles).",
)
witness_app = group(
    "witness",
    "A witness that cosigns a ledger's consistent growth (C2SP tlog-witness), for an "
    "oversight body to run.",
)


def _report(report: svc.Report) -> None:
    for line in report.checked:
        render.say(f"ok   {line}")
    for line in report.problems:
        render.say(f"FAIL {line}")
    render.say("Verified." if report.ok else "Verification failed.")


def _failed(report: svc.Report) -> int:
    """The exit status of a verification: 1 when anything did not verify."""
    return int(not report.ok)


@ledger_app.command("keygen")
def ledger_keygen(
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="The log's origin, a schema-less URL (fixed for life)."),
    ] = None,
    ledger_key: Annotated[
        str | None,
        typer.Option(
            "--ledger-key",
            help="Use the Ed25519 key in an HSM named by this PKCS#11 URI instead of a file.",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the ledger's Ed25519 signing key (kept outside the database, or in an HSM) and
    print the verifier key to publish. 'custodes init' creates it; this is for a workspace
    without."""

    def view(info: dict[str, Any]) -> None:
        where = "The key stays in the HSM; its URI is" if info["hsm"] else "Private key"
        render.err.print(
            f"{where} written to {info['key_file']} (mode 0600; back it up).", markup=False
        )
        sys.stdout.write(info["vkey"] + "\n")

    run(home, json_out, svc.keygen, origin, ledger_key, view=view)


@ledger_app.command("key")
def ledger_key(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Print the ledger's verifier key (name+id+base64), for auditors and witnesses."""
    run(home, json_out, svc.key, view=lambda r: sys.stdout.write(r["vkey"] + "\n"))


@ledger_app.command("status")
def ledger_status(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Size, root and latest checkpoint of the ledger."""
    run(home, json_out, svc.status, view=lambda r: render.kv("Ledger", r))


@ledger_app.command("checkpoint")
def ledger_checkpoint(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Sign a checkpoint of the current tree (only if it extends the last one) and print it."""
    run(home, json_out, svc.checkpoint, view=lambda r: sys.stdout.write(r["note"]))


@ledger_app.command("export")
def ledger_export(
    folder: Annotated[Path, typer.Argument(help="Folder to write the tlog-tiles export to.")],
    bodies: Annotated[
        bool,
        typer.Option(
            "--bodies",
            help="Also write bodies.jsonl (event bodies and salts: auditors only; recorded).",
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the ledger as a C2SP tlog-tiles directory: checkpoint, hash tiles, entry bundles.
    The export reveals no personal data and can be verified offline with the verifier key."""
    fn = svc.export_bodies if bodies else svc.export
    run(home, json_out, fn, folder, view=lambda r: render.kv("Export", r))


@ledger_app.command("verify")
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
            help="The log's verifier key (or a file holding it). Required for exports and "
            "receipts.",
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
    witness: Annotated[
        str | None,
        typer.Option(
            "--witness",
            help="A witness's verifier key: the store's log must extend the last checkpoint "
            "it cosigned, and the latest checkpoint must carry its cosignature.",
        ),
    ] = None,
    witness_url: Annotated[
        str | None,
        typer.Option(
            "--witness-url",
            help="Where to ask that witness for its checkpoint (default: the workspace's "
            "witness; else the cosigned checkpoints stored).",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify the ledger: the workspace store (no PATH), an export folder, or a receipt.
    Exit status 1 when anything does not verify; each problem says where."""
    with guarded(json_out):
        vkey = svc.parse_key(key) if key else None
        wkey = svc.parse_key(witness) if witness else None
    if path is None:
        args = {"witness": wkey, "witness_url": witness_url}
        run(home, json_out, svc.verify_store, vkey, **args, view=_report, exit_status=_failed)
        return
    with guarded(json_out):
        report = svc.verify_path(
            path, vkey, previous=previous, policy=policy, body=body, witness=wkey
        )
        show(report, json_out, _report)
    if _failed(report):
        raise typer.Exit(1)


@ledger_app.command("prove")
def ledger_prove(
    index: Annotated[int, typer.Argument(help="The event's index in the ledger.")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Write the receipt to this new file (default: print it)."),
    ] = None,
    body_out: Annotated[
        Path | None,
        typer.Option(
            "--body-out",
            help="Also write the event body and salt (for the receipt's holder): auditors "
            "only, and recorded in the ledger before the file appears.",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A self-contained receipt (c2sp.org/tlog-proof@v1) that one event is in the ledger:
    inclusion proof plus signed checkpoint. Check it with 'custodes ledger verify FILE --key'."""

    def view(r: dict[str, Any]) -> None:
        if r["out"]:
            render.err.print(f"Receipt written to {r['out']}.", markup=False)
        else:
            sys.stdout.write(r["receipt"])

    if body_out is not None:
        run(home, json_out, svc.prove_with_body, index, body_out, out=out_file, view=view)
    else:
        run(home, json_out, svc.prove, index, out=out_file, view=view)


@ledger_app.command("cosign")
def ledger_cosign(
    witness_url: Annotated[str, typer.Option("--witness", help="The witness's submission URL.")],
    witness_key: Annotated[
        str, typer.Option("--witness-key", help="The witness's verifier key (cosignature/v1).")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask a witness to cosign the latest checkpoint (proving consistency with what it saw)."""
    with guarded(json_out):
        wkey = svc.parse_key(witness_key)
    run(
        home,
        json_out,
        svc.cosign,
        witness_url,
        wkey,
        view=lambda r: render.say(f"Cosigned by {r['witness']} at size {r['size']:,}."),
    )


@ledger_app.command("use-witness")
def ledger_use_witness(
    witness_url: Annotated[str, typer.Argument(help="The witness's submission URL.")],
    witness_key: Annotated[
        str, typer.Option("--key", help="The witness's verifier key (cosignature/v1).")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make this witness the one whose cosignature every checkpoint needs (administrators;
    recorded in the ledger), and have it cosign the latest checkpoint now."""
    with guarded(json_out):
        wkey = svc.parse_key(witness_key)
    run(
        home,
        json_out,
        svc.use_witness,
        witness_url,
        wkey,
        view=lambda r: render.say(
            f"Every checkpoint now needs {r['witness']}'s cosignature (cosigned at size "
            f"{r['size']:,})."
        ),
    )


@ledger_app.command("confirm-restore")
def ledger_confirm_restore(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """After a restore: check that the log extends the last checkpoint the witness cosigned
    and, if so, lift the hold on signing (administrators; recorded in the ledger)."""
    run(
        home,
        json_out,
        svc.confirm_restore,
        view=lambda r: render.say(
            f"The log ({r['size']:,} events) extends the checkpoint of size "
            f"{r['witnessed_size']:,} that {r['witness']} cosigned; signing resumes."
        ),
    )


@witness_app.command("keygen")
def witness_keygen(
    name: Annotated[str, typer.Argument(help="The witness's name, e.g. witness.oig.example.")],
    key_file: Annotated[
        Path, typer.Option("--out", help="Where to write the private key (a new file).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Create a witness key (Ed25519 cosignature/v1) and print its verifier key."""
    with guarded(json_out):
        vkey = svc.witness_keygen(name, key_file).vkey
        show({"vkey": vkey}, json_out, lambda r: sys.stdout.write(r["vkey"] + "\n"))


@witness_app.command("serve")
def witness_serve(
    key_file: Annotated[Path, typer.Option("--key", help="The witness's private key file.")],
    logs: Annotated[
        list[str], typer.Option("--log", help="Verifier key of a log to witness (repeatable).")
    ],
    state: Annotated[
        Path, typer.Option("--state", help="SQLite file for the witness's state.")
    ] = Path("witness.db"),
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 7380,  # witness.DEFAULT_PORT
) -> None:
    """Run a witness: POST <url>/add-checkpoint cosigns only consistent growth."""
    with guarded(False):
        server = svc.witness_server(key_file, logs, state, host, port)
        render.err.print(
            f"Witness listening on http://{host}:{server.server_port}/ ({len(logs)} log(s)); "
            "Ctrl-C to stop.",
            markup=False,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
