"""The request interchange format (documented in docs/formats.md).

A request is a directory holding ``envelope.json`` and an items file (``items.csv`` or
``items.parquet``) named by the envelope's ``items`` key. Received requests keep a validated
copy of the items as ``items.parquet`` in their folder; everything after intake reads that.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from custodes.errors import InputError
from custodes.ledger.events import TIN_CANDIDATE, has_tin
from custodes.records.schema import ITEM_PERSON_COLUMNS
from custodes.store.sql import literal

ENVELOPE_FILE = "envelope.json"
ITEMS_PARQUET = "items.parquet"

ENVELOPE_REQUIRED = (
    "provision",
    "agency",
    "signer",
    "statutory_authority",
    "reason",
    "taxable_periods",
    "fields_requested",
    "items",
)
ENVELOPE_TEXT = ("provision", "agency", "statutory_authority", "reason", "items", "agreement")
SIGNER_KEYS = ("name", "title", "role")
OFFICIAL_KEYS = ("id", "name", "title")

ITEM_COLUMNS = (*ITEM_PERSON_COLUMNS, "case_number", "official_id")
ITEM_OPTIONAL = ("taxable_periods", "statutory_authority", "reason", "removal_order_date")
# An extra column an agreement may ask for: a plain lower-case name.
EXTRA_COLUMN = re.compile(r"[a-z][a-z0-9_]{0,62}")

# An item id is an opaque key the agency chooses; it travels into the ledger and the
# response, so it must not carry a person: 1-64 of A-Za-z0-9 . _ : -, starting with a letter
# or digit, not all digits, nothing shaped like a date or a TIN.
ITEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_DATE = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
_DATE_LIKE = re.compile(rf"(?<![0-9])({_DATE})(?![0-9])")
ITEM_ID_RULE = (
    "1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit, not all "
    "digits, and nothing shaped like a date or a TIN"
)

# The provisions a request may name (the reference rule set's ids).
PROVISIONS = (
    "irc-6103-i-1",
    "irc-6103-i-2",
    "irc-6103-l-6",
    "irc-6103-l-7",
    "irc-6103-m-2",
    "irc-6103-d",
)


def item_id_ok(value: str) -> bool:
    """The reference definition of an opaque item id (`value` already stripped).
    `ITEM_ID_STATUS_SQL` says the same in SQL; a property test holds them together."""
    return bool(
        ITEM_ID.fullmatch(value)
        and not value.isdigit()
        and not _DATE_LIKE.search(value)
        and not has_tin(value)
    )


def item_id_status(value: str | None) -> str | None:
    """Intake's verdict on one raw item id: ``empty_item_id``, ``bad_item_id`` or None."""
    text = (value or "").strip()
    if not text:
        return "empty_item_id"
    return None if item_id_ok(text) else "bad_item_id"


# --- The same verdict in SQL, over a whole items table --------------------------------------
# Written in DuckDB's spelling and compiled per dialect (`store.dialects`), so that DuckDB and
# Spark run one definition; RE2 (DuckDB) and Java (Spark) read these patterns alike. Each part
# mirrors a part of `item_id_status`:
# - Python strips what `str.isspace()` calls space (`_SPACE`, pinned by a test); the SQL
#   accepts that space around the id instead of stripping it (the id itself cannot hold any).
# - Once the id is A-Za-z0-9._:- only, `isdigit()` means [0-9]+, and `isalnum()` [A-Za-z0-9].
# - RE2 has no lookaround: "no digit before or after" becomes "start or a non-digit", which
#   finds a date exactly when Python's search does.
# - `has_tin` takes the TIN candidates left to right without overlap (`finditer`) and counts
#   one not touching a letter or digit. `regexp_replace(..., 'g')` makes the same scan, so each
#   candidate becomes one '#' (a character no id holds), and a '#' with neither a letter, a
#   digit nor another candidate beside it is a TIN.
_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _char_class(chars: str) -> str:
    """A regex class of `chars` for RE2 and Java, runs as ranges (upper-case hex, so that
    ``\\x{..}`` is never read as a ``{name}`` parameter)."""
    points = sorted(map(ord, chars))
    runs: list[list[int]] = []
    for p in points:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return (
        "[" + "".join(f"\\x{{{a:X}}}" + (f"-\\x{{{b:X}}}" if b > a else "") for a, b in runs) + "]"
    )


_S = _char_class(_SPACE) + "*"


ITEM_ID_EMPTY_SQL = f"regexp_full_match(coalesce(item_id, ''), {literal(_S)})"
_TIN = literal(TIN_CANDIDATE.pattern)
# The id's faults, each a condition on a non-empty id: failing any one makes it "not opaque".
ITEM_ID_FAULTS_SQL = (
    f"NOT regexp_full_match(item_id, {literal(_S + ITEM_ID.pattern + _S)})",
    f"regexp_full_match(item_id, {literal(_S + '[0-9]+' + _S)})",
    f"regexp_matches(item_id, {literal(f'(^|[^0-9])({_DATE})([^0-9]|$)')})",
    f"regexp_matches(item_id, {_TIN}) AND regexp_matches("
    f"regexp_replace(item_id, {_TIN}, '#', 'g'), '(^|[^A-Za-z0-9#])#([^A-Za-z0-9#]|$)')",
)
# One CASE, so that an engine tests each id only until its first fault (DuckDB then skips the
# rest for that row). A NULL id is empty (the first WHEN); past it the id is a text, and a
# regular expression over a text is never NULL, so no fault is skipped for want of a value.
ITEM_ID_STATUS_SQL = (
    f"CASE WHEN {ITEM_ID_EMPTY_SQL} THEN 'empty_item_id' "
    + "".join(f"WHEN {fault} THEN 'bad_item_id' " for fault in ITEM_ID_FAULTS_SQL)
    + "END"
)


def parse_envelope(text: str) -> dict[str, Any]:
    """Parse and shape-check an envelope's JSON text. Content checks are the rules' job."""
    try:
        env = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{ENVELOPE_FILE}:{exc.lineno}: not valid JSON ({exc.msg}).", code="bad_envelope"
        ) from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise InputError(
            f"{ENVELOPE_FILE}: nested too deeply to be an envelope.", code="bad_envelope"
        ) from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise InputError(
            f"{ENVELOPE_FILE}: holds a number too long to read.", code="bad_envelope"
        ) from None
    if not isinstance(env, dict):
        raise InputError(f"{ENVELOPE_FILE}: must hold a JSON object.", code="bad_envelope")
    try:  # the request's content hash is canonical JSON by orjson: what it cannot write is refused
        orjson.dumps(env, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer past 64 bits, or nesting past 255 levels
        raise InputError(
            f"{ENVELOPE_FILE}: holds a number too large or nesting too deep to be an envelope.",
            code="bad_envelope",
        ) from None
    missing = [k for k in ENVELOPE_REQUIRED if k not in env]
    if missing:
        raise InputError(
            f"{ENVELOPE_FILE}: missing key(s): {', '.join(missing)}.", code="bad_envelope"
        )
    problems = [
        f"{k} must be text"
        for k in ENVELOPE_TEXT
        if k in env and env[k] is not None and not isinstance(env[k], str)
    ]
    if not isinstance(env["signer"], dict) or any(
        not isinstance(env["signer"].get(k), str) for k in SIGNER_KEYS
    ):
        problems.append("signer must be an object with name, title and role (text)")
    officials = env.get("officials", [])
    if not isinstance(officials, list) or any(
        not isinstance(o, dict) or any(not isinstance(o.get(k), str | int) for k in OFFICIAL_KEYS)
        for o in officials
    ):
        problems.append("officials must be a list of objects with id, name and title")
    periods = env["taxable_periods"]
    if not isinstance(periods, list) or any(
        not isinstance(y, int) or isinstance(y, bool) for y in periods
    ):
        problems.append("taxable_periods must be a list of years")
    fields = env["fields_requested"]
    if not isinstance(fields, list) or any(not isinstance(f, str) for f in fields):
        problems.append("fields_requested must be a list of field names")
    order = env.get("court_order")
    if order is not None and not isinstance(order, dict):
        problems.append("court_order must be an object")
    items = env["items"]
    if (
        not isinstance(items, str)
        or not items
        or "/" in items
        or "\\" in items
        or items.startswith(".")
    ):
        problems.append("items must be a file name inside the request directory")
    if problems:
        raise InputError(f"{ENVELOPE_FILE}: " + "; ".join(problems) + ".", code="bad_envelope")
    return env


def read_envelope(folder: Path) -> dict[str, Any]:
    """Read and shape-check a request directory's envelope (UTF-8, a byte-order mark allowed)."""
    path = folder / ENVELOPE_FILE
    if not folder.is_dir():
        raise InputError(f"{folder}: not a request directory.", code="not_a_request")
    if not path.is_file():
        raise InputError(
            f"{folder}: no {ENVELOPE_FILE} in the request directory.", code="missing_envelope"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{ENVELOPE_FILE}: not UTF-8 text.", code="bad_encoding") from None
    return parse_envelope(text)


def load_items(folder: Path, item_id: str | None = None) -> pa.Table:
    """A received request's items (the validated copy), with every optional column present;
    with `item_id`, that item only (read by the Parquet row-group filter, not the whole file)."""
    filters = [("item_id", "=", item_id)] if item_id is not None else None
    return with_optional(pq.read_table(folder / ITEMS_PARQUET, filters=filters))


def with_optional(table: pa.Table) -> pa.Table:
    """The items with every optional column present (empty where the file has none)."""
    if "_row" in table.column_names:
        table = table.drop_columns(["_row"])
    for col in ITEM_OPTIONAL:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table
