"""Review: an officer settles the items the machine would not decide alone.

An item in review can be resolved to WITHHOLD, or to DISCLOSE only when

- the officer names the record they identified, and it is the candidate shown to them (anyone
  else is not the person the evidence points at: withhold, and ask the agency);
- no blocking match flag is raised (a conflicting TIN or suffix, a namesake risk);
- every rule but the identification passes for that record — except a review-severity rule
  such as the caseload check, which exists precisely so that a person can look and record why
  the disclosure is justified (the reason is kept with the resolution);
- the permitted value exists (a disclosure always carries what it discloses).

Items in review are grouped by their reasons (`groups`: "date of birth differs, no TIN on
the list": 150 items), each group with a sample spread over its match probabilities, so that an
officer inspects a few and resolves the group with one justification (`resolve(group=...)`).
A group resolved to DISCLOSE discloses each item to its own candidate, and only when every item
in it could be disclosed one by one.

Every resolution is a ledger event per item (the officer's reason as a hash).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any, cast

import pyarrow.parquet as pq
from sqlalchemy import insert

from custodes.access.credentials import item_key
from custodes.decisions.effective import effective_outcomes, released_fields
from custodes.decisions.pipeline import processed_outcomes, request_folder
from custodes.errors import ConflictError, InputError, NotFound
from custodes.ledger import log
from custodes.ledger.event_types import OMIT, ReviewResolved
from custodes.ledger.events import Event, item_sha256
from custodes.matching.reasons import meaning
from custodes.matching.runs import LINKED
from custodes.records import master
from custodes.requests.format import ITEM_COLUMNS, load_items
from custodes.requests.lifecycle import current_state
from custodes.rules.active import in_force
from custodes.store.tables import review_resolutions
from custodes.workspace import Call, Workspace

# Match flags that say the candidate may be someone else; review cannot overrule them.
BLOCKING_FLAGS = ("suffix_conflict", "tin_conflict", "tin_name_conflict", "namesake_risk")


def _need_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise InputError("A review resolution needs a reason.", code="bad_argument")
    return reason.strip()


def open_reviews(ws: Workspace, request_id: str) -> list[dict[str, Any]]:
    """Items still in review, with the match evidence."""
    request_folder(ws, request_id)
    rows: list[dict[str, Any]] = effective_outcomes(ws, request_id, only=("REVIEW",)).to_pylist()
    return rows


def group_of(row: dict[str, Any]) -> str:
    """A review item's group: its reasons (match reasons and review-severity checks), sorted."""
    return "+".join(sorted(set(row["review_reasons"] or []))) or "unexplained"


def groups(ws: Workspace, request_id: str, sample: int = 3) -> list[dict[str, Any]]:
    """The open review items grouped by reason, largest group first: what each reason means,
    how many items, how many could be disclosed to their candidate, and a sample spread from
    the lowest to the highest match probability."""
    rs = in_force(ws)
    severity = {cid: c.severity for cid, c in rs.checks.items()}
    by: dict[str, list[dict[str, Any]]] = {}
    for r in open_reviews(ws, request_id):
        by.setdefault(group_of(r), []).append(r)
    out = []
    for key, rows in sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        rows.sort(key=lambda r: (r["probability"] or 0, r["item_id"]))
        k = min(sample, len(rows))
        picks = [rows[round(i * (len(rows) - 1) / max(k - 1, 1))] for i in range(k)]
        out.append(
            {
                "group": key,
                # a check's sentence says what must hold; here it did not
                "meaning": [
                    f"not met: {rs.checks[c].sentence}" if c in rs.checks else meaning(c)
                    for c in key.split("+")
                ],
                "items": len(rows),
                "disclosable": sum(
                    why_not_disclosable(r, severity, r["candidate"]) is None for r in rows
                ),
                "sample": [
                    {
                        k: r[k]
                        for k in ("item_id", "candidate", "probability", "margin_bits", "flags")
                    }
                    for r in picks
                ],
            }
        )
    return out


def why_not_disclosable(
    row: dict[str, Any], severity: dict[str, str], named: str | None
) -> str | None:
    """Why the officer may not disclose this review item to the record `named` (None: may)."""
    if row["candidate"] is None:
        return "it has no candidate"
    if named is None:
        return "name the record you identified (--record)"
    if named != row["candidate"]:
        return (
            "the record named is not the candidate shown; only that candidate can be "
            "identified in review (withhold and ask the agency otherwise)"
        )
    flags = [f for f in row["flags"] or [] if f in BLOCKING_FLAGS]
    if flags:
        return f"its match raised the blocking flag(s) {', '.join(flags)}"
    failing = [c for c in row["checks"] if severity.get(c) != "review"]
    if failing:
        return f"check(s) {', '.join(failing)} fail for that record"
    return None


def resolve(
    call: Call,
    request_id: str,
    decision: str,
    reason: str | None,
    *,
    items: list[str] | None = None,
    records: dict[str, str] | None = None,
    group: str | None = None,
) -> int:
    """Resolve review items (all open ones when neither `items` nor `group` is given). To
    disclose, `records` maps each item to the record the officer identified; a `group`
    resolved to disclose names each item's own candidate. Returns how many were resolved."""
    ws = call.ws
    reason = _need_reason(reason)
    decision = decision.upper()
    if decision not in ("WITHHOLD", "DISCLOSE"):
        raise InputError("A review resolves to withhold or disclose.", code="bad_argument")
    if items is not None and group is not None:
        raise InputError("Resolve items or a group, not both.", code="bad_argument")
    open_ = {r["item_id"]: r for r in open_reviews(ws, request_id)}
    targets, records = _chosen(request_id, open_, decision, items, records, group)
    if not targets:
        return 0
    named: dict[str, str | None] = {i: None for i in targets}
    if decision == "DISCLOSE":
        named = _disclosable(ws, request_id, open_, targets, records)
    _record_resolutions(call, request_id, decision, reason, targets, named, group)
    return len(targets)


def _chosen(
    request_id: str,
    open_: dict[str, dict[str, Any]],
    decision: str,
    items: list[str] | None,
    records: dict[str, str] | None,
    group: str | None,
) -> tuple[list[str], dict[str, str] | None]:
    """The items to resolve (a group's, the chosen ones, or every open one), each in review,
    and the records named for them (a group disclosed names each item's own candidate)."""
    if group is not None:
        items = [i for i, r in open_.items() if group_of(r) == group]
        if not items:
            raise NotFound(
                f"No such open review group in {request_id} ('custodes review "
                f"{request_id} --groups' lists them).",
                code="unknown_review_group",
            )
        if decision == "DISCLOSE":
            records = {i: open_[i]["candidate"] for i in items}
    targets = list(open_) if items is None else list(dict.fromkeys(items))
    unknown = [i for i in targets if i not in open_]
    if unknown:
        raise NotFound(f"Item {unknown[0]} is not in review in {request_id}.", code="not_in_review")
    return targets, records


def _disclosable(
    ws: Workspace,
    request_id: str,
    open_: dict[str, dict[str, Any]],
    targets: list[str],
    records: dict[str, str] | None,
) -> dict[str, str | None]:
    """The record named for each item to disclose, once each is shown disclosable (the rules
    pass for it, and every permitted value is on record)."""
    named: dict[str, str | None] = {}
    rs = in_force(ws)
    severity = {cid: c.severity for cid, c in rs.checks.items()}
    values = _values(ws, request_id, set(targets))
    for i in targets:
        named[i] = (records or {}).get(i)
        why = why_not_disclosable(open_[i], severity, named[i])
        if why is None and any(v is None for v in values[i].values()):
            why = "the permitted value is not on record for that record"
        if why:
            raise ConflictError(f"Item {i} cannot be disclosed: {why}.", code="rules_fail")
    return named


def _record_resolutions(
    call: Call,
    request_id: str,
    decision: str,
    reason: str,
    targets: list[str],
    named: dict[str, str | None],
    group: str | None,
) -> None:
    """The resolutions' rows and one `review.resolved` ledger event each, while the request
    is in review."""
    now = dt.datetime.now(dt.UTC)
    reason_sha = hashlib.sha256(reason.encode()).hexdigest()
    key = item_key(call.ws)
    with call.transaction() as conn:
        state = current_state(conn, request_id)
        if state != "in_review":
            raise ConflictError(
                f"Request {request_id} is {state}, not in review.", code="illegal_transition"
            )
        conn.execute(
            insert(review_resolutions),
            [
                {
                    "request_id": request_id,
                    "item_id": i,
                    "decision": decision,
                    "reason": reason,
                    "actor": call.actor,
                    "at": now,
                    "record_id": named[i],
                }
                for i in targets
            ],
        )
        # The reason is free text an officer typed: the ledger gets its hash, not the text.
        log.append(
            conn,
            [
                Event(
                    ReviewResolved(
                        item_sha256=item_sha256(key, request_id, i),
                        decision=decision,
                        reason_sha256=reason_sha,
                        group=group if group else OMIT,
                    ),
                    actor=call.actor,
                    request_id=request_id,
                    record_id=named[i],
                    at=now,  # the row's time: the store audit compares the two
                )
                for i in targets
            ],
        )


def _values(ws: Workspace, request_id: str, items: set[str]) -> dict[str, dict[str, Any]]:
    """The permitted field values the outcomes hold for these items (computed for review
    items from their candidate, masked in every view until disclosed)."""
    path = processed_outcomes(ws, request_id)
    table = pq.read_table(path)
    fields = released_fields(table)
    return {
        r["item_id"]: {f: r[f] for f in fields}
        for r in table.select(["item_id", *fields]).to_pylist()
        if r["item_id"] in items
    }


# What the officer sees of a candidate record while deciding: enough to compare with the list,
# not the record (seeing the whole record is an inspection, `records show`, with a purpose).
def _mask(text: Any, keep: int = 2) -> str | None:
    if text is None or str(text) == "":
        return None
    s = str(text)
    return s[:keep] + "•" * max(len(s) - keep, 0)


def _same(listed: Any, recorded: Any) -> str | None:
    """Whether the record's street (or unit) is the one listed, without showing it: the
    officer compares, the masked view still hides the record's own value."""
    if not recorded:
        return None

    def norm(v: Any) -> str:
        return " ".join(re.sub(r"[^\w ]", " ", str(v or "").upper()).split())

    return "same as listed" if norm(listed) == norm(recorded) else "not the one listed"


def side_by_side(ws: Workspace, request_id: str, item_id: str) -> dict[str, Any]:
    """A review item as the agency listed it beside its candidate, masked: names to their first
    two letters, the date of birth to year and month, the TIN to its last four digits, the last
    address to city, state and ZIP3, its street and unit to whether they are the ones listed."""
    folder = request_folder(ws, request_id)
    rows = load_items(folder, item_id).to_pylist()
    if not rows:
        raise NotFound(f"Request {request_id} has no such item.", code="unknown_item")
    item = rows[0]
    listed = {
        k: item.get(k) for k in ITEM_COLUMNS if k not in ("item_id", "case_number", "official_id")
    }
    match = pq.read_table(
        folder / "match" / LINKED, columns=["record_id"], filters=[("item_id", "=", item_id)]
    ).to_pylist()
    record_id = match[0]["record_id"] if match else None
    candidate = None
    if record_id:
        rec = master.lookup(ws, record_id)
        if rec is not None:
            last = cast("list[dict[str, Any]]", rec.get("addresses") or [{}])[0]
            dob = str(rec.get("dob") or "")
            tin = str(rec.get("tin") or "")
            candidate = {
                "record_id": record_id,
                "first_name": _mask(rec.get("first_name")),
                "middle_name": _mask(rec.get("middle_name"), 1),
                "last_name": _mask(rec.get("last_name")),
                "suffix": rec.get("suffix"),
                "dob": dob[:7] + "-••" if dob else None,
                "tin": "•••-••-" + tin[-4:] if tin else None,
                "street": _same(item.get("street"), last.get("street")),
                "unit": _same(item.get("unit"), last.get("unit")),
                "city": last.get("city"),
                "state": last.get("state"),
                "zip": (str(last.get("zip") or "")[:3] + "••") if last.get("zip") else None,
            }
    return {"request_id": request_id, "item_id": item_id, "listed": listed, "candidate": candidate}
