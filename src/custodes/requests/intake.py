"""Intake: accept a request directory into the workspace, or refuse it with one message.

The envelope and items are shape-checked (encoding, required columns, duplicate or empty item
ids, oversize fields, file size), copied into ``<workspace>/requests/<id>/`` and hashed. The
same content submitted twice is recognised by its hash and not duplicated. Content checks
against the statute are the rules' job (``custodes rules check``), after intake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import insert, select

from custodes.errors import InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.records.files import read_text_table
from custodes.requests.format import ENVELOPE_FILE, ITEM_COLUMNS, read_envelope
from custodes.store.tables import request_transitions, requests
from custodes.workspace import Workspace

# Configurable limits: a field longer than this, or a file larger, is refused, not truncated.
MAX_FIELD_CHARS = int(os.environ.get("CUSTODES_MAX_FIELD_CHARS", "500"))
MAX_ITEMS_BYTES = int(os.environ.get("CUSTODES_MAX_ITEMS_BYTES", str(2 << 30)))
MAX_ENVELOPE_BYTES = 1 << 20


@dataclass
class Submission:
    request_id: str
    provision: str
    agency: str
    items: int
    state: str
    content_sha256: str
    duplicate: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_items(table: pa.Table, name: str) -> None:
    """Duplicate or empty item ids and oversize fields, located by line, never quoted."""
    con = duckdb.connect(":memory:")
    try:
        con.register("items", table)
        lines_off = 1 if name.lower().endswith(".csv") else 0
        if table.num_rows == 0:
            raise InputError(f"{name}: the request has no items.", code="no_items")
        row = con.execute(
            "SELECT _row FROM items WHERE nullif(trim(item_id), '') IS NULL ORDER BY _row LIMIT 1"
        ).fetchall()
        if row:
            raise InputError(
                f"{name}:{row[0][0] + lines_off}: item_id is empty.", code="empty_item_id"
            )
        row = con.execute(
            "SELECT min(_row), max(_row) FROM items GROUP BY trim(item_id) "
            "HAVING count(*) > 1 ORDER BY 2 LIMIT 1"
        ).fetchall()
        if row:
            raise InputError(
                f"{name}:{row[0][1] + lines_off}: item_id repeats the one on line "
                f"{row[0][0] + lines_off}.",
                code="duplicate_item_id",
            )
        cols = [c for c in table.column_names if c != "_row"]
        too_long = [f"CASE WHEN length(\"{c}\") > {MAX_FIELD_CHARS} THEN '{c}' END" for c in cols]
        row = con.execute(
            f"SELECT _row, coalesce({', '.join(too_long)}) AS col FROM items "
            "WHERE col IS NOT NULL ORDER BY _row LIMIT 1"
        ).fetchall()
        if row:
            raise InputError(
                f"{name}:{row[0][0] + lines_off} [{row[0][1]}]: longer than "
                f"{MAX_FIELD_CHARS} characters.",
                code="oversize_field",
            )
    finally:
        con.close()


def submit(ws: Workspace, folder: Path, *, actor: str | None = None) -> Submission:
    """Accept a request directory; recognise one already submitted."""
    env_path = folder / ENVELOPE_FILE
    if env_path.exists() and env_path.stat().st_size > MAX_ENVELOPE_BYTES:
        raise InputError(
            f"{ENVELOPE_FILE}: larger than {MAX_ENVELOPE_BYTES} bytes.", code="file_too_large"
        )
    env = read_envelope(folder)
    items_path = folder / env["items"]
    table = read_text_table(items_path, ITEM_COLUMNS, allow_extra=True, max_bytes=MAX_ITEMS_BYTES)
    _check_items(table, items_path.name)
    env_sha, items_sha = _sha256(env_path), _sha256(items_path)
    content = hashlib.sha256(f"{env_sha}\n{items_sha}\n".encode()).hexdigest()
    with ws.engine.connect() as conn:
        known = conn.execute(select(requests).where(requests.c.content_sha256 == content)).first()
    if known is not None:
        return Submission(
            known.id, known.provision, known.agency, known.items, known.state, content, True
        )
    request_id = f"req-{secrets.token_hex(6)}"
    dest = ws.home / "requests" / request_id
    dest.mkdir(parents=True)
    try:
        shutil.copyfile(env_path, dest / ENVELOPE_FILE)
        shutil.copyfile(items_path, dest / items_path.name)
        pq.write_table(table.drop_columns(["_row"]), dest / "items.parquet")
        now = dt.datetime.now(dt.UTC)
        with ws.engine.begin() as conn:
            conn.execute(
                insert(requests).values(
                    id=request_id,
                    provision=str(env["provision"]),
                    agency=str(env["agency"]),
                    state="received",
                    content_sha256=content,
                    envelope_sha256=env_sha,
                    items_sha256=items_sha,
                    items=table.num_rows,
                    submitted_at=now,
                    submitted_by=actor,
                )
            )
            conn.execute(
                insert(request_transitions).values(
                    request_id=request_id, from_state=None, to_state="received", at=now, actor=actor
                )
            )
            log.append(
                conn,
                [
                    Event(
                        "request.received",
                        actor=actor,
                        request_id=request_id,
                        data={
                            "provision": str(env["provision"]),
                            "agency": str(env["agency"]),
                            "envelope_sha256": env_sha,
                            "items_sha256": items_sha,
                            "items": table.num_rows,
                        },
                    )
                ],
            )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return Submission(
        request_id,
        str(env["provision"]),
        str(env["agency"]),
        table.num_rows,
        "received",
        content,
        False,
    )


def listing(ws: Workspace) -> list[dict[str, object]]:
    with ws.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(requests).order_by(requests.c.submitted_at))
        ]
