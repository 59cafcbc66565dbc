"""Inspecting a taxpayer record: a stated purpose, tied to a candidate of an open request,
always recorded.

26 U.S.C. 7213A makes unauthorized inspection (browsing) of return information a crime; the
IRS answers it with the UNAX programme: every look at a record is logged with who, when, which
record and why, and audited. Here a record is shown only with a purpose and an open request
it serves, and only when the record is a candidate (best or runner-up) in that request's match
results: a look at anyone else is refused and reported as unlinked. Success or refusal goes to
the access log and the ledger (the purpose as a hash, since an officer's free text could hold
personal data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from custodes.access.sessions import record as record_access
from custodes.errors import fail
from custodes.ledger import files, log
from custodes.ledger.event_types import RecordInspected, RecordInspectionRefused
from custodes.matching.runs import LINKED
from custodes.records import master
from custodes.requests.format import item_id_ok
from custodes.requests.lifecycle import TERMINAL
from custodes.store.tables import requests
from custodes.workspace import Call

CLOSED = (*TERMINAL, "released")


def _candidate(path: Path, record_id: str) -> bool:
    if not path.exists():
        return False
    t = pq.read_table(path, columns=["record_id", "runner_up_record_id"])
    return bool(
        pc.any(pc.equal(t["record_id"], record_id)).as_py()
        or pc.any(pc.equal(t["runner_up_record_id"], record_id)).as_py()
    )


# The one ground on which an inspection is allowed: the record is a candidate (best or
# runner-up) in the match results of the open request named, with a stated purpose.
ALLOWED_BECAUSE = "candidate_of_open_request"


def inspect_record(
    call: Call, record_id: str, *, purpose: str, request_id: str | None
) -> dict[str, Any]:
    """Show one record to the caller if the purpose and the linked open request hold up."""
    ws = call.ws
    if not item_id_ok(record_id or ""):
        raise fail(
            "bad_record_id", "That is not a custodes record id (ids are opaque, e.g. rec-…)."
        )
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
            refusal = ("unknown_request", "No such request.")
        elif state in CLOSED:
            refusal = ("request_closed", f"Request {request_id} is {state}, not open.")
        elif not _candidate(
            files.verified(
                call,
                "match.results",
                ws.request_folder(request_id) / "match" / LINKED,
                optional=True,
            ),
            record_id,
        ):
            refusal = (
                "not_a_candidate",
                f"That record is not a candidate in the match results of {request_id}; an "
                "inspection serves the request only for its candidates.",
            )
    if refusal is None:
        master.verified(call)
    record = None if refusal else master.lookup(ws, record_id)
    if refusal is None and record is None:
        refusal = ("unknown_record", "No such record in the master file.")
    with call.transaction() as conn:
        purpose_hmac = record_access(
            conn,
            call.actor,
            "records.show",
            refusal is None,
            # why it was allowed, or the refusal's code (audit inspections lists both)
            refusal[0] if refusal else ALLOWED_BECAUSE,
            record_id=record_id,
            purpose=purpose or None,
            request_id=request_id if request_id and item_id_ok(request_id) else None,
        )
        log.append_one(
            conn,
            (RecordInspected if refusal is None else RecordInspectionRefused)(
                purpose_hmac=purpose_hmac,
                refusal=refusal[0] if refusal else None,
            ),
            actor=call.actor,
            request_id=request_id if request_id and item_id_ok(request_id) else None,
            record_id=record_id,
        )
    if refusal is not None:
        raise fail(refusal[0], refusal[1])
    assert record is not None
    return record
