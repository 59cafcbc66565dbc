"""The inspection trail (UNAX): sensitive records, and what auditors look for in the log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from custodes.access.users import aware, now
from custodes.errors import InputError
from custodes.ledger import anchors, log
from custodes.ledger.event_types import RecordFlaggedSensitive
from custodes.store.tables import access_log, requests, sensitive_records, users
from custodes.workspace import Call

# Refusal reasons of `records show` that mean "no open request ties this look to a case".
UNLINKED = ("no_case", "request_closed", "unknown_request", "not_a_candidate")


def flag_sensitive(call: Call, record_id: str, reason: str) -> None:
    """Mark a record sensitive (e.g. a public figure, a victim): every inspection of it is
    reported to auditors."""
    if not reason or not reason.strip():
        raise InputError("Flagging a record sensitive needs a reason.", code="bad_argument")
    with call.transaction() as conn:
        anchors.delete_rows(
            conn, call.actor, sensitive_records, sensitive_records.c.record_id == record_id
        )
        anchors.insert(
            conn,
            call.actor,
            sensitive_records,
            record_id=record_id,
            reason=reason.strip(),
            flagged_by=call.actor,
            flagged_at=now(),
        )
        log.append_one(conn, RecordFlaggedSensitive(), actor=call.actor, record_id=record_id)


def audit_inspections(conn: Connection, *, spike: int = 50) -> dict[str, Any]:
    """What an auditor looks for: every inspection allowed, with the ground it was allowed on;
    inspections not tied to a candidate of an open request (refused, so attempted);
    inspections by the person who submitted or keyed in the request they name (a request made
    up to browse a taxpayer); inspections of sensitive records; days on which one user
    inspected more than `spike` records; and any action by a suspended user after the
    suspension."""
    shows = conn.execute(
        select(access_log)
        .where(access_log.c.action == "records.show", access_log.c.record_id.is_not(None))
        .order_by(access_log.c.at)
    ).all()
    sensitive = {r[0] for r in conn.execute(select(sensitive_records.c.record_id))}
    suspended = {
        u.name: aware(u.status_at)
        for u in conn.execute(select(users).where(users.c.status == "suspended"))
    }
    after = []
    for name, since in suspended.items():
        rows = conn.execute(
            select(access_log).where(access_log.c.user_name == name, access_log.c.allowed)
        ).all()
        after += [r for r in rows if since is not None and aware(r.at) > since]

    def row(r: Any) -> dict[str, Any]:
        return {
            "at": aware(r.at),
            "user": r.user_name,
            "record_id": r.record_id,
            "request_id": r.request_id,
            "allowed": r.allowed,
            "reason": r.reason,
        }

    submitted_by = dict(conn.execute(select(requests.c.id, requests.c.submitted_by)).all())
    per_day: dict[tuple[str, str], int] = {}
    for r in shows:
        if r.allowed:
            key = (r.user_name, str(aware(r.at).date()))
            per_day[key] = per_day.get(key, 0) + 1
    return {
        "inspections": len(shows),
        "allowed": [row(r) for r in shows if r.allowed],
        "without_open_request": [row(r) for r in shows if r.reason in UNLINKED],
        "by_submitter": [
            row(r)
            for r in shows
            if r.allowed and r.request_id and submitted_by.get(r.request_id) == r.user_name
        ],
        "sensitive": [row(r) for r in shows if r.record_id in sensitive],
        "volume_spikes": [
            {"user": u, "day": d, "inspections": n}
            for (u, d), n in sorted(per_day.items())
            if n > spike
        ],
        "actions_by_suspended_users": [row(r) | {"action": r.action} for r in after],
        "checked_at": now(),
    }
