"""Errors over HTTP as RFC 9457 problem details (`application/problem+json`).

Status, code and title come from the core's error registry (`custodes.errors.REGISTRY`); the
detail is the core's message, which by rule never quotes a value. A validation failure lists its
problems with file, line and column, never the value; a malformed HTTP request lists where it is
malformed, never what was sent. An unexpected failure answers 500 with no detail and is logged
with its exception type and place only (a library's message may quote data).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.routing import Match

from custodes.errors import (
    REGISTRY,
    CustodesError,
    InputError,
    Overloaded,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
    from_fault,
)

log = logging.getLogger("custodes.api")
MEDIA_TYPE = "application/problem+json"
# Seconds a client waits before retrying a 503 whose cause names no time of its own.
UNAVAILABLE_RETRY_AFTER = 30


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (the `Allow` of a 405, RFC 9110 15.5.6):
    the router names only the methods of the first route whose path matched. Each method is
    tried against the routes as the router itself would match it."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(r.matches(scope)[0] == Match.FULL for r in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def type_and_place(exc: BaseException) -> str:
    """An exception as its type and the place it was raised (custodes' deepest frame, else
    the deepest), `Type at module:line`: never its message or locals, which may quote data."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    ours = [f for f in frames if "/custodes/" in f.filename]
    frame = (ours or frames)[-1] if frames else None
    if frame is None:
        return type(exc).__name__
    path = frame.filename.replace("\\", "/")
    module = path.rsplit("/custodes/", 1)[-1] if "/custodes/" in path else path.rsplit("/", 1)[-1]
    return f"{type(exc).__name__} at {module.removesuffix('.py').replace('/', '.')}:{frame.lineno}"


class TypeAndPlace(logging.Filter):
    """Rewrites a log record that carries an exception (uvicorn's "Exception in ASGI
    application", asyncio's "Task exception was never retrieved") to name the exception's
    type and place only: the traceback, its message and the record's arguments are dropped,
    since any of them may quote a submitted value or a row."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        first = str(record.msg).strip().splitlines()[0] if not record.args else "Error"
        record.msg, record.args = "%s: %s", (first, type_and_place(exc))
        record.exc_info = record.exc_text = record.stack_info = None
        return True


SERVER_LOGGERS = ("uvicorn.error", "asyncio")


def quiet_server_logs() -> None:
    """Install `TypeAndPlace` on the loggers through which the server reports failures
    (idempotent; uvicorn configures its loggers before it loads the application)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TypeAndPlace) for f in logger.filters):
            logger.addFilter(TypeAndPlace())


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, with custodes' stable `code`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/v1/problems/self_approval",
                    "title": "Second person required",
                    "status": 403,
                    "detail": "A release is approved by someone other than who prepared it.",
                    "code": "self_approval",
                }
            ]
        },
    )
    type: str = Field(description="A URI naming the kind of problem: /v1/problems/{code}.")
    title: str
    status: int
    detail: str | None = None
    code: str = Field(description="custodes' stable, machine-readable error code.")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": f"/v1/problems/{code}", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def from_error(exc: CustodesError) -> JSONResponse:
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    detail = exc.message
    if isinstance(exc, ValidationFailed):
        extra = {"problems": [p.to_dict() for p in exc.problems], "total": exc.total}
        detail = f"{exc.total} problem(s) found; nothing was loaded."
    if isinstance(exc, RateLimited | Overloaded):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.http_status in (429, 503):  # e.g. a store that cannot be reached (RFC 9110 10.2.3)
        headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="custodes"'
    return problem(exc.http_status, exc.code, exc.title, detail, headers=headers, **extra)


# Starlette's multipart and form parsers say why they refused a body only in the message of
# their `MultiPartException` (the limits they name are the server's, never a sent value).
TOO_MANY = ("Too many fields", "Too many files")
TOO_LONG = ("Field exceeded", "Part exceeded")


def unreadable_body(exc: BaseException, *, too_many: str | None = None) -> InputError:
    """Why Starlette or FastAPI refused a body with a bare 400, as its own coded error: a
    multipart body that is not one (`bad_multipart`), more fields or files than the route
    takes (`too_many_parts`, said by `too_many` when given), a form field over the parser's
    limit (`oversize_field`), a JSON body nested too deep to parse (`bad_json`) or not UTF-8
    (`bad_encoding`); anything else keeps `bad_argument`. Read from the exception's causes,
    never from what was sent. (A form's text is never refused for its encoding: Starlette
    falls back to Latin-1.)"""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, MultiPartException):
            if cause.message.startswith(TOO_MANY):
                return InputError(
                    too_many or "The body has more form fields or files than this call takes.",
                    code="too_many_parts",
                )
            if cause.message.startswith(TOO_LONG):
                return InputError(
                    "A form field of the body is longer than the server reads.",
                    code="oversize_field",
                )
            return InputError(
                "The body is not readable multipart/form-data (its boundary, a part's "
                "headers or its framing).",
                code="bad_multipart",
            )
        if isinstance(cause, UnicodeDecodeError):
            return InputError("The body is not UTF-8 text.", code="bad_encoding")
        if isinstance(cause, RecursionError):
            return InputError("The JSON body is nested too deep to parse.", code="bad_json")
        cause = cause.__cause__ or cause.__context__
    return InputError("The HTTP request's body does not parse.", code="bad_argument")


def install(app: FastAPI) -> None:
    @app.exception_handler(CustodesError)
    async def _custodes(request: Request, exc: CustodesError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        where = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in errors[:20]
        ]
        if errors and all(e.get("type") == "json_invalid" for e in errors):
            # FastAPI's own word for a JSON body that does not decode (where, not what)
            return problem(
                422,
                "bad_json",
                REGISTRY["bad_json"].title,
                "The body is not JSON (the location is where decoding stopped).",
                problems=where,
            )
        return problem(
            422,
            "bad_argument",
            REGISTRY["bad_argument"].title,
            "The HTTP request does not match the API's schema.",
            problems=where,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body Starlette or FastAPI could not parse: its cause's
            # own code, 422 as the registry gives every InputError (a 400 was undocumented:
            # the stateful schemathesis run)
            return from_error(unreadable_body(exc))
        code = {404: "not_found", 405: "method_not_allowed", 413: "file_too_large"}.get(
            exc.status_code, "bad_argument"
        )
        title = REGISTRY[code].title
        detail = {404: "No such resource.", 405: "This resource does not allow that method."}
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        return problem(
            exc.status_code,
            code,
            title,
            detail.get(exc.status_code),
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        fault = from_fault(exc)  # a read-only or full disk, a lost store: coded, not internal
        if fault is not None:
            return from_error(fault)
        # Starlette re-raises after this answer so that the server logs it too: uvicorn's
        # record goes through `TypeAndPlace` (installed here), so neither logs more than this.
        log.error("internal error: %s", type_and_place(exc))
        return problem(500, "internal", "Internal error", "An unexpected error; it was logged.")

    quiet_server_logs()
