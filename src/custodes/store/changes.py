"""One queue of pending changes, each confirmed by a second administrator by its id.

Every power that one administrator could otherwise use alone waits here: a new staff user
(their roles and the second half of their enrolment code), a further grant, an agency's API
key, a credential reset (the second half of the new code), the access policy, the registries
the statutory gate trusts (agencies and their safeguards, officials, agreements) and the master
file's imports. The id of a change is the SHA-256 of its canonical description (kind, subject,
what it changes, who proposed it and when, and a random nonce), so a confirmation names exactly
the change the confirmer was shown: a change edited or replaced since then has another id and
is refused.

This module keeps the queue (propose, list, look up, close, confirm); what confirming each kind
does lives with the rows it changes, in the room that owns them, which registers it here
(`register`): access (users, grants, keys, resets, policy), rules (registries), records
(imports). The store room sits below them all, so each can propose and none imports another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from custodes.errors import AccessDenied, ConflictError, NotFound
from custodes.store.tables import changes

# What each kind of change does, in words an administrator reads before confirming.
KINDS = {
    "user": "a new staff user: their privileged roles and the second half of their code",
    "grant": "a further privileged role",
    "key": "an agency account's API key",
    "reset": "a credential reset: the second half of the new enrolment code",
    "policy": "the access policy",
    "agency": "an agency in the registry, or its safeguards status",
    "official": "an official authorised to sign requests",
    "agreement": "an agreement that adds checks to a provision",
    "import": "the master file: the records and addresses that may be disclosed",
}

# What confirming each kind does: fn(conn, call, change) -> result, registered by the room
# that owns the rows, run inside the confirmation's transaction. A result may carry
# "after_commit": a callable run once that transaction has committed (what must never happen
# without its record, such as publishing a master file), whose dict joins the result.
Apply = Callable[[Any, Any, dict[str, Any]], dict[str, Any]]
_APPLY: dict[str, Apply] = {}
# Kinds about a user account: nobody confirms one about themselves.
ABOUT_A_USER = ("user", "grant", "key", "reset")


def register(kind: str, fn: Apply) -> None:
    assert kind in KINDS, kind
    _APPLY[kind] = fn


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def canonical(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def propose(
    conn: Connection,
    actor: str,
    kind: str,
    subject: str,
    summary: str,
    payload: dict[str, Any],
    *,
    slot: str | None = None,
) -> str:
    """Put a change in the queue and return its id. A pending change in the same `slot` (by
    default: same kind and subject) is superseded: only the newest one can be confirmed."""
    assert kind in KINDS, kind
    t = _now()
    slot = slot or f"{kind}:{subject}"
    description = {
        "kind": kind,
        "subject": subject,
        "summary": summary,
        "payload": payload,
        "proposed_by": actor,
        "proposed_at": t.isoformat(),
        "nonce": secrets.token_hex(16),
    }
    cid = hashlib.sha256(canonical(description)).hexdigest()
    end(conn, changes.c.slot == slot, "superseded")
    conn.execute(
        changes.insert().values(
            id=cid,
            kind=kind,
            subject=subject,
            slot=slot,
            summary=summary,
            payload=canonical(payload).decode(),
            proposed_by=actor,
            proposed_at=t,
        )
    )
    return cid


def end(conn: Connection, where: Any, reason: str) -> int:
    """End pending changes (superseded, withdrawn, their proposer suspended)."""
    return conn.execute(
        update(changes)
        .where(where, changes.c.confirmed_at.is_(None), changes.c.ended_at.is_(None))
        .values(ended_at=_now(), ended_reason=reason)
    ).rowcount


def _row(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "subject": r.subject,
        "summary": r.summary,
        "what": KINDS[r.kind],
        "payload": orjson.loads(r.payload),
        "proposed_by": r.proposed_by,
        "proposed_at": _aware(r.proposed_at),
    }


def pending(conn: Connection, subject: str | None = None) -> list[dict[str, Any]]:
    """Changes waiting for a second administrator, oldest first."""
    q = select(changes).where(changes.c.confirmed_at.is_(None), changes.c.ended_at.is_(None))
    if subject is not None:
        q = q.where(changes.c.subject == subject)
    return [_row(r) for r in conn.execute(q.order_by(changes.c.proposed_at, changes.c.id))]


def get_pending(conn: Connection, change_id: str, *, lock: bool = False) -> dict[str, Any]:
    """The pending change with this id, or a coded refusal saying why it cannot be confirmed.
    `lock` holds its row until the transaction ends (PostgreSQL `FOR UPDATE`), so a second
    confirmer, a superseding proposal or the proposer's suspension waits and then sees it
    confirmed."""
    q = select(changes).where(changes.c.id == (change_id or "").strip())
    r = conn.execute(q.with_for_update() if lock else q).first()
    if r is None:
        raise NotFound(
            "No change has that id; list the pending ones with 'custodes changes list'.",
            code="unknown_change",
        )
    if r.confirmed_at is not None:
        raise ConflictError(
            f"That change was already confirmed by {r.confirmed_by}.", code="not_pending"
        )
    if r.ended_at is not None:
        raise ConflictError(
            f"That change is no longer pending ({r.ended_reason}).", code="not_pending"
        )
    return _row(r)


def mark_confirmed(conn: Connection, change_id: str, actor: str) -> None:
    """Claim the change for this confirmation: only while it is still pending (a racing
    confirmation, supersession or end leaves no row to claim, and nothing is applied)."""
    done = conn.execute(
        update(changes)
        .where(
            changes.c.id == change_id,
            changes.c.confirmed_at.is_(None),
            changes.c.ended_at.is_(None),
        )
        .values(confirmed_by=actor, confirmed_at=_now())
    ).rowcount
    if done != 1:
        raise ConflictError("That change is no longer pending.", code="not_pending")


def confirm(call: Any, change_id: str) -> dict[str, Any]:
    """A second administrator confirms one pending change by its id (`call` is the door's
    checked call). Nobody confirms a change they proposed or one about their own account; what
    the change does is applied in the same transaction, and each kind's ledger event names the
    confirmer beside the proposer."""
    with call.transaction() as conn:
        change = get_pending(conn, change_id, lock=True)
        if change["proposed_by"] == call.actor:
            raise AccessDenied(
                "A second administrator must confirm what you issued.",
                code="separation_of_duties",
            )
        if change["kind"] in ABOUT_A_USER and change["subject"] == call.actor:
            raise AccessDenied(
                "Nobody confirms a change to their own account.", code="separation_of_duties"
            )
        mark_confirmed(conn, change["id"], call.actor)  # claimed first, then applied
        result = dict(_APPLY[change["kind"]](conn, call, change))
    after = result.pop("after_commit", None)
    if after is not None:  # what must not happen unless the record committed (a publish)
        result |= after()
    return {
        "change": change["id"],
        "kind": change["kind"],
        "subject": change["subject"],
        "summary": change["summary"],
        "proposed_by": change["proposed_by"],
        "confirmed_by": call.actor,
        **result,
    }
