"""Matching runs on a workspace: train the model, link a request's items (every file they
read checked against its record, every file they write recorded). `services/matching.py` is
the service the faces call; `link.py` and the modules it names are the SQL and Splink steps.

The room knows requests only as files: the caller (decisions, or a service) hands it the
request's standardized-items source, its working folder and its taxable periods.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from custodes.errors import fail
from custodes.ledger import files, log
from custodes.ledger.event_types import ModelTrained
from custodes.matching import backends, deciding, tables
from custodes.matching import link as lk
from custodes.matching import model as mdl
from custodes.records import master
from custodes.store.steps import SparkSteps
from custodes.workspace import Call, Workspace

LINKED = "linked.parquet"


def _cache(ws: Workspace, mf: master.MasterFile) -> tuple[Path, str]:
    sha = mf.sha256()
    return ws.bulk / "match" / sha[:16], sha


def _master_std(call: Call, con: Any, mf: master.MasterFile, cache: Path) -> Path:
    """The master file standardized for linking: built and recorded on first use (per master
    content hash), checked against its record on every later use."""
    path = cache / "master.parquet"
    if files.unrecorded(call.ws, path):
        # Built by a run stopped before the commit that records it (a crash, the store
        # restarted): built again below from the checked master file, never used as found
        # (as decisions.pipeline.drop_unrecorded does for a request's files).
        path.unlink()
    if path.exists():
        return files.verified(call, "match.master", path)
    tables.master_table(con, mf, cache)
    with call.transaction() as conn:
        files.record(conn, call.ws, call.actor, "match.master", path)
    return path


def _request_std(call: Call, con: Any, folder: Path, request_id: str | None) -> Path:
    """A request's items (checked) standardized into ``match/std.parquet`` (recorded)."""
    items = files.verified(call, "request.items", folder / "items.parquet")
    path = tables.request_table(con, items, work_dir(folder) / "std.parquet")
    with call.transaction() as conn:
        files.record(conn, call.ws, call.actor, "match.items", path, request_id=request_id)
    return path


def current_model(call: Call) -> mdl.Model:
    """The current model, its pointer and its file checked against the ledger's records."""
    folder = mdl.models_dir(call.ws)
    if mdl.trained(call.ws):
        files.verified(call, "model.current", folder / "CURRENT")
        sha = (folder / "CURRENT").read_text().strip()
        if (folder / f"{sha}.json").exists():
            files.verified(call, "model", folder / f"{sha}.json")
    return mdl.load(call.ws)


def work_dir(folder: Path) -> Path:
    """A request's matching folder (standardized items, linked results, evaluations)."""
    work = folder / "match"
    work.mkdir(mode=0o700, exist_ok=True)
    return work


def train(
    call: Call,
    request_id: str,
    folder: Path,
    *,
    backend: str = "duckdb",
    engine: str | None = None,
    thresholds: mdl.Thresholds | None = None,
    seed: int = 1,
    progress: lk.Progress | None = None,
) -> dict[str, Any]:
    """Train the model on the master file and a received request's items; make it current.
    `engine` (or its older name `backend`): ``duckdb`` or ``spark`` (standardizing and
    training as Spark SQL)."""
    from splink import Linker

    ws = call.ws
    backend = check_engine(engine or backend)
    mf = master.current(ws)
    mf.path("people")  # refuses clearly when there is no master file
    master.verified(call)
    t0 = time.perf_counter()
    con = master.connect(ws=ws)  # one bulk connection: standardizing, then Splink on DuckDB
    be = backends.make_backend(backend, con, home=ws.home)
    try:
        cache, master_sha = _cache(ws, mf)
        st = SparkSteps(be.spark) if isinstance(be, backends.SparkBackend) else con
        m_path = _master_std(call, st, mf, cache)
        r_path = _request_std(call, st, folder, request_id)
        n_m, n_r = (pq.ParquetFile(p).metadata.num_rows for p in (m_path, r_path))
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
        splink_doc, raised = mdl.monotone_weights(linker.misc.save_model_to_json())
        info["weights_raised"] = raised
    finally:
        be.close()
        master.close(con)
    model = mdl.Model(
        splink=splink_doc,
        thresholds=(thresholds or mdl.Thresholds()).validate(),
        master_sha256=master_sha,
        trained_on=request_id,
        trained_at=mdl.now_iso(),
        training=info | {"backend": backend, "master_rows": n_m, "request_rows": n_r},
    )
    sha = mdl.save(ws, model)
    with call.transaction() as conn:
        folder_m = mdl.models_dir(ws)
        files.record(conn, ws, call.actor, "model", folder_m / f"{sha}.json")
        files.record(conn, ws, call.actor, "model.current", folder_m / "CURRENT")
        log.append_one(
            conn,
            ModelTrained(model_sha256=sha, master_sha256=master_sha),
            actor=call.actor,
            request_id=request_id,
        )
    return {
        "model_sha256": sha,
        "master_sha256": master_sha,
        "trained_on": request_id,
        "seconds": round(time.perf_counter() - t0, 2),
        "thresholds": model.document()["thresholds"],
        "prior": splink_doc.get("probability_two_random_records_match"),
    }


ENGINES = ("duckdb", "spark")


def check_engine(engine: str) -> str:
    """An engine's name, or a refusal naming the ones there are."""
    if engine not in ENGINES:
        raise fail("bad_argument", f"Unknown engine {engine!r} (use duckdb or spark).")
    return engine


def link(
    call: Call,
    folder: Path,
    periods: list[int],
    *,
    request_id: str | None = None,
    checked_master: master.MasterFile | None = None,
    backend: str = "duckdb",
    engine: str | None = None,
    overrides: dict[str, float | None] | None = None,
    progress: lk.Progress | None = None,
    out: Path | None = None,
) -> lk.LinkResult:
    """Link every item of a received request (its folder, its taxable periods); write
    ``match/linked.parquet`` in the folder (recorded). Every file read is checked against its
    record first; `checked_master` is the master file when the caller has just checked it.
    `engine` (or its older name `backend`) is where the job runs: ``duckdb`` (embedded) or
    ``spark`` (every step as Spark SQL, on ``CUSTODES_SPARK_MASTER``)."""
    ws = call.ws
    engine = check_engine(engine or backend)
    model = current_model(call)
    t = model.thresholds.replace(**(overrides or {}))
    mf = checked_master or master.verified(call)
    cache, _ = _cache(ws, mf)
    path = out or work_dir(folder) / LINKED
    # On DuckDB one bulk connection (one memory limit, one spill folder) standardizes, scores
    # (Splink in the same connection: the pairs never enter Python) and decides.
    con = master.connect(ws=ws) if engine == "duckdb" else None
    be = backends.make_backend(engine, con, home=ws.home)
    try:
        if isinstance(be, backends.SparkBackend):
            res = _link_spark(call, be, model, t, mf, cache, folder, periods, request_id, path)
        else:
            assert con is not None
            res = _link_duckdb(
                call, be, con, model, t, mf, cache, folder, periods, request_id, path, progress
            )
    finally:
        be.close()
        if con is not None:
            master.close(con)
    if out is None:
        with call.transaction() as conn:
            files.record(conn, ws, call.actor, "match.results", path, request_id=request_id)
    if progress:
        progress("decide", 1, 1)
    return res


def _link_duckdb(
    call: Call,
    be: backends.DuckDBBackend,
    con: duckdb.DuckDBPyConnection,
    model: mdl.Model,
    t: mdl.Thresholds,
    mf: master.MasterFile,
    cache: Path,
    folder: Path,
    periods: list[int],
    request_id: str | None,
    path: Path,
    progress: lk.Progress | None,
) -> lk.LinkResult:
    m_path = _master_std(call, con, mf, cache)
    r_path = _request_std(call, con, folder, request_id)
    n_items = pq.ParquetFile(r_path).metadata.num_rows
    if progress:
        progress("prepare", 1, 1)
    n_pairs, chunks = lk.score(
        be, model, m_path, r_path, n_items, t.floor_probability, progress, con=con
    )
    lk.decide(con, None, m_path, r_path, t, mf, folder / "items.parquet", list(periods))
    counts = lk.write_linked(con, model.sha256, path)
    return lk.LinkResult(
        items=n_items,
        pairs=int(n_pairs),
        chunks=chunks,
        model_sha256=model.sha256,
        path=path,
        **counts,
    )


def _link_spark(
    call: Call,
    be: backends.SparkBackend,
    model: mdl.Model,
    t: mdl.Thresholds,
    mf: master.MasterFile,
    cache: Path,
    folder: Path,
    periods: list[int],
    request_id: str | None,
    path: Path,
) -> lk.LinkResult:
    """The whole link as Spark SQL: standardizing, scoring, deciding, writing. Only counts
    come back to this process."""
    st = SparkSteps(be.spark)
    sdf = None
    try:
        m_path = _master_std(call, st, mf, cache)
        r_path = _request_std(call, st, folder, request_id)
        n_items = pq.ParquetFile(r_path).metadata.num_rows
        n_pairs, sdf = lk.score_spark(be, st, model, m_path, r_path, t.floor_probability)
        lk.inputs(st, m_path, r_path, mf, folder / "items.parquet")
        own = lk.has_own_periods(folder / "items.parquet")
        deciding.decide_steps(st, t, list(periods), own)
        counts = lk.write_linked(st, model.sha256, path)
    finally:
        if sdf is not None:
            sdf.drop_table_from_database_and_remove_from_cache()
        st.close()
    return lk.LinkResult(
        items=n_items, pairs=n_pairs, chunks=1, model_sha256=model.sha256, path=path, **counts
    )


def standardized_paths(ws: Workspace, folder: Path) -> tuple[Path, Path] | None:
    """The request's and the master file's standardized tables as the last link used them,
    when both are still there (the master file's cache is per content hash)."""
    items = folder / "match" / "std.parquet"
    master_std = _cache(ws, master.current(ws))[0] / "master.parquet"
    return (items, master_std) if items.exists() and master_std.exists() else None


def linked_path(folder: Path, call: Call | None = None) -> Path:
    """A linked request's match results; refuse clearly when it was not linked yet. With
    `call`, the file is checked against its record (`ledger.files`) before it is used."""
    path = folder / "match" / LINKED
    if not path.exists():
        raise fail(
            "not_linked",
            f"Request {folder.name} has not been linked yet: run 'custodes match link "
            f"{folder.name}'.",
        )
    return files.verified(call, "match.results", path) if call is not None else path
