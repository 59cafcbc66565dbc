"""The root command, the options every command shares, and the one way a command runs:
open the workspace, turn the stored session into a caller, call one service, render.

Errors a user can cause print one line (`error (code): message`, or a JSON error with --json)
and exit 2; an interruption says how to resume and exits 130; anything unexpected prints only
its kind (never a message or locals: they may hold personal data) and exits 70.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from custodes import __version__
from custodes.cli import render, session
from custodes.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    INTERRUPTED,
    CustodesError,
    InputError,
    from_fault,
)
from custodes.services import workspace as ws_svc

R = TypeVar("R")

app = typer.Typer(
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
    sub = typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
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


def _version(value: bool) -> None:
    if value:
        render.say(f"custodes {__version__}")
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


@contextlib.contextmanager
def guarded(json_out: bool) -> Iterator[None]:
    """The one error boundary of the CLI."""
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
        if os.environ.get("CUSTODES_DEBUG"):
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
    view: Callable[[R], None] | None = None,
    exit_status: Callable[[R], int] | None = None,
    **kwargs: Any,
) -> R:
    """Call `service` as the signed-in caller and render its result: JSON with --json (or
    when there is no view), else `view`. `exit_status` turns a "no" answer into exit 1."""
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


def show(result: Any, json_out: bool, view: Callable[[Any], None] | None) -> None:
    if json_out or view is None:
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
    if json_out:
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
    return contextlib.nullcontext() if json_out else render.err.status(message)


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
    return typer.prompt(prompt, hide_input=True)
