"""Release: write the approved response, with one ledger leaf per disclosure, exactly once.

Crash safety: the release is first recorded as an intent; the response is rebuilt from the
approved outcomes (deterministic) and written atomically into the request's folder; then, in
one transaction, one ledger leaf and one `disclosures` row per disclosed item, `release.done`
and the state ``released``; then a checkpoint is signed and the header written. A restarted
release finishes the same way; the response is handed out only after that transaction
committed.

Integrity: release refuses (coded error and a `release.refused` ledger event) when what it is
about to write is not what was approved — an edited outcomes file, resolution or envelope —,
when a disclosed item lacks its permitted value, when the ledger already records a release of
this request (a reset state is not a second chance), and when it cannot sign a checkpoint.
Writing the files again for a released request is a recorded delivery.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, update

from custodes.access.credentials import item_key
from custodes.decisions.pipeline import checked, drop_unrecorded, request_folder
from custodes.decisions.response import (
    RESPONSE_CSV,
    RESPONSE_JSON,
    Content,
    content,
    header,
    header_bytes,
)
from custodes.errors import ConflictError, IntegrityError
from custodes.ledger import checkpoints, files, log
from custodes.ledger.event_types import Disclosure, ReleaseDelivered, ReleaseDone, ReleaseRefused
from custodes.ledger.events import Event, item_sha256
from custodes.ledger.keys import signing_key
from custodes.requests.lifecycle import current_state, transition
from custodes.store.engine import bulk_insert
from custodes.store.files import csv_bytes, out_folder, write_new, write_replace
from custodes.store.tables import disclosures, ledger_events, releases, requests
from custodes.workspace import Call


@dataclass
class Released:
    request_id: str
    disclosed: int
    withheld: int
    response: Path | None
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _refuse(call: Call, request_id: str, why: str, message: str) -> IntegrityError:
    with call.transaction() as conn:
        log.append_one(conn, ReleaseRefused(why=why), actor=call.actor, request_id=request_id)
    return IntegrityError(message, code="release_tampered")


def _released_in_ledger(conn: Connection, request_id: str) -> int:
    return (
        conn.execute(
            select(func.count())
            .select_from(ledger_events)
            .where(
                ledger_events.c.type == ReleaseDone.TYPE, ledger_events.c.request_id == request_id
            )
        ).scalar()
        or 0
    )


def _verify(call: Call, request_id: str, c: Content, approved_sha: str, envelope_sha: str) -> None:
    if c.envelope_sha256 != envelope_sha:
        raise _refuse(
            call,
            request_id,
            "envelope",
            f"The envelope of {request_id} was changed on disk since it was received; "
            "nothing was released.",
        )
    if c.sha256 != approved_sha:
        raise _refuse(
            call,
            request_id,
            "content",
            f"What release would write for {request_id} is not what was approved (the "
            "outcomes, a resolution or the recipients changed); nothing was released.",
        )
    empty = [d["item_id"] for d in c.disclosed if any(v is None for v in d["values"])]
    if empty:
        raise _refuse(
            call,
            request_id,
            "empty_value",
            f"{len(empty)} disclosure(s) would carry no permitted value (first: item "
            f"{empty[0]}); nothing was released.",
        )


def release(call: Call, request_id: str, out: Path | None) -> Released:
    """Write the response of an approved release (or finish one that was interrupted), and
    deliver it to `out` (a new folder, or one without response files); with `out` None the
    response stays in the workspace, for the agency to download (`download`)."""
    ws = call.ws
    folder = request_folder(ws, request_id)
    target = folder / "release"
    if out is not None:
        out_folder(out)
        there = [
            n for n in (RESPONSE_CSV, RESPONSE_JSON) if (out / n).exists() or (out / n).is_symlink()
        ]
        # One file there that is the released one, byte for byte: a delivery interrupted
        # between its two files (bench/crash.py), finished now; anything else is refused.
        if len(there) == 2 or any(not _same(out / n, target / n) for n in there):
            raise ConflictError(
                f"{out / there[0]} already exists; deliver into a new folder.",
                code="output_exists",
            )
    signing_key(ws)  # refuse now, before anything is recorded, when nothing can be signed
    with call.transaction() as conn:
        state = current_state(conn, request_id)
        rel = conn.execute(select(releases).where(releases.c.request_id == request_id)).first()
        envelope_sha = conn.execute(
            select(requests.c.envelope_sha256).where(requests.c.id == request_id)
        ).scalar()
        if state != "released" and (state != "approved" or rel is None or rel.approved_by is None):
            raise ConflictError(
                f"Request {request_id} is {state}: only an approved release can be released.",
                code="not_approved",
            )
        if state != "released" and _released_in_ledger(conn, request_id):
            raise IntegrityError(
                f"The ledger already records a release of {request_id} although the store "
                "says it is not released: the store was altered; nothing is released twice "
                "(run 'custodes ledger verify').",
                code="already_released",
            )
        # (rel is there unless the request is released: refused above)
        resumed = state == "released" or (rel is not None and rel.intent_at is not None)
        if state == "approved" and rel is not None and rel.intent_at is None:
            conn.execute(
                update(releases)
                .where(releases.c.request_id == request_id)
                .values(intent_at=_now(), released_by=call.actor)
            )
    assert rel is not None and envelope_sha is not None
    drop_unrecorded(ws, folder, ("response.csv", "response.json"))  # written again below
    checked(call, request_id, with_master=True)  # an intent alone discloses nothing
    if state != "released" or not (target / RESPONSE_JSON).exists():
        c = content(ws, request_id)
        _verify(call, request_id, c, rel.outcomes_sha256, envelope_sha)
        _write_and_record(call, request_id, target, c)
    csv_data = (target / RESPONSE_CSV).read_bytes()
    json_data = (target / RESPONSE_JSON).read_bytes()
    if out is not None:
        for name, data in ((RESPONSE_CSV, csv_data), (RESPONSE_JSON, json_data)):
            if not (out / name).exists():  # else: delivered already, the same bytes (above)
                write_new(out / name, data)
    doc = json.loads(json_data)
    if state == "released" and out is not None:
        _delivered(call, request_id, csv_data, doc)
    return Released(
        request_id,
        doc["counts"]["disclosed"],
        doc["counts"]["withheld"],
        out,
        doc.get("checkpoint"),
        resumed,
    )


def _same(delivered: Path, released: Path) -> bool:
    """A file (not a link) in the delivery folder that is the released one, byte for byte."""
    return (
        not delivered.is_symlink()
        and released.is_file()
        and delivered.read_bytes() == released.read_bytes()
    )


def _delivered(call: Call, request_id: str, csv_data: bytes, doc: dict[str, Any]) -> None:
    """A copy of a released response went out again: recorded."""
    with call.transaction() as conn:
        log.append_one(
            conn,
            ReleaseDelivered(
                response_sha256=hashlib.sha256(csv_data).hexdigest(),
                rows=doc["counts"]["items"],
            ),
            actor=call.actor,
            request_id=request_id,
        )


def download(call: Call, request_id: str) -> dict[str, bytes]:
    """The released response files (response.csv, response.json with the signed checkpoint)
    for the requesting agency or an officer; each download is recorded. Another agency's
    request is unknown to a requester; one not released (or recalled) has nothing to give."""
    with call.ws.engine.connect() as conn:
        state = current_state(conn, request_id, agency=call.agency)
    target = request_folder(call.ws, request_id) / "release"
    if state != "released" or not (target / RESPONSE_JSON).exists():
        raise ConflictError(
            f"Request {request_id} is {state}: there is no released response to download.",
            code="not_released",
        )
    checked(call, request_id)
    out = {n: (target / n).read_bytes() for n in (RESPONSE_CSV, RESPONSE_JSON)}
    _delivered(call, request_id, out[RESPONSE_CSV], json.loads(out[RESPONSE_JSON]))
    return out


def _write_and_record(call: Call, request_id: str, target: Path, c: Content) -> None:
    csv_data = csv_bytes(c.rows)
    write_replace(target / RESPONSE_CSV, csv_data)
    response_sha = hashlib.sha256(csv_data).hexdigest()
    now = _now()
    with call.transaction() as conn:
        if current_state(conn, request_id) != "released":  # else: finishing the files only
            _record(conn, call.actor, request_id, c, response_sha, now, item_key(call.ws))
        files.record(
            conn,
            call.ws,
            call.actor,
            "response.csv",
            target / RESPONSE_CSV,
            request_id=request_id,
            sha256=response_sha,
        )
    _, note = checkpoints.checkpoint(call)
    checkpoint = note.render()
    with call.transaction() as conn:
        conn.execute(
            update(releases)
            .where(releases.c.request_id == request_id)
            .values(checkpoint=checkpoint)
        )
    write_replace(
        target / RESPONSE_JSON,
        header_bytes(header(call.ws, request_id, c, response_sha, checkpoint)),
    )
    with call.transaction() as conn:
        files.record(
            conn,
            call.ws,
            call.actor,
            "response.json",
            target / RESPONSE_JSON,
            request_id=request_id,
        )


def _record(
    conn: Connection,
    actor: str,
    request_id: str,
    c: Content,
    response_sha: str,
    now: dt.datetime,
    key: bytes,
) -> None:
    """One transaction: a ledger leaf and a disclosures row per disclosed item, the state.
    A leaf names its item by the item's salted commitment, never by the agency's id."""
    recipients = sorted(str(o.get("id")) for o in c.recipients)
    # Each leaf commits to the recipient list by hash; the list itself is in release.done.
    recipients_sha = hashlib.sha256(json.dumps(recipients).encode()).hexdigest()
    done = {
        r[0]
        for r in conn.execute(
            select(disclosures.c.item_id).where(disclosures.c.request_id == request_id)
        )
    }
    new = [d for d in c.disclosed if d["item_id"] not in done]
    if new:
        fields = json.dumps(c.fields)
        # In the column order of disclosures; a million rows go to the driver as they are.
        bulk_insert(
            conn,
            disclosures,
            [(request_id, d["item_id"], d["record_id"], fields, now) for d in new],
        )
        log.append(
            conn,
            [
                Event(
                    Disclosure(
                        item_sha256=item_sha256(key, request_id, d["item_id"]),
                        fields=c.fields,
                        provision=c.envelope["provision"],
                        agency=c.envelope.get("agency"),
                        recipients_sha256=recipients_sha,
                        ruleset_sha256=d["ruleset_sha256"],
                        model_sha256=d["model_sha256"],
                    ),
                    at=now,
                    actor=actor,
                    request_id=request_id,
                    record_id=d["record_id"],
                )
                for d in new
            ],
        )
    log.append_one(
        conn,
        ReleaseDone(
            response_sha256=response_sha,
            content_sha256=c.sha256,
            disclosed=len(c.disclosed),
            recipients=recipients,
            recipients_sha256=recipients_sha,
        ),
        actor=actor,
        request_id=request_id,
    )
    transition(conn, request_id, "released", actor=actor)
    conn.execute(
        update(releases)
        .where(releases.c.request_id == request_id)
        .values(released_at=now, response_sha256=response_sha)
    )
