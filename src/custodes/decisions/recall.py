"""Recall: marking disclosures improper, the return-or-destroy notice, and its certification.

A recall names a whole released request or a file of (request_id, item_id) pairs. Each
recalled disclosure gets a ledger leaf (``disclosure.recalled``, with the opaque record id), so
the accounting of disclosures shows it; a request whose every disclosure is recalled moves to
``recalled``. The notice tells the recipient agency which items and fields to return or destroy;
the recall stays open until somebody records the recipient's certification of destruction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from custodes.access.credentials import item_key
from custodes.errors import ConflictError, InputError, IntegrityError, NotFound
from custodes.ledger import anchors, files, log
from custodes.ledger.event_types import (
    DisclosureRecalled,
    RecallAcknowledged,
    RecallCertified,
    RecallIssued,
    parse_as,
)
from custodes.ledger.events import Event, item_sha256
from custodes.ledger.files import sha256_file
from custodes.records.files import read_text_table
from custodes.requests.format import ENVELOPE_FILE
from custodes.requests.lifecycle import current_state, transition
from custodes.rules.active import in_force
from custodes.store.files import out_folder, write_new
from custodes.store.tables import (
    disclosures,
    ledger_events,
    recall_acknowledgements,
    recall_items,
    recalls,
    requests,
)
from custodes.workspace import Call, Workspace

RETURN_WITHIN_DAYS = 30


def _targets(
    ws: Workspace, request_id: str | None, items_file: Path | None, items: list[str] | None
) -> list[tuple[str, str]]:
    if (request_id is None) == (items_file is None) or (items is not None and request_id is None):
        raise InputError(
            "Name a released request (and, if you like, some of its items) or give --items "
            "FILE (request_id, item_id), not both.",
            code="bad_argument",
        )
    with ws.engine.connect() as conn:
        if request_id is not None and items is not None:
            chosen = list(dict.fromkeys(i.strip() for i in items if i.strip()))
            if not chosen:
                raise InputError("Choose at least one item to recall.", code="no_items")
            current_state(conn, request_id)  # an unknown request is 404
            known = {
                r[0]
                for r in conn.execute(
                    select(disclosures.c.item_id).where(
                        disclosures.c.request_id == request_id,
                        disclosures.c.item_id.in_(chosen),
                    )
                )
            }
            missing = [i for i in chosen if i not in known]
            if missing:
                raise NotFound(
                    f"{len(missing)} of the chosen items of {request_id} were not disclosed "
                    f"(the first: {missing[0]}).",
                    code="not_disclosed",
                )
            return [(request_id, i) for i in chosen]
        if request_id is not None:
            state = current_state(conn, request_id)
            rows = conn.execute(
                select(disclosures.c.request_id, disclosures.c.item_id).where(
                    disclosures.c.request_id == request_id
                )
            ).all()
            if state != "released":
                raise ConflictError(
                    f"Request {request_id} is {state}; only a released request can be recalled.",
                    code="illegal_transition",
                )
            if not rows:
                raise ConflictError(
                    f"Request {request_id} disclosed nothing; there is nothing to recall.",
                    code="nothing_disclosed",
                )
            return [(r[0], r[1]) for r in rows]
        assert items_file is not None
        table = read_text_table(items_file, ("request_id", "item_id"))
        off = 1 if items_file.suffix.lower() == ".csv" else 0
        wanted = [
            (r["request_id"].strip(), r["item_id"].strip(), r["_row"] + off)
            for r in table.to_pylist()
        ]
        if not wanted:
            raise InputError(f"{items_file.name}: no items to recall.", code="no_items")
        known = {
            (r[0], r[1])
            for r in conn.execute(
                select(disclosures.c.request_id, disclosures.c.item_id).where(
                    disclosures.c.request_id.in_({w[0] for w in wanted})
                )
            )
        }
        for req, item, line in wanted:
            if (req, item) not in known:
                raise NotFound(
                    f"{items_file.name}:{line}: item {item} of {req} was not disclosed.",
                    code="not_disclosed",
                )
        return list(dict.fromkeys((w[0], w[1]) for w in wanted))


def recall(
    call: Call,
    *,
    reason: str,
    request_id: str | None = None,
    items_file: Path | None = None,
    items: list[str] | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Recall disclosures: a whole released request, chosen `items` (item ids) of one, or the
    (request_id, item_id) pairs of `items_file`. The return-or-destroy notice is kept in the
    store (its hash in the ledger, event ``recall.issued``) and written to the workspace.
    Returns what was affected."""
    ws, actor = call.ws, call.actor
    if not reason or not reason.strip():
        raise InputError("A recall needs a reason (e.g. the court ruling).", code="bad_argument")
    if out is not None:
        out_folder(out)
    if request_id is not None and items is None and (done := _resume(call, request_id, out)):
        return done
    targets = _targets(ws, request_id, items_file, items)
    recall_id = f"rcl-{secrets.token_hex(6)}"
    now = dt.datetime.now(dt.UTC)
    key = item_key(ws)
    with call.transaction() as conn:
        targets = _not_recalled(conn, targets, whole=request_id is not None and items is None)
        _record_recall(conn, recall_id, reason.strip(), actor, now, targets, key)
        _close_recalled_requests(conn, targets, actor, reason.strip())
        fields, agencies = _notice_inputs(conn, ws, targets)
        notice = _notice(ws, recall_id, reason.strip(), now, targets, fields, agencies)
        text = json.dumps(notice, indent=2, ensure_ascii=False) + "\n"
        conn.execute(update(recalls).where(recalls.c.id == recall_id).values(notice=text))
        log.append_one(
            conn, RecallIssued(recall_id=recall_id, notice_sha256=_sha(text)), actor=actor
        )
    folder = out or ws.home / "recalls" / recall_id
    _write_notice(call, folder, text, recorded=out is None)
    return _info(recall_id, len(targets), folder, notice)


def _not_recalled(
    conn: Connection, targets: list[tuple[str, str]], *, whole: bool
) -> list[tuple[str, str]]:
    """The targets no recall covers yet. For a `whole` request, what is not recalled yet (an
    earlier recall of some items stands; only when nothing is left is it a conflict); else
    any target already recalled is a conflict."""
    already = conn.execute(
        select(recall_items.c.request_id, recall_items.c.item_id).where(
            recall_items.c.request_id.in_({t[0] for t in targets})
        )
    ).all()
    clash = set(targets) & {(r[0], r[1]) for r in already}
    if whole:
        targets = [t for t in targets if t not in clash]
        clash = set() if targets else clash
    if clash:
        req, item = sorted(clash)[0]
        raise ConflictError(
            f"Item {item} of {req} is already recalled ({len(clash)} item(s) in all).",
            code="already_recalled",
        )
    return targets


def _record_recall(
    conn: Connection,
    recall_id: str,
    reason: str,
    actor: str,
    now: dt.datetime,
    targets: list[tuple[str, str]],
    key: bytes,
) -> None:
    """The recall's rows and one `disclosure.recalled` ledger event per recalled item."""
    conn.execute(
        insert(recalls).values(id=recall_id, reason=reason, actor=actor, at=now, items=len(targets))
    )
    conn.execute(
        insert(recall_items),
        [{"recall_id": recall_id, "request_id": r, "item_id": i} for r, i in targets],
    )
    record_of = {
        (r.request_id, r.item_id): r.record_id
        for r in conn.execute(
            select(disclosures).where(disclosures.c.request_id.in_({t[0] for t in targets}))
        )
    }
    log.append(
        conn,
        [
            Event(
                DisclosureRecalled(item_sha256=item_sha256(key, r, i), recall_id=recall_id),
                actor=actor,
                request_id=r,
                record_id=record_of[(r, i)],
            )
            for r, i in targets
        ],
    )


def _close_recalled_requests(
    conn: Connection, targets: list[tuple[str, str]], actor: str, reason: str
) -> None:
    """A released request whose every disclosure is now recalled moves to `recalled`."""
    for req in sorted({t[0] for t in targets}):
        disclosed = conn.execute(
            select(func.count()).select_from(disclosures).where(disclosures.c.request_id == req)
        ).scalar()
        recalled = conn.execute(
            select(func.count()).select_from(recall_items).where(recall_items.c.request_id == req)
        ).scalar()
        if disclosed == recalled and current_state(conn, req) == "released":
            transition(conn, req, "recalled", actor=actor, reason=reason)


def _notice_inputs(
    conn: Connection, ws: Workspace, targets: list[tuple[str, str]]
) -> tuple[dict[tuple[str, str], list[str]], dict[str, str]]:
    """What the notice names: the fields disclosed per item and each request's agency, once
    each request's envelope is shown to be the one recorded at intake."""
    fields = {
        (r.request_id, r.item_id): json.loads(r.fields)
        for r in conn.execute(
            select(disclosures).where(disclosures.c.request_id.in_({t[0] for t in targets}))
        )
    }
    agencies = dict(
        conn.execute(
            select(requests.c.id, requests.c.agency).where(
                requests.c.id.in_({t[0] for t in targets})
            )
        ).all()
    )
    # The notice goes to the recipients named when the request was received: an edited
    # envelope would redirect it, so its hash must still be the one recorded at intake.
    for req, sha in conn.execute(
        select(requests.c.id, requests.c.envelope_sha256).where(
            requests.c.id.in_({t[0] for t in targets})
        )
    ):
        if sha256_file(ws.request_folder(req) / ENVELOPE_FILE) != sha:
            raise IntegrityError(
                f"The envelope of {req} was changed on disk since it was received; the "
                "recall notice cannot name its recipients (nothing was recalled).",
                code="release_tampered",
            )
    return fields, agencies


def _write_notice(
    call: Call, folder: Path, text: str, *, recorded: bool, resume: bool = False
) -> None:
    """The notice's two files, each written whole, never over a file already there (when
    `resume`, one already there, from a recall interrupted between the two, is kept); the
    workspace's copy (`recorded`) then recorded in the ledger (`ledger.files`)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in (("notice.json", text), ("notice.txt", notice_text(json.loads(text)))):
        if not (resume and (folder / name).exists()):
            write_new(folder / name, data.encode())
    if recorded:  # the workspace's copy: what was sent, kept as recorded (ledger.files)
        with call.transaction() as conn:
            for name in ("notice.json", "notice.txt"):
                files.record(conn, call.ws, call.actor, "recall.notice", folder / name)


def _info(recall_id: str, items: int, folder: Path, notice: dict[str, Any]) -> dict[str, Any]:
    return {
        "recall_id": recall_id,
        "items": items,
        "requests": [r["request_id"] for r in notice["requests"]],
        "notice": str(folder),
        "recipients": [r["recipients"] for r in notice["requests"]],
        "fields": sorted({f for r in notice["requests"] for f in r["fields"]}),
    }


def _resume(call: Call, request_id: str, out: Path | None) -> dict[str, Any] | None:
    """A whole request recalled again after a crash between the recall's commit and its notice
    files (found by bench/crash.py): the notice the recall stored is written now and the
    recall answered as if just made. None otherwise (the request not recalled, or its notice
    written): the recall goes on as usual."""
    ws = call.ws
    with ws.engine.connect() as conn:
        if current_state(conn, request_id) != "recalled":
            return None
        mine = select(recall_items.c.recall_id).where(recall_items.c.request_id == request_id)
        last = conn.execute(
            select(recalls).where(recalls.c.id.in_(mine)).order_by(recalls.c.at.desc()).limit(1)
        ).first()
    if last is None or last.notice is None:
        return None
    folder = out or ws.home / "recalls" / last.id
    if (folder / "notice.json").exists() and (folder / "notice.txt").exists():
        return None
    _write_notice(call, folder, last.notice, recorded=out is None, resume=True)
    return _info(last.id, last.items, folder, json.loads(last.notice))


def _notice(
    ws: Workspace,
    recall_id: str,
    reason: str,
    at: dt.datetime,
    targets: list[tuple[str, str]],
    fields: dict[tuple[str, str], list[str]],
    agencies: dict[str, str],
) -> dict[str, Any]:
    rs = in_force(ws)
    per_request = []
    for req in sorted({t[0] for t in targets}):
        env = json.loads((ws.request_folder(req) / ENVELOPE_FILE).read_text(encoding="utf-8-sig"))
        items = sorted(i for r, i in targets if r == req)
        prov = rs.provisions.get(env.get("provision", ""))
        per_request.append(
            {
                "request_id": req,
                "agency": agencies.get(req),
                "provision": env.get("provision"),
                "citation": prov.citation if prov else None,
                "recipients": env.get("officials") or [],
                "fields": sorted({f for i in items for f in fields[(req, i)]}),
                "items": items,
            }
        )
    return {
        "recall_id": recall_id,
        "issued_at": at.isoformat(timespec="seconds"),
        "reason": reason,
        "instruction": (
            "The information disclosed for the items listed was disclosed improperly. Return it "
            f"or destroy every copy within {RETURN_WITHIN_DAYS} days, including copies passed "
            "on to others, and certify the destruction in writing to the disclosing agency, "
            f"citing recall {recall_id}."
        ),
        "return_by": (at + dt.timedelta(days=RETURN_WITHIN_DAYS)).date().isoformat(),
        "requests": per_request,
    }


def notice_text(n: dict[str, Any]) -> str:
    lines = [
        f"NOTICE TO RETURN OR DESTROY — recall {n['recall_id']}",
        f"Issued {n['issued_at']}; return or destroy by {n['return_by']}.",
        f"Reason: {n['reason']}",
        "",
        n["instruction"],
        "",
    ]
    for r in n["requests"]:
        lines += [
            f"Request {r['request_id']} ({r['provision']}, {r['citation']}) from {r['agency']}",
            "  Recipients: "
            + "; ".join(
                f"{o.get('name')} ({o.get('title')}, {o.get('id')})" for o in r["recipients"]
            ),
            f"  Fields: {', '.join(r['fields'])}",
            f"  Items ({len(r['items'])}): {', '.join(r['items'])}",
            "",
        ]
    return "\n".join(lines)


def certify(
    call: Call,
    recall_id: str,
    *,
    certified_by: str,
    certified_on: dt.date,
    certificate: str | None,
) -> dict[str, Any]:
    """Record the recipient's certification that the recalled data was destroyed."""
    actor = call.actor
    if not certified_by.strip():
        raise InputError("Say who certified the destruction (--by).", code="bad_argument")
    if certified_on > dt.date.today():
        raise InputError("The certification date is in the future.", code="bad_argument")
    with call.transaction() as conn:
        row = conn.execute(select(recalls).where(recalls.c.id == recall_id)).first()
        if row is None:
            raise NotFound("No such recall.", code="unknown_recall")
        if row.certified_by is not None:
            raise ConflictError(
                f"Recall {recall_id} was already certified on {row.certified_on}.",
                code="already_certified",
            )
        if (
            certified_on
            < (row.at.replace(tzinfo=dt.UTC) if row.at.tzinfo is None else row.at).date()
        ):
            raise InputError("The certification predates the recall notice.", code="bad_argument")
        done = conn.execute(
            update(recalls)
            .where(recalls.c.id == recall_id, recalls.c.certified_by.is_(None))
            .values(
                certified_by=certified_by.strip(),
                certified_on=certified_on,
                certificate=certificate,
                recorded_by=actor,
            )
        )
        if done.rowcount != 1:
            raise ConflictError(f"Recall {recall_id} changed meanwhile.", code="conflict")
        log.append_one(
            conn,
            RecallCertified(
                recall_id=recall_id,
                certified_on=certified_on.isoformat(),
                certified_by_hmac=certifier_commit(
                    anchors.key(conn), recall_id, certified_by.strip()
                ),
            ),
            actor=actor,
        )
    return {
        "recall_id": recall_id,
        "certified_by": certified_by.strip(),
        "certified_on": certified_on.isoformat(),
    }


def certifier_commit(k: bytes, recall_id: str, certified_by: str | None) -> str | None:
    """The keyed commitment `recall.certified` carries to who certified (the name stays out of
    the ledger's plain text; the store audit compares)."""
    return anchors.value_commit(k, "recalls", [recall_id], "certified_by", certified_by)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _reach(conn: Connection, agency: str | None) -> dict[str, dict[str, int]]:
    """recall id -> {request id: items recalled}, for the recalls `agency` is a recipient of
    (every recall for staff, `agency` None)."""
    q = (
        select(recall_items.c.recall_id, recall_items.c.request_id, func.count())
        .join(requests, requests.c.id == recall_items.c.request_id)
        .group_by(recall_items.c.recall_id, recall_items.c.request_id)
    )
    if agency is not None:
        q = q.where(requests.c.agency == agency)
    out: dict[str, dict[str, int]] = {}
    for rid, req, n in conn.execute(q):
        out.setdefault(rid, {})[req] = n
    return out


def listing(ws: Workspace, agency: str | None = None) -> list[dict[str, Any]]:
    """Every recall (staff), or those of `agency`'s requests (a requester account: only its
    own requests, items and acknowledgement; never who at the disclosing agency recalled)."""
    with ws.engine.connect() as conn:
        reach = _reach(conn, agency)
        rows = conn.execute(
            select(recalls).where(recalls.c.id.in_(list(reach))).order_by(recalls.c.at)
        ).all()
        agencies = dict(
            conn.execute(
                select(requests.c.id, requests.c.agency).where(
                    requests.c.id.in_({q for v in reach.values() for q in v})
                )
            ).all()
        )
        acks: dict[str, list[dict[str, Any]]] = {}
        for a in conn.execute(
            select(recall_acknowledgements).order_by(recall_acknowledgements.c.at)
        ):
            if agency is None or a.agency == agency:
                acks.setdefault(a.recall_id, []).append(
                    {"agency": a.agency, "at": a.at.isoformat(timespec="seconds")}
                )
    today = dt.date.today()
    out = []
    for r in rows:
        due = r.at.date() + dt.timedelta(days=RETURN_WITHIN_DAYS)
        status = "certified" if r.certified_by else ("overdue" if today > due else "open")
        mine = reach[r.id]
        out.append(
            {
                "recall_id": r.id,
                "at": r.at.isoformat(timespec="seconds"),
                "reason": r.reason,
                "items": sum(mine.values()) if agency else r.items,
                "requests": sorted(mine),
                "agencies": sorted({agencies[q] for q in mine}),
                "status": status,
                "return_by": due.isoformat(),
                "certified_by": r.certified_by,
                "certified_on": r.certified_on,
                "notice": r.notice is not None,
                "acknowledged": acks.get(r.id, []),
            }
        )
    return out


def _row(conn: Connection, recall_id: str) -> Any:
    """The recall row (the door has checked that an agency reaches it: `roles.RESOURCES`)."""
    row = conn.execute(select(recalls).where(recalls.c.id == recall_id)).first()
    if row is None:
        raise NotFound(f"No recall '{recall_id}'.", code="unknown_recall")
    return row


def notice(ws: Workspace, recall_id: str, agency: str | None = None) -> dict[str, Any]:
    """A recall's return-or-destroy notice as issued (an agency receives only the part about
    its own requests). The stored notice is checked against the hash the ledger recorded."""
    with ws.engine.connect() as conn:
        row = _row(conn, recall_id)
        if row.notice is None:
            raise NotFound(
                f"Recall {recall_id} was issued before notices were kept in the store; its "
                "notice is in the workspace's recalls folder.",
                code="no_notice",
            )
        recorded = {
            issued.notice_sha256
            for (b,) in conn.execute(
                select(ledger_events.c.body).where(ledger_events.c.type == RecallIssued.TYPE)
            )
            if (issued := parse_as(RecallIssued, json.loads(b))) and issued.recall_id == recall_id
        }
    if recorded != {_sha(row.notice)}:
        raise IntegrityError(
            f"The stored notice of recall {recall_id} is not the one the ledger recorded.",
            code="notice_tampered",
        )
    n: dict[str, Any] = json.loads(row.notice)
    if agency is not None:
        n["requests"] = [r for r in n["requests"] if r.get("agency") == agency]
    return n


def acknowledge(call: Call, recall_id: str) -> dict[str, Any]:
    """The recipient agency acknowledges that it received the recall's notice: recorded once
    per agency (ledger event ``recall.acknowledged``); acknowledging again answers with the
    first acknowledgement. The certification of destruction is separate (`certify`)."""
    agency = call.agency
    if agency is None:  # the action table gives this to requester accounts only
        raise NotFound(f"No recall '{recall_id}' for an agency.", code="unknown_recall")
    now = dt.datetime.now(dt.UTC)
    with call.transaction() as conn:
        _row(conn, recall_id)
        first = conn.execute(
            select(recall_acknowledgements).where(
                recall_acknowledgements.c.recall_id == recall_id,
                recall_acknowledgements.c.agency == agency,
            )
        ).first()
        if first is None:
            conn.execute(
                insert(recall_acknowledgements).values(
                    recall_id=recall_id, agency=agency, acknowledged_by=call.actor, at=now
                )
            )
            log.append_one(
                conn, RecallAcknowledged(recall_id=recall_id, agency=agency), actor=call.actor
            )
    at = now if first is None else first.at
    return {
        "recall_id": recall_id,
        "agency": agency,
        "acknowledged_at": at.isoformat(timespec="seconds"),
        "already": first is not None,
    }
