"""What the access test modules share."""

from __future__ import annotations

import json

import sqlalchemy as sa
from typer.testing import CliRunner

from custodes.store.tables import ledger_events
from custodes.workspace import Workspace

runner = CliRunner()


def _events(ws: Workspace, kind: str) -> list[dict]:
    with ws.engine.connect() as conn:
        bodies = conn.execute(
            sa.select(ledger_events.c.body).where(ledger_events.c.type == kind)
        ).scalars()
        return [json.loads(b) for b in bodies]
