"""Recalls: the agency's notices and acknowledgements, and staff's recall and certification."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import Paged
from custodes.http.deps import WS, Who
from custodes.services import decisions

agency = common.agency()
staff = common.staff()
ROUTERS = (agency, staff)


@agency.get("/recalls", response_model=list[m.RecallSummary])
def list_recalls(who: Who, ws: WS, paged: Paged) -> Any:
    """Every recall with its requests, agencies, reason, status (open, overdue, certified),
    return-by date and acknowledgements; an agency sees only the recalls of its requests.
    `limit` pages them (`Link: rel="next"`)."""
    return paged(decisions.recalls(ws, who), "recall_id")


@agency.get("/recalls/{recall_id}/notice", response_model=m.Document)
def recall_notice(recall_id: str, who: Who, ws: WS) -> Any:
    """The return-or-destroy notice as issued (an agency: the part about its own requests;
    another agency's recall: 404)."""
    return decisions.recall_notice(ws, who, recall_id)


@agency.get(
    "/recalls/{recall_id}/notice.txt",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def recall_notice_text(recall_id: str, who: Who, ws: WS) -> Response:
    """The same notice as plain text, to print or file."""
    text = decisions.recall_notice(ws, who, recall_id, text=True)
    return Response(
        text,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="notice-{recall_id}.txt"'},
    )


@agency.post("/recalls/{recall_id}/acknowledgement", response_model=m.Acknowledgement)
def acknowledge_recall(recall_id: str, who: Who, ws: WS) -> Any:
    """The recipient agency acknowledges receipt of the notice (recorded in the ledger once;
    again answers with the first acknowledgement). Destruction is certified separately."""
    return decisions.acknowledge_recall(ws, who, recall_id)


@staff.post("/requests/{request_id}/recall", response_model=m.Document)
def recall(request_id: str, body: m.Recall, who: Who, ws: WS) -> Any:
    """Recall every disclosure of a released request, or only the `items` given (item ids);
    the notice is kept in the store and offered to the agency (`/v1/recalls/{id}/notice`)."""
    return decisions.recall(ws, who, reason=body.reason, request_id=request_id, items=body.items)


@staff.post("/recalls/{recall_id}/certify", response_model=m.Document)
def certify(recall_id: str, body: m.Certification, who: Who, ws: WS) -> Any:
    """Record the recipient's certification that the recalled information was destroyed."""
    return decisions.certify(
        ws, who, recall_id, certified_by=body.certified_by, certified_on=body.certified_on
    )
