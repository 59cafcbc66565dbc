"""Signing in and out, and enrolling with a one-time code: the pages before a session, which
answer with their own forms rather than through the console's session."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from custodes.errors import CustodesError
from custodes.http.deps import WS
from custodes.services import workspace as ws_svc
from custodes.web.console import cookie_name, render, router, secure, see_other

pages = router(before_session=True)


@pages.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return render(
        request,
        "sign_in.html",
        {"title": "Sign in", "error": None, "notice": ws_svc.system_use_notice()},
    )


@pages.post("/sign-in")
def sign_in(
    request: Request,
    ws: WS,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    totp: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    client = request.client.host if request.client else None
    try:
        token = ws_svc.login(
            ws,
            name,
            password,
            totp=totp.strip() or None,
            client=client,
            forwarded_for=request.headers.get("x-forwarded-for"),
            console=True,
        )
    except CustodesError as exc:
        return render(
            request,
            "sign_in.html",
            {"title": "Sign in", "error": exc.message, "notice": ws_svc.system_use_notice()},
            status=exc.http_status,
        )
    r = see_other("/")
    r.set_cookie(
        cookie_name(),
        token,
        httponly=True,
        secure=secure(),
        samesite="strict",
        path="/",
        max_age=ws_svc.SESSION_HOURS * 3600,
    )
    return r


@pages.get("/enrol", response_class=HTMLResponse)
def enrol_page(request: Request) -> HTMLResponse:
    return render(
        request, "enrol.html", {"title": "Set your password", "error": None, "done": None}
    )


@pages.post("/enrol", response_class=HTMLResponse)
def enrol(
    request: Request,
    ws: WS,
    name: Annotated[str, Form(max_length=64)],
    code: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=1024)],
    second: Annotated[str, Form(max_length=128)] = "",
) -> HTMLResponse:
    """A new user sets their own password with their one-time code (and receives their second
    factor's key once, when a role of theirs needs one)."""
    try:
        done = ws_svc.enrol(ws, name, f"{code.strip()} {second.strip()}", password)
    except CustodesError as exc:
        return render(
            request,
            "enrol.html",
            {"title": "Set your password", "error": exc.message, "done": None},
            status=exc.http_status,
        )
    return render(request, "enrol.html", {"title": "Enrolled", "error": None, "done": done})


@pages.post("/sign-out")
def sign_out(request: Request, ws: WS, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    token = request.cookies.get(cookie_name())
    if token and hmac.compare_digest(csrf, ws_svc.csrf_token(ws, token)):
        ws_svc.logout(ws, token)
    r = see_other("/sign-in")
    r.delete_cookie(cookie_name(), path="/", secure=secure(), httponly=True)
    return r
