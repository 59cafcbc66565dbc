"""Registries the rules consult: agencies, officials authorised to sign, agreements.

Every change is recorded in the ledger in the same transaction (names of officials are staff,
not taxpayers, but the ledger keeps only what changed and the registry key).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, insert, select, update

from custodes.errors import ConflictError, InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.rules.active import in_force
from custodes.rules.ruleset import Agreement, overlay
from custodes.store.tables import agencies, agreements, officials
from custodes.workspace import Workspace


@dataclass
class Registry:
    """A snapshot of the registries, for evaluation."""

    agencies: dict[str, dict[str, Any]]
    officials: list[dict[str, Any]]
    agreements: dict[str, Agreement]

    @classmethod
    def read(cls, conn: Connection) -> Registry:
        ags = {r.name: dict(r._mapping) for r in conn.execute(select(agencies))}
        offs = [dict(r._mapping) for r in conn.execute(select(officials))]
        agrs = {
            r.id: Agreement.from_dict(yaml.safe_load(r.body))
            for r in conn.execute(select(agreements))
        }
        return cls(ags, offs, agrs)


def add_agency(
    ws: Workspace,
    name: str,
    *,
    safeguards_current: bool,
    open_findings: int,
    actor: str | None = None,
) -> dict[str, Any]:
    if not name.strip():
        raise InputError("The agency name is empty.", code="bad_argument")
    if open_findings < 0:
        raise InputError("--open-findings cannot be negative.", code="bad_argument")
    now = dt.datetime.now(dt.UTC)
    row = {
        "name": name.strip(),
        "safeguards_current": safeguards_current,
        "open_findings": open_findings,
        "updated_at": now,
    }
    with ws.engine.begin() as conn:
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
                    actor=actor,
                    data={
                        "agency": row["name"],
                        "safeguards_current": safeguards_current,
                        "open_findings": open_findings,
                        "change": "updated" if exists else "added",
                    },
                )
            ],
        )
    return row


def add_official(
    ws: Workspace,
    *,
    agency: str,
    name: str,
    title: str,
    role: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    if valid_to is not None and valid_to < valid_from:
        raise InputError("--to is before --from.", code="bad_argument")
    roles = {r for p in in_force(ws).provisions.values() for r in p.signer_roles}
    if role not in roles:
        raise InputError(
            f"Unknown role '{role}' (known: {', '.join(sorted(roles))}).", code="bad_argument"
        )
    with ws.engine.begin() as conn:
        if not conn.execute(select(agencies.c.name).where(agencies.c.name == agency)).first():
            raise InputError(
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
                    actor=actor,
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


def add_agreement(ws: Workspace, path: Path, actor: str | None = None) -> Agreement:
    try:
        text = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
    except OSError:
        raise InputError(f"{path}: cannot be read.", code="file_not_found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc}).", code="bad_agreement") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: an agreement is a YAML mapping.", code="bad_agreement")
    agr = Agreement.from_dict(doc)
    rs = in_force(ws)
    overlay(rs, rs.provision(agr.provision), agr)  # refuses unknown checks or provisions
    digest = hashlib.sha256(text.encode()).hexdigest()
    with ws.engine.begin() as conn:
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
                    actor=actor,
                    data={"agreement": agr.id, "provision": agr.provision, "sha256": digest},
                )
            ],
        )
    return agr


def listing(ws: Workspace, table: str) -> list[dict[str, Any]]:
    t = {"agencies": agencies, "officials": officials, "agreements": agreements}[table]
    with ws.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t))]
    for r in rows:
        r.pop("body", None)
    return rows
