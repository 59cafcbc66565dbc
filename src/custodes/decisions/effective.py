"""A processed request's outcomes as they stand now: officers' review resolutions applied,
field values kept only for what is released; the officers' view and why an item got its
outcome (`explain`)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from custodes.decisions import verdicts as vd
from custodes.decisions.outcomes import OUTCOMES
from custodes.decisions.pipeline import (
    envelope,
    processed_outcomes,
    recorded_checks,
    request_folder,
)
from custodes.errors import NotFound
from custodes.matching import runs as matching
from custodes.matching.reasons import meaning
from custodes.store import duck
from custodes.store.sql import ident, literal, parquet
from custodes.store.tables import recall_items, recalls, review_resolutions
from custodes.workspace import Workspace

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
    res = _resolutions(ws, request_id)
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
    keep, page, params = _filters(only, item, check, offset, limit)
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


def _resolutions(ws: Workspace, request_id: str) -> pa.Table:
    """The officers' review resolutions of a request: item, decision, the record named."""
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(
                review_resolutions.c.item_id,
                review_resolutions.c.decision,
                review_resolutions.c.record_id,
            ).where(review_resolutions.c.request_id == request_id)
        ).all()
    return pa.table(
        {
            "item_id": [r[0] for r in rows],
            "decision": [r[1] for r in rows],
            "named": [r[2] for r in rows],
        },
        schema=pa.schema(
            [("item_id", pa.string()), ("decision", pa.string()), ("named", pa.string())]
        ),
    )


def _filters(
    only: tuple[str, ...] | None,
    item: str | None,
    check: str | None,
    offset: int,
    limit: int | None,
) -> tuple[str, str, list[Any]]:
    """The WHERE clause (values bound as parameters), the page clause, and the parameters."""
    where: list[str] = []
    params: list[Any] = []
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
    return keep, page, params


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
