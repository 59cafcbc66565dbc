"""The web console: server-rendered pages (Jinja2, U.S. Web Design System, htmx for partial
updates) served by the same application as the API, at `/`.

A face only: each page authenticates its caller through the core (a server-side session held
in an HttpOnly, SameSite=Strict cookie), calls one service, and renders HTML; the core decides
every permission, so a suspension refuses the very next click. Assets are served from the
package (copied from the npm registry by `make assets`), nothing from elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from custodes.api import create_app as create_api
from custodes.web import pages

STATIC = Path(__file__).parent / "static"


def create_app(home: str | os.PathLike[str] | None = None, store_url: str | None = None) -> FastAPI:
    """The API under /v1 and the console at /."""
    app = create_api(home, store_url)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.middleware("http")(pages.security_headers)
    return app
