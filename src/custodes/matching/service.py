"""Matching services the faces and the pipeline call: train, link, evaluate."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from custodes.errors import InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.matching import link as lk
from custodes.matching import model as mdl
from custodes.records import master
from custodes.requests.format import ENVELOPE_FILE
from custodes.store.tables import requests
from custodes.workspace import Workspace


def request_folder(ws: Workspace, request_id: str) -> Path:
    """The received request's folder (envelope and items.parquet); refuse an unknown id."""
    with ws.engine.connect() as conn:
        known = conn.execute(select(requests.c.id).where(requests.c.id == request_id)).first()
    if known is None:
        raise InputError(f"No request '{request_id}'.", code="unknown_request")
    return ws.home / "requests" / request_id


def latest_request(ws: Workspace) -> str:
    with ws.engine.connect() as conn:
        rid = conn.execute(
            select(requests.c.id).order_by(requests.c.submitted_at.desc()).limit(1)
        ).scalar()
    if rid is None:
        raise InputError(
            "No request has been received yet: the model learns how requests differ from the "
            "master file, so submit one first (custodes submit).",
            code="no_request",
        )
    return rid


def _cache(ws: Workspace, mf: master.MasterFile) -> tuple[Path, str]:
    sha = mf.sha256()
    return ws.bulk / "match" / sha[:16], sha


def _work(folder: Path) -> Path:
    work = folder / "match"
    work.mkdir(exist_ok=True)
    return work


def train(
    ws: Workspace,
    request_id: str | None = None,
    *,
    backend: str = "duckdb",
    thresholds: mdl.Thresholds | None = None,
    seed: int = 1,
    actor: str | None = None,
    progress: lk.Progress | None = None,
) -> dict[str, Any]:
    """Train the model on the master file and a received request; make it current."""
    from splink import Linker

    mf = master.current(ws)
    mf.path("people")  # refuses clearly when there is no master file
    request_id = request_id or latest_request(ws)
    folder = request_folder(ws, request_id)
    t0 = time.perf_counter()
    be = lk.make_backend(backend)
    try:
        cache, master_sha = _cache(ws, mf)
        con = master.connect()
        try:
            m_path = lk.master_table(con, mf, cache)
            r_path = lk.request_table(con, folder / "items.parquet", _work(folder) / "std.parquet")
            n_m, n_r = (
                con.execute(f"SELECT count(*) FROM read_parquet('{p}')").fetchall()[0][0]
                for p in (m_path, r_path)
            )
        finally:
            con.close()
        if progress:
            progress("prepare", 1, 1)
        mdl.quiet_splink()
        linker = Linker(
            [be.register(m_path, mdl.MASTER), be.register(r_path, mdl.REQUEST)],
            mdl.settings(),
            log_level=mdl.log_level(),
        )
        info = mdl.train_linker(linker, master_rows=n_m, request_rows=n_r, seed=seed)
        if progress:
            progress("train", 1, 1)
        splink_doc = linker.misc.save_model_to_json()
    finally:
        be.close()
    model = mdl.Model(
        splink=splink_doc,
        thresholds=(thresholds or mdl.Thresholds()).validate(),
        master_sha256=master_sha,
        trained_on=request_id,
        trained_at=mdl.now_iso(),
        training=info | {"backend": backend, "master_rows": n_m, "request_rows": n_r},
    )
    sha = mdl.save(ws, model)
    with ws.engine.begin() as conn:
        log.append(
            conn,
            [
                Event(
                    "model.trained",
                    actor=actor,
                    request_id=request_id,
                    data={"model_sha256": sha, "master_sha256": master_sha},
                )
            ],
        )
    return {
        "model_sha256": sha,
        "master_sha256": master_sha,
        "trained_on": request_id,
        "seconds": round(time.perf_counter() - t0, 2),
        "thresholds": model.document()["thresholds"],
        "prior": splink_doc.get("probability_two_random_records_match"),
    }


def link(
    ws: Workspace,
    request_id: str,
    *,
    backend: str = "duckdb",
    overrides: dict[str, float | None] | None = None,
    progress: lk.Progress | None = None,
    out: Path | None = None,
) -> lk.LinkResult:
    """Link every item of a request; write ``requests/<id>/match/linked.parquet``."""
    model = mdl.load(ws)
    t = model.thresholds.replace(**(overrides or {}))
    mf = master.current(ws)
    folder = request_folder(ws, request_id)
    envelope = json.loads((folder / ENVELOPE_FILE).read_text(encoding="utf-8"))
    cache, _ = _cache(ws, mf)
    work = _work(folder)
    items_path = folder / "items.parquet"
    con = master.connect()
    be = lk.make_backend(backend)
    try:
        m_path = lk.master_table(con, mf, cache)
        r_path = lk.request_table(con, items_path, work / "std.parquet")
        n_items = con.execute(f"SELECT count(*) FROM read_parquet('{r_path}')").fetchall()[0][0]
        if progress:
            progress("prepare", 1, 1)
        pairs, chunks = lk.score(be, model, m_path, r_path, n_items, t.floor_probability, progress)
        periods = list(envelope.get("taxable_periods") or [])
        lk.decide(con, pairs, m_path, r_path, t, mf, items_path, periods)
        path = out or work / "linked.parquet"
        counts = lk.write_linked(con, model.sha256, path)
        if progress:
            progress("decide", 1, 1)
    finally:
        be.close()
        con.close()
    return lk.LinkResult(
        items=n_items,
        identified=counts["identified"],
        review=counts["review"],
        not_identified=counts["not_identified"],
        pairs=pairs.num_rows,
        chunks=chunks,
        model_sha256=model.sha256,
        path=path,
    )


def linked_path(ws: Workspace, request_id: str) -> Path:
    path = request_folder(ws, request_id) / "match" / "linked.parquet"
    if not path.exists():
        raise InputError(
            f"Request {request_id} has not been linked yet: run 'custodes match link "
            f"{request_id}'.",
            code="not_linked",
        )
    return path
