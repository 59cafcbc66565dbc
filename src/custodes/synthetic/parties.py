"""Registering what a synthetic request names, so that it can pass the request-level checks."""

from __future__ import annotations

import datetime as dt

from custodes.rules import registry as reg
from custodes.rules.provisions import REFERENCE
from custodes.synthetic.requests import ENVELOPES
from custodes.workspace import Call


def register_parties(call: Call, provision: str) -> None:
    """Register what a synthetic request of `provision` names: its agency (safeguards
    current), its signer as a current official, and its agreement from the reference rule
    set. Idempotent."""
    env = ENVELOPES[provision]
    agency, signer = env["agency"], env["signer"]
    # Directly, not through the queue: allowed on synthetic workspaces only (registry.py).
    reg.add_agency(call, agency, safeguards_current=True, open_findings=0, direct=True)
    if not any(
        o["agency"] == agency and o["name"] == signer["name"]
        for o in reg.listing(call.ws, "officials")
    ):
        reg.add_official(
            call,
            agency=agency,
            name=signer["name"],
            title=signer["title"],
            role=signer["role"],
            valid_from=dt.date(2025, 1, 1),
            direct=True,
        )
    agreement = env.get("agreement")
    if agreement and not any(a["id"] == agreement for a in reg.listing(call.ws, "agreements")):
        reg.add_agreement(call, REFERENCE.parent / "agreements" / f"{agreement}.yaml", direct=True)
