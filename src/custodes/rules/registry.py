"""Registries the rules consult: agencies, officials authorised to sign, agreements.

What the statutory gate trusts is never one administrator's word: every change is proposed
into the queue of changes (`store.changes`) and takes effect only when a second administrator
confirms that exact change by its id; the ledger records the proposal and, in the same
transaction as the row, the confirmation with both people (names of officials are staff, not
taxpayers, but the ledger keeps only what changed and the registry key). The parties of
synthetic requests are registered directly, on synthetic workspaces only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, select

from custodes.errors import AccessDenied, ConflictError, InputError, NotFound, fail
from custodes.ledger import anchors, log
from custodes.ledger.event_types import (
    RegistryAgency,
    RegistryAgreement,
    RegistryOfficial,
    RegistryProposed,
)
from custodes.records import master
from custodes.rules.active import in_force
from custodes.rules.documents import construct_yaml, prescan_yaml
from custodes.rules.provisions import overlay
from custodes.rules.types import Agreement, Registry, RuleSet
from custodes.store import changes as queue
from custodes.store.tables import agencies, agreements, officials
from custodes.workspace import Call, Workspace

MAX_NAME = 200


def read(conn: Connection) -> Registry:
    """A snapshot of the registries, for evaluation."""
    ags = {r.name: dict(r._mapping) for r in conn.execute(select(agencies))}
    offs = [dict(r._mapping) for r in conn.execute(select(officials))]
    agrs = {r.id: _stored_agreement(r.body) for r in conn.execute(select(agreements))}
    return Registry(ags, offs, agrs)


def _stored_agreement(body: str) -> Agreement:
    """An agreement as stored: it was checked when proposed, so one that no longer parses was
    edited in the store (a coded error naming no value, not PyYAML's own exception)."""
    try:
        return Agreement.from_dict(construct_yaml(body))
    except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError):
        raise fail(
            "store_tampered",
            "A stored agreement no longer parses: the store was altered outside custodes; "
            "nothing was done. Run 'custodes ledger verify' and restore the store.",
        ) from None


def _text(what: str, value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InputError(f"The {what} is empty.", code="bad_argument")
    if len(value) > MAX_NAME or any(ch in value for ch in "\n\r\t\x00"):
        raise InputError(
            f"The {what} must be one line of at most {MAX_NAME} characters.", code="bad_argument"
        )
    return value


def add_agency(
    call: Call,
    name: str,
    *,
    safeguards_current: bool,
    open_findings: int,
    direct: bool = False,
) -> dict[str, Any]:
    """Propose an agency (or a change to its safeguards status): in force only once a second
    administrator confirms it (`store.changes`). `direct` (synthetic parties only) applies it
    at once."""
    name = _text("agency name", name)
    if open_findings < 0:
        raise InputError("--open-findings cannot be negative.", code="bad_argument")
    payload: dict[str, Any] = {
        "name": name.strip(),
        "safeguards_current": bool(safeguards_current),
        "open_findings": int(open_findings),
    }
    summary = (
        f"agency {payload['name']}: safeguards "
        f"{'current' if safeguards_current else 'NOT current'}, {open_findings} open finding(s)"
    )
    return _propose_or_apply(call, "agency", payload["name"], summary, payload, direct)


def _apply_agency(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    p = change["payload"]
    row: dict[str, Any] = p | {"updated_at": dt.datetime.now(dt.UTC)}
    exists = conn.execute(select(agencies.c.name).where(agencies.c.name == p["name"])).first()
    if exists:
        anchors.update_rows(conn, call.actor, agencies, agencies.c.name == p["name"], **row)
    else:
        anchors.insert(conn, call.actor, agencies, **row)
    log.append_one(
        conn,
        RegistryAgency(
            agency=p["name"],
            safeguards_current=p["safeguards_current"],
            open_findings=p["open_findings"],
            change="updated" if exists else "added",
            **_confirmation(change),
        ),
        actor=call.actor,
    )
    return row | {"change_applied": "updated" if exists else "added"}


def add_official(
    call: Call,
    *,
    agency: str,
    name: str,
    title: str,
    role: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
    direct: bool = False,
) -> dict[str, Any]:
    """Propose an official authorised to sign for `agency`: in force once a second
    administrator confirms it. `direct` (synthetic parties only) applies it at once."""
    name, title = _text("official's name", name), _text("official's title", title)
    if valid_to is not None and valid_to < valid_from:
        raise InputError("--to is before --from.", code="bad_argument")
    roles = {r for p in in_force(call.ws).provisions.values() for r in p.signer_roles}
    if role not in roles:
        raise InputError(
            f"Unknown role (signer roles: {', '.join(sorted(roles))}).", code="bad_argument"
        )
    with call.ws.engine.connect() as conn:
        _known_agency(conn, agency)
    payload = {
        "agency": agency,
        "name": name,
        "title": title,
        "role": role,
        "valid_from": valid_from.isoformat(),
        "valid_to": valid_to.isoformat() if valid_to else None,
    }
    summary = f"official {name}, {title} ({role}) of {agency}, from {valid_from.isoformat()}"
    return _propose_or_apply(
        call, "official", agency, summary, payload, direct, slot=f"official:{agency}:{name}"
    )


def _known_agency(conn: Connection, agency: str) -> None:
    if not conn.execute(select(agencies.c.name).where(agencies.c.name == agency)).first():
        raise NotFound(
            "No such agency in the registry; add it first with 'custodes agencies add'.",
            code="unknown_agency",
        )


def _apply_official(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    p = change["payload"]
    _known_agency(conn, p["agency"])
    row = p | {
        "valid_from": dt.date.fromisoformat(p["valid_from"]),
        "valid_to": dt.date.fromisoformat(p["valid_to"]) if p["valid_to"] else None,
    }
    (oid,) = anchors.insert(conn, call.actor, officials, **row)
    log.append_one(
        conn,
        RegistryOfficial(
            official=oid,
            agency=p["agency"],
            title=p["title"],
            role=p["role"],
            valid_from=p["valid_from"],
            valid_to=p["valid_to"],
            **_confirmation(change),
        ),
        actor=call.actor,
    )
    return {"id": oid, **row}


def add_agreement(call: Call, path: Path, *, direct: bool = False) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: no such file.", code="file_not_found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}).", code="bad_path") from None
    return add_agreement_text(call, data, str(path), direct=direct)


MAX_AGREEMENT = 1 << 20


def parse_agreement(data: bytes, label: str, rs: RuleSet) -> tuple[Agreement, str]:
    """An agreement's YAML bytes checked against the rule set `rs` (every check and
    provision it names exists): the agreement and its text, or a coded error. Pure: what
    `add_agreement_text` checks before it proposes, and what the fuzzing harness calls."""
    if len(data) > MAX_AGREEMENT:
        raise InputError(f"{label}: an agreement is at most 1 MiB.", code="bad_agreement")
    try:
        text = data.decode("utf-8-sig")
        prescan_yaml(text)
        doc = construct_yaml(text)
    except UnicodeDecodeError:
        raise InputError(f"{label}: not UTF-8 text.", code="bad_encoding") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{label}: not valid YAML{where}.", code="bad_agreement") from None
    if not isinstance(doc, dict):
        raise InputError(f"{label}: an agreement is a YAML mapping.", code="bad_agreement")
    agr = Agreement.from_dict(doc)
    overlay(rs, rs.provision(agr.provision), agr)  # refuses unknown checks or provisions
    return agr, text


def add_agreement_text(
    call: Call, data: bytes, label: str = "agreement", *, direct: bool = False
) -> dict[str, Any]:
    """Propose an agreement from its YAML text (`label` names it in messages: a path or an
    upload's name): checked now, in force once a second administrator confirms it."""
    agr, text = parse_agreement(data, label, in_force(call.ws))
    digest = hashlib.sha256(text.encode()).hexdigest()
    with call.ws.engine.connect() as conn:
        _no_agreement(conn, agr.id)
    payload = {"id": agr.id, "provision": agr.provision, "agency": agr.agency, "body": text}
    summary = f"agreement {agr.id} ({agr.provision}, {agr.agency}), text SHA-256 {digest}"
    out = _propose_or_apply(call, "agreement", agr.id, summary, payload, direct)
    return out | {"id": agr.id, "provision": agr.provision, "agency": agr.agency}


def _no_agreement(conn: Connection, agreement_id: str) -> None:
    if conn.execute(select(agreements.c.id).where(agreements.c.id == agreement_id)).first():
        raise ConflictError(
            "An agreement with that id is already registered.", code="agreement_exists"
        )


def _apply_agreement(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    p = change["payload"]
    _no_agreement(conn, p["id"])
    digest = hashlib.sha256(p["body"].encode()).hexdigest()
    anchors.insert(
        conn,
        call.actor,
        agreements,
        id=p["id"],
        provision=p["provision"],
        agency=p["agency"],
        body=p["body"],
        sha256=digest,
        added_at=dt.datetime.now(dt.UTC),
    )
    log.append_one(
        conn,
        RegistryAgreement(
            agreement=p["id"],
            provision=p["provision"],
            sha256=digest,
            **_confirmation(change),
        ),
        actor=call.actor,
    )
    return {"id": p["id"], "provision": p["provision"], "agency": p["agency"]}


# --- through the queue of changes ---------------------------------------------------------------

_APPLY = {"agency": _apply_agency, "official": _apply_official, "agreement": _apply_agreement}
for _kind, _fn in _APPLY.items():
    queue.register(_kind, _fn)


def _confirmation(change: dict[str, Any]) -> dict[str, Any]:
    """What a registry event says of the two people: who proposed it (the confirmer is the
    event's actor), and the change's id; nothing when applied directly (synthetic parties)."""
    if change.get("id") is None:
        return {"direct": True}
    return {"proposed_by": change["proposed_by"], "change_id": change["id"]}


def _propose_or_apply(
    call: Call,
    kind: str,
    subject: str,
    summary: str,
    payload: dict[str, Any],
    direct: bool,
    *,
    slot: str | None = None,
) -> dict[str, Any]:
    """Put the change in the queue for a second administrator (recorded as proposed), or,
    with `direct`, apply it at once: only for the parties of synthetic requests, on a
    workspace whose master file is synthetic or absent (never on imported records)."""
    if direct:
        if master.current(call.ws).exists and not master.current(call.ws).synthetic:
            raise AccessDenied(
                "Registering parties directly is for synthetic workspaces only; on imported "
                "records every registry change waits for a second administrator.",
                code="separation_of_duties",
            )
        with call.transaction() as conn:
            done = _APPLY[kind](conn, call, {"id": None, "payload": payload})
        return done | {"pending": False, "change": None}
    with call.transaction() as conn:
        cid = queue.propose(conn, call.actor, kind, subject, summary, payload, slot=slot)
        log.append_one(conn, RegistryProposed(kind=kind, change_id=cid), actor=call.actor)
    return payload | {"pending": True, "change": cid, "summary": summary}


REGISTRIES = {"agencies": agencies, "officials": officials, "agreements": agreements}


def listing(ws: Workspace, table: str) -> list[dict[str, Any]]:
    if table not in REGISTRIES:
        raise InputError(
            f"No such registry (registries: {', '.join(REGISTRIES)}).", code="bad_argument"
        )
    t = REGISTRIES[table]
    with ws.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t))]
    for r in rows:
        r.pop("body", None)
    return rows
