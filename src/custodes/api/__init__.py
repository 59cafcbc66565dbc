"""The HTTP face: FastAPI under `/v1` (OpenAPI 3.1 at `/v1/openapi.json`, docs at `/v1/docs`).

The docs page is Swagger UI from the npm package `swagger-ui-dist`, copied into the console's
static folder by `make assets` and served by custodes itself (the application `custodes serve`
runs mounts it at `/static`), under the console's Content-Security-Policy: nothing is fetched
from elsewhere. Every response carries the same security headers (`custodes.http.headers`).

`create_app(home)` opens one workspace for the server's lifetime and a job runner for long
work; every route authenticates its caller through the core and calls one service. Errors are
RFC 9457 problem details (`custodes.http.problems`). Every call that can reach the store is
admitted first (`custodes.http.admission`): a bounded wait, then `503` with `Retry-After`; the
store's connections and the request threads are sized from the same limits. On SIGTERM the
server refuses what waits, finishes what runs and stops the jobs at their next chunk.
`custodes serve` runs it under uvicorn, on the loopback interface unless told otherwise; TLS
belongs to a reverse proxy in front (docs/api.md).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from custodes import __version__, settings
from custodes.api import ledger
from custodes.http import admission, headers, problems
from custodes.http import limits as body_limits
from custodes.http.routers import resources
from custodes.services import ledger as ledger_svc
from custodes.services import rules as rules_svc
from custodes.services import workspace as ws_svc
from custodes.services.jobs import Jobs

JSON = "application/json"


def _witness(home: Path) -> ledger_svc.Witness | None:
    """The witness this server also runs, when `custodes serve --witness-key` configured one
    (through the environment, so every worker process gets it)."""
    key = settings.raw("CUSTODES_WITNESS_KEY")
    if not key:
        return None
    state = settings.raw("CUSTODES_WITNESS_STATE") or str(home / "witness.db")
    logs = settings.text("CUSTODES_WITNESS_LOGS").split()
    return ledger_svc.witness(Path(key), logs, Path(state))


# Swagger UI from our own static files; its start-up is a file too (the CSP allows no inline
# script), reading the schema's address from the page.
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>custodes API</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="/v1/openapi.json"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""


# One module per resource, each with the routers of the tags its routes have always had
# (`ROUTERS`), included in this order.
RESOURCES = resources(
    __name__,
    "public ledger sessions requests recalls jobs review releases reports records rules "
    "registries users",
)


def _upload_limits() -> body_limits.BodyLimits:
    """Bodies are counted as they stream, before any parser or authentication sees them; the
    upload routes have their own limits, every other body `limits.MAX_BODY`."""
    bodies = body_limits.BodyLimits()

    def submission(kind: str) -> int:  # inline JSON, or the envelope and items and framing
        return (
            body_limits.inline_limit()
            if kind == JSON
            else 2 * body_limits.MAX_UPLOAD + body_limits.FRAMING
        )

    bodies.add("POST", "/v1/requests", submission)
    for path in ("/v1/ledger/verify", "/v1/rules/changes"):
        bodies.add("POST", path, lambda kind: body_limits.MAX_UPLOAD)
    bodies.add("POST", "/v1/registries/agreements", lambda kind: rules_svc.MAX_AGREEMENT)
    # The witness answers its own 413 in its protocol's plain text; this is the backstop.
    bodies.add("POST", "/v1/witness/add-checkpoint", lambda kind: 2 * ledger.WITNESS_MAX_BODY)
    return bodies


def create_app(home: str | os.PathLike[str] | None = None, store_url: str | None = None) -> FastAPI:
    limits = admission.Limits.from_env()
    gates = admission.Admission(limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        ws = ws_svc.open_workspace(home, store_url, pool_size=limits.connections)
        threads = anyio.to_thread.current_default_thread_limiter()
        threads.total_tokens = settings.integer("CUSTODES_API_THREADS", 0) or max(
            threads.total_tokens, limits.threads
        )
        app.state.ws = ws
        app.state.witness = _witness(ws.home)
        app.state.jobs = jobs = Jobs(ws)

        def stop() -> None:
            gates.drain()  # refuse what waits and what comes; what runs finishes
            jobs.stop()  # a running job stops at its next chunk, resumable

        admission.on_stop_signals(stop)
        try:
            yield
        finally:
            # What is left of the grace period for a job that has not reached a chunk's end
            # (a release, an intake); past it the job is left to the next start, which fails
            # it as `server_restarted` and resumes it when started again.
            jobs.close(gates.grace_left() if gates.stopping else None)
            ws.close()

    app = FastAPI(
        title="custodes",
        version=__version__,
        summary="A disclosure gateway for confidential government records.",
        description=(
            "Agencies submit requests and collect released responses with their API key; "
            "staff sign in (`POST /v1/sessions`) and work requests through to release; anyone "
            "verifies the ledger through its tlog-tiles endpoints. Every error is an RFC 9457 "
            "problem with a stable `code`."
        ),
        openapi_url="/v1/openapi.json",
        docs_url=None,  # our own page below: no CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    problems.install(app)
    app.middleware("http")(headers.security_headers)

    @app.get("/v1/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The API's documentation (Swagger UI, served by custodes)."""
        return HTMLResponse(DOCS_PAGE)

    app.state.body_limits = bodies = _upload_limits()
    app.add_middleware(body_limits.BodyLimitMiddleware, limits=bodies)
    # Admission is added last: the outermost layer, so a refused call costs only its refusal.
    app.state.admission = gates
    app.add_middleware(admission.AdmissionMiddleware, admission=gates)
    for resource in RESOURCES:
        for router in resource.ROUTERS:
            app.include_router(router)
    return app
