"""Loading, linting and hashing a rule set (a folder of YAML), and agreement overlays.

Layout of a rule set folder::

    ruleset.yaml        name, version, disclaimer, counsel parameters with rationale
    checks.yaml         the named-check library
    fields.yaml         the field catalog (identity / non-TRI / TRI)
    placeholders.yaml   the regression corpus of non-addresses
    <any>/<x>.yaml      one provision per file (files with an `id:` key)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from custodes.errors import InputError
from custodes.rules.checks import DIALECTS, CompileError, compile_check
from custodes.rules.documents import Document, read_documents, ruleset_hash
from custodes.rules.predicates import PREDICATES
from custodes.rules.types import (
    FIELD_CLASSES,
    PHASES,
    SEVERITIES,
    STRICTER_IS_SMALLER,
    Agreement,
    Check,
    Effective,
    LintProblem,
    Provision,
    RuleSet,
)

REFERENCE = Path(__file__).parent / "reference"
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


def lint(folder: Path) -> tuple[RuleSet | None, list[LintProblem]]:
    """Load a rule set, collecting every problem with its file and line.

    Named checks, in order; a stage whose input is unusable stops before the next. By hand
    rather than a schema library: each message names the file, the line and the reason in the
    rule set's own words, and most checks cross-reference (a provision's checks, its fields'
    classes, SQL that compiles in each dialect), which no schema expresses."""
    if not folder.is_dir():
        return None, [LintProblem(str(folder), None, "not a folder")]
    return lint_documents(folder, read_documents(folder), ruleset_hash(folder))


def lint_documents(
    folder: Path, documents: dict[str, Document], sha256: str
) -> tuple[RuleSet | None, list[LintProblem]]:
    """`lint` of a rule set already read (`read_documents`): every value of the wrong shape
    (a number where a mapping is due, a mapping where text is) is a problem naming the file,
    the line where known and what was expected, never an exception."""
    problems: list[LintProblem] = []
    docs = _special_docs(documents, problems)
    if docs is None:
        return None, problems
    meta, checks_doc, fields_doc, ph_doc = docs
    refused = _shape_refusal(meta, checks_doc, fields_doc)
    if refused is not None:
        return None, [refused]
    params, rationale = _parameters(meta, problems)
    problems.extend(
        LintProblem("ruleset.yaml", line, message)
        for line, message in _meta_problems(meta.data, meta.lines)
    )
    fields = fields_doc.data.get("fields", {})
    _check_fields(fields, fields_doc.lines, problems)
    checks = _checks(checks_doc.data, checks_doc.lines, params, problems)
    provisions = _provisions(documents, checks, fields, problems)
    if not provisions:
        problems.append(LintProblem(str(folder), None, "no provision files"))
    placeholders = _placeholders(ph_doc.data, problems)
    rs = RuleSet(
        folder,
        meta.data.get("name", ""),
        str(meta.data.get("version", "")),
        meta.data.get("disclaimer", ""),
        params,
        rationale,
        checks,
        fields,
        placeholders,
        provisions,
        sha256,
    )
    return (None if problems else rs), problems


_Docs = tuple[Document, Document, Document, Document]


def _special_docs(documents: dict[str, Document], problems: list[LintProblem]) -> _Docs | None:
    """The four special files, each read and a YAML mapping; None once any is not."""
    for name in SPECIAL_FILES:
        if name not in documents:
            problems.append(LintProblem(name, None, "missing"))
    if problems:
        return None
    meta, checks_doc, fields_doc, ph_doc = (documents[name] for name in SPECIAL_FILES)
    for doc in (meta, checks_doc, fields_doc, ph_doc):
        problems.extend(doc.problems)
    if problems:
        return None
    for fname, doc in zip(SPECIAL_FILES, (meta, checks_doc, fields_doc, ph_doc), strict=True):
        if not isinstance(doc.data, dict):
            problems.append(LintProblem(fname, 1, "must hold a YAML mapping"))
    if problems:
        return None
    return meta, checks_doc, fields_doc, ph_doc


def _shape_refusal(
    meta: Document, checks_doc: Document, fields_doc: Document
) -> LintProblem | None:
    """The one problem that stops the lint when parameters, checks or fields have the wrong
    shape."""
    declared = meta.data.get("parameters") or {}
    if not isinstance(declared, dict) or any(
        not isinstance(k, str) or not isinstance(v, dict) or "value" not in v
        for k, v in declared.items()
    ):
        return LintProblem("ruleset.yaml", None, "parameters map names to {value, rationale}")
    if not isinstance(checks_doc.data.get("checks"), list) or any(
        not isinstance(c, dict) for c in checks_doc.data["checks"]
    ):
        return LintProblem("checks.yaml", 1, "'checks' must be a list of mappings")
    if not isinstance(fields_doc.data.get("fields", {}), dict):
        return LintProblem(
            "fields.yaml",
            fields_doc.lines.get(("fields",), 1),
            "'fields' must map each field name to {class, description}",
        )
    return None


def _parameters(
    meta: Document, problems: list[LintProblem]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The counsel parameters' values and rationales; a parameter without one is a problem,
    and so is a value that is not a number (evaluation compares them, and an agreement's
    parameters, which are numbers, tighten them with `min`)."""
    declared = meta.data.get("parameters") or {}
    params = {k: v["value"] for k, v in declared.items()}
    rationale = {k: v.get("rationale", "") for k, v in declared.items()}
    for k, v in declared.items():
        line = meta.lines.get(("parameters", k))
        if not v.get("rationale"):
            problems.append(LintProblem("ruleset.yaml", None, f"parameter '{k}' has no rationale"))
        elif not isinstance(v["rationale"], str):
            problems.append(
                LintProblem("ruleset.yaml", line, f"parameter '{k}': rationale must be text")
            )
        if not _is_number(v["value"]):
            problems.append(
                LintProblem("ruleset.yaml", line, f"parameter '{k}': value must be a number")
            )
    return params, rationale


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _not_text(
    doc: dict[str, Any], keys: tuple[str, ...], lines: dict[tuple[Any, ...], int]
) -> list[tuple[int | None, str]]:
    """(line, message) for each of `keys` present in `doc` with a value that is not text."""
    return [
        (lines.get((k,)), f"'{k}' must be text")
        for k in keys
        if k in doc and not isinstance(doc[k], str)
    ]


def _meta_problems(
    meta: dict[str, Any], lines: dict[tuple[Any, ...], int]
) -> list[tuple[int | None, str]]:
    """The rule set's name and disclaimer are text, its version text or a number."""
    out = _not_text(meta, ("name", "disclaimer"), lines)
    if "version" in meta and (meta["version"] is None or isinstance(meta["version"], dict | list)):
        out.append((lines.get(("version",)), "'version' must be text or a number"))
    return out


def _field_class(spec: Any) -> Any:
    return spec.get("class") if isinstance(spec, dict) else None


def _check_fields(
    fields: dict[Any, Any], lines: dict[tuple[Any, ...], int], problems: list[LintProblem]
) -> None:
    for fname, spec in fields.items():
        line = lines.get(("fields", fname))
        if not isinstance(spec, dict):
            problems.append(
                LintProblem(
                    "fields.yaml", line, f"field '{fname}' must be a mapping {{class, description}}"
                )
            )
            continue
        if spec.get("class") not in FIELD_CLASSES:
            problems.append(
                LintProblem(
                    "fields.yaml",
                    line,
                    f"field '{fname}' must be tagged {' / '.join(FIELD_CLASSES)}",
                )
            )
        if "description" in spec and not isinstance(spec["description"], str):
            problems.append(
                LintProblem("fields.yaml", line, f"field '{fname}': description must be text")
            )


def _checks(
    checks_doc: dict[str, Any],
    check_lines: dict[tuple[Any, ...], int],
    params: dict[str, Any],
    problems: list[LintProblem],
) -> dict[str, Check]:
    """The named-check library, each check linted; SQL compiled against dummy parameters."""
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
        if not isinstance(cid, str):
            problems.append(LintProblem("checks.yaml", line, "a check's id must be text"))
            continue
        if cid in checks:
            problems.append(LintProblem("checks.yaml", line, f"check '{cid}' is defined twice"))
        problems.extend(
            LintProblem("checks.yaml", line, message) for message in _check_problems(c, dummy)
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
    return checks


def _check_problems(c: dict[str, Any], dummy: dict[str, Any]) -> list[str]:
    """What is wrong with one check (which has an id)."""
    cid = c["id"]
    out = [f"check '{cid}' has no {key}" for key in ("citation", "sentence") if not c.get(key)]
    out += [
        f"check '{cid}': {key} must be text"
        for key in ("citation", "sentence")
        if c.get(key) and not isinstance(c[key], str)
    ]
    if c.get("severity") not in SEVERITIES:
        out.append(f"check '{cid}': severity must be one of {', '.join(SEVERITIES)}")
    if c.get("phase", "before_matching") not in PHASES:
        out.append(f"check '{cid}': unknown phase")
    if c.get("level") == "request":
        predicate = c.get("predicate")
        if not isinstance(predicate, str) or predicate not in PREDICATES:
            out.append(f"check '{cid}': unknown predicate '{predicate}'")
    elif c.get("level") == "item":
        sql = c.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            out.append(f"check '{cid}': no SQL")
        else:
            for dialect in DIALECTS:
                try:
                    compile_check(sql, dummy, dialect)
                except CompileError as exc:
                    out.append(f"check '{cid}' ({dialect}): {exc}")
    else:
        out.append(f"check '{cid}': level must be request or item")
    return out


def _provisions(
    documents: dict[str, Document],
    checks: dict[str, Check],
    fields: dict[str, Any],
    problems: list[LintProblem],
) -> dict[str, Provision]:
    """Every provision file (a YAML mapping with an `id:`) outside the special files."""
    provisions: dict[str, Provision] = {}
    for rel, document in documents.items():
        if rel in SPECIAL_FILES:
            continue
        problems.extend(document.problems)
        doc, lines = document.data, document.lines
        if not isinstance(doc, dict) or "id" not in doc:
            continue
        refused = _provision_refusal(rel, doc, lines)
        if refused is not None:
            problems.append(refused)
            continue
        if doc["id"] in provisions:
            problems.append(
                LintProblem(rel, lines.get(("id",)), f"provision '{doc['id']}' is defined twice")
            )
        problems.extend(
            LintProblem(rel, line, message)
            for line, message in _provision_problems(doc, lines, checks, fields)
        )
        provisions[doc["id"]] = _provision(doc)
    return provisions


def _provision_refusal(
    rel: str, doc: dict[str, Any], lines: dict[tuple[Any, ...], int]
) -> LintProblem | None:
    """The problem that keeps a provision file out: a missing key, a name that is not text,
    or a list that is not one."""
    missing = [k for k in PROVISION_KEYS if not doc.get(k)]
    if missing:
        return LintProblem(rel, 1, f"missing key(s): {', '.join(missing)}")
    not_text = [k for k in ("id", "title", "citation") if not isinstance(doc[k], str)]
    if not_text:
        return LintProblem(rel, lines.get((not_text[0],), 1), f"{', '.join(not_text)} must be text")
    shape = [
        k
        for k in ("request_requirements", "item_requirements", "releasable")
        if not isinstance(doc[k], list) or any(not isinstance(x, str) for x in doc[k])
    ]
    if shape or not isinstance(doc["signers"], dict):
        return LintProblem(
            rel,
            1,
            "signers must be a mapping, and "
            + ", ".join(shape or ["request_requirements"])
            + " lists of names",
        )
    roles = doc["signers"].get("roles", [])
    if not isinstance(roles, list) or any(not isinstance(r, str) for r in roles):
        return LintProblem(
            rel, lines.get(("signers", "roles"), 1), "signers.roles must be a list of role names"
        )
    return None


PROVISION_TEXT = ("source_url", "use_limits", "retention", "tri_basis")
PROVISION_FLAGS = ("court_order_required", "law_enforcement")


def _provision_problems(
    doc: dict[str, Any],
    lines: dict[tuple[Any, ...], int],
    checks: dict[str, Check],
    fields: dict[str, Any],
) -> list[tuple[int | None, str]]:
    """(line, message) for each problem of one well-shaped provision: unknown or misplaced
    checks, fields outside the catalog, TRI released without a court order or basis, a note
    that does not disclaim legal advice, and optional values of the wrong kind."""
    out: list[tuple[int | None, str]] = []
    for key in ("request_requirements", "item_requirements"):
        want = "request" if key.startswith("request") else "item"
        for j, cid in enumerate(doc[key]):
            if cid not in checks:
                out.append((lines.get((key, j)), f"unknown check '{cid}'"))
            elif checks[cid].level != want:
                out.append(
                    (
                        lines.get((key, j)),
                        f"check '{cid}' is a {checks[cid].level} check, listed as {want}",
                    )
                )
    for j, f in enumerate(doc["releasable"]):
        if f not in fields:
            out.append((lines.get(("releasable", j)), f"field '{f}' is not in the field catalog"))
        elif (
            _field_class(fields[f]) == "TRI"
            and not doc.get("court_order_required")
            and not doc.get("tri_basis")
        ):
            out.append(
                (
                    lines.get(("releasable", j)),
                    f"releases taxpayer return information ('{f}') without "
                    "requiring a court order or citing a tri_basis",
                )
            )
    out += _not_text(doc, ("note", *PROVISION_TEXT), lines)
    if (
        isinstance(doc.get("note", ""), str)
        and "not legal advice" not in doc.get("note", "").lower()
    ):
        out.append(
            (
                lines.get(("note",), 1),
                "the provision must say it is a reference reading, not legal advice",
            )
        )
    out += [
        (lines.get((k,)), f"'{k}' must be true or false")
        for k in PROVISION_FLAGS
        if k in doc and not isinstance(doc[k], bool)
    ]
    if "approvals" in doc and not isinstance(doc["approvals"], dict):
        out.append((lines.get(("approvals",)), "'approvals' must be a mapping"))
    return out


def _provision(doc: dict[str, Any]) -> Provision:
    signers = doc["signers"]
    return Provision(
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
        bool(doc.get("law_enforcement")),
    )


def _placeholders(ph_doc: dict[str, Any], problems: list[LintProblem]) -> dict[str, list[str]]:
    """The regression corpus of non-addresses, upper-cased; each entry must be a list."""
    placeholders = {
        k: [str(x).upper() for x in v]
        for k, v in ph_doc.items()
        if isinstance(v, list) and not any(isinstance(x, dict | list) for x in v)
    }
    if len(placeholders) != len(ph_doc):  # a null or a mapping where a list is due (fuzzing)
        problems.append(LintProblem("placeholders.yaml", None, "each entry is a list of values"))
    return placeholders


# Rule sets already read, by folder and by the hash of their bytes. One call loads the rule
# set several times (the pipeline's checks, outcomes and release each ask for the one in
# force), and reading it (the YAML prescan, parse and lint, in Python) costs ~0.1 s a time;
# hashing the files again is one read of a few kilobytes. A file edited since misses the cache
# (its hash differs), so what is returned is always what the folder holds now. Each caller
# gets its own copy.
_LOADED: dict[tuple[str, str], RuleSet] = {}


def load(folder: Path | None = None) -> RuleSet:
    folder = folder or REFERENCE
    try:
        sha = ruleset_hash(folder) if folder.is_dir() else None
    except OSError:
        sha = None
    hit = _LOADED.get((str(folder), sha)) if sha else None
    if hit is not None:
        return copy.deepcopy(hit)
    rs, problems = lint(folder)
    if rs is not None and sha is not None and rs.sha256 == sha:
        if len(_LOADED) >= 16:
            _LOADED.clear()
        _LOADED[(str(folder), sha)] = copy.deepcopy(rs)
    if rs is None:
        shown = "\n".join(f"  {p}" for p in problems[:20])
        raise InputError(
            f"The rule set at {folder} is not valid ({len(problems)} problem(s)); "
            f"run 'custodes rules lint':\n{shown}",
            code="bad_ruleset",
        )
    return rs


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
