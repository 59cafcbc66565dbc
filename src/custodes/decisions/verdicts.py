"""The one list of the checks that ran on an item, and each one's verdict.

Every face and every report reads this list, so that an item page, `explain`, the outcomes and
the request report cannot disagree about why an item got its outcome. It holds, in order:

- the provision's item checks (before matching), with the agreement's added checks overlaid
  (their `source` is the agreement's id, their citation names it);
- the checks after matching (`identified`, `address-on-record`);
- the officer's review, for an item the match sent to review (`officer-review`): open, or
  settled to disclose or to withhold.

Each entry says whether the check `passed` (True, False, or None: an officer's to settle) and
whether the outcome rests on it (`decided`: the check is among the outcome's `checks`, the
failing checks the officers' view and the response show). A check can fail without deciding:
the caseload check (review severity) fails on an item withheld anyway for a missing address.

The list of checks that ran is recorded when the outcomes are decided (the `request.decided`
ledger event's `checks`, with each check's citation, source and counts), so the explanation and
the request report read the rule set the decision was made under, not the one in force today.
"""

from __future__ import annotations

from typing import Any

from custodes.rules.types import Effective

# The officer's review of an item the match could not settle alone: a decision, recorded with
# its justification, that the outcomes list among the item's checks when it withholds.
REVIEW_CHECK = "officer-review"
REVIEW_ENTRY: dict[str, Any] = {
    "check": REVIEW_CHECK,
    "level": "item",
    "severity": "withhold",
    "phase": "review",
    "source": "review",
    "citation": "26 U.S.C. 6103(a); counsel policy (no wrong-person disclosure)",
    "sentence": "An officer who weighed the match evidence identified the person and recorded "
    "why; without that identification nothing is disclosed.",
}
KEYS = ("check", "level", "severity", "phase", "source", "citation", "sentence")


def ran(eff: Effective) -> list[dict[str, Any]]:
    """The item checks a request's items are evaluated on, in order, as recorded."""
    out = []
    for cid in eff.item_requirements:
        c = eff.checks[cid]
        out.append(
            {
                "check": cid,
                "level": "item",
                "severity": c.severity,
                "phase": c.phase,
                "source": c.source,
                "citation": c.citation,
                "sentence": c.sentence,
            }
        )
    return out


def went_to_review(row: dict[str, Any], resolution: dict[str, Any] | None) -> bool:
    """Whether the match (or a review-severity check) sent this item to an officer."""
    return row["outcome"] == "REVIEW" or resolution is not None


def verdicts(
    checks: list[dict[str, Any]], row: dict[str, Any], resolution: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Every check that ran on one item with its verdict: `checks` as `ran` lists them, `row`
    the item's effective outcome (outcome, checks, failed), `resolution` the officer's."""
    decided = set(row.get("checks") or [])
    # An outcomes file decided before `failed` was recorded lists only the deciding checks.
    failed = set(row.get("failed") or []) | decided
    review = went_to_review(row, resolution)
    out = []
    for c in checks:
        cid = c["check"]
        passed: bool | None = cid not in failed
        if review and cid == "identified" and not passed:
            passed = None  # whether the person is identified is the officer's to settle
        out.append({k: c.get(k) for k in KEYS} | {"passed": passed, "decided": cid in decided})
    if review:
        decision = resolution["decision"] if resolution else None
        out.append(
            dict(REVIEW_ENTRY)
            | {
                "passed": None if decision is None else decision == "DISCLOSE",
                "decided": REVIEW_CHECK in decided,
            }
        )
    return out


__all__ = ["REVIEW_CHECK", "REVIEW_ENTRY", "ran", "verdicts", "went_to_review"]
