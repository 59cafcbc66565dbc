"""Every command group, registered on the root command by importing its module."""

from custodes.cli import (  # noqa: F401 - importing a module registers its commands
    audit,
    decisions,
    ledger,
    matching,
    records,
    reports,
    requests,
    rules,
    serve,
    users,
    workspace,
)
from custodes.cli.root import app, whole_short_help

whole_short_help(app)

__all__ = ["app"]
