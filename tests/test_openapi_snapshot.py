"""The HTTP contract does not move when the faces are reshaped: the API's OpenAPI schema (paths,
operationIds, tags, models) and the console's routes are what `tests/snapshots/` holds.

A deliberate change to the API regenerates the snapshot (and says so in its commit):
`PYTHONPATH=src python tests/test_openapi_snapshot.py`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from custodes.app import create_app

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _schema(home: Path) -> dict[str, Any]:
    schema = create_app(home).openapi()  # no lifespan: the workspace is never opened
    schema["info"].pop("version")
    return json.loads(json.dumps(schema))


def _console(home: Path) -> list[str]:
    """Method and path of every route outside /v1 (through the routers the app includes)."""
    routes: list[Any] = []
    for r in create_app(home).routes:
        routes += r.effective_route_contexts() if hasattr(r, "effective_route_contexts") else [r]
    return sorted(
        {
            f"{m} {r.path}"
            for r in routes
            if not r.path.startswith("/v1")
            for m in getattr(getattr(r, "original_route", r), "methods", None) or ()
        }
    )


def test_the_openapi_schema_is_the_snapshot(tmp_path: Path) -> None:
    want = json.loads((SNAPSHOTS / "openapi.json").read_text())
    got = _schema(tmp_path / "ws")
    assert sorted(got["paths"]) == sorted(want["paths"])
    assert sorted(got["components"]["schemas"]) == sorted(want["components"]["schemas"])
    assert got == want


def test_the_console_routes_are_the_snapshot(tmp_path: Path) -> None:
    want = (SNAPSHOTS / "console_routes.txt").read_text().splitlines()
    assert _console(tmp_path / "ws") == want


if __name__ == "__main__":  # regenerate, after a deliberate change
    home = Path(sys.argv[1] if len(sys.argv) > 1 else "/nonexistent-custodes-home")
    (SNAPSHOTS / "openapi.json").write_text(
        json.dumps(_schema(home), indent=1, sort_keys=True) + "\n"
    )
    (SNAPSHOTS / "console_routes.txt").write_text("\n".join(_console(home)) + "\n")
