"""The root command. Each command group registers itself on it when its module is imported,
and the root imports a command's module only when that command is asked for (`root.COMMANDS`)."""

import importlib

from custodes.cli.root import COMMANDS, app, whole_short_help


def load_all() -> None:
    """Import every command module (for tests and tools that walk the whole command tree)."""
    for module in sorted({module for module, _ in COMMANDS.values()}):
        importlib.import_module(f"custodes.cli.{module}")
    whole_short_help(app)


__all__ = ["app", "load_all"]
