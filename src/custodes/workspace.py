"""The workspace: one folder holding a transactional store and the bulk Parquet tables.

Layout of a workspace (default ``./custodes-data``, or ``CUSTODES_HOME`` / ``--home``)::

    custodes.db        SQLite store (unless CUSTODES_STORE_URL names another database)
    bulk/              Parquet tables: people, addresses, population truth
    requests/          submitted requests, one folder each
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from custodes.errors import WorkspaceError
from custodes.store import engine as store_engine

DEFAULT_HOME = "custodes-data"
MARKER = ".custodes-workspace"


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

    @property
    def bulk(self) -> Path:
        return self.home / "bulk"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = store_engine.make_engine(self.store_url)
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


def init_workspace(
    home: str | os.PathLike[str] | None = None, store_url: str | None = None
) -> tuple[Workspace, bool]:
    """Create (or upgrade) a workspace. Returns it and whether it was newly created."""
    path = resolve_home(home)
    if path.exists() and not path.is_dir():
        raise WorkspaceError(f"{path} exists and is not a folder.")
    created = not (path / MARKER).exists()
    path.mkdir(parents=True, exist_ok=True)
    for sub in ("bulk", "requests"):
        (path / sub).mkdir(exist_ok=True)
    ws = Workspace(path, resolve_store_url(path, store_url))
    store_engine.upgrade(ws.engine)
    (path / MARKER).write_text("custodes workspace\n")
    return ws, created


def open_workspace(
    home: str | os.PathLike[str] | None = None, store_url: str | None = None
) -> Workspace:
    """Open an existing workspace; refuse clearly when there is none."""
    path = resolve_home(home)
    if not (path / MARKER).exists():
        raise WorkspaceError(
            f"No custodes workspace at {path}. Create one with 'custodes init' "
            "(or point CUSTODES_HOME / --home at an existing one).",
            code="no_workspace",
        )
    ws = Workspace(path, resolve_store_url(path, store_url))
    store_engine.check_current(ws.engine)
    return ws
