"""The web console: server-rendered pages (Jinja2, U.S. Web Design System, htmx for partial
updates) served by the same application as the API, at `/`.

A face only: each page authenticates its caller through the core (a server-side session held
in an HttpOnly, SameSite=Strict cookie), calls one service, and renders HTML; the core decides
every permission, so a suspension refuses the very next click. Assets are served from the
package (copied from the npm registry by `make assets`), nothing from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, Response

from custodes.http import limits
from custodes.http.admission import AdmissionMiddleware
from custodes.http.routers import resources
from custodes.services import rules as rules_svc
from custodes.web import console

# One module per resource (its routes in `pages`), included in this order. `releases` comes
# after the other request pages: its `/requests/{id}/{action}` takes only what they did not.
RESOURCES = resources(
    __name__,
    "sessions requests review recalls releases jobs users rules registries ledger reports "
    "incidents",
)

STATIC = Path(__file__).parent / "static"
FAVICON = STATIC / "vendor" / "uswds" / "img" / "favicons" / "favicon.ico"


def install(app: FastAPI) -> FastAPI:
    """The console at / on an application that serves the API (`custodes.app` builds the one
    `custodes serve` runs): its pages, its upload limits, its assets and its form errors."""
    for resource in RESOURCES:
        app.include_router(resource.pages)
    # The console's file fields have the API's upload limits (the form's framing over them).
    bodies = app.state.body_limits
    for path in ("/rules", "/ledger/check-export"):
        bodies.add("POST", path, lambda kind: limits.MAX_UPLOAD + limits.FRAMING)
    bodies.add(
        "POST", "/registries/agreements", lambda kind: rules_svc.MAX_AGREEMENT + limits.FRAMING
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """Browsers ask for it whatever the page says: the USWDS flag icon, not a 404."""
        return FileResponse(FAVICON, media_type="image/x-icon")

    # The security headers (CSP and the rest) are the API's middleware, on every response.
    # Admission stays the outermost layer: a refused call costs no more than its refusal.
    # (Starlette types Middleware.cls with a ParamSpec it never binds: mypy sees no overlap.)
    app.user_middleware.sort(key=lambda m: m.cls is not AdmissionMiddleware)  # type: ignore[comparison-overlap]
    api_invalid = app.exception_handlers[RequestValidationError]

    async def invalid(request: Request, exc: Exception) -> Response:
        """A console form the server cannot read gets a page; the API keeps its problem."""
        if request.url.path.startswith("/v1") or not isinstance(exc, RequestValidationError):
            answer = api_invalid(request, exc)  # (a handler may be plain or async)
            return answer if isinstance(answer, Response) else await answer
        fields = [str(e["loc"][-1]) for e in exc.errors() if e.get("loc")]
        return console.invalid_form(request, fields)

    app.add_exception_handler(RequestValidationError, invalid)
    return app
