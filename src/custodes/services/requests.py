"""Request services: submit, see, withdraw; and synthetic requests for testing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from custodes.access import CheckedCall, service
from custodes.access.names import roles_shown, rows_shown
from custodes.errors import ConflictError, InputError
from custodes.requests import answers, intake, lifecycle
from custodes.requests.intake import Submission
from custodes.store import jobs as jobs_store
from custodes.store.tables import request_transitions
from custodes.synthetic.requests import GeneratedRequest, generate_request

# The largest envelope intake reads (a face reading one whole holds it to the same).
MAX_ENVELOPE_BYTES = intake.MAX_ENVELOPE_BYTES


@service("submit")
def submit(
    call: CheckedCall,
    folder: Path,
    *,
    idempotency_key: str | None = None,
    payload_sha256: str | None = None,
    paper_sha256: str | None = None,
) -> Submission:
    """Receive a request directory: shape-checked, copied, hashed, given an id. A requester
    submits only in its own agency's name. With an idempotency key (IETF draft "The
    Idempotency-Key HTTP Header Field"), the same key and payload return the first answer, the
    same key with another payload is refused (422), and a retry while the first is still
    running is refused (409). Staff key in only a request received on paper, with the scan's
    SHA-256 (`paper_sha256`); a second staff member confirms it before it is processed."""
    if idempotency_key is None:
        return intake.submit(call, folder, paper_sha256=paper_sha256)
    if not 1 <= len(idempotency_key) <= 255 or not payload_sha256:
        raise InputError("An idempotency key has 1 to 255 characters.", code="bad_argument")
    engine = call.ws.engine
    seen = jobs_store.idempotency_begin(engine, call.actor, idempotency_key, payload_sha256)
    if seen is not None:
        if seen["payload_sha256"] != payload_sha256:
            raise InputError(
                "This idempotency key was used for another payload; use a new key.",
                code="idempotency_key_reused",
            )
        if seen["state"] != "done" and seen["response"] is None:
            raise ConflictError(
                "The first submission with this idempotency key is still running; retry later.",
                code="idempotency_key_in_use",
            )
        return answers.unseal(engine, seen)
    try:
        result = intake.submit(call, folder, paper_sha256=paper_sha256)
    except BaseException:
        jobs_store.idempotency_end(engine, call.actor, idempotency_key, None)
        raise
    kept = answers.seal(engine, call.actor, idempotency_key, payload_sha256, result)
    jobs_store.idempotency_end(engine, call.actor, idempotency_key, kept)
    return result


@service("requests.confirm_paper")
def confirm_paper(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """A second staff member confirms a request keyed in from paper against its scan (never
    the one who keyed it in); only then is it processed."""
    return lifecycle.confirm_paper(call, request_id)


@service("withdraw")
def withdraw(call: CheckedCall, request_id: str, reason: str) -> dict[str, Any]:
    before = lifecycle.withdraw(call, request_id, reason)
    return {"request_id": request_id, "from": before, "state": "withdrawn"}


@service("requests.list")
def listing(call: CheckedCall) -> list[dict[str, Any]]:
    """The requests the caller may see: all of them for staff, its own agency's for a
    requester account (which sees who submitted by role, never a staff name)."""
    rows = intake.listing(call.ws, call.agency)
    with call.ws.engine.connect() as conn:
        return rows_shown(conn, call.agency, rows)


@service("requests.read")
def status(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """One request's state and history (another agency's request is reported as unknown).
    A requester sees each step's actor as a role ("officer", "approver"), never a staff
    name (the key stays `actor`)."""
    with call.ws.engine.connect() as conn:
        lifecycle.current_state(conn, request_id, agency=call.agency)
        rows = intake.listing(call.ws, call.agency, request_id)
        steps = conn.execute(
            select(request_transitions)
            .where(request_transitions.c.request_id == request_id)
            .order_by(request_transitions.c.id)
        ).all()
        names = roles_shown(conn, call.agency, [t.actor for t in steps])
        history = [
            {
                "from": t.from_state,
                "to": t.to_state,
                "at": t.at,
                "actor": names.get(t.actor or ""),
                "reason": t.reason,  # the justification given for the move (withdraw, recall…)
            }
            for t in steps
        ]
        return rows_shown(conn, call.agency, rows)[0] | {"history": history}


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
