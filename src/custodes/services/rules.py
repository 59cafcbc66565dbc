"""Rule services: read the law as data, check a request against it, change it (two rule
stewards), and keep the registries it consults (agencies, officials, agreements)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import IO, Any

from custodes.access import CheckedCall, service
from custodes.requests import intake
from custodes.requests.format import with_optional
from custodes.rules import active
from custodes.rules import registry as reg
from custodes.rules.evaluate import Evaluation, evaluate
from custodes.rules.provisions import lint as _lint
from custodes.rules.provisions import load
from custodes.rules.types import RuleSet
from custodes.store.archive import unpacked
from custodes.synthetic.parties import register_parties as _register_parties

MAX_AGREEMENT = reg.MAX_AGREEMENT


def describe(folder: Path | None = None) -> dict[str, Any]:
    """A rule set's provisions, version and hash (the reference set by default). Open: the
    law as data is public."""
    return _describe(load(folder))


@service("rules.read")
def current(call: CheckedCall) -> dict[str, Any]:
    """The rule set in force in this workspace: name, version, hash, provisions."""
    return _describe(active.in_force(call.ws))


def _describe(rs: RuleSet) -> dict[str, Any]:
    return {
        "signer_roles": sorted({r for p in rs.provisions.values() for r in p.signer_roles}),
        "name": rs.name,
        "version": rs.version,
        "sha256": rs.sha256,
        "disclaimer": rs.disclaimer,
        "provisions": [
            {
                "id": p.id,
                "citation": p.citation,
                "title": p.title,
                "releasable": p.releasable,
                "signer_roles": list(p.signer_roles),
            }
            for p in sorted(rs.provisions.values(), key=lambda p: p.id)
        ],
    }


def provision(pid: str, folder: Path | None = None) -> dict[str, Any]:
    """One provision, readable: who may sign, every requirement with its citation. Open."""
    rs = load(folder)
    p = rs.provision(pid)
    return {
        "provision": p.__dict__,
        "checks": [rs.checks[c].__dict__ for c in p.request_requirements + p.item_requirements],
        "parameters": {
            k: {"value": v, "rationale": rs.rationale.get(k)} for k, v in rs.parameters.items()
        },
    }


def lint(folder: Path) -> dict[str, Any]:
    """Every problem of a rule-set folder with its file and line. Open."""
    rs, problems = _lint(folder)
    return {
        "ok": not problems,
        "sha256": rs.sha256 if rs else None,
        "provisions": len(rs.provisions) if rs else 0,
        "checks": len(rs.checks) if rs else 0,
        "problems": [str(p) for p in problems],
    }


@service("rules.check")
def check(call: CheckedCall, folder: Path, rules: Path | None = None) -> Evaluation:
    """Evaluate a request directory as `submit` would take it (its shape checks first, so a
    folder intake refuses is never said to proceed) against the rule set in force."""
    c = intake.check(folder)
    with call.ws.engine.connect() as conn:
        registry = reg.read(conn)
    rs = load(rules) if rules else active.in_force(call.ws)
    return evaluate(rs, registry, c.envelope, with_optional(c.table))


@service("rules.change")
def propose(call: CheckedCall, folder: Path) -> dict[str, Any]:
    return active.propose(call, folder)


@service("rules.change")
def propose_archive(call: CheckedCall, archive: IO[bytes]) -> dict[str, Any]:
    """Propose a rule set uploaded as a zip or tar archive of its folder."""
    with unpacked(archive, "rule-set archive") as folder:
        return active.propose(call, folder)


@service("rules.change")
def approve(call: CheckedCall, sha: str) -> dict[str, Any]:
    return active.approve(call, sha)


@service("rules.read")
def changes(call: CheckedCall) -> list[dict[str, Any]]:
    return active.listing(call.ws)


@service("registry.change")
def add_agency(
    call: CheckedCall, name: str, *, safeguards_current: bool, open_findings: int
) -> dict[str, Any]:
    """Propose an agency or a change to its safeguards status (a second administrator
    confirms it by its id)."""
    return reg.add_agency(
        call, name, safeguards_current=safeguards_current, open_findings=open_findings
    )


@service("registry.change")
def add_official(
    call: CheckedCall,
    *,
    agency: str,
    name: str,
    title: str,
    role: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
) -> dict[str, Any]:
    """Propose an official authorised to sign (a second administrator confirms)."""
    return reg.add_official(
        call,
        agency=agency,
        name=name,
        title=title,
        role=role,
        valid_from=valid_from,
        valid_to=valid_to,
    )


@service("registry.change")
def add_agreement(call: CheckedCall, file: Path) -> dict[str, Any]:
    """Propose an agreement (a YAML file): in force once a second administrator confirms."""
    return reg.add_agreement(call, file)


@service("registry.change")
def add_agreement_text(call: CheckedCall, data: bytes, label: str = "agreement") -> dict[str, Any]:
    """Propose an agreement from its uploaded YAML text (a second administrator confirms)."""
    return reg.add_agreement_text(call, data, label)


@service("registry.change")
def register_parties(call: CheckedCall, provision: str) -> None:
    """Register what a synthetic request of `provision` names (its agency, signer and
    agreement), so that it can pass the request-level checks. For demos and tests."""
    _register_parties(call, provision)


@service("registry.read")
def registry(call: CheckedCall, table: str) -> list[dict[str, Any]]:
    """One registry's rows: agencies, officials or agreements."""
    return reg.listing(call.ws, table)


@service("registry.read")
def registries(call: CheckedCall) -> dict[str, Any]:
    """Every registry's rows, and the signer roles the rule set in force knows (what an
    official may be registered as)."""
    tables: dict[str, Any] = {t: reg.listing(call.ws, t) for t in reg.REGISTRIES}
    return tables | {"signer_roles": _describe(active.in_force(call.ws))["signer_roles"]}
