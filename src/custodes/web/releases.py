"""The steps of a request that move it on (prepare, approve; process, train and release as
jobs), their confirmation pages, and the released response's download.

Included after the other request pages: `/requests/{id}/{action}` takes what they did not."""

from __future__ import annotations

from typing import Annotated

from fastapi.responses import HTMLResponse, Response

from custodes.services import decisions
from custodes.web.console import Console, page, render, router, see_other

STEPS = ("prepare", "approve", "release")
BACK = "/requests/{request_id}"

pages = router()


@pages.get("/requests/{request_id}/response.csv")
def download(request_id: str, c: Annotated[Console, page(BACK)]) -> Response:
    files = decisions.download(c.ws, c.who, request_id)
    return Response(
        files["response.csv"],
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{request_id}.csv"'},
    )


@pages.get("/requests/{request_id}/{action}", response_class=HTMLResponse)
def step_page(request_id: str, action: str, c: Annotated[Console, page(BACK)]) -> Response:
    if action not in STEPS:
        return render(
            c.request,
            "error.html",
            {
                "title": "Not found",
                "heading": "Not found",
                "code": "not_found",
                "message": "No such page.",
                "back": "/",
            },
            status=404,
        )
    p = decisions.release_preview(c.ws, c.who, request_id)
    step = decisions.next_step(c.ws, c.who, request_id)
    return c.render(
        "release_step.html",
        {"title": f"{action.capitalize()} {request_id}", "p": p, "step": step, "action": action},
    )


@pages.post("/requests/{request_id}/{action}")
def step_act(request_id: str, action: str, c: Annotated[Console, page(BACK)]) -> Response:
    services = {"prepare": decisions.prepare, "approve": decisions.approve}
    long_work = ("process", "train", "release")  # jobs: a million items take a while
    if action not in (*services, *long_work):
        return see_other(f"/requests/{request_id}")
    if action in long_work:
        job = c.request.app.state.jobs.start(c.who, action, request_id)
        return see_other(f"/jobs/{job['id']}")
    services[action](c.ws, c.who, request_id)
    return see_other(f"/requests/{request_id}?done={action}d")
