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
import pyarrow.parquet as pq
from sqlalchemy import select

from custodes.decisions import verdicts as vd
from custodes.errors import ConflictError, InputError, NotFound
from custodes.ledger import files, log
from custodes.ledger.events import Event
from custodes.matching import service as matching
from custodes.matching.reasons import meaning
from custodes.records import master
from custodes.records.files import sha256_file
from custodes.requests.format import ENVELOPE_FILE, ITEM_OPTIONAL, load_items
from custodes.requests.lifecycle import current_state, transition
from custodes.rules import registry as reg
from custodes.rules.active import in_force
from custodes.rules.evaluate import Evaluation, evaluate, item_sql
from custodes.rules.provisions import overlay
from custodes.rules.types import Effective, RuleSet
from custodes.store import duck
from custodes.store.sql import ident, literal, parquet
from custodes.store.steps import DuckSteps, SparkSteps, Steps
from custodes.store.tables import ledger_events, recall_items, recalls, review_resolutions
from custodes.workspace import Call, Workspace

OUTCOMES = ("DISCLOSE", "CONFIRM", "NOT_CONFIRMED", "WITHHOLD", "REVIEW")
# Checks whose failure depends on what the records hold: the requester gets one answer for
# all of them, so that a refusal never reveals whether a record exists.
RECORD_DEPENDENT = ("identified", "address-on-record")
ADDRESS_FIELDS = ("last_known_address", "mailing_address")
# Columns of the outcomes table that are evidence for officers, not part of the per-item view.
EVIDENCE_COLUMNS = (
    "review_reasons",
    "failed",
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


def request_folder(ws: Workspace, request_id: str, *, agency: str | None = None) -> Path:
    """A received request's folder; an unknown id (or another agency's) is refused."""
    with ws.engine.connect() as conn:
        current_state(conn, request_id, agency=agency)
    return ws.request_folder(request_id)


def envelope(folder: Path) -> dict[str, Any]:
    return json.loads((folder / ENVELOPE_FILE).read_text(encoding="utf-8-sig"))


def match_results_path(ws: Workspace, request_id: str) -> Path:
    """Where a request's match results are (they may not exist yet)."""
    return ws.request_folder(request_id) / "match" / matching.LINKED


def outcomes_path(ws: Workspace, request_id: str) -> Path:
    return ws.request_folder(request_id) / "decisions" / "outcomes.parquet"


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
        t = time.perf_counter()
        ev = check_rules(ws, env, load_items(folder))
        stages["rules before matching"] = time.perf_counter() - t
        failing = [v for v in ev.request if v.passed is False]
        reason = "; ".join(f"{v.check} ({v.citation})" for v in failing) or None
        _stage_done(
            call,
            request_id,
            "request.checked",
            {
                "ruleset_sha256": ev.ruleset_sha256,
                "refused": ev.refused,
                "failing_request_checks": [v.check for v in failing],
                "request_checks": [
                    {"check": v.check, "source": v.source, "citation": v.citation}
                    for v in ev.request
                ],
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
        path = decide(ws, request_id, rs, engine=engine)
        stages["rules after matching + decisions"] = time.perf_counter() - t
        counts = _counts(path)
        _stage_done(
            call,
            request_id,
            "request.decided",
            {
                "outcomes_sha256": sha256_file(path),
                "counts": counts,
                "checks": check_counts(path, ran_checks(ws, env)),
            },
            ["decided", "in_review"] if counts.get("REVIEW") else ["decided"],
            record=("outcomes", path),
        )
        if progress:
            progress("decide", 1, 1)
    return summary(ws, request_id, stages)


def _stage_done(
    call: Call,
    request_id: str,
    event: str,
    data: dict[str, Any],
    states: list[str],
    *,
    reason: str | None = None,
    record: tuple[str, Path] | None = None,
) -> None:
    """One transaction: the stage's ledger event (and the file it wrote, `record`), then the
    request's move(s) to `states`."""
    with call.transaction() as conn:
        log.append(conn, [Event(event, actor=call.actor, request_id=request_id, data=data)])
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
                ledger_events.c.type == "request.decided",
            )
            .order_by(ledger_events.c.idx.desc())
            .limit(1)
        ).scalar()
    checks = json.loads(body).get("checks") if body else None
    if checks:
        return [{k: c.get(k) for k in vd.KEYS} for c in checks]
    return ran_checks(ws, env)


def field_values(requested: list[str]) -> list[tuple[str, str]]:
    """(field, SQL value over the candidate's person row `p` and last address `last.a`)."""
    address = (
        "concat_ws(', ', concat_ws(' ', last.a.street, last.a.unit), last.a.city, "
        "concat_ws(' ', last.a.state, last.a.zip))"
    )
    out = []
    for f in requested:
        if f in ADDRESS_FIELDS:
            value = address
        elif f == "address_confirmation":
            value = "'yes'"
        elif f == "tin":
            value = "p.tin"
        else:  # return information the master file does not hold
            value = "'(not held in the master file)'"
        out.append((f, value))
    return out


@dataclass
class Plan:
    """What deciding a request's outcomes needs from its rules, computed once, in Python."""

    eff: Effective
    env: dict[str, Any]
    rs: RuleSet
    requested: list[str]
    confirm: bool
    severity: dict[str, str]


def _plan(ws: Workspace, env: dict[str, Any], rs: RuleSet) -> Plan:
    prov = rs.provision(str(env.get("provision")))
    with ws.engine.connect() as conn:
        agreement = reg.read(conn).agreements.get(str(env.get("agreement") or ""))
    if agreement is not None and agreement.provision != prov.id:
        agreement = None
    eff = overlay(rs, prov, agreement)
    requested = [f for f in env.get("fields_requested") or [] if f in eff.provision.releasable]
    sev = {cid: eff.checks[cid].severity for cid in eff.item_requirements}
    return Plan(eff, env, rs, requested, requested == ["address_confirmation"], sev)


def decide(ws: Workspace, request_id: str, rs: RuleSet, *, engine: str = "duckdb") -> Path:
    """Rules after matching and one outcome per item; writes decisions/outcomes.parquet.

    The permitted field values are computed for the items disclosed *and* for those in review
    (from the candidate an officer would identify): an officer's disclosure after review then
    carries the same value a direct disclosure would. Views mask them for anything not
    (effectively) disclosed. The steps run on DuckDB or, `engine` ``spark``, as Spark SQL
    (the same definitions, transpiled; the rule checks compiled for Spark), which writes the
    outcomes file; nothing but a count comes back to this process.
    """
    folder = ws.request_folder(request_id)
    plan = _plan(ws, envelope(folder), rs)
    mf = master.current(ws)
    out = outcomes_path(ws, request_id)
    out.parent.mkdir(mode=0o700, exist_ok=True)
    con = None
    if engine == "spark":
        from custodes.matching.link import spark_session

        st: Steps = SparkSteps(spark_session())
    else:
        con = master.connect(ws=ws)
        st = DuckSteps(con)
    try:
        st.source("raw_src", folder / "items.parquet")
        st.source("linked", matching.linked_path(folder))
        st.source("people", mf.path("people"))
        st.source("addresses", mf.path("addresses"))
        step_items(st, folder / "items.parquet")
        step_item_checks(st, plan)
        step_outcome(st, plan)
        model_sha = st.scalar("SELECT min(model_sha256) FROM linked")
        st.write(outcomes_sql(plan, model_sha), out, "item_id")
    finally:
        if isinstance(st, SparkSteps):
            st.close()
        if con is not None:
            master.close(con)
    return out


def step_items(st: Steps, items_path: Path) -> None:
    """`items`: the request's items, every optional column present, with the match's
    `identified` and `address_on_record` (what the checks after matching read)."""
    names = [n for n in pq.read_schema(items_path).names if n != "_row"]
    missing = [c for c in ITEM_OPTIONAL if c not in names]
    cols = ", ".join(
        [f"i.{ident(n)}" for n in names] + [f"CAST(NULL AS VARCHAR) AS {ident(c)}" for c in missing]
    )
    st.table(
        "items",
        f"""SELECT {cols}, (l.status = 'identified') AS identified,
                   l.address_on_record AS address_on_record
            FROM raw_src i LEFT JOIN linked l ON l.item_id = i.item_id""",
        reused=True,
    )


def step_item_checks(st: Steps, plan: Plan) -> None:
    """`item_checks`: every item check, compiled for the engine's dialect from the rule set's
    one definition; NULL fails closed."""
    available = {*st.columns("items")}
    sqls = item_sql(plan.eff, plan.rs, plan.env, available, st.dialect)
    cols = "".join(f", coalesce(({sql}), FALSE) AS {st.ident(cid)}" for cid, sql in sqls.items())
    try:
        st.table("item_checks", f"SELECT item_id{cols} FROM items", native=True, reused=True)
    except duckdb.Error as exc:
        # The database's message may quote item values: name only the kind of failure.
        raise InputError(
            f"A rule's SQL failed on the items ({type(exc).__name__}); run "
            "'custodes rules lint' on the rule set.",
            code="rule_sql_failed",
        ) from None


def _failing(plan: Plan, kind: str | None, exclude: tuple[str, ...] = ()) -> str:
    ids = [c for c, s in plan.severity.items() if kind in (s, None) and c not in exclude]
    parts = ", ".join(f"CASE WHEN NOT c.{ident(c)} THEN {literal(c)} END" for c in ids)
    return f"list_filter([{parts}]::VARCHAR[], lambda x: x IS NOT NULL)" if ids else "[]::VARCHAR[]"


def step_outcome(st: Steps, plan: Plan) -> None:
    """`o`: each item's outcome from its match and its failing checks."""
    confirm = literal(plan.confirm)
    st.table(
        "o",
        f"""WITH base AS (
              SELECT c.item_id, l.status, l.record_id AS candidate, l.probability,
                     l.margin_bits, l.flags, l.reasons AS match_reasons, l.blocked,
                     {_failing(plan, "withhold", RECORD_DEPENDENT)} AS content_fail,
                     {_failing(plan, "withhold")} AS withhold_fail,
                     {_failing(plan, "review")} AS review_fail,
                     {_failing(plan, None)} AS all_fail
              FROM item_checks c LEFT JOIN linked l ON l.item_id = c.item_id)
            SELECT *, CASE
                WHEN array_length(content_fail) > 0 THEN 'WITHHOLD'
                -- Only what an officer could still disclose goes to review: not an item whose
                -- candidate fails a rule anyway, nor one whose match raised a blocking flag.
                WHEN NOT {confirm}
                     AND array_length(list_filter(withhold_fail, lambda c: c <> 'identified')) > 0
                  THEN 'WITHHOLD'
                WHEN status = 'review' AND coalesce(blocked, FALSE) THEN 'WITHHOLD'
                -- a review-severity rule (the caseload) asks a person to look at a
                -- disclosure the match supports; an item nobody was identified for is withheld
                WHEN status = 'review' OR (array_length(review_fail) > 0 AND status = 'identified')
                  THEN 'REVIEW'
                WHEN list_contains(withhold_fail, 'identified') THEN 'WITHHOLD'
                WHEN {confirm} THEN
                     CASE WHEN array_length(withhold_fail) = 0 THEN 'CONFIRM'
                          ELSE 'NOT_CONFIRMED' END
                WHEN array_length(withhold_fail) > 0 THEN 'WITHHOLD'
                ELSE 'DISCLOSE' END AS outcome
              FROM base""",
        reused=True,
    )


def outcomes_sql(plan: Plan, model_sha: str | None) -> str:
    """The outcomes file's rows: outcome, checks, evidence and the permitted field values."""
    field_cols = "".join(
        f", CASE WHEN o.outcome IN ('DISCLOSE', 'CONFIRM', 'REVIEW') THEN {value} END AS {ident(f)}"
        for f, value in field_values(plan.requested)
    )
    return f"""WITH last AS (
          SELECT record_id, arg_max(struct_pack(street, unit, city, state, zip), tax_year) AS a
          FROM addresses
          WHERE record_id IN (SELECT candidate FROM o
                              WHERE outcome IN ('DISCLOSE', 'CONFIRM', 'REVIEW'))
          GROUP BY record_id)
        SELECT o.item_id, o.outcome,
               CASE WHEN o.outcome = 'REVIEW'
                    THEN list_concat(list_filter(withhold_fail,
                                                 lambda c: c <> 'identified'), review_fail)
                    ELSE withhold_fail END AS checks,
               CASE WHEN o.outcome = 'REVIEW' THEN list_concat(match_reasons, review_fail)
                    ELSE []::VARCHAR[] END AS review_reasons,
               -- every check that ran and failed, whether the outcome rests on it or not
               o.all_fail AS failed,
               CASE WHEN o.outcome IN ('DISCLOSE', 'CONFIRM', 'NOT_CONFIRMED')
                    THEN o.candidate END AS record_id,
               o.candidate, o.probability, o.margin_bits, o.flags,
               {literal(plan.rs.sha256)} AS ruleset_sha256,
               {literal(model_sha)} AS model_sha256
               {field_cols}
        FROM o LEFT JOIN last ON last.record_id = o.candidate
        LEFT JOIN people p ON p.record_id = o.candidate"""


def released_fields(table: pa.Table) -> list[str]:
    """The permitted-field columns of an outcomes table."""
    fixed = set(EVIDENCE_COLUMNS) | set(VIEW_COLUMNS)
    return [c for c in table.column_names if c not in fixed]


def effective_outcomes(
    ws: Workspace,
    request_id: str,
    only: tuple[str, ...] | None = None,
    *,
    item: str | None = None,
    check: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> pa.Table:
    """Outcomes with officers' review resolutions applied (REVIEW → DISCLOSE with the record
    the officer identified, or WITHHOLD), field values kept only for what is released, in item
    order. `only` keeps the rows with those (effective) outcomes, `item` one item, `check` the
    items that failed that check; `offset`/`limit` a page. The filters run in the query (with
    the values bound as parameters), so a page of a million-item request reads no more."""
    table, _ = _effective(ws, request_id, only, item, check, offset, limit, count=False)
    return table


def effective_page(
    ws: Workspace,
    request_id: str,
    only: tuple[str, ...] | None,
    check: str | None,
    offset: int,
    limit: int,
) -> tuple[pa.Table, int]:
    """One page of `effective_outcomes`, and how many rows the filters keep in all."""
    return _effective(ws, request_id, only, None, check, offset, limit, count=True)


def deciding_checks(ws: Workspace, request_id: str) -> dict[str, int]:
    """How many items each check decided now (the checks an item's outcome rests on, the
    officer's review included): what the outcomes can be filtered by, with its count."""
    table, _ = _effective(ws, request_id, None, None, None, 0, None, count=False, by_check=True)
    return dict(zip(table["check"].to_pylist(), table["items"].to_pylist(), strict=True))


def _effective(
    ws: Workspace,
    request_id: str,
    only: tuple[str, ...] | None,
    item: str | None,
    check: str | None,
    offset: int,
    limit: int | None,
    *,
    count: bool,
    by_check: bool = False,
) -> tuple[pa.Table, int]:
    path = processed_outcomes(ws, request_id)
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(
                review_resolutions.c.item_id,
                review_resolutions.c.decision,
                review_resolutions.c.record_id,
            ).where(review_resolutions.c.request_id == request_id)
        ).all()
    res = pa.table(
        {
            "item_id": [r[0] for r in rows],
            "decision": [r[1] for r in rows],
            "named": [r[2] for r in rows],
        },
        schema=pa.schema(
            [("item_id", pa.string()), ("decision", pa.string()), ("named", pa.string())]
        ),
    )
    schema = pq.read_schema(path)
    fields = released_fields(schema.empty_table())
    # An officer's withholding is among the checks the item's outcome rests on.
    review_check = literal(vd.REVIEW_CHECK)
    with_review = "".join(
        f""", CASE WHEN o.outcome = 'REVIEW' AND r.decision = 'WITHHOLD'
                  THEN list_append(o.{c}, {review_check}) ELSE o.{c} END AS {c}"""
        for c in ("checks", "failed")
        if c in schema.names
    )
    masked = "".join(
        f", CASE WHEN outcome IN ('DISCLOSE', 'CONFIRM') THEN {ident(f)} END AS {ident(f)}"
        for f in fields
    )
    where, params = [], []
    if only:
        where.append("outcome IN (" + ", ".join(literal(o) for o in only if o in OUTCOMES) + ")")
    if item is not None:
        where.append("item_id = ?")
        params.append(item)
    if check is not None:
        where.append("list_contains(checks, ?)")
        params.append(check)
    keep = ("WHERE " + " AND ".join(where)) if where else ""
    page = ""
    if limit is not None:
        page = "LIMIT ? OFFSET ?"
        params += [limit, offset]
    con = duck.cursor()  # a small interactive read
    try:
        con.register("res", res)
        kept = f"""WITH e AS (
                SELECT o.* REPLACE (
                  CASE WHEN o.outcome = 'REVIEW' AND r.decision IS NOT NULL THEN r.decision
                       ELSE o.outcome END AS outcome,
                  CASE WHEN o.outcome = 'REVIEW' AND r.decision = 'DISCLOSE' THEN r.named
                       ELSE o.record_id END AS record_id
                  {with_review})
                FROM {parquet(path)} o LEFT JOIN res r USING (item_id)),
                kept AS (SELECT * FROM e {keep})"""
        if by_check:
            counted = con.sql(
                f"""{kept} SELECT c AS "check", count(*) AS items
                    FROM (SELECT unnest(checks) AS c FROM kept) GROUP BY c ORDER BY c""",
                params=params,
            ).to_arrow_table()
            return counted, counted.num_rows
        table = con.sql(
            f"""{kept}
                SELECT * EXCLUDE ({", ".join(ident(f) for f in fields) or "item_id"})
                       {"" if fields else ", item_id"} {masked}
                FROM kept ORDER BY item_id {page}""",
            params=params,
        ).to_arrow_table()
        total = table.num_rows
        if count:
            filters = params[: len(params) - 2] if limit is not None else params
            total = con.execute(f"{kept} SELECT count(*) FROM kept", filters).fetchone()[0]  # type: ignore[index]
        return table, total
    finally:
        con.close()


def explain(
    ws: Workspace, request_id: str, item_id: str, *, agency: str | None = None
) -> dict[str, Any]:
    """Why an item got its outcome: every check with its citation, and the match evidence."""
    folder = request_folder(ws, request_id, agency=agency)
    env = envelope(folder)
    rows = effective_outcomes(ws, request_id, item=item_id).to_pylist()
    if not rows:
        raise NotFound(f"Request {request_id} has no such item.", code="unknown_item")
    row = rows[0]
    match = next(
        r
        for r in pq.read_table(matching.linked_path(folder)).to_pylist()
        if r["item_id"] == item_id
    )
    with ws.engine.connect() as conn:
        resolution = conn.execute(
            select(review_resolutions).where(
                review_resolutions.c.request_id == request_id,
                review_resolutions.c.item_id == item_id,
            )
        ).first()
        recall = conn.execute(
            select(recalls.c.id, recalls.c.reason, recalls.c.at)
            .join(recall_items, recall_items.c.recall_id == recalls.c.id)
            .where(recall_items.c.request_id == request_id, recall_items.c.item_id == item_id)
        ).first()
    settled = dict(resolution._mapping) if resolution else None
    checks = vd.verdicts(recorded_checks(ws, request_id, env), row, settled)
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
        | {
            "weights": {
                f: match[f"w_{f}"] for f in ("first", "middle", "last", "dob", "tin", "address")
            }
        }
        | {
            "meaning": {c: meaning(c) for c in [*(match["reasons"] or []), *(match["flags"] or [])]}
        },
        "resolution": settled,
        # A disclosure found improper after release: the recall that covers it.
        "recall": {"recall_id": recall.id, "reason": recall.reason, "at": recall.at}
        if recall
        else None,
        "ruleset_sha256": row["ruleset_sha256"],
        "model_sha256": row["model_sha256"],
    }


def view(ws: Workspace, request_id: str) -> pa.Table:
    """The officers' per-item view: item id, outcome, checks, record id, released fields."""
    return _officers(effective_outcomes(ws, request_id))


def view_page(
    ws: Workspace,
    request_id: str,
    *,
    outcome: str | None,
    check: str | None,
    offset: int,
    limit: int,
) -> tuple[pa.Table, int]:
    """A page of the officers' view, filtered by outcome and failing check, and the total."""
    table, total = effective_page(
        ws, request_id, (outcome,) if outcome else None, check, offset, limit
    )
    return _officers(table), total


def _officers(table: pa.Table) -> pa.Table:
    return table.select([c for c in table.column_names if c not in EVIDENCE_COLUMNS])


__all__ = [
    "OUTCOMES",
    "RECORD_DEPENDENT",
    "Processed",
    "check_rules",
    "decide",
    "effective_outcomes",
    "explain",
    "outcomes_path",
    "process",
    "request_folder",
    "summary",
    "view",
    "view_page",
]
