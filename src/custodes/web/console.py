"""What every console page stands on: the templates, rendering, the session cookie, and the
console's session as a FastAPI dependency (`Console`), with the anti-forgery check of a
state-changing form, and the route class that turns a refusal into the console's pages.

A page declares `c: Annotated[Console, page(back)]` (one that only shows what it reads is
declared with `simple_page`). Every POST of a console router (`router()`)
is checked before any of its work, by the router's own dependency (`anti_forgery`): no cookie,
the sign-in; a session the core refuses, the session-ended page; a form without this session's
anti-forgery token (its `csrf` field), 403 `forbidden`; only then are the form's fields
validated (a form it cannot read is that page) and the page run. A page that changes nothing
has its caller checked when it first asks for it (`c.who`, `c.me`, or rendering), which is
before any service call since every service takes the caller. Any other refusal is the error
page with its code and the page's way `back`.

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
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Request
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


class FormUnreadable(Exception):
    """A state-changing form the server cannot read (not a form, or more parts than a file and
    the token): the page naming the form."""


class Console:
    """The caller behind the session cookie, checked by the core on first use (then kept for
    the page): `who` for the services, `me` (whoami: name, roles, `may`) for what the page
    offers. `back` is where the error page points."""

    def __init__(self, request: Request, ws: Workspace, back: str | None) -> None:
        self.request, self.ws, self.back = request, ws, back
        self.token = request.cookies.get(cookie_name())
        self.known: dict[str, Any] | None = None  # whoami, once the session is found live
        self._who: Caller | None = None

    def check(self) -> Caller:
        """Run the page as the caller behind the cookie (the sign-in when there is none; the
        core's refusal of the session)."""
        if self._who is None:
            if not self.token:
                raise SignInFirst
            who = ws_svc.console_caller(self.ws, self.token)
            self.known = ws_svc.whoami(self.ws, who)
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

    def render(
        self, name: str, ctx: dict[str, Any], *, status: int = 200, **may: str
    ) -> HTMLResponse:
        """A template as this caller (the navigation their roles reach, the form token); each
        `may_x="action"` tells the template whether the caller's roles allow the action."""
        me = self.me
        allowed = {flag: action in me["may"] for flag, action in may.items()}
        return render(self.request, name, ctx | allowed, status=status, me=me, token=self.token)

    def page(
        self, name: str, ctx: dict[str, Any], *, status: int = 200, **may: str
    ) -> HTMLResponse:
        """A page with the notice a redirect asked for."""
        return self.render(name, {"flash": flash(self.request)} | ctx, status=status, **may)

    async def with_file(self, field: str, act: Callable[[IO[bytes]], Response]) -> Response:
        """A form with a file, as the router's `anti_forgery` read it: after the session behind
        the cookie was checked (so an upload without a live session is never parsed nor
        spooled to disk), bounded by the body limit (`custodes.http.limits`), and with its
        token checked; `act(file)` runs on the file.

        Not FastAPI's `File()` parameters: FastAPI parses the whole form before the page runs."""
        form = await self.request.form()  # (the one `anti_forgery` read and closes)
        upload = form.get(field)
        if not isinstance(upload, UploadFile):
            return invalid_form(self.request, [field])
        return await run_in_threadpool(act, upload.file)


def _open(request: Request, ws: Workspace, back: str | None) -> Console:
    """The request's `Console` (the one `anti_forgery` checked, when it ran), pointing `back`."""
    c: Console | None = getattr(request.state, "console", None)
    if c is None:
        request.state.console = c = Console(request, ws, None)
    c.back = back.format(**request.path_params) if back else None
    return c


def page(back: str | None = None) -> Any:
    """The dependency of a page (`back`: where its error page points, with the route's path
    parameters, e.g. "/requests/{request_id}")."""

    def console_page(request: Request, ws: WS) -> Console:
        return _open(request, ws, back)

    return Depends(console_page)


Reads = Callable[[Console], dict[str, Any]]


def simple_page(
    pages: APIRouter, path: str, template: str, title: str, **may: str
) -> Callable[[Reads], Reads]:
    """Declare a page that only shows what it reads (no parameters, its error page pointing
    nowhere): GET `path` renders `template` with its `title`, the notice a redirect asked for,
    each `may_x` flag (as `Console.render`), and the values the decorated function reads as the
    caller. The route keeps that function's name."""

    def declare(reads: Reads) -> Reads:
        def show(c: Annotated[Console, page()]) -> Response:
            return c.page(template, {"title": title} | reads(c), status=200, **may)

        pages.add_api_route(
            path, show, methods=["GET"], response_class=HTMLResponse, name=reads.__name__
        )
        return reads

    return declare


CSRF_MAX = 128  # an anti-forgery token is 64 hex digits


async def anti_forgery(request: Request, ws: WS) -> AsyncIterator[None]:
    """A console router's dependency: every POST is checked before anything else of its page
    runs (its fields are validated after this, and its page and services after that). No
    cookie: the sign-in; a session the core refuses: its page; then the form is read (a form
    FastAPI did not read already: a file and the token at most, so an upload is read only for
    a live session) and must carry this session's anti-forgery token in its `csrf` field, or
    the answer is 403 `forbidden`. What it read is closed once the page has answered."""
    if request.method != "POST":
        yield
        return
    c = _open(request, ws, None)
    if not c.token:
        raise SignInFirst
    await run_in_threadpool(c.check)
    try:
        form = await request.form(max_files=1, max_fields=1)  # (FastAPI's own read, if it read)
    except StarletteHTTPException:  # not a form, or more parts than a file and the token
        raise FormUnreadable from None
    try:
        csrf = form.get("csrf")
        if (
            not isinstance(csrf, str)
            or len(csrf) > CSRF_MAX
            or not hmac.compare_digest(csrf, ws_svc.csrf_token(ws, c.token))
        ):
            raise AccessDenied(
                "The form is not from this session (missing or wrong anti-forgery token); "
                "reload the page and try again.",
                code="forbidden",
            )
        yield
    finally:
        await form.close()


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
            except FormUnreadable:
                return invalid_form(request, [])
            except CustodesError as exc:
                c = getattr(request.state, "console", None)
                if c is None:
                    raise
                return failed(request, exc, c.known, c.token, c.back)

        return run


def router(*, before_session: bool = False) -> APIRouter:
    """A router of console pages (outside the API's schema), each POST checked by
    `anti_forgery` first; `before_session`: the pages that make a session (the sign-in,
    enrolment) or end one, which check what they take themselves."""
    checks = [] if before_session else [Depends(anti_forgery)]
    return APIRouter(include_in_schema=False, route_class=ConsoleRoute, dependencies=checks)
