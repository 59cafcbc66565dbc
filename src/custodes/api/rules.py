"""Rule sets: proposed changes, a proposal, and its second steward's approval."""

from __future__ import annotations

from typing import Any

from fastapi import Request, status
from starlette.concurrency import run_in_threadpool

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import ARCHIVE_BODY, ARCHIVE_TYPES, raw_body
from custodes.http.deps import WS, Who
from custodes.services import rules as rules_svc

staff = common.staff()
ROUTERS = (staff,)


@staff.get("/rules/changes", response_model=list[m.Document])
def rule_changes(who: Who, ws: WS) -> Any:
    """Rule-set changes proposed and approved, by hash."""
    return rules_svc.changes(ws, who)


@staff.post(
    "/rules/changes",
    response_model=m.Document,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=ARCHIVE_BODY,
)
async def propose_rules(request: Request, who: Who, ws: WS) -> Any:
    """Propose a rule set: its folder as a zip or tar archive. Linted and kept by its hash;
    nothing changes until a second rule steward approves it."""
    with await raw_body(request, ARCHIVE_TYPES) as fh:
        return await run_in_threadpool(rules_svc.propose_archive, ws, who, fh)


@staff.post("/rules/changes/{sha256}/approve", response_model=m.Document)
def approve_rules(sha256: str, who: Who, ws: WS) -> Any:
    """A second rule steward approves a proposed rule set by its hash."""
    return rules_svc.approve(ws, who, sha256)
