"""The error registry: every code raised anywhere is registered, always with the same class,
and every class maps to one HTTP status and one CLI exit status."""

from __future__ import annotations

import ast
from pathlib import Path

import custodes
from custodes import errors
from custodes.access import credentials  # noqa: F401 - loads every error class below
from custodes.ledger.events import PersonalDataInEvent
from custodes.ledger.keys import NoLedgerKey

SRC = Path(custodes.__file__).parent
CLASSES = {
    c.__name__: c
    for c in (
        errors.CustodesError,
        errors.InputError,
        errors.ValidationFailed,
        errors.NotFound,
        errors.AccessDenied,
        errors.Unauthenticated,
        errors.RateLimited,
        errors.Overloaded,
        errors.ConflictError,
        errors.IntegrityError,
        errors.WorkspaceError,
        NoLedgerKey,
        PersonalDataInEvent,
    )
}


def _raised_codes() -> list[tuple[str, int, str, str]]:
    """(file, line, class name or 'fail', code) for every literal code in the source."""
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name == "fail" and node.args and isinstance(node.args[0], ast.Constant):
                found.append((str(path.relative_to(SRC)), node.lineno, "fail", node.args[0].value))
            elif name in CLASSES:
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                        found.append(
                            (str(path.relative_to(SRC)), node.lineno, name, kw.value.value)
                        )
    return found


def test_every_code_is_registered_with_its_class() -> None:
    problems = []
    for file, line, cls, code in _raised_codes():
        entry = errors.REGISTRY.get(code)
        if entry is None:
            problems.append(f"{file}:{line}: code {code!r} is not registered")
        elif cls != "fail" and not issubclass(CLASSES[cls], entry.kind):
            problems.append(
                f"{file}:{line}: {code!r} raised as {cls}, registered as {entry.kind.__name__}"
            )
    assert not problems, "\n".join(problems)
    assert len(_raised_codes()) > 100


def test_each_class_has_one_status_and_exit() -> None:
    statuses = {c.__name__: c.status for c in CLASSES.values()}
    assert statuses["InputError"] == 422 and statuses["NotFound"] == 404
    assert statuses["AccessDenied"] == 403 and statuses["Unauthenticated"] == 401
    assert statuses["ConflictError"] == 409 and statuses["RateLimited"] == 429
    assert statuses["Overloaded"] == 503
    for code, entry in errors.REGISTRY.items():
        assert entry.kind.exit_code == errors.EXIT_USER_ERROR, code
        assert 400 <= entry.http_status < 600 and entry.title, code


def test_fail_builds_the_registered_class() -> None:
    for code, entry in errors.REGISTRY.items():
        if entry.kind is errors.ValidationFailed:
            continue
        exc = errors.fail(code, "m")
        assert type(exc) is entry.kind and exc.code == code
