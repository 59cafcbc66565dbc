"""The application `custodes serve` runs: the API under /v1 (`custodes.api`) and the console at /
(`custodes.web`) in one, so they share one workspace, one job runner, one admission and the
same security headers. The two faces know nothing of each other; this module puts them
together (docs/decisions/2026-12-06-faces-stand-on-http.md)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from custodes import api, web


def create_app(home: str | os.PathLike[str] | None = None, store_url: str | None = None) -> FastAPI:
    """The API under /v1 and the console at /."""
    return web.install(api.create_app(home, store_url))
