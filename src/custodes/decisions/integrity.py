"""The business tables against the ledger: every row a ledger event commits to must agree.

The ledger's own audit (`ledger.audit.audit_store`) proves the events were not altered; this
one proves the tables people act on were not altered *behind* the events: a deleted disclosure
row, a request reset to `approved`, a changed review resolution or approver, a grant or
suspension edited in place, a deleted access-log row, an envelope edited on disk. Each problem
names the first row that disagrees and the event it disagrees with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, select

from custodes.access.credentials import item_key
from custodes.access.sessions import purpose_commit
from custodes.decisions.findings import Events, Findings, diff, last, read_events
from custodes.decisions.recall import certifier_commit
from custodes.ledger import anchors
from custodes.ledger.events import instant, item_sha256
from custodes.ledger.files import sha256_file
from custodes.requests.format import ENVELOPE_FILE
from custodes.requests.lifecycle import reason_commit
from custodes.store.tables import (
    access_log,
    disclosures,
    grants,
    recall_acknowledgements,
    recall_items,
    recalls,
    releases,
    request_transitions,
    requests,
    review_resolutions,
    users,
)
from custodes.workspace import Workspace


def audit(ws: Workspace) -> Findings:
    found = Findings()
    with ws.engine.connect() as conn:
        ev = read_events(conn)
        _requests(ws, conn, ev, found)
        _decisions(ws, conn, ev, found)
        _access(conn, ev, found)
    return found


def _requests(ws: Workspace, conn: Connection, ev: Events, found: Findings) -> None:
    rows = {r.id: r for r in conn.execute(select(requests))}
    received = {e["request_id"]: e for e in ev["request.received"]}
    diff(
        found,
        "requests",
        {k: (r.envelope_sha256, r.items_sha256, r.submitted_by) for k, r in rows.items()},
        {k: (e["envelope_sha256"], e["items_sha256"], e["actor"]) for k, e in received.items()},
        "request.received",
    )
    states = last((e["request_id"], e["to"]) for e in ev["request.transition"])
    diff(
        found,
        "request states",
        {k: (r.state,) for k, r in rows.items() if r.state != "received"},
        {k: (s,) for k, s in states.items()},
        "last request.transition",
    )
    for rid, r in sorted(rows.items()):
        env = ws.request_folder(rid) / ENVELOPE_FILE
        if env.exists() and sha256_file(env) != r.envelope_sha256:
            found.fail(
                "request files", f"{rid}: envelope.json no longer hashes to what was received"
            )
        decided = last((e["request_id"], e["outcomes_sha256"]) for e in ev["request.decided"]).get(
            rid
        )
        outcomes = ws.request_folder(rid) / "decisions" / "outcomes.parquet"
        if decided and outcomes.exists() and sha256_file(outcomes) != decided:
            found.fail(
                "request files",
                f"{rid}: decisions/outcomes.parquet was changed after it was decided",
            )
    found.ok("request files", "every envelope and outcomes file hashes to what the ledger recorded")


def _decisions(ws: Workspace, conn: Connection, ev: Events, found: Findings) -> None:
    key = item_key(ws)
    _reviews(key, conn, ev, found)
    _releases(conn, ev, found)
    _disclosures_and_recalls(key, conn, ev, found)


def _row_item(key: bytes, request_id: str, item_id: str) -> str:
    """A row's item as its ledger events name it: the salted commitment of its id."""
    return item_sha256(key, request_id, item_id)


def _event_item(key: bytes, e: dict[str, Any]) -> str:
    # Bodies written before ids were committed carry the id itself.
    if "item_sha256" in e:
        return str(e["item_sha256"])
    return _row_item(key, e["request_id"], str(e.get("item_id")))


def _reviews(key: bytes, conn: Connection, ev: Events, found: Findings) -> None:
    # Read once, each row's item committed once (a keyed hash): both checks below use them.
    rows = {
        (r.request_id, _row_item(key, r.request_id, r.item_id)): r
        for r in conn.execute(select(review_resolutions))
    }
    diff(
        found,
        "review_resolutions",
        {
            k: (
                r.decision,
                r.actor,
                r.record_id,
                hashlib.sha256(r.reason.encode()).hexdigest(),  # the event keeps its hash
            )
            for k, r in rows.items()
        },
        {
            (e["request_id"], _event_item(key, e)): (
                e["decision"],
                e["actor"],
                e["record_id"],
                e["reason_sha256"],
            )
            for e in ev["review.resolved"]
        },
        "review.resolved",
    )
    # When it was settled (an item's explanation shows it): the event carries the row's time;
    # events recorded before it did took theirs a moment after the row's, in the same
    # transaction (a large group: minutes), so a row may precede its event by up to an hour.
    times = {(e["request_id"], _event_item(key, e)): e.get("time") for e in ev["review.resolved"]}
    for k, r in rows.items():
        t = times.get(k)
        if t is not None and not _settled_before(r.at, t):
            found.fail(
                "review_resolutions (time)",
                f"row {r.request_id}: a resolution's time is not the moment its review.resolved "
                "event was recorded (edited behind the ledger)",
            )
    found.ok("review_resolutions (time)", f"{len(times)} resolutions' times agree with events")


def _settled_before(row_at: Any, event_time: Any, *, within: float = 3600.0) -> bool:
    """A row's time at most `within` seconds before its event's (never after)."""
    a, b = instant(row_at), instant(event_time)
    try:
        gap = (
            dt.datetime.fromisoformat(str(b)) - dt.datetime.fromisoformat(str(a))
        ).total_seconds()
    except (TypeError, ValueError):
        return False
    return 0 <= gap <= within


def _releases(conn: Connection, ev: Events, found: Findings) -> None:
    """Each release's preparer, approver and response against its events; one release.done
    per request."""
    rel = {r.request_id: r for r in conn.execute(select(releases))}
    prepared = last(
        (e["request_id"], (e["actor"], e["content_sha256"])) for e in ev["release.prepared"]
    )
    diff(
        found,
        "releases (prepared)",
        {k: (r.prepared_by, r.outcomes_sha256) for k, r in rel.items()},
        prepared,
        "release.prepared",
    )
    approved = last((e["request_id"], (e["actor"],)) for e in ev["release.approved"])
    diff(
        found,
        "releases (approved)",
        {k: (r.approved_by,) for k, r in rel.items() if r.approved_by},
        approved,
        "release.approved",
    )
    # The intent (crash recovery: set with the releaser before anything is written, no event
    # of its own) is read at release: one set alone would make the answer say "resumed".
    for k, r in sorted(rel.items()):
        if (r.intent_at is not None or r.released_at is not None) != (
            r.intent_at is not None and r.released_by is not None
        ):
            found.fail(
                "releases (intent)",
                f"row {k}: its intent, releaser and release time do not go together "
                "(edited behind the ledger)",
            )
    found.ok("releases (intent)", f"{len(rel)} releases rows' intents are whole")
    _releasers(rel, ev, found)
    done: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in ev["release.done"]:
        done[e["request_id"]].append(e)
    for rid, evs in sorted(done.items()):
        if len(evs) > 1:
            found.fail("releases (done)", f"{rid} was released {len(evs)} times")
    diff(
        found,
        "releases (done)",
        {k: (r.response_sha256,) for k, r in rel.items() if r.released_at},
        {k: (v[0]["response_sha256"],) for k, v in done.items()},
        "release.done",
    )


def _releasers(rel: dict[str, Any], ev: Events, found: Findings) -> None:
    """Who set a release's intent (`released_by`, no event of its own; the one who finishes a
    crashed release, the `release.done` actor, may be another) was let in by the door to
    release that request: its allowed `release` call is in the ledger."""
    let_in = {
        (e.get("request_id"), e["actor"])
        for e in ev["access"]
        if e.get("action") == "release" and e.get("allowed")
    }
    for k, r in sorted(rel.items()):
        if r.released_by is not None and (k, r.released_by) not in let_in:
            found.fail(
                "releases (releaser)",
                f"row {k}: its releaser made no release call on it the ledger recorded "
                "(edited behind the ledger)",
            )
    found.ok("releases (releaser)", f"{len(rel)} releasers made their release calls")


def _disclosures_and_recalls(key: bytes, conn: Connection, ev: Events, found: Findings) -> None:
    diff(
        found,
        "disclosures",
        {
            (r.request_id, _row_item(key, r.request_id, r.item_id)): (
                r.record_id,
                _listed(r.fields),
            )
            for r in conn.execute(select(disclosures))
        },
        {
            (e["request_id"], _event_item(key, e)): (e["record_id"], _listed(e["fields"]))
            for e in ev["disclosure"]
        },
        "disclosure",
    )
    _recalls(key, conn, ev, found)


def _listed(fields: Any) -> tuple[Any, ...] | str:
    """The fields a disclosure row (JSON text) or event (a list) names, alike; a row whose
    text is no JSON list is kept as it is, so it differs."""
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            return str(fields)
    return tuple(fields) if isinstance(fields, list) else str(fields)


def _recalls(key: bytes, conn: Connection, ev: Events, found: Findings) -> None:
    rows = conn.execute(select(recalls).order_by(recalls.c.id)).all()  # read once, used below
    diff(
        found,
        "recall_items",
        {
            (r.recall_id, r.request_id, _row_item(key, r.request_id, r.item_id)): ()
            for r in conn.execute(select(recall_items))
        },
        {
            (e["recall_id"], e["request_id"], _event_item(key, e)): ()
            for e in ev["disclosure.recalled"]
        },
        "disclosure.recalled",
    )
    diff(
        found,
        "recalls (certified)",
        {r.id: (r.certified_on.isoformat(), r.recorded_by) for r in rows if r.certified_on},
        {e["recall_id"]: (e["certified_on"], e["actor"]) for e in ev["recall.certified"]},
        "recall.certified",
    )
    diff(
        found,
        "recalls (notice)",
        {
            r.id: (hashlib.sha256(r.notice.encode()).hexdigest(),)
            for r in rows
            if r.notice is not None
        },
        {e["recall_id"]: (e["notice_sha256"],) for e in ev["recall.issued"]},
        "recall.issued",
    )
    diff(
        found,
        "recall_acknowledgements",
        {(r.recall_id, r.agency): () for r in conn.execute(select(recall_acknowledgements))},
        {(e["recall_id"], e["agency"]): () for e in ev["recall.acknowledged"]},
        "recall.acknowledged",
    )
    _recall_texts(rows, conn, ev, found)
    _recall_facts(rows, ev, found)


def _recall_facts(rows: Sequence[Row[Any]], ev: Events, found: Findings) -> None:
    """What the recalls page lists of each recall beside its reason: who issued it (the
    `recall.issued` event's actor), how many disclosures it recalled (its `disclosure.recalled`
    events) and when (the time in the notice it was issued with, whose hash is compared
    above). Recalls issued before notices were kept have no `recall.issued` event and are
    not compared."""
    issued = {e["recall_id"]: e["actor"] for e in ev["recall.issued"]}
    recalled: dict[str, int] = defaultdict(int)
    for e in ev["disclosure.recalled"]:
        recalled[e["recall_id"]] += 1
    for r in (r for r in rows if r.id in issued):
        at = _notice_field(r.notice, "issued_at")
        if (
            r.actor != issued[r.id]
            or r.items != recalled[r.id]
            or (at is not None and _seconds(r.at) != at)
        ):
            found.fail(
                "recalls (issued)",
                f"row {r.id}: who issued it, how many it recalled or when differs from its "
                "recall.issued and disclosure.recalled events (edited behind the ledger)",
            )
    found.ok("recalls (issued)", f"{len(issued)} recalls agree with their issuing events")


def _recall_texts(rows: Sequence[Row[Any]], conn: Connection, ev: Events, found: Findings) -> None:
    """What `recalls` lists beside the ledger's facts: the reason, against the notice it was
    issued with (the notice's hash is in `recall.issued`, compared above), and who certified,
    against the keyed commitment `recall.certified` carries (events written before carry none
    and are not compared; nor are recalls issued before notices were kept)."""
    committed = {
        e["recall_id"]: e["certified_by_hmac"]
        for e in ev["recall.certified"]
        if "certified_by_hmac" in e
    }
    k = anchors.key(conn) if committed else b""
    compared = 0
    for r in rows:
        issued = _notice_field(r.notice, "reason")
        if issued is not None and r.reason != issued:
            found.fail(
                "recalls (reason)",
                f"row {r.id}: its reason differs from the notice it was issued with "
                "(edited behind the ledger)",
            )
        compared += issued is not None
        if r.id in committed and certifier_commit(k, r.id, r.certified_by) != committed[r.id]:
            found.fail(
                "recalls (certified by)",
                f"row {r.id}: who certified differs from what its recall.certified event "
                "committed (edited behind the ledger)",
            )
    found.ok("recalls (reason)", f"{compared} recall reasons agree with their notices")
    found.ok("recalls (certified by)", f"{len(committed)} certifiers agree with their events")


def _notice_field(notice: str | None, key: str) -> str | None:
    """A text field of a stored notice (None: no notice, or no such text readable there)."""
    try:
        value = json.loads(notice)[key] if notice is not None else None
    except (ValueError, TypeError, KeyError):
        return None
    return value if isinstance(value, str) else None


def _seconds(v: Any) -> str:
    """A row's time as a notice gives it (UTC, to the second); what is no time, as it is."""
    if isinstance(v, dt.datetime):
        return (
            (v if v.tzinfo else v.replace(tzinfo=dt.UTC))
            .astimezone(dt.UTC)
            .isoformat(timespec="seconds")
        )
    return str(v)


def _access(conn: Connection, ev: Events, found: Findings) -> None:
    _grants(conn, ev, found)
    _user_status(conn, ev, found)
    _access_log(conn, ev, found)
    _request_history(conn, ev, found)


def _grants(conn: Connection, ev: Events, found: Findings) -> None:
    # Grants: created with the user or granted later, confirmed by a second administrator
    # (or at once for roles that need no confirmation); suspending an administrator withdraws
    # the grants they made that nobody confirmed.
    state: dict[tuple[str, str], tuple[bool, str]] = {}
    for e in sorted(
        ev["user.created"] + ev["user.granted"] + ev["user.confirmed"] + ev["user.suspended"],
        key=lambda e: e["_idx"],
    ):
        if e["type"] == "user.created":
            for role in e["roles"]:
                state[(e["user"], role)] = (
                    role not in e.get("pending_confirmation", []),
                    e["actor"],
                )
        elif e["type"] == "user.granted":
            state[(e["user"], e["role"])] = (not e.get("pending_confirmation", False), e["actor"])
        elif e["type"] == "user.confirmed":
            for role in e["roles"]:
                state[(e["user"], role)] = (True, state.get((e["user"], role), (True, ""))[1])
        else:  # user.suspended
            for key, (ok, by) in list(state.items()):
                if not ok and by == e["user"]:
                    del state[key]
    granted = {k: (ok,) for k, (ok, _) in state.items()}
    diff(
        found,
        "grants",
        {
            (r.user_name, r.role): (r.confirmed_at is not None,)
            for r in conn.execute(select(grants))
        },
        granted,
        "user.created / user.granted / user.confirmed",
    )


def _user_status(conn: Connection, ev: Events, found: Findings) -> None:
    status = last(
        (e["user"], "suspended" if e["type"] == "user.suspended" else "active")
        for e in sorted(ev["user.suspended"] + ev["user.reinstated"], key=lambda e: e["_idx"])
    )
    diff(
        found,
        "users (status)",
        {
            r.name: (r.status,)
            for r in conn.execute(select(users))
            if r.status != "active" or r.name in status
        },
        {k: (v,) for k, v in status.items()},
        "user.suspended / user.reinstated",
    )


def _access_log(conn: Connection, ev: Events, found: Findings) -> None:
    # A row's number is the store's to give: SQLite gives the highest number again once its
    # row is deleted, so the last row of the log (the deleter's own trace) could be deleted
    # and its number taken by the next access, whose event would then stand for both. The
    # ledger never records two accesses under one number: a second is that deletion.
    seen: set[int] = set()
    for e in ev["access"]:
        if e["log_id"] in seen:
            found.fail(
                "access_log",
                f"the ledger records two accesses as row {e['log_id']}: the row of the first "
                "was deleted and its number given again",
            )
        seen.add(e["log_id"])
    diff(
        found,
        "access_log",
        {
            r.id: (
                r.action,
                bool(r.allowed),
                r.reason,
                r.user_name or "anonymous",
                r.request_id,
                r.record_id,
                instant(r.at),
            )
            for r in conn.execute(select(access_log))
        },
        {
            e["log_id"]: (
                e["action"],
                e["allowed"],
                e["reason"],
                e["actor"],
                e.get("request_id"),
                e.get("record_id"),
                instant(e.get("time")),
            )
            for e in ev["access"]
        },
        "access",
    )
    # The purpose (free text, in the store only) against the keyed commitment its event
    # carries; events written before it was kept carry none and are not compared (a row with
    # no event is reported above).
    committed = {e["log_id"]: e["purpose_hmac"] for e in ev["access"] if "purpose_hmac" in e}
    if not committed:
        return
    k = anchors.key(conn)
    for r in conn.execute(select(access_log.c.id, access_log.c.purpose).order_by(access_log.c.id)):
        if r.id in committed and purpose_commit(k, r.id, r.purpose) != committed[r.id]:
            found.fail(
                "access_log (purpose)",
                f"row {r.id}: its purpose differs from what its access event committed "
                "(edited behind the ledger)",
            )
    found.ok(
        "access_log (purpose)", f"{len(committed)} access_log purposes agree with their events"
    )


def _request_history(conn: Connection, ev: Events, found: Findings) -> None:
    # A request's history (`requests show`): one row per request.received and
    # request.transition event, in the same order (a row put in, dropped or altered is named).
    history: dict[str, list[Any]] = defaultdict(list)
    for r in conn.execute(select(request_transitions).order_by(request_transitions.c.id)):
        history[r.request_id].append(r)
    recorded: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(ev["request.received"] + ev["request.transition"], key=lambda e: e["_idx"]):
        recorded[e["request_id"]].append(e)
    diff(
        found,
        "request_transitions",
        {
            (rid, n): (r.from_state, r.to_state, r.actor)
            for rid, rows in history.items()
            for n, r in enumerate(rows)
        },
        {(rid, n): _step(e) for rid, steps in recorded.items() for n, e in enumerate(steps)},
        "request.received / request.transition",
    )
    _history_details(conn, history, recorded, found)


def _step(e: dict[str, Any]) -> tuple[Any, ...]:
    if e["type"] == "request.received":
        return (None, "received", e["actor"])
    return (e.get("from"), e.get("to"), e["actor"])


def _history_details(
    conn: Connection,
    history: dict[str, list[Any]],
    recorded: dict[str, list[dict[str, Any]]],
    found: Findings,
) -> None:
    """Each history row's time and reason (what `requests show` lists beside the step)
    against its event: the event's time, and the keyed commitment to the reason its body
    carries. Events written before they carried it are not compared."""
    k: bytes | None = None
    compared = 0
    for rid, rows in sorted(history.items()):
        for r, e in zip(rows, recorded.get(rid, []), strict=False):
            if "reason_hmac" not in e:
                continue
            k = k or anchors.key(conn)
            compared += 1
            if instant(r.at) != instant(e.get("time")) or e["reason_hmac"] != reason_commit(
                k, rid, r.from_state, r.to_state, r.reason
            ):
                found.fail(
                    "request_transitions (time, reason)",
                    f"row {r.id} ({rid}): its time or reason differs from its "
                    f"{e['type']} event (edited behind the ledger)",
                )
    found.ok(
        "request_transitions (time, reason)",
        f"{compared} request_transitions times and reasons agree with their events",
    )
