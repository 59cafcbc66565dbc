"""The ledger's signing key and origin.

By default the private key lives in a file outside the database (``<workspace>/keys/ledger.key``,
mode 0600, or the path in ``CUSTODES_LEDGER_KEY``), in the Go x/mod encoding other tools read.
It can instead live in an HSM: ``keys/ledger.key`` (or ``CUSTODES_LEDGER_KEY``) then holds the
key's PKCS#11 URI, and the key never leaves the token (`custodes.ledger.pkcs11`). The origin is
fixed at key generation and kept in the store's ``meta`` table: one origin per ledger, never
reused.

A workspace restored from a backup is held from signing (``keys/signing-held``) once the
witness shows it cosigned more than the restored store remembers, until an administrator
confirms the log extends what the witness cosigned (`custodes ledger confirm-restore`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import insert, select

from custodes import settings
from custodes.errors import ConflictError, InputError, IntegrityError
from custodes.ledger import pkcs11
from custodes.store.tables import meta
from custodes.tlog.note import NoteError, Signer
from custodes.workspace import Workspace

ORIGIN_KEY = "ledger_origin"


class NoLedgerKey(ConflictError):
    """The workspace has no ledger key (so nothing can be signed here)."""

    code = "no_ledger_key"


def key_path(ws: Workspace) -> Path:
    value = settings.raw("CUSTODES_LEDGER_KEY")
    return Path(value if value and not pkcs11.is_uri(value) else ws.home / "keys" / "ledger.key")


def hsm_uri(ws: Workspace) -> str | None:
    """The PKCS#11 URI of the ledger key when it lives in an HSM (from CUSTODES_LEDGER_KEY, or
    the reference kept in keys/ledger.key), else None (a file key, or none)."""
    value = settings.raw("CUSTODES_LEDGER_KEY")
    if pkcs11.is_uri(value):
        return str(value).strip()
    path = key_path(ws)
    try:
        text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return None
    return text if pkcs11.is_uri(text) else None


def has_key(ws: Workspace) -> bool:
    return hsm_uri(ws) is not None or key_path(ws).exists()


def origin(ws: Workspace) -> str | None:
    with ws.engine.connect() as conn:
        return conn.execute(select(meta.c.value).where(meta.c.key == ORIGIN_KEY)).scalar()


def keygen(
    ws: Workspace, origin_name: str | None = None, hsm: str | None = None
) -> Signer | pkcs11.Pkcs11Signer:
    """Create the ledger's key and fix its origin. Refuses to replace an existing key.

    With `hsm` (a PKCS#11 URI, or CUSTODES_LEDGER_KEY set to one) the key is the one already
    made in the token (an HSM's keys are made by its own tools, under its officers' control):
    it is checked to be usable, and the workspace keeps only the URI."""
    path = key_path(ws)
    hsm = hsm or hsm_uri(ws)
    if path.exists():
        raise ConflictError(
            f"A ledger key already exists at {path}; a ledger keeps one origin and key for life.",
            code="key_exists",
        )
    current = origin(ws)
    name = origin_name or current or f"custodes.local/ledger/{secrets.token_hex(4)}"
    if current and name != current:
        raise ConflictError(f"This ledger's origin is already {current}.", code="origin_fixed")
    signer: Signer | pkcs11.Pkcs11Signer
    try:
        signer = pkcs11.Pkcs11Signer(name, hsm) if hsm else Signer.generate(name)
    except NoteError as exc:
        raise InputError(f"Not a usable origin: {exc}.", code="bad_origin") from None
    if isinstance(signer, pkcs11.Pkcs11Signer):
        signer.check()
    if not pkcs11.is_uri(settings.raw("CUSTODES_LEDGER_KEY")):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            ref = signer.uri.text if isinstance(signer, pkcs11.Pkcs11Signer) else signer.encode()
            fh.write(ref + "\n")
    if not current:
        with ws.engine.begin() as conn:
            conn.execute(insert(meta).values(key=ORIGIN_KEY, value=name))
    return signer


def load_signer(ws: Workspace) -> Signer | pkcs11.Pkcs11Signer:
    uri = hsm_uri(ws)
    if uri:
        return pkcs11.Pkcs11Signer(origin(ws) or "custodes.local/ledger", uri)
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


def held_path(ws: Workspace) -> Path:
    return ws.keys / "signing-held"


def hold(ws: Workspace, reason: str) -> None:
    """Hold signing (kept in the workspace folder, outside the store: a store replaced by
    another backup does not lift it)."""
    ws.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(held_path(ws), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(reason + "\n")


def held(ws: Workspace) -> str | None:
    """Why signing is held, or None."""
    path = held_path(ws)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def release_hold(ws: Workspace) -> None:
    held_path(ws).unlink(missing_ok=True)


def signing_key(ws: Workspace) -> Signer | pkcs11.Pkcs11Signer:
    """The key to sign with now: refused while signing is held (a restored workspace)."""
    reason = held(ws)
    if reason:
        raise ConflictError(
            f"Signing is held: {reason} An administrator must run 'custodes ledger "
            "confirm-restore' once the store holds every event the witness cosigned.",
            code="signing_held",
        )
    return load_signer(ws)
