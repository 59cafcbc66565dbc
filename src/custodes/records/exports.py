"""Writing a table that holds personal data to a file a user named: CSV (formula cells
neutralised), Parquet or JSON by the extension, never over an existing file or through a
symlink, and recorded in the ledger (who, what, how many rows, the file's SHA-256)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custodes.errors import InputError
from custodes.ledger import log
from custodes.ledger.event_types import FileWritten
from custodes.store.files import csv_bytes, out_file, recorded
from custodes.workspace import Call

KINDS = (".csv", ".parquet", ".json")


def file_kind(out: Path, kinds: tuple[str, ...] = KINDS) -> str:
    kind = out.suffix.lower()
    if kind not in kinds:
        raise InputError(
            f"{out.name}: use a {', '.join(kinds[:-1])} or {kinds[-1]} file name.",
            code="unsupported_file_type",
        )
    return kind


def _flat(table: pa.Table) -> pa.Table:
    """Lists become ';'-separated text (CSV has no lists)."""
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.binary_join(col, ";")
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def encode(table: pa.Table, kind: str) -> bytes:
    if kind == ".csv":
        return csv_bytes(_flat(table))
    if kind == ".parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    return (
        json.dumps(table.to_pylist(), indent=1, default=str, ensure_ascii=False) + "\n"
    ).encode()


def write_table(
    call: Call, table: pa.Table, out: Path, *, what: str, request_id: str | None = None
) -> dict[str, Any]:
    """Write `table` to `out` (by extension) and record the file in the ledger."""
    kind = file_kind(out)
    out_file(out)
    data = encode(table, kind)
    digest = hashlib.sha256(data).hexdigest()
    with recorded(out, data), call.transaction() as conn:  # the event first, then the file
        log.append_one(
            conn,
            FileWritten(what=what, rows=table.num_rows, sha256=digest),
            actor=call.actor,
            request_id=request_id,
        )
    return {"rows": table.num_rows, "out": str(out), "sha256": digest}
