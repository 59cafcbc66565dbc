"""The report on one request: outcomes by check with citations, the match-probability
histogram, the review rate and how reviews were resolved, the rule-of-three bound on wrong-person
identifications, time per stage, and who did what.

Counts come from the request's ledger events (`request.checked`, `request.decided`,
`review.resolved`, `disclosure`, the state transitions with their times and actors); the
histogram from the request's match results, which the ledger commits to by hash.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from custodes.decisions.pipeline import OUTCOMES, match_results_path
from custodes.reports.document import Chart, Document, Table
from custodes.reports.source import Entry
from custodes.rules.types import RuleSet
from custodes.workspace import Workspace

BINS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0000001]
BIN_LABELS = ["<0.5", "0.5–0.8", "0.8–0.9", "0.9–0.95", "0.95–0.99", "0.99–0.999", "≥0.999"]
# Ledger events that are the request's stages, in order, and what each one means.
STAGES = (
    ("request.received", "received"),
    ("request.checked", "rules checked"),
    ("request.matched", "matched"),
    ("request.decided", "decided"),
    ("release.prepared", "release prepared"),
    ("release.approved", "release approved"),
    ("release.done", "released"),
)


def histogram(ws: Workspace, request_id: str) -> list[int]:
    path = match_results_path(ws, request_id)
    if not path.exists():
        return []
    p = pq.read_table(path, columns=["probability"])["probability"]
    p = pc.fill_null(p, 0.0)
    out = []
    for lo, hi in itertools.pairwise(BINS):
        inside = pc.and_(pc.greater_equal(p, lo), pc.less(p, hi))
        out.append(int(pc.sum(pc.cast(inside, "int64")).as_py() or 0))
    return out


def request_report(ws: Workspace, request_id: str, events: list[Entry], rs: RuleSet) -> Document:
    first = {e.type: e for e in reversed(events)}  # the first event of each type
    received = first.get("request.received")
    provision = received.body.get("provision") if received else None
    items = int(received.body.get("items") or 0) if received else 0
    checked = first.get("request.checked")
    decided = [e for e in events if e.type == "request.decided"]
    counts: dict[str, int] = decided[-1].body.get("counts", {}) if decided else {}
    by_check: dict[str, int] = checked.body.get("failing_items_by_check", {}) if checked else {}
    prov = rs.provisions.get(provision or "")
    check_ids = (prov.request_requirements + prov.item_requirements) if prov else list(by_check)
    failing_request = set(checked.body.get("failing_request_checks", [])) if checked else set()
    check_rows = []
    for cid in check_ids:
        c = rs.checks.get(cid)
        level = c.level if c else "item"
        failed = (
            (1 if cid in failing_request else 0) if level == "request" else by_check.get(cid, 0)
        )
        check_rows.append(
            {
                "check": cid,
                "level": level,
                "verdict": "fails" if failed else "passes",
                "items_failing": failed if level == "item" else None,
                "citation": c.citation if c else "",
            }
        )
    resolved = Counter(e.body.get("decision") for e in events if e.type == "review.resolved")
    disclosed = sum(1 for e in events if e.type == "disclosure")
    in_review = int(counts.get("REVIEW", 0))
    identified = int(counts.get("DISCLOSE", 0)) + int(counts.get("CONFIRM", 0))
    identified += int(resolved.get("DISCLOSE", 0))
    stage_rows = []
    last = None
    for etype, label in STAGES:
        e = first.get(etype)
        if e is None:
            continue
        stage_rows.append(
            {
                "stage": label,
                "at": e.body["time"][:19],
                "by": e.body.get("actor"),
                "hours_since_previous": round((e.time - last).total_seconds() / 3600, 2)
                if last
                else None,
            }
        )
        last = e.time
    who = Counter(
        (e.body.get("actor"), e.type) for e in events if e.type not in ("access", "disclosure")
    )
    who_rows = [{"actor": a, "action": t, "times": n} for (a, t), n in sorted(who.items(), key=str)]
    hist = histogram(ws, request_id)
    charts = []
    if hist:
        charts.append(
            Chart(
                "Match probability of the best candidate",
                BIN_LABELS,
                [float(h) for h in hist],
                "match probability",
                "items",
                "Items by the match probability of their best candidate: "
                + ", ".join(f"{lab}: {n:,}" for lab, n in zip(BIN_LABELS, hist, strict=True))
                + ".",
            )
        )
    outcome_values = [int(counts.get(o, 0)) for o in OUTCOMES]
    charts.append(
        Chart(
            "Outcomes",
            list(OUTCOMES),
            [float(v) for v in outcome_values],
            "outcome",
            "items",
            "Items by outcome: "
            + ", ".join(f"{o}: {v:,}" for o, v in zip(OUTCOMES, outcome_values, strict=True))
            + ".",
        )
    )
    figures: dict[str, Any] = {
        "items": items,
        "disclosed": disclosed,
        "review_rate_percent": round(100 * in_review / items, 2) if items else 0.0,
        "reviews_resolved_disclose": int(resolved.get("DISCLOSE", 0)),
        "reviews_resolved_withhold": int(resolved.get("WITHHOLD", 0)),
        # With no wrong identification observed among n, 3/n bounds the wrong-person rate at
        # 95 % confidence (the rule of three); it is a bound, not a measurement.
        "wrong_person_bound_95": f"≤ {3 / identified:.4%}" if identified else "no identifications",
    }
    return Document(
        "request",
        f"Request {request_id}: checks, matching, review and release",
        {
            "request_id": request_id,
            "provision": provision,
            "agency": received.body.get("agency") if received else None,
        },
        [
            Table(
                "Outcomes",
                [("outcome", "Outcome"), ("items", "Items")],
                [{"outcome": o, "items": v} for o, v in zip(OUTCOMES, outcome_values, strict=True)],
            ),
            Table(
                "Checks",
                [
                    ("check", "Check"),
                    ("level", "Level"),
                    ("verdict", "Verdict"),
                    ("items_failing", "Items failing"),
                    ("citation", "Citation"),
                ],
                check_rows,
            ),
            Table(
                "Stages",
                [
                    ("stage", "Stage"),
                    ("at", "When (UTC)"),
                    ("by", "By"),
                    ("hours_since_previous", "Hours since previous"),
                ],
                stage_rows,
            ),
            Table(
                "Who did what",
                [("actor", "Who"), ("action", "Ledger event"), ("times", "Times")],
                who_rows,
            ),
        ],
        figures=figures,
        charts=charts,
        notes=[
            "The wrong-person bound applies the rule of three to the identifications made: "
            "it holds only if none was wrong, which this report cannot observe; the matching "
            "evaluation measures it on data with ground truth.",
        ],
    )
