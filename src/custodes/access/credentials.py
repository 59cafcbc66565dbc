"""Credentials: password hashes, random tokens, the second factor and the secrets key.

- Passwords are hashed with argon2id (argon2-cffi). Checking a name that has no password
  (unknown, or not enrolled yet) still runs one argon2 verification, against a fixed dummy
  hash, so the answer takes as long as for a real user and reveals nothing.
- Session tokens, API keys and enrolment codes are random and stored only as SHA-256.
- TOTP secrets are encrypted (Fernet, from `cryptography`) with the workspace's secrets key,
  kept in ``keys/secrets.key`` beside the ledger key and never in the database, so a copy of
  the store alone yields no second factor. A code is accepted once: the time step it belongs to
  is remembered and an older or equal step is refused.
- The item key, derived from the secrets key, salts the commitments that stand for agency item
  ids in ledger bodies (`ledger.events.item_sha256`): a copy of the store's bodies alone cannot
  be searched for an id by guessing.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from custodes.errors import InputError, IntegrityError, WorkspaceError
from custodes.workspace import Workspace

MIN_PASSWORD = 12
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    # Made on first use, not at import: one full-cost argon2 hash (~0.4 s) would otherwise be
    # paid by every command, `custodes --help` included. A server makes it at start (`warm`).
    return _hasher.hash(secrets.token_urlsafe(24))


def warm() -> None:
    """Make the dummy hash now, so the first check of an unknown name costs what any does."""
    _dummy()


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def check_password_strength(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise InputError(
            f"A password needs at least {MIN_PASSWORD} characters.", code="weak_password"
        )


def hash_password(password: str) -> str:
    check_password_strength(password)
    return _hasher.hash(password)


def password_ok(stored: str | None, password: str) -> bool:
    """Verify in constant work: a missing hash is checked against a dummy one."""
    try:
        return _hasher.verify(stored or _dummy(), password or "") and stored is not None
    except (VerificationError, InvalidHashError):
        return False


# --- the secrets key and the second factor ----------------------------------------------------


def secrets_key_path(ws: Workspace) -> Path:
    return ws.secrets_key


def ensure_secrets_key(ws: Workspace) -> Path:
    """Create the workspace's secrets key if it has none (owner-only, never replaced)."""
    path = secrets_key_path(ws)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key() + b"\n")
    return path


def _fernet(ws: Workspace) -> Fernet:
    path = secrets_key_path(ws)
    if not path.exists():
        raise WorkspaceError(
            f"No secrets key at {path}: run 'custodes init' on the workspace.",
            code="no_secrets_key",
        )
    return Fernet(path.read_bytes().strip())


def item_key(ws: Workspace) -> bytes:
    """The key that salts item-id commitments in ledger bodies (derived from the secrets key,
    so it lives outside the store and is never replaced)."""
    path = secrets_key_path(ws)
    if not path.exists():
        raise WorkspaceError(
            f"No secrets key at {path}: run 'custodes init' on the workspace.",
            code="no_secrets_key",
        )
    return hmac.new(path.read_bytes().strip(), b"custodes/item-key/v1", hashlib.sha256).digest()


def csrf_token(ws: Workspace, token: str) -> str:
    """The console's anti-forgery token for a session: an HMAC of the session's hash under a
    key derived from the secrets key. Holding the cookie is not enough to compute it (the
    cookie was the HMAC key before), and it is never stored."""
    path = secrets_key_path(ws)
    if not path.exists():
        raise WorkspaceError(
            f"No secrets key at {path}: run 'custodes init' on the workspace.",
            code="no_secrets_key",
        )
    key = hmac.new(path.read_bytes().strip(), b"custodes/csrf-key/v1", hashlib.sha256).digest()
    return hmac.new(key, sha(token).encode(), hashlib.sha256).hexdigest()


def seal(ws: Workspace, text: str) -> str:
    return _fernet(ws).encrypt(text.encode()).decode()


def unseal(ws: Workspace, token: str) -> str:
    try:
        return _fernet(ws).decrypt(token.encode()).decode()
    except InvalidToken:
        raise IntegrityError(
            "A stored second-factor secret cannot be decrypted with this workspace's secrets "
            "key (the key or the store was replaced).",
            code="integrity",
        ) from None


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, name: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name="custodes")


def totp_step(secret: str, code: str | None, last_step: int | None, now: float) -> int | None:
    """The time step the code belongs to (now, or one step either side), if it is valid and
    newer than the last one used; None otherwise."""
    if not code or not code.isascii() or not code.strip().isdigit():
        return None
    totp = pyotp.TOTP(secret)
    here = int(now // totp.interval)
    for step in (here, here - 1, here + 1):
        if secrets.compare_digest(totp.generate_otp(step), code.strip()):
            return step if last_step is None or step > last_step else None
    return None
