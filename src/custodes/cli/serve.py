"""serve: the HTTP API and the web console under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from custodes.cli.root import HomeOpt, app, guarded
from custodes.errors import InputError


def _check(host: str, home: object) -> None:
    if host not in ("127.0.0.1", "::1", "localhost") and not os.environ.get(
        "CUSTODES_BEHIND_TLS_PROXY"
    ):
        raise InputError(
            f"Refusing to listen on {host} without TLS: run behind a TLS-terminating reverse "
            "proxy and set CUSTODES_BEHIND_TLS_PROXY=1 (docs/api.md).",
            code="bad_argument",
        )
    from custodes.services import workspace as ws_svc

    ws_svc.open_workspace(home).close()  # type: ignore[arg-type]  # a clear error now


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless you say so).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8600,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes.")] = 1,
    home: HomeOpt = None,
) -> None:
    """Serve the web console at / and the HTTP API under /v1 (OpenAPI at /v1/openapi.json,
    docs at /v1/docs) for the workspace. Plain HTTP: put a TLS-terminating reverse proxy in
    front of anything but the loopback interface (docs/api.md)."""
    import uvicorn

    with guarded(False):
        _check(host, home)
    if home is not None:
        os.environ["CUSTODES_HOME"] = str(home)
    uvicorn.run(
        "custodes.web:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=bool(os.environ.get("CUSTODES_BEHIND_TLS_PROXY")),
        server_header=False,
        log_level="info",
    )
