"""Request-level checks: named predicates over the envelope and the registries.

Each returns (passed, detail). Details speak of the request and of officials, never of
taxpayers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from custodes.rules.types import Effective, Registry, RuleSet

Result = tuple[bool, str | None]

_USC = re.compile(r"\b(\d+)\s*U\.?\s?S\.?\s?C\.?\s*(?:§+\s*)?(\d+[a-z]?)", re.IGNORECASE)


@dataclass
class Context:
    envelope: dict[str, Any]
    effective: Effective | None
    ruleset: RuleSet
    registry: Registry
    items: int
    today: dt.date


def basis_known(c: Context) -> Result:
    pid = c.envelope.get("provision")
    if c.effective is None:
        return False, f"'{pid}' is not a provision of rule set {c.ruleset.name}"
    return True, None


def signer_authorized(c: Context) -> Result:
    s = c.envelope.get("signer") or {}
    assert c.effective is not None
    if s.get("role") not in c.effective.signer_roles:
        return False, (
            f"signer role '{s.get('role')}' may not sign under "
            f"{c.effective.provision.id}"
            + (f" with agreement {c.effective.agreement.id}" if c.effective.agreement else "")
        )
    for o in c.registry.officials:
        if (
            o["agency"] == c.envelope.get("agency")
            and o["name"] == s.get("name")
            and o["role"] == s.get("role")
            and o["valid_from"] <= c.today
            and (o["valid_to"] is None or c.today <= o["valid_to"])
        ):
            return True, None
    return False, "the signer is not registered as a current official of the agency in that role"


def _statute(c: Context) -> re.Match[str] | None:
    return _USC.search(str(c.envelope.get("statutory_authority") or ""))


def statute_designated(c: Context) -> Result:
    return (
        (True, None) if _statute(c) else (False, "no statute cited as '<title> U.S.C. <section>'")
    )


def statute_not_tax(c: Context) -> Result:
    m = _statute(c)
    if m and m.group(1) == "26":
        return False, "the designated statute is in Title 26 (tax), not a non-tax statute"
    return True, None


def reason_specific(c: Context) -> Result:
    words = len(str(c.envelope.get("reason") or "").split())
    limit = int(c.effective.parameters.get("max_reason_words", 5)) if c.effective else 5
    if words <= limit:
        return False, f"the reason has {words} word(s); more than {limit} are needed"
    return True, None


def periods_stated(c: Context) -> Result:
    periods = c.envelope.get("taxable_periods") or []
    if not periods:
        return False, "no taxable periods"
    bad = [p for p in periods if not isinstance(p, int) or p < 1900 or p > c.today.year]
    return (False, f"impossible taxable period(s): {bad}") if bad else (True, None)


def officials_named(c: Context) -> Result:
    return (True, None) if c.envelope.get("officials") else (False, "no officials named")


def court_order_valid(c: Context) -> Result:
    order = c.envelope.get("court_order")
    required = bool(c.effective and c.effective.provision.court_order_required)
    if not order:
        return (False, "no court order attached") if required else (True, None)
    missing = [
        k for k in ("court", "judge", "docket", "date", "expires", "findings") if not order.get(k)
    ]
    if missing:
        return False, f"the order lacks: {', '.join(missing)}"
    try:
        date = dt.date.fromisoformat(str(order["date"]))
        expires = dt.date.fromisoformat(str(order["expires"]))
    except ValueError:
        return False, "the order's date or expiry is not a YYYY-MM-DD date"
    if date > c.today:
        return False, "the order is dated in the future"
    if expires < c.today:
        return False, f"the order expired on {expires.isoformat()}"
    if len(order["findings"]) < 3:
        return False, "the order records fewer than the three statutory findings"
    return True, None


def fields_permitted(c: Context) -> Result:
    assert c.effective is not None
    asked = c.envelope.get("fields_requested") or []
    if not asked:
        return False, "no fields requested"
    extra = [f for f in asked if f not in c.effective.provision.releasable]
    if extra:
        return False, f"not releasable under {c.effective.provision.id}: {', '.join(extra)}"
    return True, None


def recipient_safeguards(c: Context) -> Result:
    a = c.registry.agencies.get(str(c.envelope.get("agency")))
    if a is None:
        return False, "the agency is not in the registry"
    if not a["safeguards_current"]:
        return False, "the agency's safeguard review is not current"
    if a["open_findings"]:
        return False, f"the agency has {a['open_findings']} open safeguard finding(s)"
    return True, None


def agreement_registered(c: Context) -> Result:
    aid = c.envelope.get("agreement")
    if not aid:
        return True, None
    agr = c.registry.agreements.get(aid)
    if agr is None:
        return False, f"agreement '{aid}' is not registered"
    if agr.agency != c.envelope.get("agency"):
        return False, f"agreement '{aid}' is with another agency"
    if c.effective is not None and agr.provision != c.effective.provision.id:
        return False, f"agreement '{aid}' is for {agr.provision}"
    return True, None


def volume_within_limit(c: Context) -> Result:
    limit = c.effective.parameters.get("max_items") if c.effective else None
    if limit is not None and c.items > int(limit):
        return False, f"{c.items} persons exceed the agreement's limit of {limit}"
    return True, None


PREDICATES: dict[str, Callable[[Context], Result]] = {
    f.__name__: f
    for f in (
        basis_known,
        signer_authorized,
        statute_designated,
        statute_not_tax,
        reason_specific,
        periods_stated,
        officials_named,
        court_order_valid,
        fields_permitted,
        recipient_safeguards,
        agreement_registered,
        volume_within_limit,
    )
}
