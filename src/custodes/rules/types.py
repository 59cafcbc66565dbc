"""The law as data: the plain types of a rule set. No behaviour, no imports from the room."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custodes.errors import InputError

SEVERITIES = ("refuse", "withhold", "review")
PHASES = ("before_matching", "after_matching")
FIELD_CLASSES = ("identity", "non-TRI", "TRI")
# Parameters where a smaller value is stricter (caps and limits).
STRICTER_IS_SMALLER = ("official_case_cap", "max_items")


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    severity: str
    citation: str
    sentence: str
    phase: str = "before_matching"
    sql: str | None = None
    predicate: str | None = None
    source: str = "statute"  # statute, or the agreement id that added it


@dataclass
class Provision:
    id: str
    title: str
    citation: str
    source_url: str
    signer_roles: list[str]
    request_requirements: list[str]
    item_requirements: list[str]
    releasable: list[str]
    use_limits: str
    retention: str
    approvals: dict[str, Any]
    court_order_required: bool = False
    note: str = ""
    # A disclosure to a law-enforcement agency for an enforcement activity: left out of the
    # accounting the person concerned may see (5 U.S.C. 552a(c)(3), (b)(7)).
    law_enforcement: bool = False


@dataclass
class Agreement:
    id: str
    provision: str
    agency: str
    citation: str
    signer_roles: list[str] | None = None
    add_request_requirements: list[str] = field(default_factory=list)
    add_item_requirements: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    require_safeguards_current: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agreement:
        known = set(cls.__dataclass_fields__)
        extra = sorted(str(k) for k in set(d) - known)  # YAML keys may be None, numbers...
        if extra:
            raise InputError(
                f"agreement: unknown key(s): {', '.join(extra)} (an agreement can "
                "only add requirements, never remove one).",
                code="bad_agreement",
            )
        for k in ("id", "provision", "agency", "citation"):
            if not isinstance(d.get(k), str) or not d.get(k):
                raise InputError(f"agreement: '{k}' is required (text).", code="bad_agreement")
        for k in ("add_request_requirements", "add_item_requirements"):
            if not isinstance(d.get(k, []), list) or any(
                not isinstance(x, str) for x in d.get(k, [])
            ):
                raise InputError(f"agreement: '{k}' is a list of check ids.", code="bad_agreement")
        if not isinstance(d.get("parameters", {}), dict) or any(
            not isinstance(v, int) or isinstance(v, bool) for v in d.get("parameters", {}).values()
        ):
            raise InputError("agreement: 'parameters' maps names to numbers.", code="bad_agreement")
        roles = d.get("signer_roles")
        if roles is not None and (
            not isinstance(roles, list) or any(not isinstance(r, str) for r in roles)
        ):
            raise InputError(
                "agreement: 'signer_roles' is a list of role names.", code="bad_agreement"
            )
        if not isinstance(d.get("require_safeguards_current", False), bool):
            raise InputError(
                "agreement: 'require_safeguards_current' is true or false.", code="bad_agreement"
            )
        return cls(**d)


@dataclass
class RuleSet:
    folder: Path
    name: str
    version: str
    disclaimer: str
    parameters: dict[str, Any]
    rationale: dict[str, str]
    checks: dict[str, Check]
    fields: dict[str, dict[str, str]]
    placeholders: dict[str, list[str]]
    provisions: dict[str, Provision]
    sha256: str

    def provision(self, pid: str) -> Provision:
        if pid not in self.provisions:
            raise InputError(
                f"Unknown provision (this rule set has: {', '.join(sorted(self.provisions))}).",
                code="unknown_provision",
            )
        return self.provisions[pid]


@dataclass
class Effective:
    """A provision with an agreement overlaid: only ever stricter."""

    provision: Provision
    checks: dict[str, Check]
    request_requirements: list[str]
    item_requirements: list[str]
    signer_roles: list[str]
    parameters: dict[str, Any]
    agreement: Agreement | None


@dataclass
class Registry:
    """A snapshot of the registries the rules consult: agencies, officials, agreements."""

    agencies: dict[str, dict[str, Any]]
    officials: list[dict[str, Any]]
    agreements: dict[str, Agreement]


@dataclass(frozen=True)
class LintProblem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )
