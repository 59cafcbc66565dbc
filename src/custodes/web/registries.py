"""The registries: agencies, officials and agreements, and proposing each (a second
administrator confirms)."""

from __future__ import annotations

from typing import IO, Annotated, Any

from fastapi import Form
from fastapi.responses import Response

from custodes.http.bodies import NewOfficial
from custodes.services import rules as rules_svc
from custodes.web.console import Console, page, router, see_other, simple_page

BACK = "/registries"

pages = router()


@simple_page(pages, "/registries", "registries.html", "Registries", may_change="registry.change")
def registries_page(c: Console) -> dict[str, Any]:
    """The agencies, officials and agreements the rules consult."""
    tables = rules_svc.registries(c.ws, c.who)
    return {"tables": tables, "signer_roles": tables["signer_roles"]}


@pages.post("/registries/agencies")
def add_agency(
    name: Annotated[str, Form(max_length=200)],
    c: Annotated[Console, page(BACK)],
    open_findings: Annotated[int, Form(ge=0, le=100_000)] = 0,
    safeguards_current: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    rules_svc.add_agency(
        c.ws,
        c.who,
        name,
        safeguards_current=safeguards_current == "yes",
        open_findings=open_findings,
    )
    return see_other("/registries?done=agency")


@pages.post("/registries/officials")
def add_official(
    official: Annotated[NewOfficial, Form()], c: Annotated[Console, page(BACK)]
) -> Response:
    rules_svc.add_official(c.ws, c.who, **official.model_dump())
    return see_other("/registries?done=official")


@pages.post("/registries/agreements")
async def add_agreement(c: Annotated[Console, page(BACK)]) -> Response:
    """An agreement's YAML file (at most 1 MiB; the core reads no more than that); fields
    `agreement` and `csrf`."""

    def act(agreement: IO[bytes]) -> Response:
        data = agreement.read(rules_svc.MAX_AGREEMENT + 1)
        rules_svc.add_agreement_text(c.ws, c.who, data, "the uploaded agreement")
        return see_other("/registries?done=agreement")

    return await c.with_file("agreement", act)
