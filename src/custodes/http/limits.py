"""Body limits: every request body is counted as it streams in, before anything parses it and
before anyone is authenticated (docs/decisions/2026-12-06-body-limits-before-auth.md).

Each route class has its limit (`BodyLimits.limit`): the upload routes their own documented
limit, an inline JSON submission a smaller one (`CUSTODES_API_MAX_INLINE`), every other route
(JSON bodies and console forms) `CUSTODES_API_MAX_BODY`. A body declared (Content-Length)
larger than its route's limit is refused at once, unread; a body sent in chunks (no declared
length) is counted chunk by chunk and refused as soon as it passes the limit. Either way the
answer is `413` with problem details (`file_too_large` on the upload routes, `body_too_large`
elsewhere) and `Connection: close`, and whatever the application had begun is dropped: the
form parser, the JSON parser and the upload spooling never see more than the limit.

Hand-written, as ASGI middleware: Starlette and uvicorn have no body limit (uvicorn's
`--limit-max-requests` counts requests, h11 checks only the headers' size), and a limit in the
route comes after FastAPI has already parsed the form its parameters declare.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from custodes import settings
from custodes.errors import REGISTRY
from custodes.http.problems import problem

FRAMING = 1 << 16  # a multipart body's part headers and boundaries, over its files' bytes


def _env_bytes(name: str, default: int) -> int:
    raw = settings.text(name).strip()
    return int(raw) if raw.isascii() and raw.isdigit() else default


# Every body but the upload routes' (a JSON call, a console form).
MAX_BODY = _env_bytes("CUSTODES_API_MAX_BODY", 1 << 20)
# A submission with its items inline as JSON (a large request is sent as files instead).
MAX_INLINE = _env_bytes("CUSTODES_API_MAX_INLINE", 32 << 20)
# Uploads are streamed to disk up to this many bytes (a 1M-item request is about 200 MB).
MAX_UPLOAD = settings.integer("CUSTODES_API_MAX_UPLOAD", 2 << 30)


def inline_limit() -> int:
    """The most bytes a submission with its items inline (JSON) may have: it is parsed whole,
    in memory, so it is held well below a file upload's limit (`CUSTODES_API_MAX_INLINE`)."""
    return min(MAX_UPLOAD, MAX_INLINE)


class BodyTooLarge(Exception):
    """Raised from `receive` once a body has passed its limit (the middleware answers)."""


class BodyLimits:
    """The limit of each route class. `uploads` maps an upload route (method, path) to a
    function giving its limit in bytes for a body's media type; each face registers its own
    (`add`); every other route has `MAX_BODY`. Functions, so that a limit set at run time (a
    test's) applies."""

    def __init__(self) -> None:
        self.uploads: dict[tuple[str, str], Callable[[str], int]] = {}

    def add(self, method: str, path: str, limit: Callable[[str], int]) -> None:
        self.uploads[(method, path)] = limit

    def limit(self, scope: Scope) -> tuple[int, str]:
        """The call's limit, and the code of its refusal."""
        kind = ""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                kind = value.decode("latin-1").split(";")[0].strip().lower()
        route = self.uploads.get((scope["method"], scope["path"]))
        if route is None:
            return MAX_BODY, "body_too_large"
        return route(kind), "file_too_large"


def _declared(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isascii() and value.isdigit() else None
    return None


async def _refuse(code: str, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    detail = (
        f"The body is larger than this route's limit of {limit:,} bytes; nothing was read or done."
    )
    response = problem(413, code, REGISTRY[code].title, detail, headers={"Connection": "close"})
    await response(scope, receive, send)


class BodyLimitMiddleware:
    """ASGI middleware: refuse a body over its route's limit, declared or streamed (413)."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit, code = self.limits.limit(scope)
        declared = _declared(scope)
        if declared is not None and declared > limit:
            await _refuse(code, limit, scope, receive, send)
            return
        received = 0
        tripped = False
        started = False

        async def counted() -> Message:
            nonlocal received, tripped
            if tripped:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    tripped = True
                    raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if tripped:
                return  # whatever the application makes of the refusal, the answer is ours
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await _refuse(code, limit, scope, receive, send)
