"""The first answer to a submission, kept under its idempotency key and given again to a retry.

A retry is answered from the store's row, not from the request, so whoever can write the store
could change the answer that client is given (another request id, another count). The answer
is therefore kept with a keyed commitment (`anchors.value_commit`, keyed from the workspace's
secrets key, which is not in the store) to the owner, the key, the payload's hash and the
answer, and a retry is refused (`store_tampered`) when it does not match. An answer kept before
the commitment (a bare submission) is given again only when it agrees with the anchored request
row it names.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select

from custodes.errors import IntegrityError
from custodes.ledger import anchors
from custodes.requests.intake import Submission
from custodes.store.tables import requests

TABLE = "idempotency_keys"


def _commit(engine: Engine, owner: str, key: str, payload_sha256: str, answer: Any) -> str:
    mac = anchors.value_commit(
        anchors.key_of(engine), TABLE, [owner, key, payload_sha256], "response", answer
    )
    assert mac is not None  # an answer is never None
    return mac


def seal(engine: Engine, owner: str, key: str, payload_sha256: str, answer: Submission) -> Any:
    """What the row keeps: the answer (as JSON would give it back) and its commitment."""
    doc = json.loads(json.dumps(answer.to_dict(), default=str))
    return {"answer": doc, "mac": _commit(engine, owner, key, payload_sha256, doc)}


def _tampered() -> IntegrityError:
    return IntegrityError(
        "The answer kept for this idempotency key does not match what custodes recorded: the "
        "store was altered outside custodes; nothing was done. Run 'custodes ledger verify'.",
        code="store_tampered",
    )


def unseal(engine: Engine, row: dict[str, Any]) -> Submission:
    """The answer a retry is given, or `store_tampered` when the row was edited (an answer
    kept under a key marked still running is one)."""
    if row["state"] != "done":
        raise _tampered()
    try:
        doc = json.loads(row["response"])
    except (TypeError, ValueError):
        raise _tampered() from None
    if isinstance(doc, dict) and set(doc) == {"answer", "mac"}:
        mac = _commit(engine, row["owner"], row["key"], row["payload_sha256"], doc["answer"])
        if doc["mac"] != mac or not isinstance(doc["answer"], dict):
            raise _tampered()
        return _submission(doc["answer"])
    if not isinstance(doc, dict):
        raise _tampered()
    answer = _submission(doc)
    _agrees_with_request(engine, answer)
    return answer


def _submission(doc: dict[str, Any]) -> Submission:
    try:
        return Submission(**doc)
    except TypeError:
        raise _tampered() from None


def _agrees_with_request(engine: Engine, answer: Submission) -> None:
    """An answer kept before the commitment: the request it names exists, matches its
    anchoring event, and says what the answer says."""
    with engine.connect() as conn:
        row = conn.execute(select(requests).where(requests.c.id == answer.request_id)).first()
        if row is None:
            raise _tampered()
        anchors.check_one(conn, requests, row)
    said = (answer.provision, answer.agency, answer.items, answer.content_sha256)
    if said != (row.provision, row.agency, row.items, row.content_sha256):
        raise _tampered()
