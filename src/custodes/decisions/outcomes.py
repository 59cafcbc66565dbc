"""One outcome per item: the rules after matching and the outcome, as named SQL steps
(`items` → `item_checks` → `o` → the outcomes file) that run on DuckDB or Spark.

Outcomes:

- ``DISCLOSE``: every rule passes and the person is identified; carries exactly the fields the
  provision permits *and* the request asked for;
- ``CONFIRM`` / ``NOT_CONFIRMED``: for address-confirmation requests;
- ``WITHHOLD``: with the failing check ids;
- ``REVIEW``: the match (or a review-severity check) needs an officer, with why.

Every outcome records the rule-set hash and the model hash it was made under.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from custodes.matching import runs as matching
from custodes.records import master
from custodes.requests.format import ITEM_OPTIONAL
from custodes.rules import registry as reg
from custodes.rules.evaluate import item_sql, rule_sql_failed
from custodes.rules.provisions import overlay
from custodes.rules.types import Effective, RuleSet
from custodes.store.sql import ident, literal
from custodes.store.steps import DuckSteps, SparkSteps, Steps
from custodes.workspace import Workspace

OUTCOMES = ("DISCLOSE", "CONFIRM", "NOT_CONFIRMED", "WITHHOLD", "REVIEW")


# Checks whose failure depends on what the records hold: the requester gets one answer for
# all of them, so that a refusal never reveals whether a record exists.
RECORD_DEPENDENT = ("identified", "address-on-record")


ADDRESS_FIELDS = ("last_known_address", "mailing_address")


def outcomes_path(ws: Workspace, request_id: str) -> Path:
    return ws.request_folder(request_id) / "decisions" / "outcomes.parquet"


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


def decide(
    ws: Workspace, request_id: str, rs: RuleSet, env: dict[str, Any], *, engine: str = "duckdb"
) -> Path:
    """Rules after matching and one outcome per item; writes decisions/outcomes.parquet.

    The permitted field values are computed for the items disclosed *and* for those in review
    (from the candidate an officer would identify): an officer's disclosure after review then
    carries the same value a direct disclosure would. Views mask them for anything not
    (effectively) disclosed. The steps run on DuckDB or, `engine` ``spark``, as Spark SQL
    (the same definitions, transpiled; the rule checks compiled for Spark), which writes the
    outcomes file; nothing but a count comes back to this process. `env`: the request's
    envelope.
    """
    folder = ws.request_folder(request_id)
    plan = _plan(ws, env, rs)
    mf = master.current(ws)
    out = outcomes_path(ws, request_id)
    out.parent.mkdir(mode=0o700, exist_ok=True)
    con = None
    if engine == "spark":
        from custodes.matching.backends import spark_session

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
        raise rule_sql_failed(exc) from None


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
