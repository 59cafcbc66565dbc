"""The pipeline: rules before matching, matching, rules after matching, one outcome per item
(the outcomes and their SQL steps: `outcomes.py`; the outcomes as they stand after review:
`effective.py`).

Each stage writes its files atomically before the request's state moves, and every stage is
deterministic, so a killed ``process`` run resumes from the state it reached and gives identical
outcomes. Every outcome records the rule-set hash and the model hash it was made under.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select

from custodes.decisions import verdicts as vd
from custodes.decisions.outcomes import OUTCOMES, RECORD_DEPENDENT, decide, outcomes_path
from custodes.errors import ConflictError
from custodes.ledger import files, log
from custodes.ledger.event_types import (
    Declared,
    RequestChecked,
    RequestDecided,
    RequestMatched,
    parse_as,
)
from custodes.ledger.files import sha256_file
from custodes.matching import runs as matching
from custodes.records import master
from custodes.requests.format import ENVELOPE_FILE, load_items
from custodes.requests.lifecycle import current_state, transition
from custodes.rules import registry as reg
from custodes.rules.active import in_force
from custodes.rules.evaluate import Evaluation, evaluate
from custodes.rules.provisions import overlay
from custodes.rules.types import Effective, RuleSet
from custodes.store import duck
from custodes.store.sql import parquet
from custodes.store.tables import ledger_events
from custodes.workspace import Call, Workspace


@dataclass
class Processed:
    request_id: str
    state: str
    refused: bool
    counts: dict[str, int]
    ruleset_sha256: str
    model_sha256: str | None
    failing_request_checks: list[dict[str, str]]
    withheld_by_check: dict[str, int]
    stages: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_folder(ws: Workspace, request_id: str, *, agency: str | None = None) -> Path:
    """A received request's folder; an unknown id (or another agency's) is refused."""
    with ws.engine.connect() as conn:
        current_state(conn, request_id, agency=agency)
    return ws.request_folder(request_id)


def envelope(folder: Path) -> dict[str, Any]:
    env: dict[str, Any] = json.loads((folder / ENVELOPE_FILE).read_text(encoding="utf-8-sig"))
    return env


def match_results_path(ws: Workspace, request_id: str) -> Path:
    """Where a request's match results are (they may not exist yet)."""
    return ws.request_folder(request_id) / "match" / matching.LINKED


# Every file of a request custodes reads back, by role (recorded where each is written).
REQUEST_FILES = (
    ("request.envelope", ENVELOPE_FILE),
    ("request.items", "items.parquet"),
    ("match.items", "match/std.parquet"),
    ("match.results", f"match/{matching.LINKED}"),
    ("outcomes", "decisions/outcomes.parquet"),
    ("response.csv", "release/response.csv"),
    ("response.json", "release/response.json"),
)


def drop_unrecorded(ws: Workspace, folder: Path, roles: tuple[str, ...]) -> None:
    """Remove the outputs of a step (`roles`) that the ledger never recorded: written by a run
    stopped before the commit that records them (a crash, the store restarted), they are made
    again by the step that resumes, never used as found."""
    for role, rel in REQUEST_FILES:
        if role in roles and files.unrecorded(ws, folder / rel):
            (folder / rel).unlink()


def checked(call: Call, request_id: str, *, with_master: bool = False) -> None:
    """Check a request's files (each one there, and each one recorded, must be there and hash
    to its record) and, `with_master`, the master file, before they are used: a file changed
    on disk refuses the use (`file_tampered`) and the refusal is recorded."""
    folder = request_folder(call.ws, request_id, agency=call.agency)  # unknown: not found
    for role, rel in REQUEST_FILES:
        files.verified(call, role, folder / rel, optional=True)
    if with_master:
        master.verified(call)


def check_rules(
    ws: Workspace,
    env: dict[str, Any],
    items: pa.Table,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Evaluation:
    """The rule set in force, with the workspace's registries, on a request."""
    with ws.engine.connect() as conn:
        registry = reg.read(conn)
    return evaluate(in_force(ws), registry, env, items, con=con)


def processed_outcomes(ws: Workspace, request_id: str) -> Path:
    """The outcomes file of a processed request; refuse clearly when it has none yet."""
    path = outcomes_path(ws, request_id)
    if not path.exists():
        with ws.engine.connect() as conn:
            state = current_state(conn, request_id)
        raise ConflictError(
            f"Request {request_id} is {state}; it has no outcomes yet (run "
            f"'custodes process {request_id}').",
            code="not_processed",
        )
    return path


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One `process` per request at a time (a second one is told so, not half-run)."""
    with open(folder / ".process.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"Request {folder.name} is already being processed; wait for that run to "
                "finish (or run the same command again after it stopped).",
                code="already_processing",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def process(
    call: Call, request_id: str, *, progress: Any = None, engine: str = "duckdb"
) -> Processed:
    """Run (or resume) the pipeline for a received request. `engine`: where the matching and
    deciding run, ``duckdb`` (embedded) or ``spark`` (``CUSTODES_SPARK_MASTER``)."""
    ws = call.ws
    matching.check_engine(engine)
    folder = request_folder(ws, request_id)
    with _exclusive(folder):
        return _process(call, request_id, folder, progress, engine)


def _process(
    call: Call, request_id: str, folder: Path, progress: Any, engine: str = "duckdb"
) -> Processed:
    ws = call.ws
    drop_unrecorded(ws, folder, ("match.items", "match.results", "outcomes"))
    checked(call, request_id)
    mf = master.verified(call)
    env = envelope(folder)
    stages: dict[str, float] = {}
    with ws.engine.connect() as conn:
        state = current_state(conn, request_id)
    if state in ("refused", "withdrawn"):
        raise ConflictError(
            f"Request {request_id} is {state}; nothing to process.", code="illegal_transition"
        )
    rs = in_force(ws)
    if state == "received":
        refused = _stage_rules(call, request_id, folder, env, stages, progress)
        if refused is not None:
            return refused
        state = "checked"
    if state == "checked":
        _stage_matching(call, request_id, folder, env, mf, stages, progress, engine)
        state = "matched"
    if state == "matched":
        _stage_decide(call, request_id, rs, env, stages, progress, engine)
    return summary(ws, request_id, stages)


def _stage_rules(
    call: Call,
    request_id: str,
    folder: Path,
    env: dict[str, Any],
    stages: dict[str, float],
    progress: Any,
) -> Processed | None:
    """Rules before matching: the request is checked, or refused (returned)."""
    t = time.perf_counter()
    ev = check_rules(call.ws, env, load_items(folder))
    stages["rules before matching"] = time.perf_counter() - t
    failing = [v for v in ev.request if v.passed is False]
    reason = "; ".join(f"{v.check} ({v.citation})" for v in failing) or None
    _stage_done(
        call,
        request_id,
        RequestChecked(
            ruleset_sha256=ev.ruleset_sha256,
            refused=ev.refused,
            failing_request_checks=[v.check for v in failing],
            request_checks=[
                {"check": v.check, "source": v.source, "citation": v.citation} for v in ev.request
            ],
            failing_items_by_check={v.check: v.failing for v in ev.item if v.failing},
        ),
        ["refused" if ev.refused else "checked"],
        reason=reason,
    )
    if progress:
        progress("rules", 1, 1)
    if not ev.refused:
        return None
    return Processed(
        request_id,
        "refused",
        True,
        {},
        ev.ruleset_sha256,
        None,
        [{"check": v.check, "citation": v.citation, "sentence": v.sentence} for v in failing],
        {},
        stages,
    )


def _stage_matching(
    call: Call,
    request_id: str,
    folder: Path,
    env: dict[str, Any],
    mf: master.MasterFile,
    stages: dict[str, float],
    progress: Any,
    engine: str,
) -> None:
    """Matching: the request's items linked to the master file."""
    t = time.perf_counter()
    res = matching.link(
        call,
        folder,
        env.get("taxable_periods") or [],
        request_id=request_id,
        checked_master=mf,
        engine=engine,
        progress=progress,
    )
    stages["matching"] = time.perf_counter() - t
    _stage_done(
        call,
        request_id,
        RequestMatched(
            model_sha256=res.model_sha256,
            identified=res.identified,
            review=res.review,
            not_identified=res.not_identified,
        ),
        ["matched"],
    )


def _stage_decide(
    call: Call,
    request_id: str,
    rs: RuleSet,
    env: dict[str, Any],
    stages: dict[str, float],
    progress: Any,
    engine: str,
) -> None:
    """Rules after matching and one outcome per item, recorded with the checks that ran."""
    ws = call.ws
    t = time.perf_counter()
    path = decide(ws, request_id, rs, env, engine=engine)
    stages["rules after matching + decisions"] = time.perf_counter() - t
    counts = _counts(path)
    _stage_done(
        call,
        request_id,
        RequestDecided(
            outcomes_sha256=sha256_file(path),
            counts=counts,
            checks=check_counts(path, ran_checks(ws, env)),
        ),
        ["decided", "in_review"] if counts.get("REVIEW") else ["decided"],
        record=("outcomes", path),
    )
    if progress:
        progress("decide", 1, 1)


def _stage_done(
    call: Call,
    request_id: str,
    what: Declared,
    states: list[str],
    *,
    reason: str | None = None,
    record: tuple[str, Path] | None = None,
) -> None:
    """One transaction: the stage's ledger event (and the file it wrote, `record`), then the
    request's move(s) to `states`."""
    with call.transaction() as conn:
        log.append_one(conn, what, actor=call.actor, request_id=request_id)
        if record:
            files.record(conn, call.ws, call.actor, *record, request_id=request_id)
        for state in states:
            transition(conn, request_id, state, actor=call.actor, reason=reason)


def summary(ws: Workspace, request_id: str, stages: dict[str, float] | None = None) -> Processed:
    with ws.engine.connect() as conn:
        state = current_state(conn, request_id)
    path = processed_outcomes(ws, request_id)
    con = master.connect(ws=ws)
    try:
        row = con.execute(
            f"SELECT any_value(ruleset_sha256), any_value(model_sha256) FROM {parquet(path)}"
        ).fetchall()[0]
        by_check = dict(
            con.execute(
                f"SELECT c, count(*) FROM (SELECT unnest(checks) AS c FROM {parquet(path)} "
                "WHERE outcome IN ('WITHHOLD', 'NOT_CONFIRMED')) GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
        )
    finally:
        master.close(con)
    return Processed(
        request_id, state, False, _counts(path), row[0], row[1], [], by_check, stages or {}
    )


def _counts(path: Path) -> dict[str, int]:
    """Items per outcome, counted by DuckDB (not a Python list of a million outcomes)."""
    con = duck.cursor()
    try:
        found = dict(
            con.execute(f"SELECT outcome, count(*) FROM {parquet(path)} GROUP BY 1").fetchall()
        )
    finally:
        con.close()
    return {o: int(found[o]) for o in OUTCOMES if o in found}


def effective_rules(ws: Workspace, env: dict[str, Any]) -> Effective:
    """The provision a request names, with its registered agreement overlaid (as the
    evaluator overlays it: an agreement for another provision is not applied)."""
    rs = in_force(ws)
    prov = rs.provision(str(env.get("provision")))
    with ws.engine.connect() as conn:
        agreement = reg.read(conn).agreements.get(str(env.get("agreement") or ""))
    if agreement is not None and agreement.provision != prov.id:
        agreement = None
    return overlay(rs, prov, agreement)


def ran_checks(ws: Workspace, env: dict[str, Any]) -> list[dict[str, Any]]:
    """The item checks every item of this request is evaluated on, in order."""
    return vd.ran(effective_rules(ws, env))


def check_counts(path: Path, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each check that ran, with the items it failed on (`failing`; an item in review is not
    counted as failing `identified`: that is the officer's to settle) and the items whose
    outcome rests on it (`outcomes`: what the outcomes' `check` filter finds)."""
    con = duck.cursor()
    try:
        failing = dict(
            con.execute(
                f"""SELECT c, count(*) FROM (SELECT unnest(CASE WHEN outcome = 'REVIEW'
                      THEN list_filter(failed, lambda x: x <> 'identified') ELSE failed END) AS c
                    FROM {parquet(path)}) GROUP BY c"""
            ).fetchall()
        )
        deciding = dict(
            con.execute(
                f"SELECT c, count(*) FROM (SELECT unnest(checks) AS c FROM {parquet(path)}) "
                "GROUP BY c"
            ).fetchall()
        )
    finally:
        con.close()
    return [
        c
        | {"failing": int(failing.get(c["check"], 0)), "outcomes": int(deciding.get(c["check"], 0))}
        for c in checks
    ]


def recorded_checks(ws: Workspace, request_id: str, env: dict[str, Any]) -> list[dict[str, Any]]:
    """The item checks recorded when the request's outcomes were decided (the last
    `request.decided` event); for a request decided before they were recorded, those of the
    rule set in force."""
    with ws.engine.connect() as conn:
        body = conn.execute(
            select(ledger_events.c.body)
            .where(
                ledger_events.c.request_id == request_id,
                ledger_events.c.type == RequestDecided.TYPE,
            )
            .order_by(ledger_events.c.idx.desc())
            .limit(1)
        ).scalar()
    decided = parse_as(RequestDecided, json.loads(body)) if body else None
    checks = decided.checks if decided else None
    if checks:
        return [{k: c.get(k) for k in vd.KEYS} for c in checks]
    return ran_checks(ws, env)


__all__ = [
    "OUTCOMES",
    "RECORD_DEPENDENT",
    "Processed",
    "check_rules",
    "decide",
    "outcomes_path",
    "process",
    "request_folder",
    "summary",
]
