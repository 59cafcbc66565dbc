"""What every console page stands on: the templates, rendering, the session cookie, and the
console's session as a FastAPI dependency (`Console`), with the anti-forgery check of a
state-changing form, and the route class that turns a refusal into the console's pages.

A page declares `c: Annotated[Console, page(back)]` (a link, a download) or
`c: Annotated[Console, form(back)]` (a state-changing form: its `csrf` field is checked). FastAPI
reads and validates the form first (a form it cannot read is that page, whatever the session);
the caller behind the cookie is checked when the page first asks for it (`c.who`, `c.me`, or
rendering), which is before any service call since every service takes the caller: no cookie,
the sign-in; a session the core refuses, the session-ended page; a wrong anti-forgery token,
403; any other refusal, the error page with its code and the page's way `back`.

Security of the pages: the console's session is its own kind of credential (the API and the command
line refuse it, and the console refuses theirs and API keys); it lives in an HttpOnly,
SameSite=Strict `__Host-` cookie (Secure; a plain name only when CUSTODES_INSECURE_COOKIES is set,
for loopback tests); every state-changing form carries an anti-forgery token keyed by the
workspace's secrets key, which the cookie alone does not give; the Content-Security-Policy allows
scripts, styles, fonts and images from custodes only (no inline script or style); every page is
`no-store`; URLs carry request and item ids, never personal data.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from custodes import __version__, settings
from custodes.errors import AccessDenied, CustodesError, Unauthenticated
from custodes.http.deps import WS
from custodes.labels import label
from custodes.services import workspace as ws_svc
from custodes.services.workspace import Caller, Workspace

COOKIE = "custodes_session"
# What a redirect may announce (by key: a URL never carries free text to show).
FLASH = {
    "prepared": "Prepared. A second person (an approver) must now approve the release.",
    "approved": "Approved. An officer may now release.",
    "released": "Released: every disclosure is in the ledger; the response can be downloaded.",
    "withheld": "The group was withheld, one ledger event per item.",
    "resolved": "The item's decision is recorded.",
    "suspended": "Suspended: the user's sessions and keys ended now.",
    "reinstate": "Asked: the user is reinstated when a second administrator confirms.",
    "reinstated": "Reinstated: the user may sign in again.",
    "certified": "The certification of destruction is recorded.",
    "opened": "Opened: the report is due within 24 hours.",
    "reported": "Recorded as reported.",
    "closed": "Closed with its finding.",
    "confirmed": "Confirmed: the change another administrator proposed is in force.",
    "withdrawn": "Withdrawn: nothing of this request will be released.",
    "granted": "Granted. A privileged role counts once a second administrator confirms it.",
    "recalled": "Recalled: the return-or-destroy notice is written and the recall is in the "
    "ledger; record the recipient's certification of destruction when it arrives.",
    "proposed": "Proposed. The rule set takes effect only when a second rule steward approves "
    "this exact hash.",
    "activated": "Approved: the rule set is in force for every request checked from now on.",
    "agency": "Proposed: the agency (or its safeguards status) takes effect when a second "
    "administrator confirms the change (Users, changes waiting).",
    "official": "Proposed: the official takes effect when a second administrator confirms the "
    "change (Users, changes waiting).",
    "agreement": "Proposed: the agreement takes effect when a second administrator confirms the "
    "change (Users, changes waiting).",
}
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _date(v: Any) -> str:
    """Every date and time in the console written one way: MM/DD/YYYY, and HH:MM UTC for a
    moment (a date alone stays a date)."""
    if isinstance(v, str):
        text = v
        try:
            v = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
        except ValueError:
            return text
    if isinstance(v, dt.datetime):
        moment = v.astimezone(dt.UTC) if v.tzinfo is not None else v
        return moment.strftime("%m/%d/%Y %H:%M UTC")
    if isinstance(v, dt.date):
        return v.strftime("%m/%d/%Y")
    return "" if v is None else str(v)


def _with_article(phrase: str) -> str:
    """'a disclosure officer', 'an approver'."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


templates.env.filters["date"] = _date
templates.env.filters["label"] = label
templates.env.filters["with_article"] = _with_article


def invalid_form(request: Request, fields: list[str]) -> HTMLResponse:
    """A form the server could not read (a field missing or not in its form): one page with
    the fields named, never their values."""
    named = ", ".join(sorted(set(fields))) or "the form"
    return render(
        request,
        "error.html",
        {
            "title": "That did not work",
            "heading": "That did not work",
            "code": "bad_argument",
            "message": f"Check these fields and send the form again: {named}.",
        },
        status=422,
    )


def secure() -> bool:
    return not settings.flag("CUSTODES_INSECURE_COOKIES")


def cookie_name() -> str:
    """`__Host-` (Secure, Path=/, no Domain: a sibling host cannot set or shadow it) unless
    insecure cookies were asked for (plain HTTP on loopback, in tests), which the prefix
    does not allow."""
    return f"__Host-{COOKIE}" if secure() else COOKIE


# --- rendering -------------------------------------------------------------------------------


def _nav(me: dict[str, Any]) -> list[tuple[str, str]]:
    """The pages this user's roles reach (the core decides again on every click)."""
    pages = (
        ("requests.list", "/", "Work queue"),
        ("recalls.read", "/recalls", "Recalls"),
        ("rules.read", "/rules", "Rule sets"),
        ("registry.read", "/registries", "Registries"),
        ("ledger.read", "/ledger", "Ledger"),
        ("audit", "/audit", "Audit"),
        ("incident.read", "/incidents", "Incidents"),
        ("users.read", "/users", "Users"),
    )
    return [("/", "Work queue")] + [
        (href, label) for action, href, label in pages[1:] if action in me["may"]
    ]


def flash(request: Request) -> str | None:
    """The notice a redirect asked for, by key (a URL never carries text to show)."""
    return FLASH.get(request.query_params.get("done", ""))


def render(
    request: Request,
    name: str,
    ctx: dict[str, Any],
    *,
    status: int = 200,
    me: dict[str, Any] | None = None,
    token: str | None = None,
) -> HTMLResponse:
    base = {
        "version": __version__,
        "me": me,
        "nav": _nav(me) if me else [],
        "here": request.url.path,
        "csrf": ws_svc.csrf_token(request.app.state.ws, token) if token else "",
        "flash": None,
        "title": ctx.get("title", "custodes"),
    }
    return templates.TemplateResponse(request, name, base | ctx, status_code=status)


def _ended(request: Request, message: str, status: int = 401) -> HTMLResponse:
    r = render(request, "ended.html", {"title": "Session ended", "message": message}, status=status)
    r.delete_cookie(cookie_name(), path="/", secure=secure(), httponly=True)
    return r


def failed(
    request: Request,
    exc: CustodesError,
    me: dict[str, Any] | None,
    token: str | None,
    back: str | None = None,
) -> HTMLResponse:
    if isinstance(exc, Unauthenticated) or exc.code == "suspended":
        return _ended(request, exc.message, exc.http_status)
    heading = "Not permitted" if isinstance(exc, AccessDenied) else "That did not work"
    return render(
        request,
        "error.html",
        {
            "title": heading,
            "heading": heading,
            "code": exc.code,
            "problem": exc.title,
            "message": exc.message,
            "back": back,
        },
        status=exc.http_status,
        me=me,
        token=token,
    )


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --- the console's session, as a dependency -----------------------------------------------------


class SignInFirst(Exception):
    """No session cookie: the page answers with the sign-in."""


class Console:
    """The caller behind the session cookie, checked by the core on first use (then kept for
    the page): `who` for the services, `me` (whoami: name, roles, `may`) for what the page
    offers. With `csrf` (a form's field), the form must carry this session's anti-forgery
    token. `back` is where the error page points."""

    def __init__(self, request: Request, ws: Workspace, csrf: str | None, back: str | None) -> None:
        self.request, self.ws, self.csrf, self.back = request, ws, csrf, back
        self.token = request.cookies.get(cookie_name())
        self.known: dict[str, Any] | None = None  # whoami, once the session is found live
        self._who: Caller | None = None

    def check(self) -> Caller:
        """Run the page as the caller behind the cookie (the sign-in when there is none; the
        core's refusal of the session; 403 for a form not from this session)."""
        if self._who is None:
            if not self.token:
                raise SignInFirst
            who = ws_svc.console_caller(self.ws, self.token)
            self.known = ws_svc.whoami(self.ws, who)
            if self.csrf is not None and not hmac.compare_digest(
                self.csrf, ws_svc.csrf_token(self.ws, self.token)
            ):
                raise AccessDenied(
                    "The form is not from this session (missing or wrong anti-forgery token); "
                    "reload the page and try again.",
                    code="forbidden",
                )
            self._who = who
        return self._who

    @property
    def who(self) -> Caller:
        return self.check()

    @property
    def me(self) -> dict[str, Any]:
        self.check()
        assert self.known is not None
        return self.known

    def render(self, name: str, ctx: dict[str, Any], *, status: int = 200) -> HTMLResponse:
        """A template as this caller (the navigation their roles reach, the form token)."""
        me = self.me
        return render(self.request, name, ctx, status=status, me=me, token=self.token)

    def page(self, name: str, ctx: dict[str, Any], *, status: int = 200) -> HTMLResponse:
        """A page with the notice a redirect asked for."""
        return self.render(name, {"flash": flash(self.request)} | ctx, status=status)

    async def with_file(self, field: str, act: Callable[[IO[bytes]], Response]) -> Response:
        """A form with a file: the session behind the cookie is checked before a byte of the
        body is read (no cookie: the sign-in; a session the core refuses: its page), so an
        upload without a live session is never parsed nor spooled to disk; then the form is
        read (its size bounded by the body limit, `custodes.http.limits`), the anti-forgery
        token checked, and `act(file)` run.

        Not FastAPI's `File()` parameters: FastAPI parses the whole form before the page runs."""
        if not self.token:
            raise SignInFirst
        await run_in_threadpool(ws_svc.console_caller, self.ws, self.token)
        try:
            form = await self.request.form(max_files=1, max_fields=1)
        except StarletteHTTPException:  # not a form, or more parts than the file and the token
            return invalid_form(self.request, [field])
        try:
            upload, csrf = form.get(field), form.get("csrf", "")
            if not isinstance(upload, UploadFile) or not isinstance(csrf, str) or len(csrf) > 128:
                return invalid_form(self.request, [field])
            self.csrf, file = csrf, upload.file

            def run() -> Response:
                self.check()
                return act(file)

            return await run_in_threadpool(run)
        finally:
            await form.close()


def _open(request: Request, ws: Workspace, csrf: str | None, back: str | None) -> Console:
    where = back.format(**request.path_params) if back else None
    request.state.console = c = Console(request, ws, csrf, where)
    return c


def page(back: str | None = None) -> Any:
    """The dependency of a page that changes nothing (`back`: where its error page points, with
    the route's path parameters, e.g. "/requests/{request_id}")."""

    def console_page(request: Request, ws: WS) -> Console:
        return _open(request, ws, None, back)

    return Depends(console_page)


def form(back: str | None = None) -> Any:
    """The dependency of a state-changing form: as `page`, and its `csrf` field is checked."""

    def console_form(
        request: Request, ws: WS, csrf: Annotated[str, Form(max_length=128)] = ""
    ) -> Console:
        return _open(request, ws, csrf, back)

    return Depends(console_form)


class ConsoleRoute(APIRoute):
    """A console route: what its page's caller could not do is shown as the console's pages
    (the sign-in, the session-ended page, or the error page with its code); a route without
    a `Console` (the sign-in itself) keeps the application's handling."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInFirst:
                return see_other("/sign-in")
            except CustodesError as exc:
                c = getattr(request.state, "console", None)
                if c is None:
                    raise
                return failed(request, exc, c.known, c.token, c.back)

        return run


def router() -> APIRouter:
    """A router of console pages (outside the API's schema)."""
    return APIRouter(include_in_schema=False, route_class=ConsoleRoute)
