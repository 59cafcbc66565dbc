"""Recalls: recalling a released request's disclosures, the recalls' page, a certification of
destruction, and the notice as issued."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import Form
from fastapi.responses import Response

from custodes.services import decisions
from custodes.web.console import Console, page, router, see_other, simple_page
from custodes.web.requests import at_the_field

pages = router()


@pages.post("/requests/{request_id}/recall")
def recall(
    request_id: str,
    reason: Annotated[str, Form(max_length=2000)],
    c: Annotated[Console, page("/requests/{request_id}")],
    items: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    """Recall the chosen items of a released request (item ids, separated by commas, spaces or
    lines), or every disclosure when none is given; the notice is kept for the agency."""
    chosen = [i for i in re.split(r"[\s,;]+", items) if i] or None

    def recall_now() -> Response:
        decisions.recall(c.ws, c.who, reason=reason, request_id=request_id, items=chosen)
        return see_other("/recalls?done=recalled")

    fields = {
        "not_disclosed": "recall-items",
        "already_recalled": "recall-items",
        "no_items": "recall-items",
        "bad_argument": "recall-reason",
    }
    return at_the_field(c, request_id, recall_now, "recall", fields)


@simple_page(pages, "/recalls", "recalls.html", "Recalls", may_certify="recall.certify")
def recalls_page(c: Console) -> dict[str, Any]:
    """Every recall: its requests and agencies, its reason, and the certification of
    destruction once recorded."""
    return {"recalls": decisions.recalls(c.ws, c.who)}


@pages.post("/recalls/{recall_id}/certify")
def certify(
    recall_id: str,
    certified_by: Annotated[str, Form(max_length=200)],
    certified_on: Annotated[dt.date, Form()],
    c: Annotated[Console, page("/recalls")],
) -> Response:
    decisions.certify(c.ws, c.who, recall_id, certified_by=certified_by, certified_on=certified_on)
    return see_other("/recalls?done=certified")


@pages.get("/recalls/{recall_id}/notice.txt")
def recall_notice(recall_id: str, c: Annotated[Console, page("/recalls")]) -> Response:
    """The return-or-destroy notice as issued, to print, send or file."""
    return Response(
        decisions.recall_notice(c.ws, c.who, recall_id, text=True),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="notice-{recall_id}.txt"'},
    )
