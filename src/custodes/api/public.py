"""`/v1/health` and `/v1/problems/{code}`: open to anyone."""

from __future__ import annotations

from typing import Any

from custodes import __version__
from custodes.api import common
from custodes.api import models as m
from custodes.api.common import PROBLEMS
from custodes.errors import REGISTRY, NotFound
from custodes.http.problems import ProblemDetails

public = common.public()
ROUTERS = (public,)


@public.get("/health", response_model=m.Health)
def health() -> dict[str, str]:
    """The server answers, with its version (no credential needed)."""
    return {"status": "ok", "version": __version__}


@public.get("/problems/{code}", response_model=ProblemDetails, responses=PROBLEMS)
def problem_type(code: str) -> dict[str, Any]:
    """What a problem `type` means: its code, title and HTTP status."""
    entry = REGISTRY.get(code)
    if entry is None:
        raise NotFound("No such problem type.", code="not_found")
    return {
        "type": f"/v1/problems/{code}",
        "title": entry.title,
        "status": entry.http_status,
        "code": code,
    }
