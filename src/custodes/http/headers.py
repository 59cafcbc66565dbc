"""Security headers on every response of the application, the API under /v1 and the console
alike: one Content-Security-Policy (scripts, styles, fonts and images from custodes itself,
nothing inline, nothing from elsewhere), no sniffing, no referrer, no framing, and no caching
unless a route says otherwise (the ledger's immutable tiles do)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
    response: Response = await call_next(request)
    path = request.url.path
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if path.startswith("/v1"):
        response.headers.setdefault("Cache-Control", "no-store")
    elif not path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response
