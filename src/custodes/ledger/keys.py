"""The ledger's signing key and origin.

The private key lives in a file outside the database (``<workspace>/keys/ledger.key``, mode
0600, or the path in ``CUSTODES_LEDGER_KEY``), in the Go x/mod encoding other tools read. The
origin is fixed at key generation and kept in the store's ``meta`` table: one origin per
ledger, never reused.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import insert, select

from custodes.errors import ConflictError, InputError, IntegrityError
from custodes.ledger.note import NoteError, Signer
from custodes.store.tables import meta
from custodes.workspace import Workspace

ORIGIN_KEY = "ledger_origin"


class NoLedgerKey(ConflictError):
    """The workspace has no ledger key (so nothing can be signed here)."""

    code = "no_ledger_key"


def key_path(ws: Workspace) -> Path:
    return Path(os.environ.get("CUSTODES_LEDGER_KEY") or ws.home / "keys" / "ledger.key")


def origin(ws: Workspace) -> str | None:
    with ws.engine.connect() as conn:
        return conn.execute(select(meta.c.value).where(meta.c.key == ORIGIN_KEY)).scalar()


def keygen(ws: Workspace, origin_name: str | None = None) -> Signer:
    """Create the ledger's key and fix its origin. Refuses to replace an existing key."""
    path = key_path(ws)
    if path.exists():
        raise ConflictError(
            f"A ledger key already exists at {path}; a ledger keeps one origin and key for life.",
            code="key_exists",
        )
    current = origin(ws)
    name = origin_name or current or f"custodes.local/ledger/{secrets.token_hex(4)}"
    if current and name != current:
        raise ConflictError(f"This ledger's origin is already {current}.", code="origin_fixed")
    try:
        signer = Signer.generate(name)
    except NoteError as exc:
        raise InputError(f"Not a usable origin: {exc}.", code="bad_origin") from None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.encode() + "\n")
    if not current:
        with ws.engine.begin() as conn:
            conn.execute(insert(meta).values(key=ORIGIN_KEY, value=name))
    return signer


def load_signer(ws: Workspace) -> Signer:
    path = key_path(ws)
    if not path.exists():
        raise NoLedgerKey(
            f"No ledger key at {path}; create one with 'custodes ledger keygen' (or 'custodes "
            "init', which creates it).",
            code="no_ledger_key",
        )
    try:
        return Signer.decode(path.read_text())
    except NoteError as exc:
        raise IntegrityError(f"{path}: {exc}.", code="bad_ledger_key") from None
    except UnicodeDecodeError:  # not even text: overwritten
        raise IntegrityError(f"{path}: not a ledger key.", code="bad_ledger_key") from None
