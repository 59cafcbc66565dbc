"""The work queue and a request: its page, its outcomes, and withdrawing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Form
from fastapi.responses import HTMLResponse, Response

from custodes.errors import AccessDenied, CustodesError
from custodes.services import decisions, requests
from custodes.web.console import Console, page, router, see_other

OUTCOMES = ("DISCLOSE", "CONFIRM", "NOT_CONFIRMED", "WITHHOLD", "REVIEW")

pages = router()


@pages.get("/", response_class=HTMLResponse)
def queue(c: Annotated[Console, page()]) -> Response:
    can_list = "requests.list" in c.me["may"]
    q = decisions.work_queue(c.ws, c.who) if can_list else {}
    rows, mine = q.get("requests", []), q.get("mine", [])
    by_state: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_state.setdefault(r["state"], []).append(r)
    return c.render(
        "queue.html",
        {
            "title": "Work queue",
            "mine": mine,
            "recalls": q.get("recalls", []),
            "by_state": sorted(by_state.items()),
            "can_list": can_list,
        },
    )


class Shown(NamedTuple):
    """Which outcomes of a request are shown: by outcome, by deciding check, from an offset."""

    outcome: str = ""
    check: str = ""
    offset: int = 0


def shown(outcome: str = "", check: str = "", offset: int = 0) -> Shown:
    """The outcome filter of the request page and of its table, as a dependency."""
    return Shown(outcome, check, max(offset, 0))


def _outcomes(c: Console, rid: str, f: Shown) -> Any:
    return decisions.outcomes_page(
        c.ws,
        c.who,
        rid,
        outcome=f.outcome or None,
        check=f.check or None,
        offset=f.offset,
        limit=50,
    )


def request_view(
    c: Console,
    request_id: str,
    *,
    f: Shown = Shown(),
    form_error: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The request page; with `form_error` (the form, the field, the core's message) it
    shows a refused form again, its error at the field it is about."""
    req = requests.status(c.ws, c.who, request_id)
    step = decisions.next_step(c.ws, c.who, request_id)
    outcomes, checks = None, {}
    if "outcomes" in c.me["may"] and step["state"] not in (
        "received",
        "checked",
        "refused",
        "withdrawn",
        "matched",
    ):
        outcomes = _outcomes(c, request_id, f)
        checks = decisions.deciding_checks(c.ws, c.who, request_id)
    return c.page(
        "request.html",
        {
            "title": f"Request {request_id}",
            "req": req,
            "step": step,
            "outcomes": outcomes,
            "outcome": f.outcome,
            "check": f.check,
            "checks": checks,
            "all_outcomes": OUTCOMES,
            "form_error": form_error,
        },
        status=status,
        may_download="response.download",
        may_recall="recall",
        may_withdraw="withdraw",
    )


@pages.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request_id: str, c: Annotated[Console, page()], f: Annotated[Shown, Depends(shown)]
) -> Response:
    return request_view(c, request_id, f=f)


def at_the_field(
    c: Console,
    request_id: str,
    act: Callable[[], Response],
    form: str,
    fields: dict[str, str],
) -> Response:
    """`act`, or, when the core refuses what the person entered (bad input, not found, a
    clash), the request's page again with the form's error at the field it is about
    (`fields`: error code -> field id; else the form's first field). A refusal of the caller
    goes to the error page as before."""
    c.check()
    try:
        return act()
    except CustodesError as exc:
        if isinstance(exc, AccessDenied) or exc.http_status not in (404, 409, 413, 422):
            raise
        field = fields.get(exc.code) or next(iter(fields.values()))
        error = {"form": form, "field": field, "message": exc.message, "code": exc.code}
        return request_view(c, request_id, form_error=error, status=exc.http_status)


@pages.get("/requests/{request_id}/outcomes", response_class=HTMLResponse)
def outcomes_partial(
    request_id: str, c: Annotated[Console, page()], f: Annotated[Shown, Depends(shown)]
) -> Response:
    """The outcomes table alone, for htmx to swap in after filtering."""
    rows = _outcomes(c, request_id, f)
    return c.render(
        "outcomes_table.html", {"outcomes": rows, "outcome": f.outcome, "check": f.check}
    )


@pages.post("/requests/{request_id}/withdraw")
def withdraw(
    request_id: str,
    reason: Annotated[str, Form(max_length=2000)],
    c: Annotated[Console, page("/requests/{request_id}")],
) -> Response:
    """Withdraw a request that has not been released (recorded with its reason)."""

    def withdraw_now() -> Response:
        requests.withdraw(c.ws, c.who, request_id, reason)
        return see_other(f"/requests/{request_id}?done=withdrawn")

    return at_the_field(
        c, request_id, withdraw_now, "withdraw", {"bad_argument": "withdraw-reason"}
    )
