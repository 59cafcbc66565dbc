"""What every route needs: the workspace, the jobs, and the caller behind the credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from custodes.errors import Unauthenticated
from custodes.services import workspace as ws_svc
from custodes.services.jobs import Jobs
from custodes.services.workspace import Caller, Workspace

# Agency systems send their API key, staff the token `POST /v1/sessions` gave them; both as
# `Authorization: Bearer ...`, looked up in the store on every call.
bearer = HTTPBearer(auto_error=False, description="An agency API key or a staff session token.")
API_NOT_SIGNED_IN = (
    "Not signed in: send 'Authorization: Bearer <key>' with the agency's API key, or with the "
    "token that POST /v1/sessions gives staff."
)


def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.ws  # (Starlette's State holds Any)
    return ws


def jobs(request: Request) -> Jobs:
    running: Jobs = request.app.state.jobs
    return running


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller, checked now (the door checks again inside every transaction). Without a
    credential the problem says what an HTTP client sends (the core's words also name the
    command line's `custodes login`)."""
    token = credentials.credentials if credentials else None
    try:
        return ws_svc.caller(workspace(request), token)
    except Unauthenticated as exc:
        if token or exc.code != "not_signed_in":
            raise
        raise Unauthenticated(API_NOT_SIGNED_IN, code=exc.code) from None


WS = Annotated[Workspace, Depends(workspace)]
Who = Annotated[Caller, Depends(caller)]
JobsDep = Annotated[Jobs, Depends(jobs)]
