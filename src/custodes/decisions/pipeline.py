"""The pipeline: rules before matching, matching, rules after matching, one outcome per item.

Outcomes:

- ``DISCLOSE``: every rule passes and the person is identified; carries exactly the fields the
  provision permits *and* the request asked for;
- ``CONFIRM`` / ``NOT_CONFIRMED``: for address-confirmation requests;
- ``WITHHOLD``: with the failing check ids;
- ``REVIEW``: the match (or a review-severity check) needs an officer, with why.

Each stage writes its files atomically before the request's state moves, and every stage is
deterministic, so a killed ``process`` run resumes from the state it reached and gives identical
outcomes. Every outcome records the rule-set hash and the model hash it was made under.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from custodes.errors import ConflictError, InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.matching import service as matching
from custodes.records import master
from custodes.records.files import sha256_file
from custodes.requests.format import ENVELOPE_FILE
from custodes.requests.lifecycle import current_state, transition
from custodes.rules.active import in_force
from custodes.rules.evaluate import Evaluation, evaluate, load_items
from custodes.rules.registry import Registry
from custodes.rules.ruleset import RuleSet, overlay
from custodes.store.tables import review_resolutions
from custodes.workspace import Workspace

OUTCOMES = ("DISCLOSE", "CONFIRM", "NOT_CONFIRMED", "WITHHOLD", "REVIEW")
# Checks whose failure depends on what the records hold: the requester gets one answer for
# all of them, so that a refusal never reveals whether a record exists.
RECORD_DEPENDENT = ("identified", "address-on-record")
ADDRESS_FIELDS = ("last_known_address", "mailing_address")
# Columns of the outcomes table that are evidence for officers, not part of the per-item view.
EVIDENCE_COLUMNS = (
    "review_reasons",
    "candidate",
    "probability",
    "margin_bits",
    "flags",
    "ruleset_sha256",
    "model_sha256",
)
VIEW_COLUMNS = ("item_id", "outcome", "checks", "record_id")


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


def _folder(ws: Workspace, request_id: str) -> tuple[Path, dict[str, Any]]:
    folder = matching.request_folder(ws, request_id)
    env = json.loads((folder / ENVELOPE_FILE).read_text(encoding="utf-8"))
    return folder, env


def outcomes_path(ws: Workspace, request_id: str) -> Path:
    return ws.home / "requests" / request_id / "decisions" / "outcomes.parquet"


def _rules(
    ws: Workspace,
    folder: Path,
    items: pa.Table | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Evaluation:
    with ws.engine.connect() as conn:
        registry = Registry.read(conn)
    return evaluate(in_force(ws), registry, folder, items=items, con=con)


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


def process(
    ws: Workspace,
    request_id: str,
    *,
    actor: str | None = None,
    progress: Any = None,
) -> Processed:
    """Run (or resume) the pipeline for a received request."""
    folder, _ = _folder(ws, request_id)
    stages: dict[str, float] = {}
    with ws.engine.connect() as conn:
        state = current_state(conn, request_id)
    if state in ("refused", "withdrawn"):
        raise ConflictError(
            f"Request {request_id} is {state}; nothing to process.", code="illegal_transition"
        )
    rs = in_force(ws)
    if state == "received":
        t = time.perf_counter()
        ev = _rules(ws, folder)
        stages["rules before matching"] = time.perf_counter() - t
        failing = [v for v in ev.request if v.passed is False]
        reason = "; ".join(f"{v.check} ({v.citation})" for v in failing) or None
        _stage_done(
            ws,
            request_id,
            actor,
            "request.checked",
            {
                "ruleset_sha256": ev.ruleset_sha256,
                "refused": ev.refused,
                "failing_request_checks": [v.check for v in failing],
                "failing_items_by_check": {v.check: v.failing for v in ev.item if v.failing},
            },
            ["refused" if ev.refused else "checked"],
            reason=reason,
        )
        if progress:
            progress("rules", 1, 1)
        if ev.refused:
            return Processed(
                request_id,
                "refused",
                True,
                {},
                ev.ruleset_sha256,
                None,
                [
                    {"check": v.check, "citation": v.citation, "sentence": v.sentence}
                    for v in failing
                ],
                {},
                stages,
            )
        state = "checked"
    if state == "checked":
        t = time.perf_counter()
        res = matching.link(ws, request_id, progress=progress)
        stages["matching"] = time.perf_counter() - t
        _stage_done(
            ws,
            request_id,
            actor,
            "request.matched",
            {
                "model_sha256": res.model_sha256,
                "identified": res.identified,
                "review": res.review,
                "not_identified": res.not_identified,
            },
            ["matched"],
        )
        state = "matched"
    if state == "matched":
        t = time.perf_counter()
        path = decide(ws, request_id, rs)
        stages["rules after matching + decisions"] = time.perf_counter() - t
        counts = _counts(path)
        _stage_done(
            ws,
            request_id,
            actor,
            "request.decided",
            {"outcomes_sha256": sha256_file(path), "counts": counts},
            ["decided", "in_review"] if counts.get("REVIEW") else ["decided"],
        )
        if progress:
            progress("decide", 1, 1)
    return summary(ws, request_id, stages)


def _stage_done(
    ws: Workspace,
    request_id: str,
    actor: str | None,
    event: str,
    data: dict[str, Any],
    states: list[str],
    *,
    reason: str | None = None,
) -> None:
    """One transaction: the stage's ledger event, then the request's move(s) to `states`."""
    with ws.engine.begin() as conn:
        log.append(conn, [Event(event, actor=actor, request_id=request_id, data=data)])
        for state in states:
            transition(conn, request_id, state, actor=actor, reason=reason)


def summary(ws: Workspace, request_id: str, stages: dict[str, float] | None = None) -> Processed:
    with ws.engine.connect() as conn:
        state = current_state(conn, request_id)
    path = processed_outcomes(ws, request_id)
    con = duckdb.connect()
    try:
        row = con.execute(
            f"SELECT any_value(ruleset_sha256), any_value(model_sha256) FROM read_parquet('{path}')"
        ).fetchall()[0]
        by_check = dict(
            con.execute(
                f"SELECT c, count(*) FROM (SELECT unnest(checks) AS c FROM read_parquet('{path}') "
                "WHERE outcome IN ('WITHHOLD', 'NOT_CONFIRMED')) GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        )
    finally:
        con.close()
    return Processed(
        request_id, state, False, _counts(path), row[0], row[1], [], by_check, stages or {}
    )


def _counts(path: Path) -> dict[str, int]:
    t = pq.read_table(path, columns=["outcome"])["outcome"].to_pylist()
    return {o: t.count(o) for o in OUTCOMES if o in t}


def decide(ws: Workspace, request_id: str, rs: RuleSet) -> Path:
    """Rules after matching and one outcome per item; writes decisions/outcomes.parquet."""
    folder, env = _folder(ws, request_id)
    linked = matching.linked_path(ws, request_id)
    mf = master.current(ws)
    con = master.connect()
    try:
        items = load_items(folder, env)
        con.register("raw_items", items)
        match = pq.read_table(linked)
        con.register("linked", match)
        with_match = con.sql(
            """SELECT i.*, (l.status = 'identified') AS identified,
                      l.address_on_record AS address_on_record
               FROM raw_items i LEFT JOIN linked l ON l.item_id = i.item_id"""
        ).to_arrow_table()
        ev = _rules(ws, folder, items=with_match, con=con)
        prov = rs.provisions[ev.provision]
        agreement = None
        if ev.agreement:
            with ws.engine.connect() as conn:
                agreement = Registry.read(conn).agreements.get(ev.agreement)
        eff = overlay(rs, prov, agreement)
        requested = [f for f in env.get("fields_requested") or [] if f in eff.provision.releasable]
        confirm = requested == ["address_confirmation"]
        sev = {cid: eff.checks[cid].severity for cid in eff.item_requirements}

        def failing(kind: str, exclude: tuple[str, ...] = ()) -> str:
            ids = [c for c, s in sev.items() if s == kind and c not in exclude]
            parts = ", ".join(f"""CASE WHEN NOT c."{c}" THEN '{c}' END""" for c in ids)
            return (
                f"list_filter([{parts}]::VARCHAR[], lambda x: x IS NOT NULL)"
                if ids
                else ("[]::VARCHAR[]")
            )

        address = (
            "concat_ws(', ', concat_ws(' ', last.a.street, last.a.unit), last.a.city, "
            "concat_ws(' ', last.a.state, last.a.zip))"
        )
        field_cols = []
        for f in requested:
            if f in ADDRESS_FIELDS:
                value = address
            elif f == "address_confirmation":
                value = "'yes'"
            elif f == "tin":
                value = "p.tin"
            else:  # return information the master file does not hold
                value = "'(not held in the master file)'"
            field_cols.append(
                f"CASE WHEN outcome IN ('DISCLOSE', 'CONFIRM') THEN {value} END AS \"{f}\""
            )
        people, addresses = mf.path("people"), mf.path("addresses")
        out = outcomes_path(ws, request_id)
        out.parent.mkdir(exist_ok=True)
        tmp = out.with_suffix(".tmp")
        con.execute(
            f"""COPY (
            WITH base AS (
              SELECT c.item_id, l.status, l.record_id AS candidate, l.probability,
                     l.margin_bits, l.flags, l.reasons AS match_reasons,
                     {failing("withhold", RECORD_DEPENDENT)} AS content_fail,
                     {failing("withhold")} AS withhold_fail,
                     {failing("review")} AS review_fail
              FROM item_checks c LEFT JOIN linked l ON l.item_id = c.item_id),
            o AS (
              SELECT *, CASE
                WHEN len(content_fail) > 0 THEN 'WITHHOLD'
                WHEN status = 'review' OR len(review_fail) > 0 THEN 'REVIEW'
                WHEN list_contains(withhold_fail, 'identified') THEN 'WITHHOLD'
                WHEN {str(confirm).upper()} THEN
                     CASE WHEN len(withhold_fail) = 0 THEN 'CONFIRM' ELSE 'NOT_CONFIRMED' END
                WHEN len(withhold_fail) > 0 THEN 'WITHHOLD'
                ELSE 'DISCLOSE' END AS outcome
              FROM base),
            last AS (
              SELECT record_id, arg_max(struct_pack(street, unit, city, state, zip), tax_year) AS a
              FROM read_parquet('{addresses}')
              WHERE record_id IN (SELECT candidate FROM o WHERE outcome IN ('DISCLOSE','CONFIRM'))
              GROUP BY record_id)
            SELECT o.item_id, o.outcome,
                   CASE WHEN o.outcome = 'REVIEW'
                        THEN list_concat(list_filter(withhold_fail,
                                                     lambda c: c <> 'identified'), review_fail)
                        ELSE withhold_fail END AS checks,
                   CASE WHEN o.outcome = 'REVIEW' THEN list_concat(match_reasons, review_fail)
                        ELSE []::VARCHAR[] END AS review_reasons,
                   CASE WHEN o.outcome IN ('DISCLOSE', 'CONFIRM', 'NOT_CONFIRMED')
                        THEN o.candidate END AS record_id,
                   o.candidate, o.probability, o.margin_bits, o.flags,
                   '{ev.ruleset_sha256}' AS ruleset_sha256,
                   (SELECT any_value(model_sha256) FROM linked) AS model_sha256
                   {"," if field_cols else ""} {", ".join(field_cols)}
            FROM o LEFT JOIN last ON last.record_id = o.candidate
            LEFT JOIN read_parquet('{people}') p ON p.record_id = o.candidate
            ORDER BY o.item_id
            ) TO '{tmp}' (FORMAT parquet)"""
        )
        os.replace(tmp, out)
    finally:
        con.close()
    return out


def effective_outcomes(
    ws: Workspace, request_id: str, only: tuple[str, ...] | None = None
) -> pa.Table:
    """Outcomes with officers' review resolutions applied (REVIEW → DISCLOSE or WITHHOLD);
    `only` keeps the rows with those (effective) outcomes."""
    path = processed_outcomes(ws, request_id)
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(review_resolutions.c.item_id, review_resolutions.c.decision).where(
                review_resolutions.c.request_id == request_id
            )
        ).all()
    res = pa.table(
        {"item_id": [r[0] for r in rows], "decision": [r[1] for r in rows]},
        schema=pa.schema([("item_id", pa.string()), ("decision", pa.string())]),
    )
    con = duckdb.connect()
    try:
        con.register("res", res)
        where = (
            "WHERE outcome IN (" + ", ".join(f"'{o}'" for o in only if o in OUTCOMES) + ")"
            if only
            else ""
        )
        return con.sql(
            f"""SELECT * FROM (
                SELECT o.* REPLACE (
                  CASE WHEN o.outcome = 'REVIEW' AND r.decision IS NOT NULL THEN r.decision
                       ELSE o.outcome END AS outcome,
                  CASE WHEN o.outcome = 'REVIEW' AND r.decision = 'DISCLOSE' THEN o.candidate
                       ELSE o.record_id END AS record_id)
                FROM read_parquet('{path}') o LEFT JOIN res r USING (item_id)) {where}
                ORDER BY item_id"""
        ).to_arrow_table()
    finally:
        con.close()


def export_outcomes(ws: Workspace, request_id: str, out: Path) -> dict[str, Any]:
    """The officers' per-item view: item_id, outcome, checks, record_id, one column per field
    that would be released. CSV, Parquet or JSON by the file's extension."""
    kind = out.suffix.lower()
    if kind not in (".csv", ".parquet", ".json"):
        raise InputError(
            f"{out.name}: use a .csv, .parquet or .json file name.", code="unsupported_file_type"
        )
    table = effective_outcomes(ws, request_id)
    table = table.select([c for c in table.column_names if c not in EVIDENCE_COLUMNS])
    con = duckdb.connect()
    try:
        con.register("t", table)
        if kind == ".csv":
            con.execute(f"""COPY (SELECT * REPLACE (array_to_string(checks, ';') AS checks)
                            FROM t) TO '{out}' (HEADER, DELIMITER ',')""")
        elif kind == ".parquet":
            con.execute(f"COPY t TO '{out}' (FORMAT parquet)")
        else:
            out.write_text(
                json.dumps(con.sql("SELECT * FROM t").to_arrow_table().to_pylist(), indent=1) + "\n"
            )
    finally:
        con.close()
    return {"request_id": request_id, "rows": table.num_rows, "out": str(out)}


def explain(ws: Workspace, request_id: str, item_id: str) -> dict[str, Any]:
    """Why an item got its outcome: every check with its citation, and the match evidence."""
    _, env = _folder(ws, request_id)
    table = effective_outcomes(ws, request_id)
    rows = [r for r in table.to_pylist() if r["item_id"] == item_id]
    if not rows:
        raise InputError(f"Request {request_id} has no item '{item_id}'.", code="unknown_item")
    row = rows[0]
    match = next(
        r
        for r in pq.read_table(matching.linked_path(ws, request_id)).to_pylist()
        if r["item_id"] == item_id
    )
    rs = in_force(ws)
    prov = rs.provisions[env["provision"]]
    failing = set(row["checks"])
    checks = []
    for cid in prov.item_requirements:
        c = rs.checks[cid]
        checks.append(
            {
                "check": cid,
                "severity": c.severity,
                "citation": c.citation,
                "sentence": c.sentence,
                # In review, whether the person is identified is the officer's to settle.
                "passed": None
                if row["outcome"] == "REVIEW" and cid == "identified"
                else cid not in failing,
            }
        )
    with ws.engine.connect() as conn:
        resolution = conn.execute(
            select(review_resolutions).where(
                review_resolutions.c.request_id == request_id,
                review_resolutions.c.item_id == item_id,
            )
        ).first()
    return {
        "request_id": request_id,
        "item_id": item_id,
        "outcome": row["outcome"],
        "failing_checks": row["checks"],
        "review_reasons": row["review_reasons"],
        "checks": checks,
        "match": {
            k: match[k]
            for k in (
                "status",
                "record_id",
                "probability",
                "margin_bits",
                "runner_up_record_id",
                "runner_up_probability",
                "gate",
                "flags",
                "reasons",
                "address_on_record",
                "address_on_record_in_periods",
            )
        }
        | {"weights": {f: match[f"w_{f}"] for f in ("first", "last", "dob", "tin", "address")}},
        "resolution": dict(resolution._mapping) if resolution else None,
        "ruleset_sha256": row["ruleset_sha256"],
        "model_sha256": row["model_sha256"],
    }
