"""Request services: submit, see, withdraw; and synthetic requests for testing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from custodes.access import CheckedCall, service
from custodes.requests import intake, lifecycle
from custodes.requests.intake import Submission
from custodes.store.tables import request_transitions
from custodes.synthetic.requests import GeneratedRequest, generate_request


@service("submit")
def submit(call: CheckedCall, folder: Path) -> Submission:
    """Receive a request directory: shape-checked, copied, hashed, given an id. A requester
    submits only in its own agency's name."""
    return intake.submit(call, folder)


@service("withdraw")
def withdraw(call: CheckedCall, request_id: str, reason: str) -> dict[str, Any]:
    before = lifecycle.withdraw(call, request_id, reason)
    return {"request_id": request_id, "from": before, "state": "withdrawn"}


@service("requests.list")
def listing(call: CheckedCall) -> list[dict[str, Any]]:
    """The requests the caller may see: all of them for staff, its own agency's for a
    requester account."""
    return intake.listing(call.ws, call.agency)


@service("requests.read")
def status(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """One request's state and history (another agency's request is reported as unknown)."""
    with call.ws.engine.connect() as conn:
        lifecycle.current_state(conn, request_id, agency=call.agency)
        rows = [r for r in intake.listing(call.ws, call.agency) if r["id"] == request_id]
        history = [
            {"from": t.from_state, "to": t.to_state, "at": t.at, "actor": t.actor}
            for t in conn.execute(
                select(request_transitions)
                .where(request_transitions.c.request_id == request_id)
                .order_by(request_transitions.c.id)
            )
        ]
    return rows[0] | {"history": history}


@service("requests.generate")
def generate(
    call: CheckedCall,
    provision: str,
    items: int,
    seed: int,
    out: Path,
    *,
    overwrite: bool = False,
    corruption: str = "none",
) -> GeneratedRequest:
    """A synthetic request (envelope, items, truth) drawn from a synthetic master file, its
    items corrupted by the named mix (`custodes.synthetic.corrupt.MIXES`)."""
    return generate_request(
        call, provision, items, seed, out, overwrite=overwrite, corruption=corruption
    )
