"""init, join, status, login, logout, enrol, whoami."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render, session
from custodes.cli.root import (
    HomeOpt,
    JsonOpt,
    app,
    guarded,
    read_secret,
    run,
    show,
    wants_json,
)
from custodes.errors import InputError, Unauthenticated
from custodes.services import workspace as svc

PwStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password (and then, when one is needed, the one-time code) from "
        "standard input, one per line.",
    ),
]


def _init_view(info: dict[str, Any]) -> None:
    render.say(
        f"{'Created' if info['created'] else 'Updated'} workspace at {info['home']} "
        f"(store: {info['store']})."
    )
    render.say(f"Ledger origin {info['ledger_origin']}; verifier key (publish it): {info['vkey']}")
    if "witness" in info:
        render.say(f"Every checkpoint needs the cosignature of the witness {info['witness']}.")
    if "admin" in info:
        render.say(f"Administrator {info['admin']} created; sign in with 'custodes login'.")
    elif "note" in info:
        render.say(f"Note: {info['note']}.")


@app.command()
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
            help="Create the first administrator (a workspace has one bootstrap user; "
            "every other user is created by an administrator).",
        ),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(
            "--origin",
            help="The ledger's origin, a schema-less URL fixed for life (default: derived).",
        ),
    ] = None,
    ledger_key: Annotated[
        str | None,
        typer.Option(
            "--ledger-key",
            help="Sign the ledger with an Ed25519 key in an HSM, named by its PKCS#11 URI "
            "(pkcs11:token=...;object=...; the PIN in a pin-source file or "
            "CUSTODES_PKCS11_PIN). Default: a key file in the workspace.",
        ),
    ] = None,
    witness_url: Annotated[
        str | None,
        typer.Option("--witness", help="The URL of the witness every checkpoint needs."),
    ] = None,
    witness_key: Annotated[
        str | None,
        typer.Option("--witness-key", help="That witness's verifier key (or a file holding it)."),
    ] = None,
    password_stdin: PwStdinOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace (or bring an existing one up to date): the store, the secrets key,
    the ledger's signing key (a file, or a key in an HSM), its witness, and optionally its
    first administrator."""
    with guarded(json_out):
        if (witness_url is None) != (witness_key is None):
            raise InputError("--witness and --witness-key go together.", code="missing_key")
        from custodes.services import ledger as ledger_svc  # init only: see root.COMMANDS

        witness = (
            (witness_url, ledger_svc.parse_key(witness_key))
            if witness_key and witness_url is not None  # (together, checked above)
            else None
        )
        password = read_secret(password_stdin) if admin else None
        info = svc.init(
            home,
            store_url,
            admin=admin,
            password=password,
            origin=origin,
            ledger_key=ledger_key,
            witness=witness,
        )
        show(info, json_out, _init_view)


@app.command()
def join(
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            envvar="CUSTODES_STORE_URL",
            help="SQLAlchemy URL of the deployment's shared store (postgresql://...; a "
            "password comes from PGPASSWORD or ~/.pgpass, never the URL kept on disk).",
        ),
    ] = None,
    ledger_key: Annotated[
        str | None,
        typer.Option(
            "--ledger-key",
            help="The deployment's ledger key: a copy of its key file (copied into this "
            "workspace); default: CUSTODES_LEDGER_KEY.",
        ),
    ] = None,
    secrets_key: Annotated[
        Path | None,
        typer.Option(
            "--secrets-key",
            help="A copy of the deployment's secrets key file (copied into this workspace); "
            "default: CUSTODES_SECRETS_KEY.",
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make this host's workspace for an existing deployment (a second host on the same
    store): checks the keys against the store and records them. Never creates a store, a key
    or a user (docs/operations.md)."""
    with guarded(json_out):
        info = svc.join(
            home,
            store_url,
            ledger_key=ledger_key,
            secrets_key=str(secrets_key) if secrets_key else None,
        )
        show(
            info,
            json_out,
            lambda r: render.say(
                f"Joined: workspace at {r['home']} (store: {r['store']}), ledger "
                f"{r['ledger_origin']}, verifier key {r['vkey']}."
            ),
        )


@app.command()
def status(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Summarise the workspace: its store and master file (counts only, no personal data)."""

    def view(info: dict[str, Any]) -> None:
        render.say(f"Workspace {info['home']} (store: {info['store']})")
        render.kv("Master file", info["master_file"])
        for line in info["warnings"]:
            render.say(f"Warning: {line}")

    run(home, json_out, svc.status, view=view)


TOTP_ON_COMMAND_LINE = (
    "A one-time code given with --totp shows in the process list; give it on standard input "
    "(--totp-stdin) or at the prompt."
)


@app.command()
def login(
    user: Annotated[str, typer.Argument(help="Your user name.")],
    password_stdin: PwStdinOpt = False,
    totp_stdin: Annotated[
        bool,
        typer.Option(
            "--totp-stdin",
            help="Also read the one-time code from standard input (the line after the "
            "password); without it the code is asked for when needed.",
        ),
    ] = False,
    totp: Annotated[
        str | None,
        typer.Option(
            "--totp", hidden=True, help="Refused: a code on the command line shows in ps."
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign in: opens a server-side session, kept for this shell user in the workspace
    (CUSTODES_SESSION overrides it). With --json the token is printed for a script and not
    kept: the session stored here stays the one it was."""
    with guarded(json_out):
        if totp is not None:
            raise InputError(TOTP_ON_COMMAND_LINE, code="bad_argument")
        ws = svc.open_workspace(home)
        try:
            password = read_secret(password_stdin)
            code = read_secret(True, "One-time code") if totp_stdin else None
            try:
                token = svc.login(ws, user, password, totp=code)
            except Unauthenticated as exc:  # a second factor asked for interactively, once
                if exc.code != "bad_totp" or code is not None or password_stdin:
                    raise
                token = svc.login(ws, user, password, totp=read_secret(False, "One-time code"))
            if not wants_json(json_out):
                session.store(ws.home, token)
        finally:
            ws.close()
        show(
            {"user": user, "session": token},
            json_out,
            lambda r: render.say(f"Signed in as {r['user']}."),
        )


@app.command()
def logout(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Sign out: ends the session on the server and forgets it here."""
    with guarded(json_out):
        ws = svc.open_workspace(home)
        try:
            token = session.token(ws.home)
            ended = svc.logout(ws, token) if token else False
            if not session.from_environment():
                session.forget(ws.home)
        finally:
            ws.close()
        show(
            {"ended": ended},
            json_out,
            lambda r: render.say("Signed out." if r["ended"] else "No session was open."),
        )


@app.command()
def enrol(
    user: Annotated[str, typer.Argument(help="Your user name.")],
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin",
            help="Read the enrolment code (both halves on one line, separated by a space), "
            "then the new password, from standard input (one per line); otherwise both are "
            "asked for.",
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set your own password with the one-time enrolment code two administrators gave you, a
    half each (and receive your second factor when a role of yours needs one)."""
    with guarded(json_out):
        code = read_secret(stdin, "Enrolment code (both halves, separated by a space)")
        password = read_secret(stdin, "New password")
        ws = svc.open_workspace(home)
        try:
            info = svc.enrol(ws, user, code, password)
        finally:
            ws.close()

        def view(r: dict[str, Any]) -> None:
            render.say(f"{r['user']}: password set; sign in with 'custodes login {r['user']}'.")
            if r["totp_uri"]:
                render.say(
                    "Add this to your authenticator app now (it is shown once):\n" + r["totp_uri"]
                )

        show(info, json_out, view)


@app.command()
def whoami(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Who the stored session (or CUSTODES_SESSION) signs in as, with which roles."""
    run(home, json_out, svc.whoami, view=lambda r: render.kv("Signed in", r))
