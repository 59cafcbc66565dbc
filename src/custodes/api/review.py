"""Review: a request's outcomes, an item's explanation, and the review queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from custodes.api import common
from custodes.api import models as m
from custodes.http.deps import WS, Who
from custodes.services import decisions

staff = common.staff()
ROUTERS = (staff,)


@staff.get("/requests/{request_id}/outcomes", response_model=m.OutcomesPage)
def outcomes(
    request_id: str,
    who: Who,
    ws: WS,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    check: Annotated[str | None, Query(max_length=128)] = None,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """A page of the per-item outcomes, filterable by outcome and failing check."""
    return decisions.outcomes_page(
        ws, who, request_id, outcome=outcome, check=check, offset=offset, limit=limit
    )


@staff.get("/requests/{request_id}/items/{item_id}", response_model=m.Document)
def explain(request_id: str, item_id: str, who: Who, ws: WS) -> Any:
    """Why one item got its outcome: every check with its citation, and the match evidence."""
    return decisions.explain(ws, who, request_id, item_id)


@staff.get("/requests/{request_id}/review", response_model=list[m.Document])
def review(request_id: str, who: Who, ws: WS) -> Any:
    """The items waiting for review, each with its match evidence."""
    return decisions.review_list(ws, who, request_id)


@staff.get("/requests/{request_id}/review/groups", response_model=list[m.Document])
def review_groups(request_id: str, who: Who, ws: WS) -> Any:
    """Review items grouped by reason, with what it means and a sample to inspect."""
    return decisions.review_groups(ws, who, request_id)


@staff.post("/requests/{request_id}/review", response_model=m.Resolved)
def resolve(request_id: str, body: m.Resolution, who: Who, ws: WS) -> Any:
    """Resolve items (or a whole group) to withhold, or to disclose naming the record."""
    return decisions.review_resolve(
        ws,
        who,
        request_id,
        body.decision.upper(),
        body.reason,
        items=body.items,
        records=body.records,
        group=body.group,
    )
