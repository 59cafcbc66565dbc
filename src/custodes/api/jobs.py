"""Long work as jobs: starting processing, training and release, and the jobs themselves."""

from __future__ import annotations

from typing import Any

from fastapi import status
from fastapi.responses import JSONResponse

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import Paged, accepted
from custodes.http.deps import WS, JobsDep, Who
from custodes.services import jobs

staff = common.staff()
ROUTERS = (staff,)


for _kind, _doc in (
    ("process", "Process a request (rules, matching, decisions) as a job."),
    ("train", "Train the linkage model on the master file and this request, as a job."),
    ("release", "Release an approved request (response + one ledger leaf each), as a job."),
):

    def _start(request_id: str, who: Who, jobs_: JobsDep, kind: str = _kind) -> JSONResponse:
        return accepted(jobs_.start(who, kind, request_id))

    staff.add_api_route(
        f"/requests/{{request_id}}/{_kind}",
        _start,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=m.Job,
        summary=_doc,
        operation_id=f"start_{_kind}",
    )


@staff.get("/jobs", response_model=list[m.Job])
def list_jobs(who: Who, ws: WS, paged: Paged) -> Any:
    """The caller's latest jobs (an auditor: everyone's), newest first; `limit` pages them."""
    return paged(jobs.listing(ws, who), "id")


@staff.get("/jobs/{job_id}", response_model=m.Job)
def get_job(job_id: str, who: Who, ws: WS) -> Any:
    """A job: `queued`, `running` with progress, `succeeded` with its result, `failed` with a
    problem, or `cancelled`."""
    return jobs.job(ws, who, job_id)


@staff.delete("/jobs/{job_id}", response_model=m.Job)
def cancel_job(job_id: str, who: Who, ws: WS) -> Any:
    """Cancel a queued job, or stop a running one at its next chunk."""
    return jobs.cancel(ws, who, job_id)
