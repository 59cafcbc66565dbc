"""The request lifecycle: explicit states and the only transitions allowed between them.

received → checked → matched → decided → in_review → prepared → approved → released,
or refused / withdrawn / recalled. A transition is a compare-and-swap on the current state, so
two people acting at once cannot both move a request, and every transition is a ledger event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, insert, select, update

from custodes.errors import AccessDenied, ConflictError, InputError, NotFound
from custodes.ledger import anchors, log
from custodes.ledger.event_types import RequestPaperConfirmed, RequestTransition
from custodes.store.tables import request_transitions, requests
from custodes.workspace import Call

STATES = (
    "received",
    "checked",
    "matched",
    "decided",
    "in_review",
    "prepared",
    "approved",
    "released",
    "refused",
    "withdrawn",
    "recalled",
)
TERMINAL = ("refused", "withdrawn", "recalled")

# from-state → the states it may move to. The table is the rule; nothing else decides.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("checked", "refused", "withdrawn"),
    "checked": ("matched", "refused", "withdrawn"),
    "matched": ("decided", "withdrawn"),
    "decided": ("in_review", "prepared", "withdrawn"),
    "in_review": ("prepared", "withdrawn"),
    "prepared": ("approved", "in_review", "withdrawn"),
    "approved": ("released", "withdrawn"),
    "released": ("recalled",),
    "refused": (),
    "withdrawn": (),
    "recalled": (),
}


def current_state(conn: Connection, request_id: str, *, agency: str | None = None) -> str:
    """The request's state. With `agency` (a requester's), another agency's request is
    reported exactly like one that does not exist, so its existence does not leak."""
    row = conn.execute(
        select(requests.c.state, requests.c.agency).where(requests.c.id == request_id)
    ).first()
    if row is None or (agency is not None and row.agency != agency):
        raise NotFound("No such request.", code="unknown_request")
    state: str = row.state
    return state


def transition(
    conn: Connection,
    request_id: str,
    to: str,
    *,
    actor: str,
    reason: str | None = None,
) -> str:
    """Move a request to `to` in the caller's transaction; refuses an illegal move."""
    if to not in STATES:
        raise InputError(f"Unknown state (states: {', '.join(STATES)}).", code="bad_state")
    now = current_state(conn, request_id)
    if now == "received" and to == "checked":
        _paper_confirmed(conn, request_id)
    if to not in TRANSITIONS[now]:
        allowed = ", ".join(TRANSITIONS[now]) or "none (final state)"
        raise ConflictError(
            f"Request {request_id} is {now}; it cannot become {to} (allowed: {allowed}).",
            code="illegal_transition",
        )
    done = conn.execute(
        update(requests)
        .where(requests.c.id == request_id, requests.c.state == now)
        .values(state=to)
    )
    if done.rowcount != 1:
        raise ConflictError(
            f"Request {request_id} changed state meanwhile; retry.", code="concurrent_transition"
        )
    at = dt.datetime.now(dt.UTC)
    conn.execute(
        insert(request_transitions).values(
            request_id=request_id, from_state=now, to_state=to, at=at, actor=actor, reason=reason
        )
    )
    log.append_one(
        conn,
        RequestTransition(
            from_=now,
            to=to,
            reason_hmac=None
            if reason is None
            else reason_commit(anchors.key(conn), request_id, now, to, reason),
        ),
        actor=actor,
        request_id=request_id,
        at=at,
    )
    return now


def reason_commit(
    k: bytes, request_id: str, from_state: str | None, to: str, reason: str | None
) -> str | None:
    """The keyed commitment a transition event carries to its history row's reason (None for
    none): the reason stays out of the ledger's plain text, and the store audit compares."""
    return anchors.value_commit(
        k, "request_transitions", [request_id, from_state, to], "reason", reason
    )


def _paper_confirmed(conn: Connection, request_id: str) -> None:
    """A request keyed in from paper moves on only once a second staff member confirmed it."""
    row = conn.execute(
        select(requests.c.paper_sha256, requests.c.paper_confirmed_at).where(
            requests.c.id == request_id
        )
    ).one()
    if row.paper_sha256 is not None and row.paper_confirmed_at is None:
        raise ConflictError(
            f"Request {request_id} was keyed in from paper: a second staff member confirms it "
            f"against the scan first ('custodes requests confirm-paper {request_id}').",
            code="paper_unconfirmed",
        )


def confirm_paper(call: Call, request_id: str) -> dict[str, Any]:
    """A second staff member confirms that a request keyed in from paper matches the scan
    whose hash was given (never the person who keyed it in); only then is it processed."""
    with call.transaction() as conn:
        row = conn.execute(select(requests).where(requests.c.id == request_id)).first()
        if row is None:
            raise NotFound("No such request.", code="unknown_request")
        if row.paper_sha256 is None:
            raise ConflictError(
                f"Request {request_id} came from the agency's account, not on paper.",
                code="not_pending",
            )
        if row.paper_confirmed_at is not None:
            raise ConflictError(
                f"Request {request_id} was already confirmed by {row.paper_confirmed_by}.",
                code="not_pending",
            )
        if row.submitted_by == call.actor:
            raise AccessDenied(
                "A second staff member confirms a request keyed in from paper, not the person "
                "who keyed it in.",
                code="separation_of_duties",
            )
        at = dt.datetime.now(dt.UTC)
        anchors.update_rows(
            conn,
            call.actor,
            requests,
            (requests.c.id == request_id) & requests.c.paper_confirmed_at.is_(None),
            paper_confirmed_by=call.actor,
            paper_confirmed_at=at,
        )
        log.append_one(
            conn,
            RequestPaperConfirmed(paper_sha256=row.paper_sha256, keyed_by=row.submitted_by),
            actor=call.actor,
            request_id=request_id,
        )
    return {
        "request_id": request_id,
        "paper_sha256": row.paper_sha256,
        "keyed_by": row.submitted_by,
        "confirmed_by": call.actor,
    }


def withdraw(call: Call, request_id: str, reason: str) -> str:
    """Withdraw a request in its own transaction; returns the state it left. A requester
    withdraws only its own agency's requests."""
    if not reason.strip():
        raise InputError("A withdrawal needs a reason.", code="bad_argument")
    with call.transaction() as conn:
        current_state(conn, request_id, agency=call.agency)
        return transition(conn, request_id, "withdrawn", actor=call.actor, reason=reason)
