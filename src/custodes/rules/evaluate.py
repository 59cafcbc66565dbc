"""The evaluator: request-level predicates, then every item check in one DuckDB pass.

Item checks are compiled from the rule set for the engine that runs them (`rules.checks`); a
NULL result counts as a failure, so missing data fails closed. Every verdict carries the rule
set's hash. The evaluator takes the envelope and the items as data: reading a request's files
is intake's job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from custodes.errors import InputError
from custodes.records.schema import US_STATES
from custodes.rules.checks import compile_check
from custodes.rules.predicates import PREDICATES, Context
from custodes.rules.provisions import load, overlay
from custodes.rules.types import Check, Effective, Registry, RuleSet
from custodes.store import duck
from custodes.store.sql import ident

MATCH_COLUMNS = ("identified", "address_on_record")
EXAMPLES = 5


@dataclass
class Verdict:
    check: str
    level: str
    severity: str
    phase: str
    citation: str
    sentence: str
    source: str
    passed: bool | None  # None: not evaluated yet (after matching)
    failing: int = 0
    examples: list[str] = field(default_factory=list)
    detail: str | None = None


@dataclass
class Evaluation:
    provision: str
    ruleset: str
    ruleset_sha256: str
    agreement: str | None
    items: int
    refused: bool
    request: list[Verdict]
    item: list[Verdict]
    disclaimer: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _verdict(c: Check, passed: bool | None, **kw: Any) -> Verdict:
    return Verdict(
        c.id, c.level, c.severity, c.phase, c.citation, c.sentence, c.source, passed, **kw
    )


def rule_sql_failed(exc: Exception) -> InputError:
    """The error for a rule's SQL that failed on the items: names only the kind of failure
    (the database's message may quote item values)."""
    return InputError(
        f"A rule's SQL failed on the items ({type(exc).__name__}); run "
        "'custodes rules lint' on the rule set.",
        code="rule_sql_failed",
    )


def item_sql(
    eff: Effective,
    rs: RuleSet,
    envelope: dict[str, Any],
    available: set[str],
    dialect: str = "duckdb",
) -> dict[str, str]:
    """The SQL condition of every item check that can run on the available columns, compiled
    for `dialect` with the rule set's and the envelope's parameters bound."""
    params = dict(eff.parameters) | {
        "placeholder_streets": rs.placeholders.get("streets", []),
        "placeholder_cities": rs.placeholders.get("cities", []),
        "placeholder_zips": rs.placeholders.get("zips", []),
        "states": list(US_STATES),
        "officials": [str(o.get("id")) for o in envelope.get("officials") or []],
        "envelope_has_periods": bool(envelope.get("taxable_periods")),
        "envelope_has_reason": bool(str(envelope.get("reason") or "").strip()),
    }
    out = {}
    for cid in eff.item_requirements:
        c = eff.checks[cid]
        if c.phase == "after_matching" and not set(MATCH_COLUMNS) <= available:
            continue
        out[cid] = compile_check(c.sql or "FALSE", params, dialect)
    return out


def evaluate(
    rs: RuleSet | None,
    registry: Registry,
    env: dict[str, Any],
    table: pa.Table,
    *,
    today: dt.date | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Evaluation:
    """Evaluate a request: its envelope and its items (which may carry the match columns,
    after matching)."""
    rs = rs or load()
    today = today or dt.date.today()
    pid = env.get("provision")
    prov = rs.provisions.get(pid) if isinstance(pid, str) else None
    agreement = None
    if prov is not None and env.get("agreement"):
        agreement = registry.agreements.get(env["agreement"])
        if agreement is not None and agreement.provision != prov.id:
            agreement = None  # reported by agreement-registered
    eff = overlay(rs, prov, agreement) if prov is not None else None
    ctx = Context(env, eff, rs, registry, table.num_rows, today)
    req_ids = eff.request_requirements if eff else ["basis-known"]
    checks = eff.checks if eff else rs.checks
    request_verdicts = []
    for cid in req_ids:
        c = checks[cid]
        passed, detail = PREDICATES[c.predicate or ""](ctx)
        request_verdicts.append(_verdict(c, passed, detail=detail))
        if cid == "basis-known" and not passed:
            break
    item_verdicts: list[Verdict] = []
    if eff is not None:
        item_verdicts = _items(eff, rs, env, table, con)
    refused = any(v.passed is False and v.severity == "refuse" for v in request_verdicts)
    return Evaluation(
        str(pid),
        rs.name,
        rs.sha256,
        agreement.id if agreement else None,
        table.num_rows,
        refused,
        request_verdicts,
        item_verdicts,
        rs.disclaimer,
    )


def _items(
    eff: Effective,
    rs: RuleSet,
    env: dict[str, Any],
    table: pa.Table,
    con: duckdb.DuckDBPyConnection | None,
) -> list[Verdict]:
    own = con is None
    con = con or duck.bulk()  # the bulk settings: memory limit, spill folder
    try:
        con.register("items", table)
        sqls = item_sql(eff, rs, env, set(table.column_names))
        if sqls:
            cols = ", ".join(
                f"coalesce(({sql}), FALSE) AS {ident(cid)}" for cid, sql in sqls.items()
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE item_checks AS SELECT item_id, {cols} FROM items"
            )
            counts = con.execute(
                "SELECT "
                + ", ".join(f"count(*) FILTER (NOT {ident(cid)})" for cid in sqls)
                + " FROM item_checks"
            ).fetchall()[0]
        out = []
        for cid in eff.item_requirements:
            c = eff.checks[cid]
            if cid not in sqls:
                out.append(_verdict(c, None, detail="evaluated after matching"))
                continue
            n = counts[list(sqls).index(cid)]
            examples = (
                [
                    r[0]
                    for r in con.execute(
                        f"SELECT item_id FROM item_checks WHERE NOT {ident(cid)} "
                        f"ORDER BY item_id LIMIT {EXAMPLES}"
                    ).fetchall()
                ]
                if n
                else []
            )
            out.append(_verdict(c, n == 0, failing=n, examples=examples))
        return out
    except duckdb.Error as exc:
        raise rule_sql_failed(exc) from None
    finally:
        if own:
            duck.close(con)
