"""Intake: accept a request directory into the workspace, or refuse it with one message.

The envelope and items are shape-checked (encoding, required columns, allowed column names,
item ids, duplicate or empty ids, oversize fields, file size), copied into
``<workspace>/requests/<id>/`` and hashed. The same content submitted again is recognised by the
hash of its *parsed* content (so a copy re-saved with CRLF line ends or a byte-order mark is the
same request) and not duplicated. A requester account submits only in its own agency's name.
Content checks against the statute are the rules' job (``custodes rules check``), after intake.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, insert, select

from custodes import settings
from custodes.errors import AccessDenied, InputError
from custodes.ledger import anchors, files, log
from custodes.ledger.event_types import RequestReceived
from custodes.ledger.events import Event
from custodes.ledger.files import sha256_file
from custodes.records.files import read_text_table
from custodes.requests.format import (
    ENVELOPE_FILE,
    EXTRA_COLUMN,
    ITEM_COLUMNS,
    ITEM_ID_RULE,
    ITEM_ID_STATUS_SQL,
    ITEMS_PARQUET,
    read_envelope,
)
from custodes.store import duck
from custodes.store.dialects import compile_check
from custodes.store.files import alive, hash_arrow
from custodes.store.sql import ident
from custodes.store.tables import request_transitions, requests
from custodes.workspace import Call, Workspace

# Configurable limits: a field longer than this, or a file larger, is refused, not truncated.
MAX_FIELD_CHARS = settings.integer("CUSTODES_MAX_FIELD_CHARS", 500)
MAX_ITEMS_BYTES = settings.integer("CUSTODES_MAX_ITEMS_BYTES", 2 << 30)
MAX_ENVELOPE_BYTES = 1 << 20
# Items a request may hold, checked before a Parquet file is decoded (a 1 MB file can hold 20M
# dictionary-encoded rows). The agreement's `max_items` is the legal limit, checked by the
# rules with its citation; this one protects the server.
MAX_ITEMS = settings.integer("CUSTODES_MAX_ITEMS", 5000000)
MAX_WARNINGS = 20


@dataclass
class Submission:
    request_id: str
    provision: str
    agency: str
    items: int
    state: str
    content_sha256: str
    duplicate: bool
    warnings: list[str] = field(default_factory=list)
    warnings_total: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Checked:
    """A request directory that passed intake's shape checks (nothing written yet)."""

    folder: Path
    envelope: dict[str, Any]
    items_path: Path
    table: pa.Table
    content_sha256: str
    envelope_sha256: str
    items_sha256: str
    warnings: list[str]
    warnings_total: int


def _first(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None


def item_checks(columns: tuple[str, ...], dialect: str = "duckdb") -> dict[str, str]:
    """Intake's per-item checks as SQL expressions over the items table, compiled for `dialect`
    from one definition (DuckDB and Spark):

    - ``item_id``: ``'empty_item_id'``, ``'bad_item_id'`` or NULL (`format.ITEM_ID_STATUS_SQL`);
    - ``too_long``: the position in `columns` of the item's first field longer than
      `MAX_FIELD_CHARS`, or NULL;
    - ``bad_dob``: a date of birth is given but is not a YYYY-MM-DD date.

    Column names come from a header that `read_text_table` has already checked; they reach
    the SQL quoted by `store.sql.ident`."""
    return _item_checks(columns, dialect, int(MAX_FIELD_CHARS))


@functools.lru_cache(maxsize=16)  # compiling takes milliseconds; a file's columns repeat
def _item_checks(columns: tuple[str, ...], dialect: str, max_chars: int) -> dict[str, str]:
    too_long = ", ".join(
        f"CASE WHEN length({ident(c)}) > {{max_chars}} THEN {i} END" for i, c in enumerate(columns)
    )
    # Characters are counted only in a row with a field of more bytes than the limit allows
    # characters (a field cannot hold more characters than bytes; the byte count is stored).
    any_long = " OR ".join(f"strlen({ident(c)}) > {{max_chars}}" for c in columns)
    definitions = {
        "item_id": ITEM_ID_STATUS_SQL,
        "too_long": f"CASE WHEN {any_long} THEN coalesce({too_long}) END",
        "bad_dob": "nullif(trim(dob), '') IS NOT NULL "
        "AND try_strptime(trim(dob), '%Y-%m-%d') IS NULL",
    }
    params = {"max_chars": max_chars}
    return {k: compile_check(v, params, dialect) for k, v in definitions.items()}


def _check_items(table: pa.Table, name: str) -> tuple[list[str], int]:
    """Refuse empty, repeated, or ill-formed item ids and oversize fields, located by line and
    never quoted; return warnings for values that will be read as missing.

    Every check runs in DuckDB over the whole table (one scan, then a grouping for repeated
    ids); Python sees only the first failing row of each kind and the first `MAX_WARNINGS`
    rows warned about. The order of precedence is the order above, so a file with several
    defects gets the same message whichever way it is checked."""
    off = 1 if name.lower().endswith(".csv") else 0
    if table.num_rows == 0:
        raise InputError(f"{name}: the request has no items.", code="no_items")
    cols = tuple(c for c in table.column_names if c != "_row")
    sql = item_checks(cols, "duckdb")
    con = duck.bulk()  # the bulk settings: memory limit, spill folder
    try:
        con.register("items", table)
        bad_id_row, bad_id, long_row, long_col, n_bad_dob = _first(
            con,
            "SELECT min(_row) FILTER (WHERE id IS NOT NULL), "
            "arg_min(id, _row) FILTER (WHERE id IS NOT NULL), "
            "min(_row) FILTER (WHERE col IS NOT NULL), "
            "arg_min(col, _row) FILTER (WHERE col IS NOT NULL), "
            "count(*) FILTER (WHERE dob) "
            f"FROM (SELECT _row, {sql['item_id']} AS id, {sql['too_long']} AS col, "
            f"{sql['bad_dob']} AS dob FROM items)",
        )
        if bad_id == "empty_item_id":
            raise InputError(f"{name}:{bad_id_row + off}: item_id is empty.", code="empty_item_id")
        if bad_id is not None:
            raise InputError(
                f"{name}:{bad_id_row + off} [item_id]: not an opaque id ({ITEM_ID_RULE}).",
                code="bad_item_id",
            )
        dup = _first(
            con,
            "SELECT min(_row), max(_row) FROM items GROUP BY trim(item_id) "
            "HAVING count(*) > 1 ORDER BY 2 LIMIT 1",
        )
        if dup:
            raise InputError(
                f"{name}:{dup[1] + off}: item_id repeats the one on line {dup[0] + off}.",
                code="duplicate_item_id",
            )
        if long_row is not None:
            raise InputError(
                f"{name}:{long_row + off} [{cols[long_col]}]: longer than "
                f"{MAX_FIELD_CHARS} characters.",
                code="oversize_field",
            )
        bad_dob = (
            con.execute(
                f"SELECT _row FROM items WHERE {sql['bad_dob']} ORDER BY _row "
                f"LIMIT {int(MAX_WARNINGS)}"
            ).fetchall()
            if n_bad_dob
            else []
        )
    finally:
        duck.close(con)
    warnings = [
        f"{name}:{r + off} [dob]: not a YYYY-MM-DD date; it is treated as missing."
        for (r,) in bad_dob
    ]
    return warnings, n_bad_dob


def content_hash(envelope: dict[str, Any], table: pa.Table) -> str:
    """The hash of what a request says, not of its bytes: canonical JSON of the envelope and
    the items as parsed (text columns, in file order)."""
    h = hashlib.sha256(orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS))
    data = table.drop_columns(["_row"]) if "_row" in table.column_names else table
    # The IPC stream is hashed as Arrow writes it, buffer by buffer: the same bytes as
    # collecting it first, without the growing copy (0.9 s of a million-item intake).
    hash_arrow(h, data)
    return h.hexdigest()


def check(folder: Path) -> Checked:
    """Every shape check `submit` makes, without writing anything (also used by `rules
    check`, so that a folder intake refuses is never said to "proceed")."""
    env_path = folder / ENVELOPE_FILE
    if env_path.is_file() and env_path.stat().st_size > MAX_ENVELOPE_BYTES:
        raise InputError(
            f"{ENVELOPE_FILE}: larger than {MAX_ENVELOPE_BYTES} bytes.", code="file_too_large"
        )
    env = read_envelope(folder)
    items_path = folder / env["items"]
    if items_path.is_symlink():
        raise InputError(f"{env['items']}: is a symbolic link.", code="bad_path")
    table = read_text_table(
        items_path,
        ITEM_COLUMNS,
        allow_extra=True,
        extra_names=EXTRA_COLUMN,
        max_bytes=MAX_ITEMS_BYTES,
        max_rows=MAX_ITEMS,
    )
    warnings, total = _check_items(table, items_path.name)
    return Checked(
        folder,
        env,
        items_path,
        table,
        content_hash(env, table),
        sha256_file(env_path),
        sha256_file(items_path),
        warnings,
        total,
    )


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# While an intake copies a request into its folder, the folder holds this mark naming the
# process (`.intake-PID`); it goes once the request's row is committed.
WRITING = ".intake-"


def _sweep_abandoned(ws: Workspace, conn: Connection) -> None:
    """Remove what an intake killed before its commit left: a request folder (with the
    agency's items) whose mark names a process that is gone and that has no row. A mark left
    in a folder whose row was committed just goes. (Found by bench/crash.py.)"""
    for mark in (ws.home / "requests").glob(f"*/{WRITING}*"):
        pid = mark.name.removeprefix(WRITING)
        if not pid.isdigit() or alive(int(pid)):
            continue  # an intake at work (or not a mark of ours)
        row = conn.execute(select(requests.c.id).where(requests.c.id == mark.parent.name))
        if row.first() is None:
            shutil.rmtree(mark.parent, ignore_errors=True)
        else:
            mark.unlink(missing_ok=True)


def submit(call: Call, folder: Path, *, paper_sha256: str | None = None) -> Submission:
    """Accept a request directory; recognise one already submitted.

    A request in an agency's name comes from that agency's account. Staff key in only a
    request the agency sent on paper, naming the scan's SHA-256 (`paper_sha256`); such a
    request is not processed until a second staff member confirms it (`confirm_paper`)."""
    ws = call.ws
    agency = call.agency
    _check_sender(agency, paper_sha256)
    c = check(folder)
    env = c.envelope
    if agency is not None and env["agency"] != agency:
        raise AccessDenied(
            "This account submits requests only in the name of its own agency.",
            code="other_agency",
        )
    with ws.engine.connect() as conn:
        _sweep_abandoned(ws, conn)
        known = conn.execute(
            select(requests).where(requests.c.content_sha256 == c.content_sha256)
        ).first()
    if known is not None:
        return Submission(
            known.id,
            known.provision,
            known.agency,
            known.items,
            known.state,
            c.content_sha256,
            True,
            c.warnings,
            c.warnings_total,
        )
    request_id = f"req-{secrets.token_hex(6)}"
    dest = ws.request_folder(request_id)
    dest.mkdir(mode=0o700, parents=True)
    writing = dest / f"{WRITING}{os.getpid()}"
    writing.touch(mode=0o600)
    try:
        shutil.copyfile(folder / ENVELOPE_FILE, dest / ENVELOPE_FILE, follow_symlinks=False)
        shutil.copyfile(c.items_path, dest / c.items_path.name, follow_symlinks=False)
        pq.write_table(c.table.drop_columns(["_row"]), dest / ITEMS_PARQUET)
        _record(call, c, request_id, dest, paper_sha256)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    writing.unlink()
    return Submission(
        request_id,
        env["provision"],
        env["agency"],
        c.table.num_rows,
        "received",
        c.content_sha256,
        False,
        c.warnings,
        c.warnings_total,
    )


def _check_sender(agency: str | None, paper_sha256: str | None) -> None:
    """An agency's account sends its own requests; staff key in only paper, with its hash."""
    if agency is None and paper_sha256 is None:
        raise AccessDenied(
            "A request in an agency's name comes from that agency's account; staff key in "
            "only a request received on paper, with the scan's hash ('custodes submit FOLDER "
            "--paper SCAN').",
            code="agency_account_required",
        )
    if agency is not None and paper_sha256 is not None:
        raise InputError(
            "An agency's account submits its requests itself, not as paper.", code="bad_argument"
        )
    if paper_sha256 is not None and not SHA256_HEX.fullmatch(paper_sha256):
        raise InputError(
            "The paper scan's hash is 64 lower-case hexadecimal digits (SHA-256).",
            code="bad_argument",
        )


def _record(call: Call, c: Checked, request_id: str, dest: Path, paper_sha256: str | None) -> None:
    """In one transaction: the request's row and first transition, its ledger event, and the
    copies in `dest` custodes reads back (ledger.files: checked at every later use)."""
    env = c.envelope
    now = dt.datetime.now(dt.UTC)
    with call.transaction() as conn:
        anchors.insert(
            conn,
            call.actor,
            requests,
            id=request_id,
            provision=env["provision"],
            agency=env["agency"],
            state="received",
            content_sha256=c.content_sha256,
            envelope_sha256=c.envelope_sha256,
            items_sha256=c.items_sha256,
            items=c.table.num_rows,
            submitted_at=now,
            submitted_by=call.actor,
            paper_sha256=paper_sha256,
        )
        conn.execute(
            insert(request_transitions).values(
                request_id=request_id,
                from_state=None,
                to_state="received",
                at=now,
                actor=call.actor,
            )
        )
        log.append(conn, [_received(call, c, request_id, paper_sha256, now)])
        kept = [("request.envelope", ENVELOPE_FILE), ("request.items", ITEMS_PARQUET)]
        if c.items_path.name not in (ENVELOPE_FILE, ITEMS_PARQUET):
            kept.append(("request.submitted", c.items_path.name))
        for role, name in kept:
            files.record(conn, call.ws, call.actor, role, dest / name, request_id=request_id)


def _received(
    call: Call, c: Checked, request_id: str, paper_sha256: str | None, at: dt.datetime
) -> Event:
    env = c.envelope
    return Event(
        RequestReceived(
            provision=env["provision"],
            agency=env["agency"],
            envelope_sha256=c.envelope_sha256,
            items_sha256=c.items_sha256,
            content_sha256=c.content_sha256,
            items=c.table.num_rows,
            dob_warnings=c.warnings_total,
            # What the accounting of disclosures needs (IRM 11.3.37): the periods and fields
            # asked for, and the reason by its hash (the agency's free text could name someone).
            taxable_periods=_ints(env.get("taxable_periods")),
            fields_requested=_texts(env.get("fields_requested")),
            reason_sha256=text_sha256(env.get("reason")),
            # Keyed in by staff from paper: the scan's hash (None: the agency's own account
            # sent it).
            received_on_paper=paper_sha256 is not None,
            paper_sha256=paper_sha256,
            reason_hmac=None,  # its history row has no reason; its time is the event's
        ),
        actor=call.actor,
        request_id=request_id,
        at=at,
    )


def _ints(value: Any) -> list[int]:
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


def _texts(value: Any) -> list[str]:
    """Field names only (lower-case identifiers): anything else an agency wrote stays out of
    the ledger."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,63}", v)]


def text_sha256(value: Any) -> str:
    """The hash the ledger keeps of a free text (a reason): SHA-256 of its UTF-8, stripped."""
    return hashlib.sha256(str(value or "").strip().encode()).hexdigest()


def listing(
    ws: Workspace, agency: str | None = None, request_id: str | None = None
) -> list[dict[str, object]]:
    """Received requests (all of them, or one agency's; or the one named), oldest first."""
    q = select(requests).order_by(requests.c.submitted_at)
    if agency is not None:
        q = q.where(requests.c.agency == agency)
    if request_id is not None:
        q = q.where(requests.c.id == request_id)
    with ws.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
