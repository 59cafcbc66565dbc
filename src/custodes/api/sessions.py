"""Staff sessions: sign in, sign out, who am I."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response, status

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import PROBLEMS
from custodes.http.deps import WS, Who
from custodes.http.problems import MEDIA_TYPE, ProblemDetails
from custodes.services import workspace as ws_svc

public = common.public()
staff = common.staff()
ROUTERS = (public, staff)


@public.post(
    "/sessions",
    response_model=m.Session,
    status_code=status.HTTP_201_CREATED,
    responses={**PROBLEMS, 429: {"model": ProblemDetails, "content": {MEDIA_TYPE: {}}}},
)
def sign_in(body: m.SignIn, request: Request, ws: WS) -> dict[str, Any]:
    """Staff sign in with password (and one-time code); the token is checked on every call.
    Failures are throttled per account and client address (429 with Retry-After);
    X-Forwarded-For counts only from the configured proxy (CUSTODES_TRUSTED_PROXY)."""
    client = request.client.host if request.client else None
    token = ws_svc.login(
        ws,
        body.name,
        body.password,
        totp=body.totp,
        client=client,
        forwarded_for=request.headers.get("x-forwarded-for"),
    )
    return {"token": token, "user": body.name, "expires_in_hours": ws_svc.SESSION_HOURS}


@staff.delete("/sessions/current", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(who: Who, ws: WS, request: Request) -> Response:
    """Sign out: the session whose token the call carries ends now."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    ws_svc.logout(ws, token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@staff.get("/whoami", response_model=m.WhoAmI)
def whoami(who: Who, ws: WS) -> dict[str, Any]:
    """Who the credential is: user, roles, kind (session or key), agency, and `may`, the
    actions the roles allow (the server still decides every call)."""
    return ws_svc.whoami(ws, who)
