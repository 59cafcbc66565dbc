"""A report's files: CSV and JSON for data, HTML with charts for reading, PDF for filing."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from custodes.reports.document import Document, Table
from custodes.reports.html import render_html
from custodes.reports.pdf import render_pdf
from custodes.store.files import csv_bytes

FORMATS = (".csv", ".json", ".html", ".pdf")


def encode(doc: Document, kind: str) -> bytes:
    if kind == ".json":
        return (json.dumps(doc.to_json(), indent=1, ensure_ascii=False) + "\n").encode()
    if kind == ".csv":
        return _csv(doc.tables[0])
    if kind == ".html":
        return render_html(doc).encode()
    return render_pdf(doc)


def _csv(t: Table) -> bytes:
    """The report's main table, machine-readable (ISO dates, plain numbers, lists joined by
    ';'); its total, if any, as a last row."""
    rows = t.rows + ([t.total] if t.total else [])
    table = pa.table({k: _column([r.get(k) for r in rows]) for k, _ in t.columns})
    return csv_bytes(table)


def _text(v: Any) -> str | None:
    """One cell as the CSV writes it (what `_column` does a column at a time)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return str(v)


def _column(values: list[Any]) -> pa.Array:
    """A column's cells as text, converted by Arrow a column at a time (a million-row
    accounting has 18 million cells: one Python call each was most of the CSV's time). Arrow
    converts text, whole numbers, yes/no and lists of these as `_text` does; a column holding
    anything else (or a mix Arrow refuses) is converted cell by cell."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        arr = None
    if arr is not None:
        typ = arr.type
        if pa.types.is_string(typ):
            return arr
        if pa.types.is_null(typ):
            return pa.array(values, pa.string())
        if pa.types.is_int64(typ):
            return pc.cast(arr, pa.string())
        if pa.types.is_boolean(typ):
            return pc.if_else(arr, "yes", "no")
        if (
            pa.types.is_list(typ)
            and (pa.types.is_string(typ.value_type) or pa.types.is_int64(typ.value_type))
            and pc.list_flatten(arr).null_count == 0  # a None in a list is written 'None'
        ):
            return pc.binary_join(pc.cast(arr, pa.list_(pa.string())), ";")
    return pa.array([_text(v) for v in values], pa.string())
