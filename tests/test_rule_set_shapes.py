"""A rule set whose values have the wrong shape (a number where a mapping is due, a mapping
where text is, a list where a name is) is linted into problems naming the file, the line and
what was expected, never an uncaught AttributeError, KeyError or TypeError (about 2 % of
mutated copies of the reference set raised one). Loading it is then a coded `bad_ruleset`, and
what lint accepts is a rule set whose every value has the type the engine relies on."""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custodes.cli import app
from custodes.errors import InputError
from custodes.rules.predicates import PREDICATES
from custodes.rules.provisions import (
    REFERENCE,
    lint,
    lint_documents,
    load,
    read_documents,
    ruleset_hash,
)
from custodes.rules.types import FIELD_CLASSES, PHASES, SEVERITIES, Agreement, RuleSet

# The reference rule set, read once: each example swaps one value in memory.
DOCS = read_documents(REFERENCE)
SHA = ruleset_hash(REFERENCE)
LINES = {rel: len((REFERENCE / rel).read_text().splitlines()) for rel in DOCS}


def _paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value in a YAML document, the document itself included."""
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*path, i))
    return out


SITES = [(rel, path) for rel, doc in DOCS.items() for path in _paths(doc.data)]


def _swapped(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(data)
    cur = out
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return out


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6)
)
# Words the linter looks for, so that a swap also reaches the branches behind them.
WORDS = st.sampled_from(
    ["request", "item", "refuse", "TRI", "identity", "basis_known", "basis-known",
     "name-present", "tin", "head_of_agency", "Reference reading, not legal advice.",
     "after_matching", "nullif(trim(city), '') IS NOT NULL", "value"]
)  # fmt: skip
VALUES = st.one_of(
    st.integers(),
    st.lists(st.one_of(SCALARS, WORDS), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=5), WORDS), SCALARS, max_size=3),
    st.none(),
    st.text(max_size=12),
    WORDS,
)


def _assert_well_typed(rs: RuleSet) -> None:
    """What the engine relies on, value by value, of a rule set lint accepted."""
    assert all(isinstance(x, str) for x in (rs.name, rs.version, rs.disclaimer))
    for k, v in rs.parameters.items():
        assert isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        assert isinstance(rs.rationale[k], str)
    for c in rs.checks.values():
        assert all(isinstance(x, str) for x in (c.id, c.citation, c.sentence))
        assert c.severity in SEVERITIES and c.phase in PHASES
        assert (c.level, c.level == "item") in (
            ("item", isinstance(c.sql, str)),
            ("request", False),
        )
        assert c.level == "item" or c.predicate in PREDICATES
    for spec in rs.fields.values():
        assert isinstance(spec, dict) and spec["class"] in FIELD_CLASSES
        assert isinstance(spec.get("description", ""), str)
    assert all(isinstance(x, str) for v in rs.placeholders.values() for x in v)
    for p in rs.provisions.values():
        text = (p.id, p.title, p.citation, p.source_url, p.use_limits, p.retention, p.note)
        assert all(isinstance(x, str) for x in text)
        names = (p.signer_roles, p.request_requirements, p.item_requirements, p.releasable)
        assert all(isinstance(x, str) for names_ in names for x in names_)
        assert isinstance(p.approvals, dict)
        assert isinstance(p.court_order_required, bool) and isinstance(p.law_enforcement, bool)


@settings(max_examples=1000, deadline=None)
@given(site=st.sampled_from(SITES), value=VALUES)
def test_any_value_swapped_gives_a_rule_set_or_problems_never_an_exception(
    site: tuple[str, tuple[Any, ...]], value: Any
) -> None:
    rel, path = site
    mutated = _swapped(DOCS[rel].data, path, value)
    before = copy.deepcopy(mutated)
    docs = DOCS | {rel: dataclasses.replace(DOCS[rel], data=mutated)}
    rs, problems = lint_documents(REFERENCE, docs, SHA)
    assert mutated == before  # lint reads, never edits
    assert (rs is None) == bool(problems)
    if rs is not None:
        _assert_well_typed(rs)
    for p in problems:
        assert p.file in DOCS or p.file == str(REFERENCE), p
        assert isinstance(p.message, str) and p.message, p
        assert p.line is None or 1 <= p.line <= LINES.get(p.file, 0), p


def test_the_reference_reads_the_same_from_memory_as_from_its_folder() -> None:
    from_folder, problems = lint(REFERENCE)
    from_memory, problems_too = lint_documents(REFERENCE, DOCS, SHA)
    assert not problems and not problems_too and from_folder == from_memory


@pytest.fixture
def ruleset_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "rs"
    shutil.copytree(REFERENCE, dest)
    return dest


# (file, text replaced, replacement, where the problem is: its line, what it says)
SHAPES = [
    ("fields.yaml", "fields:\n", "fields: 1\nx:\n", "fields:", "'fields' must map each field"),
    ("fields.yaml", "  tin: {class: identity, ", "  tin: 1\n  y: {", "tin:", "'tin' must be a map"),
    ("fields.yaml", 'filing_status: {class: TRI, description: "Filing status as reported"}',
     "filing_status: {description: 1}", "filing_status", "description must be text"),
    ("checks.yaml", "- id: basis-known", "- id: [basis-known]", "- id: [", "id must be text"),
    ("checks.yaml", "predicate: basis_known", "predicate: [basis_known]",
     "- id: basis-known", "unknown predicate"),
    ("checks.yaml", 'citation: "26 U.S.C. 6103(a)"', "citation: 6103", "- id: basis-known",
     "citation must be text"),
    ("ruleset.yaml", "name: custodes-reference-irc6103", "name: [custodes]", "name:",
     "'name' must be text"),
    ("ruleset.yaml", "value: 500", 'value: "500"', "official_case_cap:",
     "value must be a number"),
    ("irc6103/d.yaml", "id: irc-6103-d", "id: [irc-6103-d]", "id:", "id must be text"),
    ("irc6103/d.yaml", "signers: {roles: [head_of_agency]", "signers: {roles: 1", "signers:",
     "signers.roles must be a list of role names"),
    ("irc6103/d.yaml", "approvals: {count: 2, distinct_from_preparer: true}", "approvals: 2",
     "approvals:", "'approvals' must be a mapping"),
    ("irc6103/i-1.yaml", "law_enforcement: true", 'law_enforcement: "false"', "law_enforcement:",
     "'law_enforcement' must be true or false"),
    ("irc6103/m-2.yaml", 'use_limits: "Only', "use_limits: {x: 1}\nx: \"Only", "use_limits:",
     "'use_limits' must be text"),
]  # fmt: skip


@pytest.mark.parametrize(("file", "old", "new", "at", "message"), SHAPES)
def test_a_value_of_the_wrong_shape_is_one_problem_with_file_and_line(
    ruleset_copy: Path, file: str, old: str, new: str, at: str, message: str
) -> None:
    path = ruleset_copy / file
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text)
    rs, problems = lint(ruleset_copy)
    hit = [p for p in problems if message in p.message]
    assert rs is None and len(hit) == 1, problems
    assert hit[0].file == file
    assert hit[0].line == text[: text.index(at)].count("\n") + 1, (hit[0], text)
    with pytest.raises(InputError, match=message) as exc:
        load(ruleset_copy)
    assert exc.value.code == "bad_ruleset"
    r = CliRunner().invoke(app, ["rules", "lint", str(ruleset_copy)])
    assert r.exit_code == 1 and message in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_that_cannot_be_read_is_a_problem(ruleset_copy: Path) -> None:
    (ruleset_copy / "irc6103" / "d.yaml").chmod(0)
    _, problems = lint(ruleset_copy)
    assert [str(p) for p in problems] == ["irc6103/d.yaml: cannot be read (Permission denied)"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("signer_roles", "head_of_agency", "'signer_roles' is a list of role names"),
        ("signer_roles", [["head_of_agency"]], "'signer_roles' is a list of role names"),
        ("require_safeguards_current", "no", "'require_safeguards_current' is true or false"),
    ],
)
def test_an_agreement_value_of_the_wrong_shape_is_refused(
    key: str, value: Any, message: str
) -> None:
    """A text `signer_roles` would narrow the signers by substring ('head' in 'head_of_agency')."""
    d = {"id": "a", "provision": "irc-6103-i-2", "agency": "X", "citation": "Y", key: value}
    with pytest.raises(InputError, match=message) as exc:
        Agreement.from_dict(d)
    assert exc.value.code == "bad_agreement"
