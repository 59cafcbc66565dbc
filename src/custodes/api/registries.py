"""The registries: agencies, officials and agreements."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request, status
from starlette.concurrency import run_in_threadpool

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import raw_body
from custodes.http.deps import WS, Who
from custodes.services import rules as rules_svc

staff = common.staff()
ROUTERS = (staff,)


@staff.get("/registries/{table}", response_model=list[m.Document])
def registry(table: Literal["agencies", "officials", "agreements"], who: Who, ws: WS) -> Any:
    """One registry's rows."""
    return rules_svc.registry(ws, who, table)


@staff.post("/registries/agencies", response_model=m.Document, status_code=status.HTTP_202_ACCEPTED)
def add_agency(body: m.NewAgency, who: Who, ws: WS) -> Any:
    """Propose a recipient agency with its safeguards status, or a change to the status of one
    already registered: `202` with `pending: true` and the `change` id; it takes effect when a
    second administrator confirms that change (`POST /v1/changes/{id}/confirm`)."""
    return rules_svc.add_agency(
        ws,
        who,
        body.name,
        safeguards_current=body.safeguards_current,
        open_findings=body.open_findings,
    )


@staff.post(
    "/registries/officials", response_model=m.Document, status_code=status.HTTP_202_ACCEPTED
)
def add_official(body: m.NewOfficial, who: Who, ws: WS) -> Any:
    """Propose an official who may sign requests for an agency, in a role, for a period
    (`202`, `pending`, the `change` id: in force once a second administrator confirms it)."""
    return rules_svc.add_official(ws, who, **body.model_dump())


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")


@staff.post(
    "/registries/agreements",
    response_model=m.Document,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string"}} for t in YAML_TYPES},
        }
    },
)
async def add_agreement(request: Request, who: Who, ws: WS) -> Any:
    """Propose an agreement (its YAML text): it may only add requirements to a provision
    (`202`, `pending`, the `change` id: in force once a second administrator confirms it)."""
    with await raw_body(request, YAML_TYPES, limit=rules_svc.MAX_AGREEMENT) as fh:
        return await run_in_threadpool(
            rules_svc.add_agreement_text, ws, who, fh.read(rules_svc.MAX_AGREEMENT + 1)
        )
