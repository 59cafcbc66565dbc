"""The two-person release: prepare, then approve (the release itself is a job)."""

from __future__ import annotations

from typing import Any

from custodes.api import common
from custodes.api import models as m
from custodes.http.deps import WS, Who
from custodes.services import decisions

staff = common.staff()
ROUTERS = (staff,)


@staff.post("/requests/{request_id}/prepare", response_model=m.Document)
def prepare(request_id: str, who: Who, ws: WS) -> Any:
    """Prepare the release: records the hash of exactly what will be released."""
    return decisions.prepare(ws, who, request_id)


@staff.post("/requests/{request_id}/approve", response_model=m.Document)
def approve(request_id: str, who: Who, ws: WS) -> Any:
    """Approve a prepared release (a second person: never who prepared or submitted it)."""
    return decisions.approve(ws, who, request_id)
