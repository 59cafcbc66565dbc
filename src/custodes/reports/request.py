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
from custodes.decisions.verdicts import REVIEW_ENTRY
from custodes.ledger.event_types import (
    Access,
    Disclosure,
    ReleaseApproved,
    ReleaseDone,
    ReleasePrepared,
    RequestChecked,
    RequestDecided,
    RequestMatched,
    RequestReceived,
    ReviewResolved,
)
from custodes.reports.document import Chart, Document, Table
from custodes.reports.source import Entry
from custodes.rules.types import Provision, RuleSet
from custodes.workspace import Workspace

BINS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0000001]
BIN_LABELS = ["<0.5", "0.5–0.8", "0.8–0.9", "0.9–0.95", "0.95–0.99", "0.99–0.999", "≥0.999"]
# Ledger events that are the request's stages, in order, and what each one means.
STAGES = (
    (RequestReceived.TYPE, "received"),
    (RequestChecked.TYPE, "rules checked"),
    (RequestMatched.TYPE, "matched"),
    (RequestDecided.TYPE, "decided"),
    (ReleasePrepared.TYPE, "release prepared"),
    (ReleaseApproved.TYPE, "release approved"),
    (ReleaseDone.TYPE, "released"),
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


def effective_counts(before: dict[str, int], resolution: dict[str | None, Any]) -> dict[str, int]:
    """The outcomes after the officers' review: each resolved item leaves REVIEW for its
    decision (as the outcomes the officers see apply it)."""
    out = {o: int(before.get(o, 0)) for o in OUTCOMES}
    for decision in resolution.values():
        if decision in out and out["REVIEW"] > 0:
            out["REVIEW"] -= 1
            out[decision] += 1
    return {o: n for o, n in out.items() if n or o in before}


def _check_rows(
    checked: Entry | None,
    decided: Entry | None,
    resolved: Counter[Any],
    counts: dict[str, int],
    rs: RuleSet,
    provision_id: str | None,
) -> list[dict[str, Any]]:
    """One row per check that ran: the request's checks (from `request.checked`), then the
    item checks with the counts the decision recorded (every item check, the agreement's, the
    checks after matching), then the officers' review. The item counts are the ones the
    outcomes' `check` filter gives: `outcome_items` the items whose outcome rests on the check,
    `items_failing` every item it failed on."""
    chk = checked.as_(RequestChecked) if checked else None
    dec = decided.as_(RequestDecided) if decided else None
    provision = rs.provisions.get(provision_id or "")
    rows = _request_check_rows(chk, rs, provision)
    item_checks = (dec.checks if dec else None) or None
    if item_checks is None:
        return rows + _item_rows_before_matching(chk, rs, provision)
    rows += [
        _row(
            c["check"],
            "item",
            c.get("source"),
            "fails" if c.get("failing") else "passes",
            int(c.get("failing", 0)),
            int(c.get("outcomes", 0)),
            c.get("citation", ""),
        )
        for c in item_checks
    ]
    reviewed = int(((dec.counts if dec else None) or {}).get("REVIEW", 0))
    if reviewed:
        withheld = int(resolved.get("WITHHOLD", 0))
        verdict = "fails" if withheld else ("officer decides" if counts.get("REVIEW") else "passes")
        rows.append(
            _row(
                REVIEW_ENTRY["check"],
                "item",
                REVIEW_ENTRY["source"],
                verdict,
                withheld,
                withheld,
                REVIEW_ENTRY["citation"],
            )
        )
    return rows


def _row(
    check: Any,
    level: str,
    source: Any,
    verdict: str,
    items_failing: int | None,
    outcome_items: int | None,
    citation: Any,
) -> dict[str, Any]:
    return {
        "check": check,
        "level": level,
        "source": source,
        "verdict": verdict,
        "items_failing": items_failing,
        "outcome_items": outcome_items,
        "citation": citation,
    }


def _request_check_rows(
    chk: RequestChecked | None, rs: RuleSet, provision: Provision | None
) -> list[dict[str, Any]]:
    """The request's checks as `request.checked` recorded them (or, before it did, as the
    provision lists them)."""
    failing_request = set((chk.failing_request_checks if chk else None) or [])
    request_checks = (chk.request_checks if chk else None) or [
        {"check": c, "source": rs.checks[c].source, "citation": rs.checks[c].citation}
        for c in (provision.request_requirements if provision else [])
        if c in rs.checks
    ]
    return [
        _row(
            c["check"],
            "request",
            c.get("source"),
            "fails" if c["check"] in failing_request else "passes",
            None,
            None,
            c.get("citation", ""),
        )
        for c in request_checks
    ]


def _item_rows_before_matching(
    chk: RequestChecked | None, rs: RuleSet, provision: Provision | None
) -> list[dict[str, Any]]:
    """Decided before the checks were recorded with the decision: the counts of the rules
    before matching (the checks after matching were not counted then)."""
    by_check = (chk.failing_items_by_check if chk else None) or {}
    rows = []
    for cid in provision.item_requirements if provision else list(by_check):
        c = rs.checks.get(cid)
        n = by_check.get(cid, 0)
        rows.append(
            _row(
                cid,
                "item",
                c.source if c else None,
                "fails" if n else "passes",
                n,
                None,
                c.citation if c else "",
            )
        )
    return rows


def request_report(ws: Workspace, request_id: str, events: list[Entry], rs: RuleSet) -> Document:
    first = {e.type: e for e in reversed(events)}  # the first event of each type
    got = first.get(RequestReceived.TYPE)
    received = got.as_(RequestReceived) if got else None
    provision = received.provision if received else None
    items = int(received.items or 0) if received else 0
    decided = [e for e in events if e.type == RequestDecided.TYPE]
    # An item is resolved once; the last word stands if the ledger ever held two.
    # (Keyed by the item's salted commitment; bodies written before it carry the id.)
    resolution: dict[str | None, Any] = {}
    for e in events:
        if (r := e.as_(ReviewResolved)) is not None:
            resolution[r.item_sha256 or e.body.get("item_id")] = r.decision
    resolved = Counter(resolution.values())
    last = decided[-1].as_(RequestDecided) if decided else None
    before_review: dict[str, int] = (last.counts if last else None) or {}
    counts = effective_counts(before_review, resolution)
    check_rows = _check_rows(
        first.get(RequestChecked.TYPE),
        decided[-1] if decided else None,
        resolved,
        counts,
        rs,
        provision,
    )
    in_review = int(before_review.get("REVIEW", 0))
    identified = int(before_review.get("DISCLOSE", 0)) + int(before_review.get("CONFIRM", 0))
    identified += int(resolved.get("DISCLOSE", 0))
    outcome_values = [int(counts.get(o, 0)) for o in OUTCOMES]
    figures: dict[str, Any] = {
        "items": items,
        "disclosed": sum(1 for e in events if e.type == Disclosure.TYPE),
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
            "agency": received.agency if received else None,
        },
        _tables(outcome_values, check_rows, _stage_rows(first), _who_rows(events)),
        figures=figures,
        charts=_charts(histogram(ws, request_id), outcome_values),
        notes=[
            "The wrong-person bound applies the rule of three to the identifications made: "
            "it holds only if none was wrong, which this report cannot observe; the matching "
            "evaluation measures it on data with ground truth.",
        ],
    )


def _stage_rows(first: dict[str, Entry]) -> list[dict[str, Any]]:
    """The request's stages that happened, when, by whom, and the hours each took."""
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
                "by": e.actor,
                "hours_since_previous": round((e.time - last).total_seconds() / 3600, 2)
                if last
                else None,
            }
        )
        last = e.time
    return stage_rows


def _who_rows(events: list[Entry]) -> list[dict[str, Any]]:
    who = Counter((e.actor, e.type) for e in events if e.type not in (Access.TYPE, Disclosure.TYPE))
    return [{"actor": a, "action": t, "times": n} for (a, t), n in sorted(who.items(), key=str)]


def _charts(hist: list[int], outcome_values: list[int]) -> list[Chart]:
    """The match-probability histogram (when the request was matched) and the outcomes."""
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
    return charts


def _tables(
    outcome_values: list[int],
    check_rows: list[dict[str, Any]],
    stage_rows: list[dict[str, Any]],
    who_rows: list[dict[str, Any]],
) -> list[Table]:
    return [
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
                ("source", "Source"),
                ("verdict", "Verdict"),
                ("items_failing", "Items failing"),
                ("outcome_items", "Outcomes resting on it"),
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
    ]
