"""Review: an item's page (its explanation, the candidate beside it), inspecting a candidate,
resolving an item, and the review queue of a request by groups."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Form
from fastapi.responses import HTMLResponse, Response

from custodes.services import decisions, records
from custodes.web.console import Console, page, router, see_other

pages = router()


class Item(NamedTuple):
    """The item a page is about, from its path."""

    request_id: str
    item_id: str


def item_at(request_id: str, item_id: str) -> Item:
    return Item(request_id, item_id)


At = Annotated[Item, Depends(item_at)]


def _item(c: Console, at: Item, inspected: dict[str, Any] | None = None) -> Response:
    x = decisions.explain(c.ws, c.who, *at)
    side = None
    if x["outcome"] == "REVIEW" and "review.read" in c.me["may"]:
        side = decisions.review_item(c.ws, c.who, *at)
    return c.render(
        "item.html",
        {"title": f"Item {at.item_id}", "x": x, "side": side, "inspected": inspected},
        may_resolve="review.resolve",
        may_inspect="records.show",
    )


@pages.get("/requests/{request_id}/items/{item_id}", response_class=HTMLResponse)
def item_page(at: At, c: Annotated[Console, page("/requests/{request_id}")]) -> Response:
    return _item(c, at)


ITEM = "/requests/{request_id}/items/{item_id}"


@pages.post("/requests/{request_id}/items/{item_id}/inspect", response_class=HTMLResponse)
def inspect_candidate(
    at: At,
    record: Annotated[str, Form(max_length=64)],
    purpose: Annotated[str, Form(max_length=2000)],
    c: Annotated[Console, page(ITEM)],
) -> Response:
    """The whole candidate record, for a stated purpose: an inspection, recorded (shown or
    refused), and shown on this answer only (never in a URL, never cached)."""
    shown = records.show(c.ws, c.who, record, purpose=purpose, request_id=at.request_id)
    return _item(c, at, inspected=shown)


@pages.post("/requests/{request_id}/items/{item_id}/resolve")
def resolve_item(
    at: At,
    decision: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(max_length=2000)],
    c: Annotated[Console, page(ITEM)],
    record: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """One review item withheld, or disclosed naming the record the officer identified (the
    core checks it is the candidate shown and that nothing forbids it)."""
    request_id, item_id = at
    chosen = {item_id: record} if decision == "DISCLOSE" and record else None
    decisions.review_resolve(
        c.ws, c.who, request_id, decision, reason, items=[item_id], records=chosen
    )
    return see_other(f"/requests/{request_id}/review?done=resolved")


@pages.get("/requests/{request_id}/review", response_class=HTMLResponse)
def review_page(request_id: str, c: Annotated[Console, page("/requests/{request_id}")]) -> Response:
    groups = decisions.review_groups(c.ws, c.who, request_id)
    return c.page(
        "review.html",
        {"title": f"Review of {request_id}", "request_id": request_id, "groups": groups},
        may_resolve="review.resolve",
    )


@pages.post("/requests/{request_id}/review")
def review_resolve(
    request_id: str,
    group: Annotated[str, Form(max_length=500)],
    reason: Annotated[str, Form(max_length=2000)],
    c: Annotated[Console, page("/requests/{request_id}/review")],
) -> Response:
    decisions.review_resolve(c.ws, c.who, request_id, "WITHHOLD", reason, group=group)
    return see_other(f"/requests/{request_id}/review?done=withheld")
