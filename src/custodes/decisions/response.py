"""The response an agency receives, and the hash of exactly what it will hold.

One row per item: the answer, the permitted fields (values only for disclosed items), and for a
defect in the request itself its check ids and citations. Every refusal that depends on the
records reads "no information disclosed" and nothing else, so that a refusal never reveals
whether a record exists.

`content` is computed the same way at preparation, approval and release: the rows, the fields
and the recipients, hashed canonically. Preparing records that hash, approving signs it, and
release refuses when what it is about to write hashes differently (an edited outcomes file, an
edited envelope, a changed resolution).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from custodes.decisions.effective import effective_outcomes, released_fields
from custodes.decisions.outcomes import RECORD_DEPENDENT
from custodes.decisions.pipeline import envelope
from custodes.decisions.verdicts import REVIEW_CHECK
from custodes.ledger.files import sha256_file
from custodes.requests.format import ENVELOPE_FILE
from custodes.rules.active import in_force
from custodes.store import duck
from custodes.store.files import hash_arrow
from custodes.store.sql import ident, literal
from custodes.workspace import Workspace

NO_INFORMATION = "no information disclosed"
RESPONSE_CSV = "response.csv"
RESPONSE_JSON = "response.json"


@dataclass
class Content:
    rows: pa.Table
    fields: list[str]
    recipients: list[dict[str, Any]]
    disclosed: list[dict[str, Any]]  # (item_id, record_id, ruleset, model) of each disclosure
    envelope: dict[str, Any]
    envelope_sha256: str
    sha256: str


def recipients_of(env: dict[str, Any]) -> list[dict[str, Any]]:
    return list(env.get("officials") or [])


def _rows(table: pa.Table, fields: list[str], citations: dict[str, str]) -> pa.Table:
    cit_map = (
        "MAP {"
        + ", ".join(f"{literal(cid)}: {literal(c)}" for cid, c in sorted(citations.items()))
        + "}"
    )
    # An officer's withholding after review is record-dependent too: the same one answer.
    dep = "(" + ", ".join(literal(c) for c in (*RECORD_DEPENDENT, REVIEW_CHECK)) + ")"
    field_sql = "".join(
        f", CASE WHEN outcome IN ('DISCLOSE', 'CONFIRM') THEN {ident(f)} END AS {ident(f)}"
        for f in fields
    )
    con = duck.bulk()  # the bulk settings: memory limit, spill folder
    try:
        con.register("o", table)
        return con.sql(
            f"""SELECT item_id,
              CASE WHEN outcome = 'DISCLOSE' THEN 'disclosed'
                   WHEN outcome = 'CONFIRM' THEN 'address confirmed'
                   WHEN len(list_filter(checks, lambda c: c NOT IN {dep})) > 0
                     THEN 'not processed: defect in the request'
                   ELSE {literal(NO_INFORMATION)} END AS answer,
              CASE WHEN outcome NOT IN ('DISCLOSE', 'CONFIRM')
                   THEN array_to_string(list_filter(checks,
                          lambda c: c NOT IN {dep}), ';') END AS defects,
              -- each citation once, in the order of the checks (two checks may cite the same)
              CASE WHEN outcome NOT IN ('DISCLOSE', 'CONFIRM')
                   THEN array_to_string(list_filter(cits,
                          lambda x, i: list_position(cits, x) = i), '; ')
                   END AS citations
              {field_sql}
            FROM (SELECT *, list_transform(list_filter(checks, lambda c: c NOT IN {dep}),
                                           lambda c: {cit_map}[c]) AS cits FROM o)
            ORDER BY item_id"""
        ).to_arrow_table()
    finally:
        duck.close(con)


def content(ws: Workspace, request_id: str) -> Content:
    """What a release of this request would hold, and its hash."""
    folder = ws.request_folder(request_id)
    env = envelope(folder)
    table = effective_outcomes(ws, request_id)
    fields = released_fields(table)
    rows = _rows(table, fields, {cid: c.citation for cid, c in in_force(ws).checks.items()})
    # Only the disclosed rows' few columns become Python objects (not every outcome's row).
    keys = ("item_id", "record_id", "ruleset_sha256", "model_sha256")
    mask = pc.is_in(table["outcome"], pa.array(["DISCLOSE", "CONFIRM"]))
    picked = table.select([*keys, *fields]).filter(mask).to_pydict()
    disclosed = [
        {k: picked[k][i] for k in keys} | {"values": [picked[f][i] for f in fields]}
        for i in range(len(picked["item_id"]))
    ]
    del picked
    recipients = recipients_of(env)
    h = hashlib.sha256(
        orjson.dumps({"fields": fields, "recipients": recipients}, option=orjson.OPT_SORT_KEYS)
    )
    # The rows' Arrow IPC stream goes into the hash as it is written (the same bytes as
    # writing it to a buffer first, without holding them all).
    hash_arrow(h, rows)
    h.update(orjson.dumps([(d["item_id"], d["record_id"]) for d in disclosed]))
    return Content(
        rows,
        fields,
        recipients,
        disclosed,
        env,
        sha256_file(folder / ENVELOPE_FILE),
        h.hexdigest(),
    )


def header(
    ws: Workspace,
    request_id: str,
    c: Content,
    response_sha: str,
    checkpoint: str,
) -> dict[str, Any]:
    """response.json: who may use what was disclosed, for what, and the signed checkpoint."""
    prov = in_force(ws).provisions[c.envelope["provision"]]
    return {
        "request_id": request_id,
        "provision": c.envelope["provision"],
        "citation": prov.citation,
        "agency": c.envelope.get("agency"),
        "recipients": c.recipients,
        "use_limits": prov.use_limits,
        "fields": c.fields,
        "counts": {
            "items": c.rows.num_rows,
            "disclosed": len(c.disclosed),
            "withheld": c.rows.num_rows - len(c.disclosed),
        },
        "content_sha256": c.sha256,
        "response_sha256": response_sha,
        "checkpoint": checkpoint,
        "answers": {
            NO_INFORMATION: "given alike for every item whose answer depends on the records "
            "(no match, ambiguous, address not on record)"
        },
    }


def header_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
