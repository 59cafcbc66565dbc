"""Two people: an officer prepares a release, a different person approves it.

Preparing records the hash of exactly what the release will hold (`response.content`); the
approver approves that hash — never one they prepared, never a request they submitted — and
the hash must still be what was prepared. Both are ledger events carrying the hash, so release
can refuse anything that differs and an auditor can see what was approved.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.compute as pc
from sqlalchemy import delete, insert, select, update

from custodes.access.users import active_holders
from custodes.decisions.effective import effective_outcomes
from custodes.decisions.pipeline import checked, request_folder
from custodes.decisions.response import content
from custodes.errors import AccessDenied, ConflictError
from custodes.ledger import log
from custodes.ledger.event_types import ReleaseApproved, ReleasePrepared
from custodes.requests.lifecycle import current_state, transition
from custodes.store.tables import releases, requests
from custodes.workspace import Call, Workspace


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def eligible_approvers(conn: Any, request_id: str, prepared_by: str | None) -> list[str]:
    """Active approvers who may approve this release: neither its preparer nor its submitter.
    Suspending approvers never unlocks anything: with nobody eligible, it stays blocked."""
    submitted_by = conn.execute(
        select(requests.c.submitted_by).where(requests.c.id == request_id)
    ).scalar()
    return sorted(active_holders(conn, "approver") - {prepared_by, submitted_by})


def prepare(call: Call, request_id: str) -> dict[str, Any]:
    ws = call.ws
    request_folder(ws, request_id)
    checked(call, request_id, with_master=True)
    table = effective_outcomes(ws, request_id)
    still = pc.sum(pc.equal(table["outcome"], "REVIEW")).as_py() or 0
    if still:
        raise ConflictError(
            f"{still} item(s) are still in review; resolve them first "
            f"('custodes review {request_id}').",
            code="review_open",
        )
    c = content(ws, request_id)
    with call.transaction() as conn:
        transition(conn, request_id, "prepared", actor=call.actor)
        conn.execute(delete(releases).where(releases.c.request_id == request_id))
        conn.execute(
            insert(releases).values(
                request_id=request_id,
                outcomes_sha256=c.sha256,
                prepared_by=call.actor,
                prepared_at=_now(),
            )
        )
        log.append_one(
            conn,
            ReleasePrepared(content_sha256=c.sha256, disclosures=len(c.disclosed), fields=c.fields),
            actor=call.actor,
            request_id=request_id,
        )
        eligible = eligible_approvers(conn, request_id, call.actor)
    return {
        "request_id": request_id,
        "state": "prepared",
        "prepared_by": call.actor,
        "content_sha256": c.sha256,
        "disclosures": len(c.disclosed),
        "fields": c.fields,
        "recipients": len(c.recipients),
        "eligible_approvers": len(eligible),
    }


def approve(call: Call, request_id: str) -> dict[str, Any]:
    ws = call.ws
    request_folder(ws, request_id)
    checked(call, request_id, with_master=True)
    sha = content(ws, request_id).sha256
    with call.transaction() as conn:
        rel = conn.execute(select(releases).where(releases.c.request_id == request_id)).first()
        submitted_by = conn.execute(
            select(requests.c.submitted_by).where(requests.c.id == request_id)
        ).scalar()
        if rel is None or current_state(conn, request_id) != "prepared":
            raise ConflictError(
                f"Request {request_id} has no prepared release to approve.", code="not_prepared"
            )
        if call.actor == rel.prepared_by:
            raise AccessDenied(
                "Nobody approves a release they prepared: a second person must approve.",
                code="self_approval",
            )
        if submitted_by and call.actor == submitted_by:
            raise AccessDenied(
                "Nobody approves a release of a request they submitted.", code="self_approval"
            )
        if rel.outcomes_sha256 != sha:
            raise ConflictError(
                "What would be released changed since the release was prepared; prepare it again.",
                code="outcomes_changed",
            )
        transition(conn, request_id, "approved", actor=call.actor)
        conn.execute(
            update(releases)
            .where(releases.c.request_id == request_id)
            .values(approved_by=call.actor, approved_at=_now())
        )
        log.append_one(
            conn,
            ReleaseApproved(prepared_by=rel.prepared_by, content_sha256=sha),
            actor=call.actor,
            request_id=request_id,
        )
    return {
        "request_id": request_id,
        "state": "approved",
        "approved_by": call.actor,
        "prepared_by": rel.prepared_by,
        "content_sha256": sha,
    }


def status(ws: Workspace, request_id: str) -> dict[str, Any]:
    """Who prepared, who may approve (and why others may not)."""
    with ws.engine.connect() as conn:
        rel = conn.execute(select(releases).where(releases.c.request_id == request_id)).first()
        state = current_state(conn, request_id)
        prepared_by = rel.prepared_by if rel else None
        return {
            "request_id": request_id,
            "state": state,
            "prepared_by": prepared_by,
            "approved_by": rel.approved_by if rel else None,
            "eligible_approvers": eligible_approvers(conn, request_id, prepared_by),
        }
