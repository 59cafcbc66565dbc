"""The exceptions custodes raises for things a user can cause.

    CustodesError                 every error a user can cause; has a stable machine code
    ├── WorkspaceError            no workspace, or one in an unusable state
    ├── InputError                a file or argument that cannot be accepted
    │   └── ValidationFailed      rows that break the schema (carries the first problems)
    └── ConflictError             an action that clashes with the current state

Messages never contain names, TINs, dates of birth or addresses: they name the file, the
line and the column, and say what is wrong, not what the value was.
"""

from __future__ import annotations

from dataclasses import dataclass


class CustodesError(Exception):
    """An error a user can cause. `code` is stable and machine-readable."""

    code = "error"
    exit_code = 2

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class WorkspaceError(CustodesError):
    code = "workspace"


class InputError(CustodesError):
    code = "input"


class ConflictError(CustodesError):
    code = "conflict"


@dataclass(frozen=True)
class Problem:
    """One validation problem, located without quoting the value."""

    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.column:
            where += f" [{self.column}]"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


class ValidationFailed(InputError):
    """Input rows that break the schema; nothing was loaded."""

    code = "validation_failed"

    def __init__(self, problems: list[Problem], total: int) -> None:
        self.problems = problems
        self.total = total
        shown = "\n".join(f"  {p}" for p in problems)
        more = f"\n  ... and {total - len(problems)} more" if total > len(problems) else ""
        super().__init__(
            f"{total} problem(s) found; nothing was loaded. First problems:\n{shown}{more}"
        )

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["total"] = self.total
        d["problems"] = [p.to_dict() for p in self.problems]
        return d
