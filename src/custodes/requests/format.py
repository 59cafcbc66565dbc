"""The request interchange format (documented in docs/formats.md).

A request is a directory holding ``envelope.json`` and an items file (``items.csv`` or
``items.parquet``) named by the envelope's ``items`` key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from custodes.errors import InputError

ENVELOPE_FILE = "envelope.json"

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
ENVELOPE_OPTIONAL = ("officials", "court_order", "agreement")
SIGNER_KEYS = ("name", "title", "role")
OFFICIAL_KEYS = ("id", "name", "title")
COURT_ORDER_KEYS = ("court", "judge", "docket", "date", "expires", "findings")

ITEM_COLUMNS = (
    "item_id",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "dob",
    "tin",
    "street",
    "unit",
    "city",
    "state",
    "zip",
    "case_number",
    "official_id",
)
ITEM_OPTIONAL = ("taxable_periods", "statutory_authority", "reason")

# The provisions a request may name (the reference rule set's ids).
PROVISIONS = (
    "irc-6103-i-1",
    "irc-6103-i-2",
    "irc-6103-l-6",
    "irc-6103-l-7",
    "irc-6103-m-2",
    "irc-6103-d",
)


def read_envelope(folder: Path) -> dict[str, Any]:
    """Read and shape-check a request's envelope. Content checks are the rules' job."""
    path = folder / ENVELOPE_FILE
    if not folder.is_dir():
        raise InputError(f"{folder}: not a request directory.", code="not_a_request")
    if not path.exists():
        raise InputError(
            f"{folder}: no {ENVELOPE_FILE} in the request directory.", code="missing_envelope"
        )
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{ENVELOPE_FILE}: not UTF-8 text.", code="bad_encoding") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{ENVELOPE_FILE}:{exc.lineno}: not valid JSON ({exc.msg}).", code="bad_envelope"
        ) from None
    if not isinstance(env, dict):
        raise InputError(f"{ENVELOPE_FILE}: must hold a JSON object.", code="bad_envelope")
    missing = [k for k in ENVELOPE_REQUIRED if k not in env]
    if missing:
        raise InputError(
            f"{ENVELOPE_FILE}: missing key(s): {', '.join(missing)}.", code="bad_envelope"
        )
    problems = []
    if not isinstance(env["signer"], dict) or any(k not in env["signer"] for k in SIGNER_KEYS):
        problems.append("signer must be an object with name, title and role")
    officials = env.get("officials", [])
    if not isinstance(officials, list) or any(
        not isinstance(o, dict) or any(k not in o for k in OFFICIAL_KEYS) for o in officials
    ):
        problems.append("officials must be a list of objects with id, name and title")
    periods = env["taxable_periods"]
    if not isinstance(periods, list) or any(not isinstance(y, int) for y in periods):
        problems.append("taxable_periods must be a list of years")
    fields = env["fields_requested"]
    if not isinstance(fields, list) or any(not isinstance(f, str) for f in fields):
        problems.append("fields_requested must be a list of field names")
    order = env.get("court_order")
    if order is not None and not isinstance(order, dict):
        problems.append("court_order must be an object")
    if not isinstance(env["items"], str) or "/" in env["items"] or "\\" in env["items"]:
        problems.append("items must be a file name inside the request directory")
    if problems:
        raise InputError(f"{ENVELOPE_FILE}: " + "; ".join(problems) + ".", code="bad_envelope")
    return env
