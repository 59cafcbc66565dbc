"""Registering what a synthetic request names, so that it can pass the request-level checks.

A composition of services, signed in as an administrator like any face."""

from __future__ import annotations

import datetime as dt

from custodes.access import Caller
from custodes.rules.provisions import REFERENCE
from custodes.services import rules as rules_svc
from custodes.synthetic.requests import ENVELOPES
from custodes.workspace import Workspace


def register_parties(ws: Workspace, admin: Caller, provision: str) -> None:
    """Register what a synthetic request of `provision` names: its agency (safeguards
    current), its signer as a current official, and its agreement from the reference rule
    set. Idempotent."""
    env = ENVELOPES[provision]
    agency, signer = env["agency"], env["signer"]
    rules_svc.add_agency(ws, admin, agency, safeguards_current=True, open_findings=0)
    if not any(
        o["agency"] == agency and o["name"] == signer["name"]
        for o in rules_svc.registry(ws, admin, "officials")
    ):
        rules_svc.add_official(
            ws,
            admin,
            agency=agency,
            name=signer["name"],
            title=signer["title"],
            role=signer["role"],
            valid_from=dt.date(2025, 1, 1),
        )
    agreement = env.get("agreement")
    if agreement and not any(
        a["id"] == agreement for a in rules_svc.registry(ws, admin, "agreements")
    ):
        rules_svc.add_agreement(ws, admin, REFERENCE.parent / "agreements" / f"{agreement}.yaml")
