"""The console's pages. Each one: the caller from the session cookie (checked by the core),
one service call, a template. No rule, query or permission of its own: what the navigation
shows comes from the core's `whoami` ("may"), and every click is decided again by the door.

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
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from custodes import __version__
from custodes.errors import AccessDenied, CustodesError, InputError, Unauthenticated
from custodes.http.deps import WS
from custodes.http.media import REPORT_TYPES
from custodes.labels import label
from custodes.services import audit, decisions, jobs, ledger, records, reports, requests, users
from custodes.services import rules as rules_svc
from custodes.services import workspace as ws_svc

COOKIE = "custodes_session"
OUTCOMES = ("DISCLOSE", "CONFIRM", "NOT_CONFIRMED", "WITHHOLD", "REVIEW")
STEPS = ("prepare", "approve", "release")
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
AUDIT_FINDINGS = (
    ("without_open_request", "Inspections without an open request (refused)"),
    ("by_submitter", "Inspections by the person who submitted or keyed in the request"),
    ("sensitive", "Inspections of sensitive records"),
    ("volume_spikes", "Days with a spike of inspections by one user"),
    ("actions_by_suspended_users", "Actions by suspended users (must be none)"),
    ("incidents_overdue", "Incidents whose 24-hour report is overdue"),
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _date(v: Any) -> str:
    """Every date and time in the console written one way: MM/DD/YYYY, and HH:MM UTC for a
    moment (a date alone stays a date)."""
    if isinstance(v, str):
        try:
            v = dt.date.fromisoformat(v) if len(v) == 10 else dt.datetime.fromisoformat(v)
        except ValueError:
            return v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC)
        return v.strftime("%m/%d/%Y %H:%M UTC")
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
    return _render(
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


def _secure() -> bool:
    return not os.environ.get("CUSTODES_INSECURE_COOKIES")


def cookie_name() -> str:
    """`__Host-` (Secure, Path=/, no Domain: a sibling host cannot set or shadow it) unless
    insecure cookies were asked for (plain HTTP on loopback, in tests), which the prefix
    does not allow."""
    return f"__Host-{COOKIE}" if _secure() else COOKIE


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


def _flash(request: Request) -> str | None:
    """The notice a redirect asked for, by key (a URL never carries text to show)."""
    return FLASH.get(request.query_params.get("done", ""))


def _render(
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
    r = _render(
        request, "ended.html", {"title": "Session ended", "message": message}, status=status
    )
    r.delete_cookie(cookie_name(), path="/", secure=_secure(), httponly=True)
    return r


def _failed(
    request: Request,
    exc: CustodesError,
    me: dict[str, Any] | None,
    token: str | None,
    back: str | None = None,
) -> HTMLResponse:
    if isinstance(exc, Unauthenticated) or exc.code == "suspended":
        return _ended(request, exc.message, exc.http_status)
    heading = "Not permitted" if isinstance(exc, AccessDenied) else "That did not work"
    return _render(
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


def _work(
    request: Request,
    ws: Any,
    fn: Callable[[Any, dict[str, Any], str], Response],
    *,
    csrf: str | None = None,
    back: str | None = None,
) -> Response:
    """Run a page as the caller behind the cookie: sign-in when there is none, the session-ended
    page when the core refuses it, an error page (with its code) for any other refusal."""
    token = request.cookies.get(cookie_name())
    if not token:
        return RedirectResponse("/sign-in", status_code=303)
    me = None
    try:
        who = ws_svc.console_caller(ws, token)
        me = ws_svc.whoami(ws, who)
        if csrf is not None and not hmac.compare_digest(csrf, ws_svc.csrf_token(ws, token)):
            raise AccessDenied(
                "The form is not from this session (missing or wrong anti-forgery token); "
                "reload the page and try again.",
                code="forbidden",
            )
        return fn(who, me, token)
    except CustodesError as exc:
        return _failed(request, exc, me, token, back)


async def _work_with_file(
    request: Request,
    ws: Any,
    field: str,
    fn: Callable[[Any, dict[str, Any], str, IO[bytes]], Response],
    *,
    back: str,
) -> Response:
    """`_work` for a form with a file: the session behind the cookie is checked before a byte
    of the body is read (no cookie: the sign-in; a session the core refuses: its page), so an
    upload without a live session is never parsed nor spooled to disk; then the form is read
    (its size bounded by the body limit, `custodes.http.limits`), and `_work` checks the
    anti-forgery token and runs `fn(caller, me, token, file)`.

    Not FastAPI's `File()` parameters: FastAPI parses the whole form before the page runs."""
    token = request.cookies.get(cookie_name())
    if not token:
        return RedirectResponse("/sign-in", status_code=303)
    try:
        await run_in_threadpool(ws_svc.console_caller, ws, token)
    except CustodesError as exc:
        return _failed(request, exc, None, token, back)
    try:
        form = await request.form(max_files=1, max_fields=1)
    except StarletteHTTPException:  # not a form, or more parts than the file and the token
        return invalid_form(request, [field])
    try:
        upload, csrf = form.get(field), form.get("csrf", "")
        if not isinstance(upload, UploadFile) or not isinstance(csrf, str) or len(csrf) > 128:
            return invalid_form(request, [field])
        file = upload.file
        return await run_in_threadpool(
            _work, request, ws, lambda who, me, tok: fn(who, me, tok, file), csrf=csrf, back=back
        )
    finally:
        await form.close()


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _page(
    request: Request,
    ws: Any,
    template: str,
    build: Callable[[Any, dict[str, Any]], dict[str, Any]],
    *,
    back: str | None = None,
) -> Response:
    """A page: what `build(caller, me)` gets from the services, rendered with `template`
    (with the notice a redirect asked for)."""

    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        ctx = {"flash": _flash(request)} | build(who, me)
        return _render(request, template, ctx, me=me, token=token)

    return _work(request, ws, show, back=back)


# --- signing in and out ----------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return _render(
        request,
        "sign_in.html",
        {"title": "Sign in", "error": None, "notice": ws_svc.system_use_notice()},
    )


@router.post("/sign-in")
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
        return _render(
            request,
            "sign_in.html",
            {"title": "Sign in", "error": exc.message, "notice": ws_svc.system_use_notice()},
            status=exc.http_status,
        )
    r = _see_other("/")
    r.set_cookie(
        cookie_name(),
        token,
        httponly=True,
        secure=_secure(),
        samesite="strict",
        path="/",
        max_age=ws_svc.SESSION_HOURS * 3600,
    )
    return r


@router.get("/enrol", response_class=HTMLResponse)
def enrol_page(request: Request) -> HTMLResponse:
    return _render(
        request, "enrol.html", {"title": "Set your password", "error": None, "done": None}
    )


@router.post("/enrol", response_class=HTMLResponse)
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
        return _render(
            request,
            "enrol.html",
            {"title": "Set your password", "error": exc.message, "done": None},
            status=exc.http_status,
        )
    return _render(request, "enrol.html", {"title": "Enrolled", "error": None, "done": done})


@router.post("/sign-out")
def sign_out(request: Request, ws: WS, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    token = request.cookies.get(cookie_name())
    if token and hmac.compare_digest(csrf, ws_svc.csrf_token(ws, token)):
        ws_svc.logout(ws, token)
    r = _see_other("/sign-in")
    r.delete_cookie(cookie_name(), path="/", secure=_secure(), httponly=True)
    return r


# --- the work queue and a request ------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, ws: WS) -> Response:
    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        can_list = "requests.list" in me["may"]
        q = decisions.work_queue(ws, who) if can_list else {}
        rows, mine = q.get("requests", []), q.get("mine", [])
        by_state: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_state.setdefault(r["state"], []).append(r)
        return _render(
            request,
            "queue.html",
            {
                "title": "Work queue",
                "mine": mine,
                "recalls": q.get("recalls", []),
                "by_state": sorted(by_state.items()),
                "can_list": can_list,
            },
            me=me,
            token=token,
        )

    return _work(request, ws, show)


def _outcomes(ws: Any, who: Any, rid: str, outcome: str, check: str, offset: int) -> Any:
    return decisions.outcomes_page(
        ws, who, rid, outcome=outcome or None, check=check or None, offset=offset, limit=50
    )


def _request(
    request: Request,
    ws: Any,
    who: Any,
    me: dict[str, Any],
    token: str,
    request_id: str,
    *,
    outcome: str = "",
    check: str = "",
    offset: int = 0,
    form_error: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The request page; with `form_error` (the form, the field, the core's message) it
    shows a refused form again, its error at the field it is about."""
    req = requests.status(ws, who, request_id)
    step = decisions.next_step(ws, who, request_id)
    outcomes, checks = None, {}
    if "outcomes" in me["may"] and step["state"] not in (
        "received",
        "checked",
        "refused",
        "withdrawn",
        "matched",
    ):
        outcomes = _outcomes(ws, who, request_id, outcome, check, max(offset, 0))
        checks = decisions.deciding_checks(ws, who, request_id)
    return _render(
        request,
        "request.html",
        {
            "title": f"Request {request_id}",
            "req": req,
            "step": step,
            "outcomes": outcomes,
            "outcome": outcome,
            "check": check,
            "checks": checks,
            "all_outcomes": OUTCOMES,
            "may_download": "response.download" in me["may"],
            "may_recall": "recall" in me["may"],
            "may_withdraw": "withdraw" in me["may"],
            "flash": _flash(request),
            "form_error": form_error,
        },
        me=me,
        token=token,
        status=status,
    )


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request,
    request_id: str,
    ws: WS,
    outcome: str = "",
    check: str = "",
    offset: int = 0,
) -> Response:
    return _work(
        request,
        ws,
        lambda who, me, token: _request(
            request, ws, who, me, token, request_id, outcome=outcome, check=check, offset=offset
        ),
    )


def _at_the_field(
    act: Callable[[], Response],
    show: Callable[[dict[str, str], int], Response],
    form: str,
    fields: dict[str, str],
) -> Response:
    """`act`, or, when the core refuses what the person entered (bad input, not found, a
    clash), the form's page again with the error at the field it is about (`fields`: error
    code -> field id; else the form's first field). A refusal of the caller goes to the error
    page as before."""
    try:
        return act()
    except CustodesError as exc:
        if isinstance(exc, AccessDenied) or exc.http_status not in (404, 409, 413, 422):
            raise
        field = fields.get(exc.code) or next(iter(fields.values()))
        error = {"form": form, "field": field, "message": exc.message, "code": exc.code}
        return show(error, exc.http_status)


@router.get("/requests/{request_id}/outcomes", response_class=HTMLResponse)
def outcomes_partial(
    request: Request,
    request_id: str,
    ws: WS,
    outcome: str = "",
    check: str = "",
    offset: int = 0,
) -> Response:
    """The outcomes table alone, for htmx to swap in after filtering."""

    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        page = _outcomes(ws, who, request_id, outcome, check, max(offset, 0))
        return _render(
            request,
            "outcomes_table.html",
            {"outcomes": page, "outcome": outcome, "check": check},
            me=me,
            token=token,
        )

    return _work(request, ws, show)


def _item(
    request: Request,
    ws: Any,
    who: Any,
    me: dict[str, Any],
    token: str,
    request_id: str,
    item_id: str,
    inspected: dict[str, Any] | None = None,
) -> Response:
    x = decisions.explain(ws, who, request_id, item_id)
    side = None
    if x["outcome"] == "REVIEW" and "review.read" in me["may"]:
        side = decisions.review_item(ws, who, request_id, item_id)
    return _render(
        request,
        "item.html",
        {
            "title": f"Item {item_id}",
            "x": x,
            "side": side,
            "may_resolve": "review.resolve" in me["may"],
            "may_inspect": "records.show" in me["may"],
            "inspected": inspected,
        },
        me=me,
        token=token,
    )


@router.get("/requests/{request_id}/items/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, request_id: str, item_id: str, ws: WS) -> Response:
    return _work(
        request,
        ws,
        lambda who, me, token: _item(request, ws, who, me, token, request_id, item_id),
        back=f"/requests/{request_id}",
    )


@router.post("/requests/{request_id}/items/{item_id}/inspect", response_class=HTMLResponse)
def inspect_candidate(
    request: Request,
    request_id: str,
    item_id: str,
    ws: WS,
    record: Annotated[str, Form(max_length=64)],
    purpose: Annotated[str, Form(max_length=2000)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """The whole candidate record, for a stated purpose: an inspection, recorded (shown or
    refused), and shown on this answer only (never in a URL, never cached)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        shown = records.show(ws, who, record, purpose=purpose, request_id=request_id)
        return _item(request, ws, who, me, token, request_id, item_id, inspected=shown)

    return _work(request, ws, act, csrf=csrf, back=f"/requests/{request_id}/items/{item_id}")


@router.post("/requests/{request_id}/items/{item_id}/resolve")
def resolve_item(
    request: Request,
    request_id: str,
    item_id: str,
    ws: WS,
    decision: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(max_length=2000)],
    record: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """One review item withheld, or disclosed naming the record the officer identified (the
    core checks it is the candidate shown and that nothing forbids it)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        records = {item_id: record} if decision == "DISCLOSE" and record else None
        decisions.review_resolve(
            ws, who, request_id, decision, reason, items=[item_id], records=records
        )
        return _see_other(f"/requests/{request_id}/review?done=resolved")

    return _work(request, ws, act, csrf=csrf, back=f"/requests/{request_id}/items/{item_id}")


# --- review ----------------------------------------------------------------------------------


@router.get("/requests/{request_id}/review", response_class=HTMLResponse)
def review_page(request: Request, request_id: str, ws: WS) -> Response:
    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        groups = decisions.review_groups(ws, who, request_id)
        return _render(
            request,
            "review.html",
            {
                "title": f"Review of {request_id}",
                "request_id": request_id,
                "groups": groups,
                "may_resolve": "review.resolve" in me["may"],
                "flash": _flash(request),
            },
            me=me,
            token=token,
        )

    return _work(request, ws, show, back=f"/requests/{request_id}")


@router.post("/requests/{request_id}/review")
def review_resolve(
    request: Request,
    request_id: str,
    ws: WS,
    group: Annotated[str, Form(max_length=500)],
    reason: Annotated[str, Form(max_length=2000)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        decisions.review_resolve(ws, who, request_id, "WITHHOLD", reason, group=group)
        return _see_other(f"/requests/{request_id}/review?done=withheld")

    return _work(request, ws, act, csrf=csrf, back=f"/requests/{request_id}/review")


@router.post("/requests/{request_id}/recall")
def recall(
    request: Request,
    request_id: str,
    ws: WS,
    reason: Annotated[str, Form(max_length=2000)],
    items: Annotated[str, Form(max_length=200_000)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Recall the chosen items of a released request (item ids, separated by commas, spaces or
    lines), or every disclosure when none is given; the notice is kept for the agency."""
    chosen = [i for i in re.split(r"[\s,;]+", items) if i] or None

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        def recall_now() -> Response:
            decisions.recall(ws, who, reason=reason, request_id=request_id, items=chosen)
            return _see_other("/recalls?done=recalled")

        return _at_the_field(
            recall_now,
            lambda error, status: _request(
                request, ws, who, me, token, request_id, form_error=error, status=status
            ),
            "recall",
            {
                "not_disclosed": "recall-items",
                "already_recalled": "recall-items",
                "no_items": "recall-items",
                "bad_argument": "recall-reason",
            },
        )

    return _work(request, ws, act, csrf=csrf, back=f"/requests/{request_id}")


@router.post("/requests/{request_id}/withdraw")
def withdraw(
    request: Request,
    request_id: str,
    ws: WS,
    reason: Annotated[str, Form(max_length=2000)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Withdraw a request that has not been released (recorded with its reason)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        def withdraw_now() -> Response:
            requests.withdraw(ws, who, request_id, reason)
            return _see_other(f"/requests/{request_id}?done=withdrawn")

        return _at_the_field(
            withdraw_now,
            lambda error, status: _request(
                request, ws, who, me, token, request_id, form_error=error, status=status
            ),
            "withdraw",
            {"bad_argument": "withdraw-reason"},
        )

    return _work(request, ws, act, csrf=csrf, back=f"/requests/{request_id}")


# --- prepare, approve, release, download -----------------------------------------------------


@router.get("/requests/{request_id}/response.csv")
def download(request: Request, request_id: str, ws: WS) -> Response:
    def send(who: Any, me: dict[str, Any], token: str) -> Response:
        files = decisions.download(ws, who, request_id)
        return Response(
            files["response.csv"],
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{request_id}.csv"'},
        )

    return _work(request, ws, send, back=f"/requests/{request_id}")


@router.get("/requests/{request_id}/{action}", response_class=HTMLResponse)
def step_page(request: Request, request_id: str, action: str, ws: WS) -> Response:
    if action not in STEPS:
        return _render(
            request,
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

    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        p = decisions.release_preview(ws, who, request_id)
        step = decisions.next_step(ws, who, request_id)
        return _render(
            request,
            "release_step.html",
            {
                "title": f"{action.capitalize()} {request_id}",
                "p": p,
                "step": step,
                "action": action,
            },
            me=me,
            token=token,
        )

    return _work(request, ws, show, back=f"/requests/{request_id}")


@router.post("/requests/{request_id}/{action}")
def step_act(
    request: Request,
    request_id: str,
    action: str,
    ws: WS,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    services = {"prepare": decisions.prepare, "approve": decisions.approve}
    long_work = ("process", "train", "release")  # jobs: a million items take a while
    if action not in (*services, *long_work):
        return _see_other(f"/requests/{request_id}")

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        if action in long_work:
            job = request.app.state.jobs.start(who, action, request_id)
            return _see_other(f"/jobs/{job['id']}")
        services[action](ws, who, request_id)
        return _see_other(f"/requests/{request_id}?done={action}d")

    return _work(request, ws, act, csrf=csrf, back=f"/requests/{request_id}")


# --- jobs -------------------------------------------------------------------------------------


def _job(request: Request, ws: Any, job_id: str, template: str) -> Response:
    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        job = jobs.job(ws, who, job_id)
        return _render(
            request,
            template,
            {"title": f"Job {job_id}", "job": job, "ended": job["state"] in jobs.ENDED},
            me=me,
            token=token,
        )

    return _work(request, ws, show, back="/")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, ws: WS) -> Response:
    """Long work (a release) as it runs: its state and progress, refreshed in place by htmx
    (without JavaScript, reloading the page shows the same)."""
    return _job(request, ws, job_id, "job.html")


@router.get("/jobs/{job_id}/status", response_class=HTMLResponse)
def job_status(request: Request, job_id: str, ws: WS) -> Response:
    """The job page's refreshing part. A refusal (no session, the session ended, the caller
    suspended, the job not theirs) cannot be shown inside it: the answer asks the page to reload
    (htmx `HX-Refresh`; a redirect would be followed and the sign-in page put in the fragment),
    and the whole page shows the refusal (and ends the cookie) or the sign-in. A server error is
    not a refusal: the page keeps refreshing."""
    response = _job(request, ws, job_id, "job_status.html")
    if response.status_code == 303:  # no session: to the sign-in
        return Response(status_code=401, headers={"HX-Refresh": "true"})
    if 400 <= response.status_code < 500:
        return Response(status_code=response.status_code, headers={"HX-Refresh": "true"})
    return response


# --- administration --------------------------------------------------------------------------

USERS_CHANGE = (
    "users.add",
    "users.grant",
    "users.confirm",
    "users.suspend",
    "users.reinstate",
    "users.reset",
)


def _users(
    request: Request,
    ws: Any,
    who: Any,
    me: dict[str, Any],
    token: str,
    code: dict[str, Any] | None = None,
) -> Response:
    return _render(
        request,
        "users.html",
        {
            "title": "Users",
            "users": users.listing(ws, who),
            "changes": users.pending_changes(ws, who),
            "may_change": any(a in me["may"] for a in USERS_CHANGE),
            "code": code,
            "flash": _flash(request),
        },
        me=me,
        token=token,
    )


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, ws: WS) -> Response:
    return _work(request, ws, lambda who, me, token: _users(request, ws, who, me, token))


@router.post("/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    ws: WS,
    name: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=32)],
    basis: Annotated[str, Form(max_length=500)],
    last_day: Annotated[str, Form(max_length=10)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """A new staff member: the one-time code is shown on this answer only (never in a URL)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        try:
            until = dt.date.fromisoformat(last_day) if last_day else None
        except ValueError:
            raise InputError("The last day is not a date (YYYY-MM-DD).", code="bad_date") from None
        made = users.add(ws, who, name, [role], basis=basis, last_day=until)
        return _users(request, ws, who, me, token, code=made | {"user": name})

    return _work(request, ws, act, csrf=csrf, back="/users")


@router.post("/users/grant")
def grant(
    request: Request,
    ws: WS,
    user: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=32)],
    basis: Annotated[str, Form(max_length=500)],
    last_day: Annotated[dt.date | None, Form()] = None,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """A further role for an existing user, with its legal basis and last day."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        users.grant(ws, who, user, role, basis=basis, last_day=last_day)
        return _see_other("/users?done=granted")

    return _work(request, ws, act, csrf=csrf, back="/users")


@router.post("/users/{name}/code", response_class=HTMLResponse)
def new_code(
    request: Request, name: str, ws: WS, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """A new one-time code (the user's sessions end; they set a new password with it)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        return _users(request, ws, who, me, token, code=users.reset(ws, who, name))

    return _work(request, ws, act, csrf=csrf, back="/users")


def _confirmed(
    request: Request, ws: Any, who: Any, me: dict[str, Any], token: str, done: dict[str, Any]
) -> Response:
    """After a confirmation: the second half of a code is shown on this answer only."""
    if done.get("enrolment_code_second_half"):
        return _users(request, ws, who, me, token, code=done)
    return _see_other("/users?done=confirmed")


@router.post("/users/{name}/confirm")
def confirm(
    request: Request, name: str, ws: WS, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """A second administrator confirms the one change pending for a user (refused, naming
    them, when several are: each is confirmed from the pending changes' table)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        return _confirmed(request, ws, who, me, token, users.confirm(ws, who, name))

    return _work(request, ws, act, csrf=csrf, back="/users")


@router.post("/changes/{change_id}/confirm")
def confirm_change(
    request: Request, change_id: str, ws: WS, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """A second administrator confirms one pending change by its id, as shown in the table."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        return _confirmed(request, ws, who, me, token, users.confirm_change(ws, who, change_id))

    return _work(request, ws, act, csrf=csrf, back="/users")


@router.post("/users/{name}/suspend")
def suspend(
    request: Request,
    name: str,
    ws: WS,
    reason: Annotated[str, Form(max_length=500)],
    confirm: Annotated[str, Form(max_length=8)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Suspend a user now, once the administrator ticked that the sessions and keys end."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        if confirm != "yes":
            raise InputError(
                f"Tick the box to confirm that {name}'s sessions and keys end now.",
                code="not_confirmed",
            )
        users.suspend(ws, who, name, reason)
        return _see_other("/users?done=suspended")

    return _work(request, ws, act, csrf=csrf, back="/users")


@router.post("/users/{name}/reinstate")
def reinstate(
    request: Request, name: str, ws: WS, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """Ask to reinstate a suspended user; a second administrator's click confirms it."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        done = users.reinstate(ws, who, name)
        return _see_other(
            "/users?done=" + ("reinstated" if done["status"] == "active" else "reinstate")
        )

    return _work(request, ws, act, csrf=csrf, back="/users")


# --- rule sets and registries ----------------------------------------------------------------


@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, ws: WS) -> Response:
    return _page(
        request,
        ws,
        "rules.html",
        lambda who, me: {
            "title": "Rule sets",
            "current": rules_svc.current(ws, who),
            "changes": rules_svc.changes(ws, who),
            "may_change": "rules.change" in me["may"],
        },
    )


@router.post("/rules")
async def propose_rules(request: Request, ws: WS) -> Response:
    """Propose a rule set: its folder as a zip or tar archive (linted, kept by its hash);
    fields `archive` and `csrf`."""

    def act(who: Any, me: dict[str, Any], token: str, archive: IO[bytes]) -> Response:
        rules_svc.propose_archive(ws, who, archive)
        return _see_other("/rules?done=proposed")

    return await _work_with_file(request, ws, "archive", act, back="/rules")


@router.post("/rules/{sha256}/approve")
def approve_rules(
    request: Request, sha256: str, ws: WS, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        rules_svc.approve(ws, who, sha256)
        return _see_other("/rules?done=activated")

    return _work(request, ws, act, csrf=csrf, back="/rules")


@router.get("/registries", response_class=HTMLResponse)
def registries_page(request: Request, ws: WS) -> Response:
    def show(who: Any, me: dict[str, Any], token: str) -> Response:
        tables = rules_svc.registries(ws, who)
        return _render(
            request,
            "registries.html",
            {
                "title": "Registries",
                "tables": tables,
                "signer_roles": tables["signer_roles"],
                "may_change": "registry.change" in me["may"],
                "flash": _flash(request),
            },
            me=me,
            token=token,
        )

    return _work(request, ws, show)


@router.post("/registries/agencies")
def add_agency(
    request: Request,
    ws: WS,
    name: Annotated[str, Form(max_length=200)],
    open_findings: Annotated[int, Form(ge=0, le=100_000)] = 0,
    safeguards_current: Annotated[str, Form(max_length=8)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        rules_svc.add_agency(
            ws,
            who,
            name,
            safeguards_current=safeguards_current == "yes",
            open_findings=open_findings,
        )
        return _see_other("/registries?done=agency")

    return _work(request, ws, act, csrf=csrf, back="/registries")


@router.post("/registries/officials")
def add_official(
    request: Request,
    ws: WS,
    agency: Annotated[str, Form(max_length=200)],
    name: Annotated[str, Form(max_length=200)],
    title: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=64)],
    valid_from: Annotated[dt.date, Form()],
    valid_to: Annotated[dt.date | None, Form()] = None,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        rules_svc.add_official(
            ws,
            who,
            agency=agency,
            name=name,
            title=title,
            role=role,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        return _see_other("/registries?done=official")

    return _work(request, ws, act, csrf=csrf, back="/registries")


@router.post("/registries/agreements")
async def add_agreement(request: Request, ws: WS) -> Response:
    """An agreement's YAML file (at most 1 MiB; the core reads no more than that); fields
    `agreement` and `csrf`."""

    def act(who: Any, me: dict[str, Any], token: str, agreement: IO[bytes]) -> Response:
        data = agreement.read(rules_svc.MAX_AGREEMENT + 1)
        rules_svc.add_agreement_text(ws, who, data, "the uploaded agreement")
        return _see_other("/registries?done=agreement")

    return await _work_with_file(request, ws, "agreement", act, back="/registries")


# --- recalls, ledger, audit and reports --------------------------------------------------------


@router.get("/recalls", response_class=HTMLResponse)
def recalls_page(request: Request, ws: WS) -> Response:
    return _page(
        request,
        ws,
        "recalls.html",
        lambda who, me: {
            "title": "Recalls",
            "recalls": decisions.recalls(ws, who),
            "may_certify": "recall.certify" in me["may"],
        },
    )


@router.post("/recalls/{recall_id}/certify")
def certify(
    request: Request,
    recall_id: str,
    ws: WS,
    certified_by: Annotated[str, Form(max_length=200)],
    certified_on: Annotated[dt.date, Form()],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        decisions.certify(ws, who, recall_id, certified_by=certified_by, certified_on=certified_on)
        return _see_other("/recalls?done=certified")

    return _work(request, ws, act, csrf=csrf, back="/recalls")


@router.get("/recalls/{recall_id}/notice.txt")
def recall_notice(request: Request, recall_id: str, ws: WS) -> Response:
    """The return-or-destroy notice as issued, to print, send or file."""

    def send(who: Any, me: dict[str, Any], token: str) -> Response:
        return Response(
            decisions.recall_notice(ws, who, recall_id, text=True),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="notice-{recall_id}.txt"'},
        )

    return _work(request, ws, send, back="/recalls")


def _ledger(
    request: Request,
    ws: Any,
    who: Any,
    me: dict[str, Any],
    token: str,
    index: int | None = None,
    checked: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
) -> Response:
    st = ledger.status(ws, who)
    note = ledger.public_checkpoint(ws).decode() if st["checkpoint_size"] else ""
    receipt = ledger.public_receipt(ws, index) if index is not None else None
    return _render(
        request,
        "ledger.html",
        {
            "title": "Ledger",
            "st": st,
            "note": note,
            "index": index,
            "receipt": receipt,
            "checked": checked,
            "export": export,
        },
        me=me,
        token=token,
    )


@router.get("/ledger", response_class=HTMLResponse)
def ledger_page(request: Request, ws: WS, index: int | None = None) -> Response:
    return _work(
        request,
        ws,
        lambda who, me, token: _ledger(request, ws, who, me, token, index=index),
        back="/ledger",
    )


@router.post("/ledger/check", response_class=HTMLResponse)
def check_receipt(
    request: Request,
    ws: WS,
    receipt: Annotated[str, Form(max_length=1 << 16)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Check a pasted receipt in this session (nothing stored)."""

    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        checked = ledger.check_receipt(ws, who, receipt)
        return _ledger(request, ws, who, me, token, checked=checked)

    return _work(request, ws, act, csrf=csrf, back="/ledger")


@router.post("/ledger/check-export", response_class=HTMLResponse)
async def check_export(request: Request, ws: WS) -> Response:
    """Check an uploaded export (zip or tar of its folder) in this session: nothing stored;
    fields `archive` and `csrf`."""

    def act(who: Any, me: dict[str, Any], token: str, archive: IO[bytes]) -> Response:
        export = ledger.check_export(ws, who, archive)
        return _ledger(request, ws, who, me, token, export=export)

    return await _work_with_file(request, ws, "archive", act, back="/ledger")


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, ws: WS) -> Response:
    return _page(
        request,
        ws,
        "audit.html",
        lambda who, me: {
            "title": "Audit and reports",
            "a": audit.inspections(ws, who),
            "findings": AUDIT_FINDINGS,
            "year": dt.datetime.now(dt.UTC).year,
        },
    )


@router.get("/reports")
def report_download(
    request: Request, ws: WS, kind: str = "jct", year: int | None = None, format: str = "html"
) -> Response:
    """A report as a file (recorded in the ledger with its hash, like every report)."""
    services = {
        "accounting": lambda who: reports.accounting(ws, who, year=year, fmt=format),
        "jct": lambda who: reports.jct(ws, who, year=year, fmt=format),
        "recalls": lambda who: reports.recalls(ws, who, fmt=format),
        "safeguards": lambda who: reports.safeguards(ws, who, year=year, fmt=format),
    }

    def send(who: Any, me: dict[str, Any], token: str) -> Response:
        if kind not in services or f".{format}" not in REPORT_TYPES:
            raise InputError("Choose a report and a format from the list.", code="bad_argument")
        res = services[kind](who)
        disposition = "inline" if format == "html" else "attachment"
        return Response(
            res["data"],
            media_type=REPORT_TYPES[f".{format}"],
            headers={
                "Content-Disposition": f'{disposition}; filename="{kind}{res["format"]}"',
                "X-Content-SHA256": res["sha256"],
                # A report page is a document: its own styles, no script at all.
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "img-src data:; sandbox",
            },
        )

    return _work(request, ws, send, back="/audit")


# --- incidents -----------------------------------------------------------------------------------


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, ws: WS) -> Response:
    return _page(
        request,
        ws,
        "incidents.html",
        lambda who, me: {
            "title": "Incidents",
            "incidents": reports.incidents(ws, who),
            "may_open": "incident.open" in me["may"],
            "may_close": "incident.close" in me["may"],
        },
    )


@router.post("/incidents")
def open_incident(
    request: Request,
    ws: WS,
    kind: Annotated[str, Form(max_length=16)],
    summary: Annotated[str, Form(max_length=5000)],
    request_id: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        reports.incident_open(
            ws, who, kind=kind, summary=summary, request_id=request_id.strip() or None
        )
        return _see_other("/incidents?done=opened")

    return _work(request, ws, act, csrf=csrf, back="/incidents")


@router.post("/incidents/{incident_id}/{step}")
def incident_step(
    request: Request,
    incident_id: str,
    step: str,
    ws: WS,
    finding: Annotated[str, Form(max_length=16)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    def act(who: Any, me: dict[str, Any], token: str) -> Response:
        if step == "reported":
            reports.incident_reported(ws, who, incident_id)
        elif step == "close":
            reports.incident_close(ws, who, incident_id, finding=finding)
        else:
            raise InputError("No such step.", code="bad_argument")
        return _see_other(f"/incidents?done={'reported' if step == 'reported' else 'closed'}")

    return _work(request, ws, act, csrf=csrf, back="/incidents")


@router.get("/incidents/{incident_id}/draft")
def incident_draft(request: Request, incident_id: str, ws: WS) -> Response:
    def send(who: Any, me: dict[str, Any], token: str) -> Response:
        res = reports.incident_draft(ws, who, incident_id, fmt="pdf")
        return Response(
            res["data"],
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="{incident_id}.pdf"',
                "X-Content-SHA256": res["sha256"],
            },
        )

    return _work(request, ws, send, back="/incidents")
