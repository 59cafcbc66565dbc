"""The main job's services: process, explain, outcomes, review, prepare, approve, release,
recall and certification; and `next_step`, the walk through a request's states."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from custodes.access import ACTIONS, CheckedCall, service
from custodes.access.names import roles_shown, rows_shown
from custodes.decisions import approval, effective, pipeline
from custodes.decisions import recall as rc
from custodes.decisions import review as rv
from custodes.decisions.pipeline import Processed
from custodes.decisions.release import Released
from custodes.decisions.release import download as _download
from custodes.decisions.release import release as _release
from custodes.decisions.response import content
from custodes.errors import InputError
from custodes.matching import model
from custodes.matching.link import Progress
from custodes.records import exports
from custodes.requests import intake
from custodes.requests.lifecycle import current_state
from custodes.rules.active import in_force


@service("process")
def process(
    call: CheckedCall,
    request_id: str,
    *,
    progress: Progress | None = None,
    engine: str = "duckdb",
) -> Processed:
    """Rules, matching, rules after matching, one outcome per item; resumable. `engine`:
    ``duckdb`` (embedded) or ``spark`` (every bulk step as Spark SQL)."""
    return pipeline.process(call, request_id, progress=call.progress(progress), engine=engine)


@service("explain")
def explain(call: CheckedCall, request_id: str, item_id: str) -> dict[str, Any]:
    """Why one item got its outcome: every check with its citation, and the match evidence."""
    pipeline.checked(call, request_id)
    return effective.explain(call.ws, request_id, item_id)


@service("outcomes")
def outcomes(call: CheckedCall, request_id: str, out: Path) -> dict[str, Any]:
    """The officers' per-item view written to a file (.csv, .parquet, .json); the file is a
    ledger event (it holds the values that would be released)."""
    pipeline.checked(call, request_id)
    exports.file_kind(out)
    table = effective.view(call.ws, request_id)
    return {"request_id": request_id} | exports.write_table(
        call, table, out, what="outcomes", request_id=request_id
    )


@service("outcomes")
def outcomes_page(
    call: CheckedCall,
    request_id: str,
    *,
    outcome: str | None = None,
    check: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """A page of the per-item view, filterable by outcome and by failing check."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InputError("A page holds 1 to 1,000 items, from offset 0.", code="bad_argument")
    pipeline.checked(call, request_id)
    if outcome and outcome not in pipeline.OUTCOMES:
        raise InputError(
            f"Unknown outcome filter (outcome is one of {', '.join(pipeline.OUTCOMES)}).",
            code="bad_argument",
        )
    table, total = effective.view_page(
        call.ws, request_id, outcome=outcome, check=check, offset=offset, limit=limit
    )
    return {
        "request_id": request_id,
        "total": total,
        "offset": offset,
        "limit": limit,
        "items": table.to_pylist(),
    }


@service("outcomes")
def deciding_checks(call: CheckedCall, request_id: str) -> dict[str, int]:
    """Each check an item's outcome rests on, with how many items it decided (for a filter)."""
    pipeline.request_folder(call.ws, request_id)
    return effective.deciding_checks(call.ws, request_id)


@service("review.read")
def review_list(call: CheckedCall, request_id: str) -> list[dict[str, Any]]:
    """The items in review, with the match evidence."""
    pipeline.checked(call, request_id)
    return rv.open_reviews(call.ws, request_id)


@service("review.read")
def review_groups(call: CheckedCall, request_id: str, sample: int = 3) -> list[dict[str, Any]]:
    """The items in review grouped by reason, each with its meaning and a sample."""
    pipeline.checked(call, request_id)
    return rv.groups(call.ws, request_id, sample)


@service("review.read")
def review_item(call: CheckedCall, request_id: str, item_id: str) -> dict[str, Any]:
    """A review item as listed beside its candidate record, masked (the whole record is an
    inspection with a purpose: `records show`)."""
    with call.ws.engine.connect() as conn:
        current_state(conn, request_id, agency=call.agency)
    pipeline.checked(call, request_id, with_master=True)
    return rv.side_by_side(call.ws, request_id, item_id)


@service("review.resolve")
def review_resolve(
    call: CheckedCall,
    request_id: str,
    decision: str,
    reason: str | None,
    *,
    items: list[str] | None = None,
    records: dict[str, str] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """Resolve review items to withhold, or to disclose naming the record identified; or a
    whole review group with one justification (recorded per item)."""
    pipeline.checked(call, request_id)
    n = rv.resolve(call, request_id, decision, reason, items=items, records=records, group=group)
    return {"request_id": request_id, "resolved": n, "decision": decision.upper()}


@service("prepare")
def prepare(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """Prepare a decided request's release (nothing may be in review); a second person must
    approve it."""
    return approval.prepare(call, request_id)


@service("approve")
def approve(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """Approve a prepared release: never one you prepared or a request you submitted."""
    return approval.approve(call, request_id)


@service("release")
def release(call: CheckedCall, request_id: str, out: Path | None = None) -> Released:
    """Write the approved response; one ledger leaf per disclosure; safe to re-run. With `out`
    the response is also delivered there; without, it waits in the workspace for download."""
    return _release(call, request_id, out)


@service("response.download")
def download(call: CheckedCall, request_id: str) -> dict[str, bytes]:
    """The released response files for the requesting agency (or an officer); recorded."""
    return _download(call, request_id)


@service("recall")
def recall(
    call: CheckedCall,
    *,
    reason: str,
    request_id: str | None = None,
    items_file: Path | None = None,
    items: list[str] | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Mark disclosures improper (a released request's, or only its chosen `items`, or the
    pairs of `items_file`) and issue the return-or-destroy notice."""
    return rc.recall(
        call, reason=reason, request_id=request_id, items_file=items_file, items=items, out=out
    )


@service("recalls.read")
def recalls(call: CheckedCall) -> list[dict[str, Any]]:
    """Every recall with its requests, agencies, reason, status and acknowledgements; an
    agency account sees only the recalls of its own requests."""
    return rc.listing(call.ws, call.agency)


@service("recalls.read")
def recall_notice(call: CheckedCall, recall_id: str, *, text: bool = False) -> Any:
    """A recall's return-or-destroy notice, as a document or (`text`) as the plain text to
    print or file. An agency gets the part about its requests; another agency's recall is
    unknown."""
    notice = rc.notice(call.ws, recall_id, call.agency)
    return rc.notice_text(notice) if text else notice


@service("recall.acknowledge")
def acknowledge_recall(call: CheckedCall, recall_id: str) -> dict[str, Any]:
    """The recipient agency acknowledges receipt of a recall's notice (idempotent)."""
    return rc.acknowledge(call, recall_id)


@service("recall.certify")
def certify(
    call: CheckedCall,
    recall_id: str,
    *,
    certified_by: str,
    certified_on: dt.date,
    certificate: str | None = None,
) -> dict[str, Any]:
    return rc.certify(
        call,
        recall_id,
        certified_by=certified_by,
        certified_on=certified_on,
        certificate=certificate,
    )


# What happens next to a request in each state, and which role does it.
NEXT = {
    "received": ("process", "officer", "run the rules and matching"),
    "checked": ("process", "officer", "finish processing (matching)"),
    "matched": ("process", "officer", "finish processing (decisions)"),
    "in_review": ("review", "officer", "resolve the items in review"),
    "decided": ("prepare", "officer", "prepare the release"),
    "prepared": ("approve", "approver", "approve the release (a second person)"),
    "approved": ("release", "officer", "release the response"),
    "released": (None, None, "released; recall if a disclosure proves improper"),
    "refused": (None, None, "refused: the request fails the statute"),
    "withdrawn": (None, None, "withdrawn"),
    "recalled": (None, None, "every disclosure recalled"),
}


@service("requests.read")
def next_step(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """Where a request stands and what comes next: the action, the role that takes it, and
    whether the caller may take it (with why not: separation of duties shown before the
    click)."""
    with call.ws.engine.connect() as conn:
        state = current_state(conn, request_id, agency=call.agency)
    return _step(call, request_id, state)


@service("requests.list")
def work_queue(call: CheckedCall) -> dict[str, Any]:
    """The requests the caller may see, each with what comes next, and those waiting for the
    caller (the next step is theirs to take): one call, one access-log row."""
    rows = intake.listing(call.ws, call.agency)
    with call.ws.engine.connect() as conn:
        rows = rows_shown(conn, call.agency, rows)  # a requester sees roles, not staff names
    mine = []
    for r in rows:
        if r["state"] in ("withdrawn", "refused", "recalled", "released"):
            continue
        step = _step(call, str(r["id"]), str(r["state"]))
        if step["you_may"] and step["next"]:
            mine.append(r | {"says": step["says"], "open_reviews": step.get("open_reviews", 0)})
    # Recalls waiting for the recipient's certification of destruction: the officers' to
    # record (the same table that decides who may certify decides who sees them here).
    certifies = call.caller.roles & set(ACTIONS["recall.certify"])
    waiting = [r for r in rc.listing(call.ws) if not r["certified_by"]] if certifies else []
    return {"requests": rows, "mine": mine, "recalls": waiting}


def _step(call: CheckedCall, request_id: str, state: str) -> dict[str, Any]:
    action, role, text = NEXT[state]
    open_reviews = len(rv.open_reviews(call.ws, request_id)) if state == "in_review" else 0
    if state == "in_review" and not open_reviews:
        action, role, text = "prepare", "officer", "prepare the release (every review resolved)"
    info: dict[str, Any] = {
        "request_id": request_id,
        "state": state,
        "next": action,
        "role": role,
        "says": text,
    }
    why_not = None
    if role is not None and role not in call.caller.roles:
        why_not = f"it needs the {role} role"
    if state == "prepared":
        status = approval.status(call.ws, request_id)
        info["prepared_by"] = status["prepared_by"]
        info["eligible_approvers"] = status["eligible_approvers"]
        if call.actor not in status["eligible_approvers"] and why_not is None:
            why_not = "you prepared or submitted it (a second person must approve)"
        if call.agency is not None:  # an agency sees roles, never staff names (same keys)
            with call.ws.engine.connect() as conn:
                names = roles_shown(
                    conn, call.agency, [status["prepared_by"], *status["eligible_approvers"]]
                )
            info["prepared_by"] = names.get(status["prepared_by"] or "")
            info["eligible_approvers"] = sorted(
                {names[n] for n in status["eligible_approvers"] if n in names}
            )
    if state == "in_review":
        info["open_reviews"] = open_reviews
    if action == "process":
        info["needs_model"] = not model.trained(call.ws)
    info["you_may"] = role is not None and why_not is None
    info["why_not"] = why_not
    return info


@service("outcomes")
def release_preview(call: CheckedCall, request_id: str) -> dict[str, Any]:
    """What a release would hold (counts, fields, recipients, use limits, citation) and the
    separation of duties (who prepared, who may approve): shown before anyone clicks."""
    pipeline.checked(call, request_id)
    c = content(call.ws, request_id)
    prov = in_force(call.ws).provisions.get(c.envelope.get("provision", ""))
    who = approval.status(call.ws, request_id)
    return {
        "request_id": request_id,
        "state": who["state"],
        "disclosures": len(c.disclosed),
        "items": c.rows.num_rows,
        "fields": c.fields,
        "recipients": [{k: o.get(k) for k in ("id", "name", "title")} for o in c.recipients],
        "agency": c.envelope.get("agency"),
        "provision": c.envelope.get("provision"),
        "citation": prov.citation if prov else None,
        "use_limits": prov.use_limits if prov else None,
        "prepared_by": who["prepared_by"],
        "approved_by": who["approved_by"],
        "eligible_approvers": who["eligible_approvers"],
        "content_sha256": c.sha256,
    }
