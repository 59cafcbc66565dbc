"""The one helper that puts a name or a value into SQL text.

Values a user or a file supplies (column names from a header, file paths, ids, rule
parameters) reach SQL only through these functions or as bound parameters; nothing else builds
SQL from them. tests/test_sql_text.py walks the source for f-strings (and format, % and +)
that interpolate anything else into SQL.
"""

from __future__ import annotations

import os
from pathlib import Path


def ident(name: str) -> str:
    """A quoted SQL identifier (DuckDB, Spark via sqlglot, SQLite, PostgreSQL)."""
    if "\x00" in name:
        raise ValueError("an identifier cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'


def literal(value: str | int | float | bool | None) -> str:
    """A quoted SQL literal: strings single-quoted with quotes doubled, numbers as numbers."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a literal cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def path(p: str | os.PathLike[str]) -> str:
    """A file path as a quoted SQL string literal (for DuckDB's read_parquet, COPY ... TO)."""
    return literal(str(Path(p)))


def parquet(p: str | os.PathLike[str]) -> str:
    """``read_parquet('<path>')`` with the path quoted."""
    return f"read_parquet({path(p)})"
