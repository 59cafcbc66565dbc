"""Rule sets: the one in force and the changes proposed, a proposal (its folder as an archive),
and a second steward's approval."""

from __future__ import annotations

from typing import IO, Annotated, Any

from fastapi.responses import Response

from custodes.services import rules as rules_svc
from custodes.web.console import Console, page, router, see_other, simple_page

pages = router()


@simple_page(pages, "/rules", "rules.html", "Rule sets", may_change="rules.change")
def rules_page(c: Console) -> dict[str, Any]:
    """The rule set in force and the changes proposed."""
    return {"current": rules_svc.current(c.ws, c.who), "changes": rules_svc.changes(c.ws, c.who)}


@pages.post("/rules")
async def propose_rules(c: Annotated[Console, page("/rules")]) -> Response:
    """Propose a rule set: its folder as a zip or tar archive (linted, kept by its hash);
    fields `archive` and `csrf`."""

    def act(archive: IO[bytes]) -> Response:
        rules_svc.propose_archive(c.ws, c.who, archive)
        return see_other("/rules?done=proposed")

    return await c.with_file("archive", act)


@pages.post("/rules/{sha256}/approve")
def approve_rules(sha256: str, c: Annotated[Console, page("/rules")]) -> Response:
    rules_svc.approve(c.ws, c.who, sha256)
    return see_other("/rules?done=activated")
