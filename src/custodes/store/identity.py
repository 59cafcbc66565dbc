"""The store's identity: which deployment a store belongs to, kept in its `meta` table.

Written once by `custodes init` (the first host) and never replaced:

    store_id      a random id given to the store when it is created (a copy restored from a
                  backup keeps it, so it names the store's lineage, not a server)
    ledger_vkey   the verifier key of the ledger's signing key (name, key hash, public key)
    secrets_id    a fingerprint of the secrets key (HMAC of a fixed label, so it reveals nothing)

A workspace records the same three values (`custodes.workspace`), so a workspace opened on
another store, or a store signed with another key, is refused instead of forking the ledger.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, insert, select
from sqlalchemy.engine import Engine

from custodes.store.tables import meta

STORE_ID, LEDGER_VKEY, SECRETS_ID = "store_id", "ledger_vkey", "secrets_id"
KEYS = (STORE_ID, LEDGER_VKEY, SECRETS_ID)


def _held(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(meta.c.key, meta.c.value).where(meta.c.key.in_(KEYS))).all()
    return {k: v for k, v in rows}


def read(engine: Engine) -> dict[str, str]:
    """The identity rows the store holds (absent keys left out)."""
    with engine.connect() as conn:
        return _held(conn)


def _add_missing(conn: Connection, values: dict[str, str]) -> dict[str, str]:
    held = _held(conn)
    for key, value in values.items():
        if key not in held:
            conn.execute(insert(meta).values(key=key, value=value))
            held[key] = value
    return held


def ensure_store_id(engine: Engine) -> str:
    """The store's id, given now if it has none (init only: run by the store's owner)."""
    with engine.begin() as conn:
        return _add_missing(conn, {STORE_ID: uuid.uuid4().hex})[STORE_ID]


def record(engine: Engine, values: dict[str, str]) -> dict[str, str]:
    """Write the identity rows the store lacks (never replacing one) and return them all."""
    with engine.begin() as conn:
        return _add_missing(conn, values)
