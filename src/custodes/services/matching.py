"""Matching services: train the model, link a request, evaluate the linkage against truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from custodes.access import CheckedCall, service
from custodes.decisions.pipeline import envelope, request_folder
from custodes.errors import fail
from custodes.matching import evaluate as ev
from custodes.matching import runs as matching
from custodes.matching.link import LinkResult, Progress
from custodes.matching.model import Thresholds
from custodes.store.tables import requests
from custodes.workspace import Workspace


def _latest(ws: Workspace) -> str:
    with ws.engine.connect() as conn:
        rid: str | None = conn.execute(
            select(requests.c.id).order_by(requests.c.submitted_at.desc()).limit(1)
        ).scalar()
    if rid is None:
        raise fail(
            "no_request",
            "No request has been received yet: the model learns how requests differ from the "
            "master file, so submit one first (custodes submit).",
        )
    return rid


@service("match.train")
def train(
    call: CheckedCall,
    request_id: str | None = None,
    *,
    backend: str = "duckdb",
    engine: str | None = None,
    thresholds: dict[str, float | None] | None = None,
    seed: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train the linkage model on the master file and a received request (default: the
    latest), save it with its hash and make it current. `thresholds` overrides the defaults
    (None values keep them)."""
    request_id = request_id or _latest(call.ws)
    folder = request_folder(call.ws, request_id)
    return matching.train(
        call,
        request_id,
        folder,
        backend=backend,
        engine=engine,
        thresholds=Thresholds().replace(**(thresholds or {})),
        seed=seed,
        progress=call.progress(progress),
    )


@service("match.link")
def link(
    call: CheckedCall,
    request_id: str,
    *,
    backend: str = "duckdb",
    engine: str | None = None,
    overrides: dict[str, float | None] | None = None,
    progress: Progress | None = None,
) -> LinkResult:
    """Identify every item of a request; changes no request state."""
    folder = request_folder(call.ws, request_id)
    return matching.link(
        call,
        folder,
        envelope(folder).get("taxable_periods") or [],
        request_id=request_id,
        backend=backend,
        engine=engine,
        overrides=overrides,
        progress=call.progress(progress),
    )


@service("match.evaluate")
def evaluate(
    call: CheckedCall, truth: Path, request_id: str | None = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """Precision, recall, wrong-person accepts by kind and review rate against a truth file,
    at the model's thresholds and over a grid; writes evaluation.json and a plot."""
    request_id = request_id or _latest(call.ws)
    folder = request_folder(call.ws, request_id)
    report = ev.evaluate(
        matching.linked_path(folder, call),
        truth,
        out_dir or folder / "match",
        matching.standardized_paths(call.ws, folder),
    )
    return report | {"request_id": request_id}
