"""Long work (processing, training, a release) as it runs: the job's page and its refreshing
part."""

from __future__ import annotations

from typing import Annotated

from fastapi.responses import HTMLResponse, Response

from custodes.errors import CustodesError
from custodes.services import jobs
from custodes.web.console import Console, SignInFirst, page, router

pages = router()


def _job(c: Console, job_id: str, template: str) -> Response:
    job = jobs.job(c.ws, c.who, job_id)
    return c.render(
        template, {"title": f"Job {job_id}", "job": job, "ended": job["state"] in jobs.ENDED}
    )


@pages.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, c: Annotated[Console, page("/")]) -> Response:
    """Long work (a release) as it runs: its state and progress, refreshed in place by htmx
    (without JavaScript, reloading the page shows the same)."""
    return _job(c, job_id, "job.html")


@pages.get("/jobs/{job_id}/status", response_class=HTMLResponse)
def job_status(job_id: str, c: Annotated[Console, page("/")]) -> Response:
    """The job page's refreshing part. A refusal (no session, the session ended, the caller
    suspended, the job not theirs) cannot be shown inside it: the answer asks the page to reload
    (htmx `HX-Refresh`; a redirect would be followed and the sign-in page put in the fragment),
    and the whole page shows the refusal (and ends the cookie) or the sign-in. A server error is
    not a refusal: the page keeps refreshing."""
    try:
        return _job(c, job_id, "job_status.html")
    except SignInFirst:
        return Response(status_code=401, headers={"HX-Refresh": "true"})
    except CustodesError as exc:
        if 400 <= exc.http_status < 500:
            return Response(status_code=exc.http_status, headers={"HX-Refresh": "true"})
        raise
