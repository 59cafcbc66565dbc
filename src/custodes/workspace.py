"""The workspace: one folder holding a transactional store and the bulk Parquet tables.

Layout of a workspace (default ``./custodes-data``, or ``CUSTODES_HOME`` / ``--home``)::

    custodes.db        SQLite store (unless CUSTODES_STORE_URL names another database)
    bulk/              Parquet tables: people, addresses, population truth
    requests/          submitted requests, one folder each
    keys/              the ledger's signing key, the secrets key, the last signed checkpoint
    .sessions/         the CLI's stored sessions, one file per shell user

Everything in it is confidential, so everything custodes creates is owner-only (folders 0700,
files 0600) whatever the caller's umask, and a workspace that other users can read is refused.

Rooms that change the workspace take a `Call`: an authorized call (see `custodes.access.door`)
that knows its actor and opens transactions that re-check the caller's session before they
commit. The protocol lives here, below every room, so that no room imports the door.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from custodes.errors import WorkspaceError
from custodes.store import engine as store_engine

DEFAULT_HOME = "custodes-data"
MARKER = ".custodes-workspace"
OWNER_ONLY = 0o077  # the umask under which custodes writes anything


def owner_only() -> None:
    """Make every file this process creates from now on owner-only (0600/0700).

    Process-wide on purpose: DuckDB, Arrow and SQLite create files of their own (Parquet
    generations, WAL files, temporary spills) and each honours the umask.
    """
    os.umask(OWNER_ONLY)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: the argument, else $CUSTODES_HOME, else ./custodes-data."""
    value = home if home is not None else os.environ.get("CUSTODES_HOME") or DEFAULT_HOME
    return Path(value).expanduser().resolve()


def resolve_store_url(home: Path, store_url: str | None = None) -> str:
    """The store URL: the argument, else $CUSTODES_STORE_URL, else the SQLite file."""
    return store_url or os.environ.get("CUSTODES_STORE_URL") or f"sqlite:///{home / 'custodes.db'}"


@dataclass
class Workspace:
    home: Path
    store_url: str
    _engine: Engine | None = None
    pool_size: int | None = None  # a server's (sized with its admission limits)
    upgraded_from: str | None = None  # the schema revision `init_workspace` found, if any

    @property
    def bulk(self) -> Path:
        return self.home / "bulk"

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    def request_folder(self, request_id: str) -> Path:
        """The one place a request's folder path is built (ids are checked by intake)."""
        return self.home / "requests" / request_id

    @property
    def secrets_key(self) -> Path:
        """The secrets key's file: $CUSTODES_SECRETS_KEY, else ``keys/secrets.key``."""
        return Path(os.environ.get("CUSTODES_SECRETS_KEY") or self.keys / "secrets.key")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = store_engine.make_engine(self.store_url, self.pool_size)
            _SECRETS[self._engine] = self.secrets_key
        return self._engine

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for writers of the bulk tables (one import at a time)."""
        self.bulk.mkdir(parents=True, exist_ok=True)
        with open(self.bulk / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


# Each engine's workspace secrets key, so that code holding only a connection (the ledger's
# anchors of rows that confer authority) finds the key that lives outside the store.
_SECRETS: weakref.WeakKeyDictionary[Engine, Path] = weakref.WeakKeyDictionary()


def secrets_key_of(engine: Engine) -> Path | None:
    """The secrets key file of the workspace whose store `engine` opens (None: not opened
    through a workspace)."""
    return _SECRETS.get(engine)


class Call(Protocol):
    """An authorized call: who acts, and transactions that re-check them before commit.

    Made only by the door (`custodes.access.door`) after it checked the caller's session and
    the action table; a room that writes takes one instead of a bare actor name.
    """

    @property
    def ws(self) -> Workspace: ...

    @property
    def actor(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def agency(self) -> str | None:
        """The agency a requester account acts for (None for staff): it sees, submits and
        withdraws only that agency's requests."""
        ...

    def transaction(self) -> AbstractContextManager[Connection]: ...

    def recheck(self) -> None: ...


def exposed(home: Path) -> Path | None:
    """The first path in the workspace that other users can read, write or enter, if any."""
    for root, dirs, files in os.walk(home):
        for name in (root, *(os.path.join(root, f) for f in (*dirs, *files))):
            try:
                mode = os.lstat(name).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode):
                continue
            if mode & 0o077:
                return Path(name)
    return None


def _tighten(home: Path) -> int:
    """Remove group and other permissions from everything in the workspace (init only)."""
    fixed = 0
    for root, dirs, files in os.walk(home):
        for name in (root, *(os.path.join(root, f) for f in (*dirs, *files))):
            mode = os.lstat(name).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(name, stat.S_IMODE(mode) & 0o700)
                fixed += 1
    return fixed


def init_workspace(
    home: str | os.PathLike[str] | None = None, store_url: str | None = None
) -> tuple[Workspace, bool]:
    """Create (or upgrade) a workspace. Returns it and whether it was newly created.

    Run by the workspace's owner, so it also takes group and other permissions away from
    anything an older version (or a careless copy) left readable.
    """
    owner_only()
    path = resolve_home(home)
    if path.exists() and not path.is_dir():
        raise WorkspaceError(f"{path} exists and is not a folder.", code="workspace")
    created = not (path / MARKER).exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("bulk", "requests", "keys"):
        (path / sub).mkdir(mode=0o700, exist_ok=True)
    _tighten(path)
    ws = Workspace(path, resolve_store_url(path, store_url))
    ws.upgraded_from = store_engine.upgrade(ws.engine)
    (path / MARKER).write_text("custodes workspace\n")
    return ws, created


def open_workspace(
    home: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    *,
    pool_size: int | None = None,
) -> Workspace:
    """Open an existing workspace; refuse clearly when there is none, or when other users can
    read it (the master file, the store and the keys are confidential). `pool_size`: the store
    connections a server keeps (the library's default otherwise)."""
    owner_only()
    path = resolve_home(home)
    if not (path / MARKER).exists():
        raise WorkspaceError(
            f"No custodes workspace at {path}. Create one with 'custodes init' "
            "(or point CUSTODES_HOME / --home at an existing one).",
            code="no_workspace",
        )
    leak = exposed(path)
    if leak is not None:
        raise WorkspaceError(
            f"{leak} can be read or changed by other users of this machine; the workspace "
            f"holds confidential data. Fix it with: chmod -R go-rwx '{path}' (or run "
            "'custodes init' on it as its owner).",
            code="workspace_exposed",
        )
    ws = Workspace(path, resolve_store_url(path, store_url), pool_size=pool_size)
    store_engine.check_current(ws.engine)
    return ws
