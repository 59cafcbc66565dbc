"""The CLI's stored sessions: ``<workspace>/.sessions/<shell user>``, owner-only.

The folder must be owned by the shell user and closed to others, and a session file is written
as a new file (never through a symlink) and then renamed into place, so that another local
user who can write the folder can neither plant a link nor capture a token.
"""

from __future__ import annotations

import getpass
import os
import secrets
import stat
from pathlib import Path

from custodes import settings
from custodes.errors import WorkspaceError

ENV = "CUSTODES_SESSION"


def _folder(home: Path) -> Path:
    folder = home / ".sessions"
    if folder.is_symlink():
        raise WorkspaceError(f"{folder} is a symbolic link; remove it.", code="sessions_unsafe")
    folder.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise WorkspaceError(
            f"{folder} is not owned by you or is open to others; a stored session there could "
            f"be read or replaced (fix: chown $USER '{folder}' && chmod 700 '{folder}').",
            code="sessions_unsafe",
        )
    return folder


def from_environment() -> bool:
    """True when the session comes from CUSTODES_SESSION (then nothing is stored or forgotten)."""
    return settings.flag(ENV)


def path(home: Path) -> Path:
    return _folder(home) / getpass.getuser()


def token(home: Path) -> str | None:
    """The session to use: CUSTODES_SESSION, else the one stored for this shell user."""
    if settings.flag(ENV):
        return settings.text(ENV).strip()
    p = path(home)
    if not p.exists() or p.is_symlink():
        return None
    return p.read_text().strip() or None


def store(home: Path, value: str) -> None:
    p = path(home)
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, p)


def forget(home: Path) -> None:
    p = path(home)
    if p.exists() or p.is_symlink():
        p.unlink()
