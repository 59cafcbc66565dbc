"""Registries the rules consult: agencies, officials authorised to sign, agreements.

Every change is recorded in the ledger in the same transaction (names of officials are staff,
not taxpayers, but the ledger keeps only what changed and the registry key).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, insert, select, update

from custodes.errors import ConflictError, InputError, NotFound
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.rules.active import in_force
from custodes.rules.provisions import overlay
from custodes.rules.types import Agreement, Registry
from custodes.store.tables import agencies, agreements, officials
from custodes.workspace import Call, Workspace

MAX_NAME = 200


def read(conn: Connection) -> Registry:
    """A snapshot of the registries, for evaluation."""
    ags = {r.name: dict(r._mapping) for r in conn.execute(select(agencies))}
    offs = [dict(r._mapping) for r in conn.execute(select(officials))]
    agrs = {
        r.id: Agreement.from_dict(yaml.safe_load(r.body)) for r in conn.execute(select(agreements))
    }
    return Registry(ags, offs, agrs)


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
) -> dict[str, Any]:
    name = _text("agency name", name)
    if open_findings < 0:
        raise InputError("--open-findings cannot be negative.", code="bad_argument")
    now = dt.datetime.now(dt.UTC)
    row = {
        "name": name.strip(),
        "safeguards_current": safeguards_current,
        "open_findings": open_findings,
        "updated_at": now,
    }
    with call.transaction() as conn:
        exists = conn.execute(select(agencies.c.name).where(agencies.c.name == row["name"])).first()
        if exists:
            conn.execute(update(agencies).where(agencies.c.name == row["name"]).values(**row))
        else:
            conn.execute(insert(agencies).values(**row))
        log.append(
            conn,
            [
                Event(
                    "registry.agency",
                    actor=call.actor,
                    data={
                        "agency": row["name"],
                        "safeguards_current": safeguards_current,
                        "open_findings": open_findings,
                        "change": "updated" if exists else "added",
                    },
                )
            ],
        )
    return row | {"change": "updated" if exists else "added"}


def add_official(
    call: Call,
    *,
    agency: str,
    name: str,
    title: str,
    role: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
) -> dict[str, Any]:
    name, title = _text("official's name", name), _text("official's title", title)
    if valid_to is not None and valid_to < valid_from:
        raise InputError("--to is before --from.", code="bad_argument")
    roles = {r for p in in_force(call.ws).provisions.values() for r in p.signer_roles}
    if role not in roles:
        raise InputError(
            f"Unknown role '{role}' (known: {', '.join(sorted(roles))}).", code="bad_argument"
        )
    with call.transaction() as conn:
        if not conn.execute(select(agencies.c.name).where(agencies.c.name == agency)).first():
            raise NotFound(
                f"No agency '{agency}' in the registry; add it first with 'custodes agencies add'.",
                code="unknown_agency",
            )
        row = {
            "agency": agency,
            "name": name,
            "title": title,
            "role": role,
            "valid_from": valid_from,
            "valid_to": valid_to,
        }
        oid = conn.execute(insert(officials).values(**row)).inserted_primary_key[0]
        log.append(
            conn,
            [
                Event(
                    "registry.official",
                    actor=call.actor,
                    data={
                        "official": oid,
                        "agency": agency,
                        "title": title,
                        "role": role,
                        "valid_from": valid_from.isoformat(),
                        "valid_to": valid_to.isoformat() if valid_to else None,
                    },
                )
            ],
        )
    return {"id": oid, **row}


def add_agreement(call: Call, path: Path) -> Agreement:
    if not path.is_file():
        raise InputError(f"{path}: no such file.", code="file_not_found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}).", code="bad_path") from None
    return add_agreement_text(call, data, str(path))


MAX_AGREEMENT = 1 << 20


def add_agreement_text(call: Call, data: bytes, label: str = "agreement") -> Agreement:
    """Register an agreement from its YAML text (`label` names it in messages: a path or an
    upload's name)."""
    if len(data) > MAX_AGREEMENT:
        raise InputError(f"{label}: an agreement is at most 1 MiB.", code="bad_agreement")
    try:
        text = data.decode("utf-8-sig")
        doc = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise InputError(f"{label}: not UTF-8 text.", code="bad_encoding") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{label}: not valid YAML{where}.", code="bad_agreement") from None
    if not isinstance(doc, dict):
        raise InputError(f"{label}: an agreement is a YAML mapping.", code="bad_agreement")
    agr = Agreement.from_dict(doc)
    rs = in_force(call.ws)
    overlay(rs, rs.provision(agr.provision), agr)  # refuses unknown checks or provisions
    digest = hashlib.sha256(text.encode()).hexdigest()
    with call.transaction() as conn:
        if conn.execute(select(agreements.c.id).where(agreements.c.id == agr.id)).first():
            raise ConflictError(
                f"Agreement '{agr.id}' is already registered.", code="agreement_exists"
            )
        conn.execute(
            insert(agreements).values(
                id=agr.id,
                provision=agr.provision,
                agency=agr.agency,
                body=text,
                sha256=digest,
                added_at=dt.datetime.now(dt.UTC),
            )
        )
        log.append(
            conn,
            [
                Event(
                    "registry.agreement",
                    actor=call.actor,
                    data={"agreement": agr.id, "provision": agr.provision, "sha256": digest},
                )
            ],
        )
    return agr


REGISTRIES = {"agencies": agencies, "officials": officials, "agreements": agreements}


def listing(ws: Workspace, table: str) -> list[dict[str, Any]]:
    if table not in REGISTRIES:
        raise InputError(
            f"No registry '{table}' (registries: {', '.join(REGISTRIES)}).", code="bad_argument"
        )
    t = REGISTRIES[table]
    with ws.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t))]
    for r in rows:
        r.pop("body", None)
    return rows
