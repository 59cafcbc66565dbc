"""The `custodes` command: every capability reachable from the shell.

A face only: each command parses its arguments, calls one service (`custodes.services`) as the
signed-in caller, and renders the result (Rich for people, JSON with --json). One module per
command group; `root.py` holds the root command, the shared options and the error boundary.

This module stays light so that `main` can answer Ctrl-C cleanly even while the rest loads.
"""

from __future__ import annotations

import sys
from typing import Any

from custodes.errors import INTERRUPTED


def main() -> None:
    try:
        from custodes.cli.commands import app

        app()
    except KeyboardInterrupt:  # before or after a command's own error boundary
        sys.stderr.write(INTERRUPTED)
        raise SystemExit(130) from None


def __getattr__(name: str) -> Any:
    if name == "app":
        from custodes.cli.commands import app

        return app
    raise AttributeError(name)


__all__ = ["app", "main"]
