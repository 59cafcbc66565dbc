"""Rendering results for people (Rich) and for scripts (--json), and errors for both.

Rich never interprets text custodes did not write itself: every dynamic value is printed with
markup off or escaped, so `items.csv:6 [first_name]: …` keeps its `[first_name]`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Cell = str | Callable[[dict[str, Any]], Any]
ID_WIDTH = 32  # the longest one-word value kept whole in a table (ids, dates, codes)


def plain(value: Any) -> Any:
    """A result as JSON-able data: dataclasses and objects with to_dict() become dicts."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(plain(data), indent=2, default=str, ensure_ascii=False) + "\n")


def text(value: Any) -> str:
    """A value as a person reads it: no Python reprs (None, True, lists in brackets)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple | set):
        return ", ".join(text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {text(v)}" for k, v in value.items())
    return str(value)


def say(message: str) -> None:
    out.print(message, markup=False, soft_wrap=True)


def kv(title: str, data: dict[str, Any], keys: Iterable[str] | None = None) -> None:
    """A two-column table of a result's fields."""
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k in keys if keys is not None else data:
        table.add_row(escape(k.replace("_", " ")), escape(text(data.get(k))))
    out.print(table)


def rows(
    title: str,
    data: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, Cell]],
    *,
    limit: int | None = None,
    empty: str | None = None,
) -> None:
    """A table with one row per item; a column is a key or a function of the row."""
    if not data and empty:
        say(empty)
        return
    cells = [
        [text(c(r) if callable(c) else r.get(c)) for _, c in columns]
        for r in (data[:limit] if limit else data)
    ]
    table = Table(title=escape(title), title_justify="left")
    for i, (heading, _) in enumerate(columns):
        values = [row[i] for row in cells]
        # An id (req-…, rcl-…, item-…) is never cut or folded on a narrow terminal: the columns
        # of words wrap instead.
        whole = bool(values) and all(v and " " not in v and len(v) <= ID_WIDTH for v in values)
        table.add_column(
            escape(heading),
            no_wrap=whole,
            min_width=max(map(len, values)) if whole else None,
        )
    for row in cells:
        table.add_row(*(escape(v) for v in row))
    out.print(table)
    if limit and len(data) > limit:
        say(f"… and {len(data) - limit:,} more (--json lists all).")


def error(code: str, message: str, json_out: bool, extra: dict[str, Any] | None = None) -> None:
    if json_out:
        emit_json({"error": {"code": code, "message": message} | (extra or {})})
    else:
        err.print(f"[bold red]error[/] ({escape(code)}): {escape(message)}", soft_wrap=True)
