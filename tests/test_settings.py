"""One table of settings (src/custodes/settings.py): every CUSTODES_* name in the source is in
it, everything in it is read, it is the only place the environment is read, and the docs'
table is generated from it. Run as a script, rewrites the docs' section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import custodes
import docgen
from custodes import settings
from custodes.errors import CustodesError, WorkspaceError

SRC = Path(custodes.__file__).parent
SETTINGS_PY = SRC / "settings.py"
DOC, SECTION = "operations.md", "settings"

# In the table, read by nothing yet: the setting's reader is on another branch this session.
# (A setting here that the source reads fails the test, so this list cannot go stale.)
PENDING: dict[str, str] = {}

# Reads of the environment left outside settings.py, each with its reason. (A name here that no
# longer has such a read fails the test.)
DIRECT: dict[tuple[str, str], str] = {
    ("matching/backends.py", "(a name not spelled out)"): "PYSPARK_PYTHON: Spark's own setting, "
    "the Python its workers run (not custodes')",
}


def sources() -> dict[str, str]:
    return {
        p.relative_to(SRC).as_posix(): p.read_text() for p in SRC.rglob("*.py") if p != SETTINGS_PY
    }


def test_the_docs_table_is_generated_from_the_settings_table() -> None:
    expected = settings.markdown()
    assert docgen.section(DOC, SECTION) == expected, (
        f"docs/{DOC}'s settings section is stale; run `PYTHONPATH=src python "
        f"tests/test_settings.py`, or paste:\n{expected}"
    )


def test_every_setting_the_source_names_is_in_the_table() -> None:
    named: dict[str, set[str]] = {}
    for path, text in sources().items():
        for name in re.findall(r"CUSTODES_[A-Z0-9_]+", text):
            named.setdefault(name, set()).add(path)
    unknown = {}
    for name, paths in named.items():
        if name.endswith("_"):  # a family named by its prefix (`CUSTODES_ADMIT_*`)
            assert any(s.startswith(name) for s in settings.BY_NAME), name
        elif name not in settings.BY_NAME:
            unknown[name] = sorted(paths)
    assert not unknown, f"settings named in src but not in custodes/settings.py: {unknown}"


def test_every_setting_in_the_table_is_read() -> None:
    literals = {
        node.value
        for text in sources().values()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    # A reader names its setting as a whole string (`settings.raw("CUSTODES_X")`), or builds it
    # from a family's prefix and a known suffix (admission's `_setting(...)` is called by name).
    unread = sorted(s.name for s in settings.SETTINGS if s.name not in literals)
    assert unread == sorted(PENDING), f"in the table, read by nothing: {unread}"


def _environment_reads(tree: ast.AST) -> list[ast.AST]:
    """`os.environ` and `os.getenv` used anywhere (read or written)."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in ("environ", "getenv", "putenv")
    ]


def test_only_the_settings_module_reads_custodes_settings_from_the_environment() -> None:
    found: set[tuple[str, str]] = set()
    for path, text in sources().items():
        for node in _environment_reads(ast.parse(text)):
            line = text.splitlines()[node.lineno - 1]  # type: ignore[attr-defined]
            names = re.findall(r"CUSTODES_[A-Z0-9_]+", line)
            if not names and "DEMO_" in line and path == "demo.py":
                continue  # make demo's own knobs (DEMO_PEOPLE, DEMO_ITEMS), not custodes'
            found.update((path, n) for n in names or ["(a name not spelled out)"])
    assert found == set(DIRECT), (
        f"read the environment through custodes.settings instead: {sorted(found - set(DIRECT))}"
        f"; allowed reads no longer there: {sorted(set(DIRECT) - found)}"
    )


def test_a_name_not_in_the_table_cannot_be_read() -> None:
    with pytest.raises(KeyError):
        settings.raw("CUSTODES_NO_SUCH_SETTING")
    with pytest.raises(KeyError):
        settings.put("CUSTODES_NO_SUCH_SETTING", "1")


def test_a_malformed_number_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODES_MAX_ITEMS", "5e6")
    with pytest.raises(WorkspaceError) as caught:
        settings.integer("CUSTODES_MAX_ITEMS", 5)
    assert caught.value.code == "bad_configuration"
    assert "CUSTODES_MAX_ITEMS" in caught.value.message
    monkeypatch.setenv("CUSTODES_MAX_ITEMS", "")
    assert settings.integer("CUSTODES_MAX_ITEMS", 5) == 5
    monkeypatch.setenv("CUSTODES_MAX_ITEMS", "12")
    assert settings.integer("CUSTODES_MAX_ITEMS", 5) == 12


def test_list_and_flag_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODES_TRUSTED_PROXY", "10.0.0.1, 10.0.1.0/24  ::1")
    assert settings.items("CUSTODES_TRUSTED_PROXY") == ["10.0.0.1", "10.0.1.0/24", "::1"]
    monkeypatch.setenv("CUSTODES_DEBUG", "")
    assert not settings.flag("CUSTODES_DEBUG")
    monkeypatch.setenv("CUSTODES_DEBUG", "1")
    assert settings.flag("CUSTODES_DEBUG")


if __name__ == "__main__":
    docgen.write(DOC, SECTION, settings.markdown())
    print(f"docs/{DOC}: settings section regenerated")


def test_a_number_setting_in_other_digits_is_a_coded_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """'²' passes str.isdigit() and fails int(): it was an uncoded ValueError (review)."""
    monkeypatch.setenv("CUSTODES_API_MAX_UPLOAD", "12²")
    with pytest.raises(CustodesError) as exc:
        settings.integer("CUSTODES_API_MAX_UPLOAD", 1)
    assert exc.value.code == "bad_configuration"
