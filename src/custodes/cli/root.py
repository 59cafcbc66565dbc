"""The root command, the options every command shares, and the one way a command runs:
open the workspace, turn the stored session into a caller, call one service, render.

Errors a user can cause print one line (`error (code): message`, or a JSON error with --json)
and exit 2; an interruption says how to resume and exits 130; anything unexpected prints only
its kind (never a message or locals: they may hold personal data) and exits 70.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, overload

import typer
from typer.core import TyperGroup

from custodes import __version__, settings
from custodes.cli import render, session
from custodes.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    INTERRUPTED,
    CustodesError,
    InputError,
    from_fault,
)

if TYPE_CHECKING:
    # Typer carries its own copy of Click (typer._click) and names none of these publicly; the
    # objects a TyperGroup is given are that copy's, not the `click` package's.
    from typer._click import Command, Context, HelpFormatter

R = TypeVar("R")

# Every top-level command: the module of custodes.cli that defines it, and the line the root's
# --help shows for it. Listed here rather than found by importing every module, so that
# `custodes --help` imports none of them and a command imports only its own module (and what
# that module uses): the CLI starts in a fraction of a second. tests/test_cli_startup.py holds
# this table to what the modules register. Click has no lazy group of its own (its docs show
# this pattern: "Lazily Loading Subcommands"), so the small class below does it.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("workspace", "Create a workspace, or bring one up to date."),
    "join": ("workspace", "Join a deployment: a second host on its shared store."),
    "status": ("workspace", "Summarise the workspace: store and master file."),
    "login": ("workspace", "Sign in: a server-side session for this shell user."),
    "logout": ("workspace", "Sign out: end the session and forget it here."),
    "enrol": ("workspace", "Set your password with the enrolment code's halves."),
    "whoami": ("workspace", "Who the stored session signs in as, with which roles."),
    "submit": ("requests", "Receive a request: checked, copied, hashed, given an id."),
    "withdraw": ("requests", "Withdraw a request that has not been released."),
    "requests": ("requests", "Requests in the interchange format."),
    "process": ("decisions", "Check, match and decide every item of a request."),
    "explain": ("decisions", "Why an item got its outcome: every check, cited."),
    "outcomes": ("decisions", "Export the per-item view for officers."),
    "review": ("decisions", "List the items in review, or resolve them."),
    "prepare": ("decisions", "Prepare the release of a decided request."),
    "approve": ("decisions", "Approve a prepared release (never one you prepared)."),
    "release": ("decisions", "Write the response of an approved release."),
    "recall": ("decisions", "Mark disclosures as improper and notify the recipient."),
    "recalls": ("decisions", "Recalls, and whether destruction is certified."),
    "certify-destruction": ("decisions", "Record the recipient's certified destruction."),
    "next": ("decisions", "Where a request stands and what comes next, by whom."),
    "match": ("matching", "Matching: identify each person, never the wrong one."),
    "records": ("records", "The master file: import, generate, summarise."),
    "rules": ("rules", "The law as data: provisions, checks with citations."),
    "agencies": ("rules", "Registry of requesting agencies and their safeguards."),
    "officials": ("rules", "Registry of officials authorised to sign requests."),
    "agreements": ("rules", "Registered data-sharing agreements (overlays)."),
    "users": ("users", "Users and roles (administrators)."),
    "changes": ("users", "Changes waiting for a second administrator."),
    "ledger": ("ledger", "The ledger: a verifiable log of every event."),
    "witness": ("ledger", "A witness that cosigns a ledger's consistent growth."),
    "report": ("reports", "The accounting of disclosures and oversight reports."),
    "incident": ("reports", "Suspected improper disclosures, on a 24-hour clock."),
    "audit": ("audit", "What auditors look for (inspection trail)."),
    "serve": ("serve", "Serve the web console and the HTTP API."),
}


class _LazyRoot(TyperGroup):
    """The root command: a command's module is imported when that command is asked for."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        importlib.import_module(f"custodes.cli.{COMMANDS[cmd_name][0]}")
        return click_group().commands.get(cmd_name)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, line) for name, (_, line) in COMMANDS.items()])


# `-h` as well as `--help`, on every command.
HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    cls=_LazyRoot,
    context_settings=HELP,
    help="custodes: a disclosure gateway for confidential government records.\n\n"
    "Every request and every person in it is checked against the statute, matched with a "
    "measured error rate, released at the minimum, approved by two people and recorded in a "
    "ledger outsiders can verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # locals hold personal data: never print them
    add_completion=False,
    rich_markup_mode=None,
)


def group(name: str, help: str) -> typer.Typer:
    sub = typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP)
    app.add_typer(sub, name=name)
    return sub


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
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded).")]


@overload
def iso_date(value: str, error: str) -> dt.date: ...
@overload
def iso_date(value: str | None, error: str) -> dt.date | None: ...
def iso_date(value: str | None, error: str) -> dt.date | None:
    """A date option's value (YYYY-MM-DD), None when the option was not given; `error` is
    the message an input error carries when it is not a date (each option says its own)."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(error, code="bad_date") from None


def short_help(doc: str, limit: int = 110) -> str:
    """A command's one line in its group's list: its first sentence, ended at a full stop
    outside parentheses (Click ends it at the first ". ", inside "(26 U.S.C. 6103" or "(e.g.
    after"), cut at a word with "…" when longer than `limit`."""
    text = " ".join(doc.split("\n\n")[0].split())
    depth, end = 0, len(text)
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        ends = ch == "." and depth == 0 and (i + 1 == len(text) or text[i + 1] == " ")
        if ends and not text[max(0, i - 4) : i + 1].endswith(("e.g.", "i.e.", "U.S.")):
            end = i
            break
    first = text[:end]
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def whole_short_help(typer_app: typer.Typer) -> None:
    """Give every command of `typer_app` (and its groups) its whole first sentence."""
    for info in typer_app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if info.short_help is None and doc:
            info.short_help = short_help(doc)
    for group_info in typer_app.registered_groups:
        if group_info.typer_instance is not None:
            whole_short_help(group_info.typer_instance)


def _registered(typer_app: typer.Typer) -> int:
    return len(typer_app.registered_commands) + sum(
        1 + _registered(g.typer_instance)
        for g in typer_app.registered_groups
        if g.typer_instance is not None
    )


# The Click group Typer builds from `app`, kept until a command module registers more: Typer
# builds it anew each time it is asked, inspecting every command's signature and type hints
# (tens of milliseconds with every module loaded). A process that runs one command builds it
# once either way; a process that runs many (the tests' in-process runner) no longer pays it
# for each.
_BUILT: list[tuple[int, TyperGroup]] = []


def click_group() -> TyperGroup:
    """`app` as Click's group, built once for each set of registered commands."""
    count = _registered(app)
    if not _BUILT or _BUILT[0][0] != count:
        whole_short_help(app)
        _BUILT[:] = [(count, typer.main.get_group(app))]
    return _BUILT[0][1]


def _version(value: bool) -> None:
    if value:
        render.say(f"custodes {__version__}")
        raise typer.Exit()


# `custodes --json COMMAND`: JSON for the command that follows, as its own --json would.
_JSON: dict[str, bool] = {"everywhere": False}


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print machine-readable JSON, whatever the command."),
    ] = False,
) -> None:
    """custodes: a disclosure gateway for confidential government records."""
    _JSON["everywhere"] = json_out


def wants_json(json_out: bool) -> bool:
    """A command's --json, or the one given before the command."""
    return json_out or _JSON["everywhere"]


@contextlib.contextmanager
def guarded(json_out: bool) -> Iterator[None]:
    """The one error boundary of the CLI."""
    json_out = wants_json(json_out)
    try:
        yield
    except CustodesError as exc:
        extra = {k: v for k, v in exc.to_dict().items() if k not in ("code", "message")}
        render.error(exc.code, exc.message, json_out, extra)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:
        if _INTERRUPTED:  # a library turned the interrupt into an error of its own
            _interrupted()
        fault = from_fault(exc)  # a read-only or full disk, a lost store: coded, not internal
        if fault is not None:
            render.error(fault.code, fault.message, json_out, {})
            raise typer.Exit(fault.exit_code) from None
        if settings.flag("CUSTODES_DEBUG"):
            raise
        render.err.print(
            f"internal error: {type(exc).__name__}. Nothing was committed by the failing step. "
            "Set CUSTODES_DEBUG=1 for a traceback (it may contain personal data).",
            markup=False,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


_INTERRUPTED: list[int] = []


def _interrupted() -> None:
    # Straight to stderr, not through Rich: an interrupt that lands inside a Rich print (a
    # progress bar's refresh) leaves the console's buffer open, and what Rich prints after it
    # is never flushed — the message went missing in one test run in six.
    sys.stderr.write(INTERRUPTED)
    sys.stderr.flush()
    raise typer.Exit(EXIT_INTERRUPTED) from None


def _on_interrupt(signum: int, frame: object) -> None:
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def _interrupt_as_keyboard() -> None:
    """Ctrl-C raises KeyboardInterrupt, and is remembered: DuckDB, Splink or Spark may catch
    it and raise an error of their own (an interrupted query, a closed result), which must
    still read as an interruption, not as an internal error."""
    signal.signal(signal.SIGINT, _on_interrupt)


def run(
    home: Path | None,
    json_out: bool,
    service: Callable[..., R],
    *args: Any,
    view: Callable[[R], object] | None = None,
    exit_status: Callable[[R], int] | None = None,
    **kwargs: Any,
) -> R:
    """Call `service` as the signed-in caller and render its result: JSON with --json (or
    when there is no view), else `view`. `exit_status` turns a "no" answer into exit 1."""
    from custodes.services import workspace as ws_svc  # here, not above: see COMMANDS

    json_out = wants_json(json_out)
    _interrupt_as_keyboard()
    with guarded(json_out):
        ws = ws_svc.open_workspace(home)
        try:
            who = ws_svc.caller(ws, session.token(ws.home))
            result = service(ws, who, *args, **kwargs)
        finally:
            ws.close()
        show(result, json_out, view)
    code = exit_status(result) if exit_status else 0
    if code:
        raise typer.Exit(code)
    return result


def show(result: R, json_out: bool, view: Callable[[R], object] | None) -> None:
    if wants_json(json_out) or view is None:
        render.emit_json(result)
    else:
        view(result)


STAGE_LABELS = {
    "prepare": "Standardizing names and addresses",
    "train": "Training (prior, u by sampling, m by EM)",
    "score": "Scoring candidate pairs",
    "decide": "Ranking, person gate, flags, address on record",
    "rules": "Rules before matching",
}


@contextlib.contextmanager
def stages(json_out: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A Rich progress bar per stage on stderr (none with --json). The service re-checks the
    caller's session at every update, whatever the face shows."""
    if wants_json(json_out):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<48}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=render.err,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def spinner(json_out: bool, message: str) -> contextlib.AbstractContextManager[Any]:
    """A status line on stderr while a command works (none with --json)."""
    return contextlib.nullcontext() if wants_json(json_out) else render.err.status(message)


def read_secret(stdin: bool, prompt: str = "Password") -> str:
    """A secret from standard input (first line) or an interactive hidden prompt."""
    if stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("Nothing was given on standard input.", code="bad_argument")
        return line.rstrip("\n")
    if not sys.stdin.isatty():
        raise InputError(
            f"{prompt} needed: give it on standard input (--password-stdin) or run in a terminal.",
            code="bad_argument",
        )
    secret: str = typer.prompt(prompt, hide_input=True)
    return secret
