"""Inspecting a taxpayer record: a stated purpose, linked to an open request, always recorded.

26 U.S.C. 7213A makes unauthorized inspection (browsing) of return information a crime; the
IRS answers it with the UNAX programme: every look at a record is logged with who, when, which
record and why, and audited. Here a record is shown only with a purpose and an open request it
serves; success or refusal goes to the access log and the ledger (the purpose as a hash, since
an officer's free text could hold personal data).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select

from custodes.access import service as access
from custodes.errors import InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.records import master
from custodes.requests.lifecycle import TERMINAL
from custodes.store.tables import requests
from custodes.workspace import Workspace

CLOSED = (*TERMINAL, "released")


def inspect_record(
    ws: Workspace, record_id: str, *, actor: str, purpose: str, request_id: str | None
) -> dict[str, Any]:
    """Show one record to `actor` if the purpose and the linked open request hold up."""
    purpose = (purpose or "").strip()
    refusal = None
    if len(purpose) < 10:
        refusal = ("no_purpose", "State the purpose of the inspection (at least 10 characters).")
    elif not request_id:
        refusal = ("no_case", "Link the inspection to the open request it serves (--request).")
    else:
        with ws.engine.connect() as conn:
            state = conn.execute(
                select(requests.c.state).where(requests.c.id == request_id)
            ).scalar()
        if state is None:
            refusal = ("unknown_request", f"No request '{request_id}'.")
        elif state in CLOSED:
            refusal = ("request_closed", f"Request {request_id} is {state}, not open.")
    record = None if refusal else master.lookup(ws, record_id)
    if refusal is None and record is None:
        refusal = ("unknown_record", f"No record '{record_id}' in the master file.")
    with ws.engine.begin() as conn:
        access.record_inspection(
            conn,
            actor,
            record_id,
            allowed=refusal is None,
            reason=refusal[0] if refusal else None,
            purpose=purpose or None,
            request_id=request_id,
        )
        log.append(
            conn,
            [
                Event(
                    "record.inspected" if refusal is None else "record.inspection_refused",
                    actor=actor,
                    request_id=request_id,
                    record_id=record_id,
                    data={
                        "purpose_sha256": hashlib.sha256(purpose.encode()).hexdigest(),
                        "refusal": refusal[0] if refusal else None,
                    },
                )
            ],
        )
    if refusal is not None:
        raise InputError(refusal[1], code=refusal[0])
    assert record is not None
    return record
