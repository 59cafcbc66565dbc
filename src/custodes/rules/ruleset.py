"""Loading, linting and hashing a rule set (a folder of YAML), and agreement overlays.

Layout of a rule set folder::

    ruleset.yaml        name, version, disclaimer, counsel parameters with rationale
    checks.yaml         the named-check library
    fields.yaml         the field catalog (identity / non-TRI / TRI)
    placeholders.yaml   the regression corpus of non-addresses
    <any>/<x>.yaml      one provision per file (files with an `id:` key)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
import yaml

from custodes.errors import InputError

REFERENCE = Path(__file__).parent / "reference"
SEVERITIES = ("refuse", "withhold", "review")
PHASES = ("before_matching", "after_matching")
FIELD_CLASSES = ("identity", "non-TRI", "TRI")
PROVISION_KEYS = (
    "id",
    "title",
    "citation",
    "signers",
    "request_requirements",
    "item_requirements",
    "releasable",
)
SPECIAL_FILES = ("ruleset.yaml", "checks.yaml", "fields.yaml", "placeholders.yaml")


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
        extra = sorted(set(d) - known)
        if extra:
            raise InputError(
                f"agreement: unknown key(s): {', '.join(extra)} (an agreement can "
                "only add requirements, never remove one).",
                code="bad_agreement",
            )
        for k in ("id", "provision", "agency", "citation"):
            if not d.get(k):
                raise InputError(f"agreement: '{k}' is required.", code="bad_agreement")
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
                f"Unknown provision '{pid}' (this rule set has: "
                f"{', '.join(sorted(self.provisions))}).",
                code="unknown_provision",
            )
        return self.provisions[pid]


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


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.yaml") if p.is_file())


def ruleset_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in _files(folder):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _node_lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Line numbers (1-based) of every key and list element, by path."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out.update(_node_lines(v, (*path, k.value)))
            out[(*path, k.value)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_node_lines(v, (*path, i)))
    return out


def _read(
    path: Path, folder: Path, problems: list[LintProblem]
) -> tuple[Any, dict[tuple[Any, ...], int]]:
    rel = str(path.relative_to(folder))
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        problems.append(LintProblem(rel, None, "not UTF-8 text"))
        return None, {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(
            LintProblem(
                rel,
                mark.line + 1 if mark else None,
                f"not valid YAML ({getattr(exc, 'problem', exc)})",
            )
        )
        return None, {}
    return data, (_node_lines(node) if node is not None else {})


def substitute(sql: str, params: dict[str, Any]) -> str:
    """Replace {name} with a quoted SQL literal (lists become comma-separated literals)."""

    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, int | float):
            return str(v)
        return "'" + str(v).replace("'", "''") + "'"

    out = sql
    for k, v in params.items():
        if "{" + k + "}" in out:
            value = ", ".join(lit(x) for x in v) if isinstance(v, list | tuple) else lit(v)
            out = out.replace("{" + k + "}", value or "NULL")
    return out


def lint(folder: Path) -> tuple[RuleSet | None, list[LintProblem]]:
    """Load a rule set, collecting every problem with its file and line."""
    from custodes.rules.predicates import PREDICATES

    problems: list[LintProblem] = []
    if not folder.is_dir():
        return None, [LintProblem(str(folder), None, "not a folder")]
    for name in SPECIAL_FILES:
        if not (folder / name).exists():
            problems.append(LintProblem(name, None, "missing"))
    if problems:
        return None, problems
    meta, _ = _read(folder / "ruleset.yaml", folder, problems)
    checks_doc, check_lines = _read(folder / "checks.yaml", folder, problems)
    fields_doc, _ = _read(folder / "fields.yaml", folder, problems)
    ph_doc, _ = _read(folder / "placeholders.yaml", folder, problems)
    if problems:
        return None, problems
    params = {k: v["value"] for k, v in (meta.get("parameters") or {}).items()}
    rationale = {k: v.get("rationale", "") for k, v in (meta.get("parameters") or {}).items()}
    for k, v in (meta.get("parameters") or {}).items():
        if not v.get("rationale"):
            problems.append(LintProblem("ruleset.yaml", None, f"parameter '{k}' has no rationale"))
    fields = fields_doc.get("fields", {})
    for fname, spec in fields.items():
        if spec.get("class") not in FIELD_CLASSES:
            problems.append(
                LintProblem(
                    "fields.yaml",
                    None,
                    f"field '{fname}' must be tagged {' / '.join(FIELD_CLASSES)}",
                )
            )
    dummy = {k: 1 for k in params} | {
        "placeholder_streets": ["X"],
        "placeholder_cities": ["X"],
        "placeholder_zips": ["0"],
        "states": ["TX"],
        "officials": ["X"],
        "envelope_has_periods": True,
        "envelope_has_reason": True,
    }
    checks: dict[str, Check] = {}
    for i, c in enumerate(checks_doc.get("checks", [])):
        line = check_lines.get(("checks", i))
        cid = c.get("id")
        if not cid:
            problems.append(LintProblem("checks.yaml", line, "a check has no id"))
            continue
        if cid in checks:
            problems.append(LintProblem("checks.yaml", line, f"check '{cid}' is defined twice"))
        for key in ("citation", "sentence"):
            if not c.get(key):
                problems.append(LintProblem("checks.yaml", line, f"check '{cid}' has no {key}"))
        if c.get("severity") not in SEVERITIES:
            problems.append(
                LintProblem(
                    "checks.yaml",
                    line,
                    f"check '{cid}': severity must be one of {', '.join(SEVERITIES)}",
                )
            )
        if c.get("phase", "before_matching") not in PHASES:
            problems.append(LintProblem("checks.yaml", line, f"check '{cid}': unknown phase"))
        if c.get("level") == "request":
            if c.get("predicate") not in PREDICATES:
                problems.append(
                    LintProblem(
                        "checks.yaml",
                        line,
                        f"check '{cid}': unknown predicate '{c.get('predicate')}'",
                    )
                )
        elif c.get("level") == "item":
            try:
                sqlglot.parse_one(substitute(c.get("sql") or "", dummy), read="duckdb")
                if not c.get("sql"):
                    raise sqlglot.errors.ParseError("empty")
            except sqlglot.errors.SqlglotError as exc:
                problems.append(
                    LintProblem(
                        "checks.yaml",
                        line,
                        f"check '{cid}': SQL does not parse ({str(exc).splitlines()[0]})",
                    )
                )
        else:
            problems.append(
                LintProblem("checks.yaml", line, f"check '{cid}': level must be request or item")
            )
        checks[cid] = Check(
            cid,
            c.get("level", ""),
            c.get("severity", ""),
            c.get("citation", ""),
            c.get("sentence", ""),
            c.get("phase", "before_matching"),
            c.get("sql"),
            c.get("predicate"),
        )
    provisions: dict[str, Provision] = {}
    for path in _files(folder):
        if path.name in SPECIAL_FILES and path.parent == folder:
            continue
        rel = str(path.relative_to(folder))
        doc, lines = _read(path, folder, problems)
        if not isinstance(doc, dict) or "id" not in doc:
            continue
        missing = [k for k in PROVISION_KEYS if not doc.get(k)]
        if missing:
            problems.append(LintProblem(rel, 1, f"missing key(s): {', '.join(missing)}"))
            continue
        if doc["id"] in provisions:
            problems.append(
                LintProblem(rel, lines.get(("id",)), f"provision '{doc['id']}' is defined twice")
            )
        for key in ("request_requirements", "item_requirements"):
            for j, cid in enumerate(doc[key]):
                want = "request" if key.startswith("request") else "item"
                if cid not in checks:
                    problems.append(LintProblem(rel, lines.get((key, j)), f"unknown check '{cid}'"))
                elif checks[cid].level != want:
                    problems.append(
                        LintProblem(
                            rel,
                            lines.get((key, j)),
                            f"check '{cid}' is a {checks[cid].level} check, listed as {want}",
                        )
                    )
        for j, f in enumerate(doc["releasable"]):
            if f not in fields:
                problems.append(
                    LintProblem(
                        rel,
                        lines.get(("releasable", j)),
                        f"field '{f}' is not in the field catalog",
                    )
                )
            elif (
                fields[f]["class"] == "TRI"
                and not doc.get("court_order_required")
                and not doc.get("tri_basis")
            ):
                problems.append(
                    LintProblem(
                        rel,
                        lines.get(("releasable", j)),
                        f"releases "
                        f"taxpayer return information ('{f}') without "
                        "requiring a court order or citing a tri_basis",
                    )
                )
        if "not legal advice" not in str(doc.get("note", "")).lower():
            problems.append(
                LintProblem(
                    rel,
                    lines.get(("note",), 1),
                    "the provision must say it is a reference reading, not legal advice",
                )
            )
        signers = doc["signers"]
        provisions[doc["id"]] = Provision(
            doc["id"],
            doc["title"],
            doc["citation"],
            doc.get("source_url", ""),
            list(signers.get("roles", [])),
            list(doc["request_requirements"]),
            list(doc["item_requirements"]),
            list(doc["releasable"]),
            doc.get("use_limits", ""),
            doc.get("retention", ""),
            doc.get("approvals", {}),
            bool(doc.get("court_order_required")),
            doc.get("note", ""),
        )
    if not provisions:
        problems.append(LintProblem(str(folder), None, "no provision files"))
    rs = RuleSet(
        folder,
        meta.get("name", ""),
        str(meta.get("version", "")),
        meta.get("disclaimer", ""),
        params,
        rationale,
        checks,
        fields,
        {k: [str(x).upper() for x in v] for k, v in (ph_doc or {}).items()},
        provisions,
        ruleset_hash(folder),
    )
    return (None if problems else rs), problems


def load(folder: Path | None = None) -> RuleSet:
    folder = folder or REFERENCE
    rs, problems = lint(folder)
    if rs is None:
        shown = "\n".join(f"  {p}" for p in problems[:20])
        raise InputError(
            f"The rule set at {folder} is not valid ({len(problems)} problem(s)); "
            f"run 'custodes rules lint':\n{shown}",
            code="bad_ruleset",
        )
    return rs


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


# Parameters where a smaller value is stricter (caps and limits).
STRICTER_IS_SMALLER = ("official_case_cap", "max_items")


def overlay(rs: RuleSet, prov: Provision, agreement: Agreement | None) -> Effective:
    """Apply an agreement: add requirements, narrow signers, tighten limits. Never loosen."""
    checks = dict(rs.checks)
    req = list(prov.request_requirements)
    item = list(prov.item_requirements)
    roles = list(prov.signer_roles)
    params = dict(rs.parameters)
    if agreement is not None:
        if agreement.provision != prov.id:
            raise InputError(
                f"Agreement {agreement.id} is for {agreement.provision}, not {prov.id}.",
                code="agreement_mismatch",
            )
        for cid in [*agreement.add_request_requirements, *agreement.add_item_requirements]:
            if cid not in checks:
                raise InputError(
                    f"Agreement {agreement.id} names unknown check '{cid}'.", code="bad_agreement"
                )
        req += [c for c in agreement.add_request_requirements if c not in req]
        item += [c for c in agreement.add_item_requirements if c not in item]
        for c in agreement.add_item_requirements + agreement.add_request_requirements:
            base = checks[c]
            citation = (
                base.citation
                if agreement.citation in base.citation
                else f"{base.citation}; {agreement.citation}"
            )
            checks[c] = Check(**{**base.__dict__, "source": agreement.id, "citation": citation})
        if agreement.signer_roles is not None:
            roles = [r for r in roles if r in agreement.signer_roles]
        for k, v in agreement.parameters.items():
            if k in STRICTER_IS_SMALLER:
                params[k] = min(v, params[k]) if k in params else v
    return Effective(prov, checks, req, item, roles, params, agreement)
