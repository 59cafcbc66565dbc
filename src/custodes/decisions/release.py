"""Review, two-person release and the response file.

- An officer resolves each item in review to WITHHOLD or (only if every rule but the match
  passes) DISCLOSE, with a reason. A release cannot be prepared while any item is in review.
- An officer prepares the release (the effective outcomes are hashed); a *different* person
  approves it — never the preparer, never the request's submitter — and the hash must still
  match; then the release is written.
- Crash safety: the release is first recorded as an intent; the response is rebuilt from the
  approved outcomes (deterministic) and written atomically; then, in one transaction, one ledger
  leaf per disclosure, the disclosures table (one row per item: a second disclosure is
  impossible) and the state ``released``. A restarted release finishes the same way; the
  response is handed out only after that transaction committed.

Actors: until the Access issue lands, the actor is the name given with ``--actor`` (or
``CUSTODES_ACTOR``); the two-person rules are enforced on those names by the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert, select, update

from custodes.access import service as access
from custodes.decisions.pipeline import (
    EVIDENCE_COLUMNS,
    RECORD_DEPENDENT,
    VIEW_COLUMNS,
    _folder,
    effective_outcomes,
)
from custodes.errors import ConflictError, InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.records.files import sha256_file
from custodes.requests.lifecycle import current_state, transition
from custodes.rules.active import in_force
from custodes.store.tables import disclosures, releases, requests, review_resolutions
from custodes.workspace import Workspace

NO_INFORMATION = "no information disclosed"
RESPONSE_CSV = "response.csv"
RESPONSE_JSON = "response.json"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _need_actor(actor: str | None) -> str:
    if not actor or not actor.strip():
        raise InputError("This action needs an actor (--actor or CUSTODES_ACTOR).", code="no_actor")
    return actor.strip()


def _need_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise InputError("A review resolution needs a reason.", code="bad_argument")
    return reason.strip()


# --- review -----------------------------------------------------------------------------------


def open_reviews(ws: Workspace, request_id: str) -> list[dict[str, Any]]:
    """Items still in review, with the match evidence."""
    table = effective_outcomes(ws, request_id, only=("REVIEW",))
    return table.to_pylist()


def resolve(
    ws: Workspace,
    request_id: str,
    decision: str,
    reason: str | None,
    *,
    actor: str | None,
    items: list[str] | None = None,
) -> int:
    """Resolve review items (all open ones when `items` is None). Returns how many."""
    actor = _need_actor(actor)
    reason = _need_reason(reason)
    decision = decision.upper()
    if decision not in ("WITHHOLD", "DISCLOSE"):
        raise InputError("A review resolves to withhold or disclose.", code="bad_argument")
    open_ = {r["item_id"]: r for r in open_reviews(ws, request_id)}
    targets = list(open_) if items is None else items
    if not targets:
        return 0
    unknown = [i for i in targets if i not in open_]
    if unknown:
        raise InputError(
            f"Item {unknown[0]} is not in review in {request_id}.", code="not_in_review"
        )
    if decision == "DISCLOSE":
        for i in targets:
            row = open_[i]
            # The officer settles the identification; every other rule must pass, the
            # address on record for this candidate included.
            blocking = row["checks"]
            if blocking or row["candidate"] is None:
                raise ConflictError(
                    f"Item {i} cannot be disclosed: "
                    + (f"check(s) {', '.join(blocking)} fail." if blocking else "no candidate."),
                    code="rules_fail",
                )
    now = _now()
    reason_sha = hashlib.sha256(reason.encode()).hexdigest()
    with ws.engine.begin() as conn:
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
                    "actor": actor,
                    "at": now,
                }
                for i in targets
            ],
        )
        # The reason is free text an officer typed: the ledger gets its hash, not the text.
        log.append(
            conn,
            [
                Event(
                    "review.resolved",
                    actor=actor,
                    request_id=request_id,
                    data={"item_id": i, "decision": decision, "reason_sha256": reason_sha},
                )
                for i in targets
            ],
        )
    return len(targets)


# --- prepare / approve ------------------------------------------------------------------------


def _outcomes_sha(table: pa.Table) -> str:
    """A hash of what would be released: (item, outcome, record) for every item, in order."""
    con = duckdb.connect()
    try:
        con.register("t", table)
        return con.sql(
            """SELECT sha256(coalesce(string_agg(concat_ws('|', item_id, outcome,
                        coalesce(record_id, '')), chr(10) ORDER BY item_id), ''))
               FROM t"""
        ).fetchall()[0][0]
    finally:
        con.close()


def prepare(ws: Workspace, request_id: str, *, actor: str | None) -> dict[str, Any]:
    actor = _need_actor(actor)
    table = effective_outcomes(ws, request_id)
    still = pc.sum(pc.equal(table["outcome"], "REVIEW")).as_py() or 0
    if still:
        raise ConflictError(
            f"{still} item(s) are still in review; resolve them first "
            f"('custodes review {request_id}').",
            code="review_open",
        )
    sha = _outcomes_sha(table)
    with ws.engine.begin() as conn:
        transition(conn, request_id, "prepared", actor=actor)
        conn.execute(releases.delete().where(releases.c.request_id == request_id))
        conn.execute(
            insert(releases).values(
                request_id=request_id, outcomes_sha256=sha, prepared_by=actor, prepared_at=_now()
            )
        )
        submitted_by = conn.execute(
            select(requests.c.submitted_by).where(requests.c.id == request_id)
        ).scalar()
        # Suspending approvers never unlocks anything: with nobody eligible, it stays blocked.
        eligible = sorted(access.active_holders(conn, "approver") - {actor, submitted_by})
    return {
        "request_id": request_id,
        "state": "prepared",
        "prepared_by": actor,
        "outcomes_sha256": sha,
        "eligible_approvers": len(eligible),
    }


def approve(ws: Workspace, request_id: str, *, actor: str | None) -> dict[str, Any]:
    actor = _need_actor(actor)
    sha = _outcomes_sha(effective_outcomes(ws, request_id))
    with ws.engine.begin() as conn:
        rel = conn.execute(select(releases).where(releases.c.request_id == request_id)).first()
        submitted_by = conn.execute(
            select(requests.c.submitted_by).where(requests.c.id == request_id)
        ).scalar()
        if rel is None or current_state(conn, request_id) != "prepared":
            raise ConflictError(
                f"Request {request_id} has no prepared release to approve.", code="not_prepared"
            )
        if actor == rel.prepared_by:
            raise ConflictError(
                "Nobody approves a release they prepared: a second person must approve.",
                code="self_approval",
            )
        if submitted_by and actor == submitted_by:
            raise ConflictError(
                "Nobody approves a release of a request they submitted.", code="self_approval"
            )
        if rel.outcomes_sha256 != sha:
            raise ConflictError(
                "The outcomes changed since the release was prepared; prepare it again.",
                code="outcomes_changed",
            )
        transition(conn, request_id, "approved", actor=actor)
        conn.execute(
            update(releases)
            .where(releases.c.request_id == request_id)
            .values(approved_by=actor, approved_at=_now())
        )
        log.append(
            conn,
            [
                Event(
                    "release.approved",
                    actor=actor,
                    request_id=request_id,
                    data={"prepared_by": rel.prepared_by, "outcomes_sha256": sha},
                )
            ],
        )
    return {
        "request_id": request_id,
        "state": "approved",
        "approved_by": actor,
        "prepared_by": rel.prepared_by,
    }


# --- release ----------------------------------------------------------------------------------


@dataclass
class Released:
    request_id: str
    disclosed: int
    withheld: int
    response: Path
    checkpoint: str | None
    resumed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "disclosed": self.disclosed,
            "withheld": self.withheld,
            "response": str(self.response),
            "checkpoint": self.checkpoint,
            "resumed": self.resumed,
        }


def _response_rows(ws: Workspace, request_id: str) -> tuple[pa.Table, list[str]]:
    """One row per item: the answer, the permitted fields, defects with their citations."""
    table = effective_outcomes(ws, request_id)
    rs = in_force(ws)
    fixed = set(EVIDENCE_COLUMNS) | set(VIEW_COLUMNS)
    fields = [c for c in table.column_names if c not in fixed]
    cit_map = (
        "MAP {"
        + ", ".join(
            "'{}': '{}'".format(cid, c.citation.replace("'", "''")) for cid, c in rs.checks.items()
        )
        + "}"
    )
    con = duckdb.connect()
    try:
        con.register("o", table)
        field_sql = "".join(
            f""", CASE WHEN outcome IN ('DISCLOSE', 'CONFIRM') THEN "{f}" END AS "{f}" """
            for f in fields
        )
        rows = con.sql(
            f"""SELECT item_id,
              CASE WHEN outcome = 'DISCLOSE' THEN 'disclosed'
                   WHEN outcome = 'CONFIRM' THEN 'address confirmed'
                   WHEN len(list_filter(checks, lambda c: c NOT IN {RECORD_DEPENDENT})) > 0
                     THEN 'not processed: defect in the request'
                   ELSE '{NO_INFORMATION}' END AS answer,
              CASE WHEN outcome NOT IN ('DISCLOSE', 'CONFIRM')
                   THEN array_to_string(list_filter(checks,
                          lambda c: c NOT IN {RECORD_DEPENDENT}), ';') END AS defects,
              CASE WHEN outcome NOT IN ('DISCLOSE', 'CONFIRM')
                   THEN array_to_string(list_transform(list_filter(checks,
                          lambda c: c NOT IN {RECORD_DEPENDENT}),
                          lambda c: {cit_map}[c]), '; ')
                   END AS citations
              {field_sql}
            FROM o ORDER BY item_id"""
        ).to_arrow_table()
    finally:
        con.close()
    return rows, fields


def release(ws: Workspace, request_id: str, out: Path, *, actor: str | None) -> Released:
    """Write the response of an approved release (or finish one that was interrupted)."""
    actor = _need_actor(actor)
    folder, env = _folder(ws, request_id)
    target = folder / "release"
    with ws.engine.begin() as conn:
        state = current_state(conn, request_id)
        rel = conn.execute(select(releases).where(releases.c.request_id == request_id)).first()
        if state == "released":
            resumed = True
        elif state != "approved" or rel is None or rel.approved_by is None:
            raise ConflictError(
                f"Request {request_id} is {state}: only an approved release can be released.",
                code="not_approved",
            )
        else:
            resumed = rel.intent_at is not None
            if not resumed:
                conn.execute(
                    update(releases)
                    .where(releases.c.request_id == request_id)
                    .values(intent_at=_now(), released_by=actor)
                )
    if state != "released" or not (target / RESPONSE_JSON).exists():
        _write_and_record(ws, request_id, env, target, actor)
    out.mkdir(parents=True, exist_ok=True)
    for name in (RESPONSE_CSV, RESPONSE_JSON):
        shutil.copyfile(target / name, out / name)
    header = json.loads((target / RESPONSE_JSON).read_text())
    return Released(
        request_id,
        header["counts"]["disclosed"],
        header["counts"]["withheld"],
        out,
        header.get("checkpoint"),
        resumed or state == "released",
    )


def _write_and_record(
    ws: Workspace, request_id: str, env: dict[str, Any], target: Path, actor: str
) -> None:
    rows, fields = _response_rows(ws, request_id)
    target.mkdir(exist_ok=True)
    tmp = target / f".{RESPONSE_CSV}.tmp"
    con = duckdb.connect()
    try:
        con.register("r", rows)
        con.execute(f"COPY r TO '{tmp}' (HEADER, DELIMITER ',')")
    finally:
        con.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target / RESPONSE_CSV)
    response_sha = sha256_file(target / RESPONSE_CSV)
    disclosed = effective_outcomes(ws, request_id, only=("DISCLOSE", "CONFIRM")).to_pylist()
    now = _now()
    with ws.engine.begin() as conn:
        if current_state(conn, request_id) != "released":  # else: finishing the files only
            _record(conn, request_id, env, actor, disclosed, fields, response_sha, now)
    _finish(ws, request_id, env, target, rows, fields, len(disclosed), response_sha)


def _record(
    conn: Any,
    request_id: str,
    env: dict[str, Any],
    actor: str,
    disclosed: list[dict[str, Any]],
    fields: list[str],
    response_sha: str,
    now: dt.datetime,
) -> None:
    """One transaction: a ledger leaf and a disclosures row per disclosed item, the state."""
    recipients = sorted(str(o.get("id")) for o in env.get("officials") or [])
    # Each leaf commits to the recipient list by hash; the list itself is in release.done.
    recipients_sha = hashlib.sha256(json.dumps(recipients).encode()).hexdigest()
    done = {
        r[0]
        for r in conn.execute(
            select(disclosures.c.item_id).where(disclosures.c.request_id == request_id)
        )
    }
    new = [r for r in disclosed if r["item_id"] not in done]
    if new:
        conn.execute(
            insert(disclosures),
            [
                {
                    "request_id": request_id,
                    "item_id": r["item_id"],
                    "record_id": r["record_id"],
                    "fields": json.dumps(fields),
                    "at": now,
                }
                for r in new
            ],
        )
        log.append(
            conn,
            [
                Event(
                    "disclosure",
                    actor=actor,
                    request_id=request_id,
                    record_id=r["record_id"],
                    data={
                        "item_id": r["item_id"],
                        "fields": fields,
                        "provision": env["provision"],
                        "recipients_sha256": recipients_sha,
                        "ruleset_sha256": r["ruleset_sha256"],
                        "model_sha256": r["model_sha256"],
                    },
                )
                for r in new
            ],
        )
    log.append(
        conn,
        [
            Event(
                "release.done",
                actor=actor,
                request_id=request_id,
                data={
                    "response_sha256": response_sha,
                    "disclosed": len(disclosed),
                    "recipients": recipients,
                    "recipients_sha256": recipients_sha,
                },
            )
        ],
    )
    transition(conn, request_id, "released", actor=actor)
    conn.execute(
        update(releases)
        .where(releases.c.request_id == request_id)
        .values(released_at=now, response_sha256=response_sha)
    )


def _finish(
    ws: Workspace,
    request_id: str,
    env: dict[str, Any],
    target: Path,
    rows: pa.Table,
    fields: list[str],
    n_disclosed: int,
    response_sha: str,
) -> None:
    """Sign a checkpoint that holds the disclosures and write the response's header."""
    from custodes.ledger import service as ledger
    from custodes.ledger.keys import key_path

    checkpoint = None
    if key_path(ws).exists():
        _, note = ledger.checkpoint(ws)
        checkpoint = note.render()
        with ws.engine.begin() as conn:
            conn.execute(
                update(releases)
                .where(releases.c.request_id == request_id)
                .values(checkpoint=checkpoint)
            )
    prov = in_force(ws).provisions[env["provision"]]
    header = {
        "request_id": request_id,
        "provision": env["provision"],
        "citation": prov.citation,
        "agency": env.get("agency"),
        "recipients": env.get("officials") or [],
        "use_limits": prov.use_limits,
        "fields": fields,
        "counts": {
            "items": rows.num_rows,
            "disclosed": n_disclosed,
            "withheld": rows.num_rows - n_disclosed,
        },
        "response_sha256": response_sha,
        "checkpoint": checkpoint
        or "(no ledger key: run 'custodes ledger keygen' and 'custodes ledger checkpoint')",
        "answers": {
            "no information disclosed": "given alike for every item whose answer "
            "depends on the records (no match, ambiguous, address not on record)"
        },
    }
    tmp_json = target / f".{RESPONSE_JSON}.tmp"
    tmp_json.write_text(json.dumps(header, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_json, target / RESPONSE_JSON)
