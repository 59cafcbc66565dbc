"""A report's files: CSV and JSON for data, HTML with charts for reading, PDF for filing."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

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
    keys = [k for k, _ in t.columns]

    def text(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, list):
            return ";".join(str(x) for x in v)
        return str(v)

    table = pa.table({k: pa.array([text(r.get(k)) for r in rows], pa.string()) for k in keys})
    return csv_bytes(table)
