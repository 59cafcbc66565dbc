"""What the ledger's test modules share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from custodes.ledger import checkpoints, log
from custodes.ledger.events import (
    OMIT,
    Declared,
    Event,
    Omitted,
    declare,
)
from custodes.workspace import Workspace

# --- the store --------------------------------------------------------------------------------


@dataclass
class Direct:
    """The `Call` protocol for the ledger room's own tests, which run below the door (the door
    and its re-checks have their own tests): transactions as they are, a fixed actor."""

    ws: Workspace
    actor: str = "ledger-test"
    action: str = "test"
    agency: str | None = None

    def transaction(self):  # type: ignore[no-untyped-def]
        return self.ws.engine.begin()

    def recheck(self) -> None:
        pass


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class Probe(Declared):
    """This module's event: a sequence number, or any data (`extra`)."""

    TYPE = "test.event"
    seq: int | Omitted = OMIT
    extra: dict[str, Any] | Omitted = OMIT


def record(ws: Workspace, evs: list[Event]) -> list[int]:
    with ws.engine.begin() as conn:
        return log.append(conn, evs)


def events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(
            Probe(seq=start + i),
            actor="officer1",
            request_id=f"req-{(start + i) // 7}",
            record_id=f"rec-{start + i:016x}",
        )
        for i in range(n)
    ]


@pytest.fixture
def signed_ws(workspace: Workspace) -> Workspace:
    record(workspace, events(40))
    checkpoints.checkpoint(Direct(workspace))
    record(workspace, events(25, 40))
    checkpoints.checkpoint(Direct(workspace))
    return workspace
