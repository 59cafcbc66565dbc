"""The `custodes` command: every capability reachable from the shell.

A face only: each command parses its arguments, calls one service (`custodes.services`) as the
signed-in caller, and renders the result (Rich for people, JSON with --json). One module per
command group; `app.py` holds the root command, the shared options and the error boundary.
"""

from custodes.cli import (  # noqa: F401 - importing a module registers its commands
    audit,
    decisions,
    ledger,
    matching,
    records,
    requests,
    rules,
    users,
    workspace,
)
from custodes.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
