"""The workspace: one folder holding a transactional store and the bulk Parquet tables.

Layout of a workspace (default ``./custodes-data``, or ``CUSTODES_HOME`` / ``--home``)::

    workspace.json     the record of its store (URL without password, store id) and of its
                       ledger key's and secrets key's identity, written by init or join
    custodes.db        SQLite store (unless init was given another database's URL)
    bulk/              Parquet tables: people, addresses, population truth
    requests/          submitted requests, one folder each
    keys/              the ledger's signing key, the secrets key, the last signed checkpoint
    .sessions/         the CLI's stored sessions, one file per shell user

Everything in it is confidential, so everything custodes creates is owner-only (folders 0700,
files 0600) whatever the caller's umask, and a workspace that other users can read is refused.

A workspace opens only the store it recorded: a differing URL (CUSTODES_STORE_URL, --store-url)
is accepted only when it reaches the same store (the same store id), a missing SQLite file is
an error (never a new empty store), and a store whose id or ledger key differs from the record
is refused. See docs/decisions/2026-12-06-workspace-records-its-store-and-key.md.

Rooms that change the workspace take a `Call`: an authorized call (see `custodes.access.door`)
that knows its actor and opens transactions that re-check the caller's session before they
commit. The protocol lives here, below every room, so that no room imports the door.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from custodes import settings
from custodes.errors import WorkspaceError
from custodes.store import engine as store_engine
from custodes.store import identity

DEFAULT_HOME = "custodes-data"
MARKER = ".custodes-workspace"
RECORD = "workspace.json"
OWNER_ONLY = 0o077  # the umask under which custodes writes anything


def owner_only() -> None:
    """Make every file this process creates from now on owner-only (0600/0700).

    Process-wide on purpose: DuckDB, Arrow and SQLite create files of their own (Parquet
    generations, WAL files, temporary spills) and each honours the umask.
    """
    os.umask(OWNER_ONLY)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: the argument, else $CUSTODES_HOME, else ./custodes-data."""
    value = home if home is not None else settings.raw("CUSTODES_HOME") or DEFAULT_HOME
    return Path(value).expanduser().resolve()


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise WorkspaceError(f"Store URL is not usable: {exc}", code="bad_store_url") from None


def public_url(url: str) -> str:
    """The URL without its password (what a record, a log or an error may show)."""
    u = _parse(url)
    bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
    return bare.render_as_string(hide_password=False)


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    u = _parse(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database)


def read_record(home: Path) -> dict[str, str] | None:
    """The workspace's record of its store and keys, or None for a workspace made before it."""
    path = home / RECORD
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("store_url"), str):
            raise ValueError("no store_url")
        # Only custodes writes it, with these keys: a name edited (one flipped bit) would
        # otherwise drop its check silently, as a record made before that key is read.
        if not set(data) <= {"store_url", *identity.KEYS}:
            raise ValueError("a key custodes does not write")
    except (ValueError, OSError, UnicodeDecodeError):
        raise WorkspaceError(
            f"{path} is not a readable workspace record; restore it from the backup "
            "(docs/operations.md).",
            code="bad_record",
        ) from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def recorded_url(home: Path, record: dict[str, str]) -> str:
    """The recorded store URL (a SQLite file inside the workspace is recorded relative to it,
    so a restored copy of the folder uses its own file, never the original's)."""
    url = record["store_url"]
    file = _sqlite_file(url)
    if file is not None and not file.is_absolute():
        return f"sqlite:///{home / file}"
    return url


def write_record(home: Path, store_url: str, ids: dict[str, str]) -> None:
    """Write the workspace's record (owner-only; replaced whole, never through a link)."""
    url = public_url(store_url)
    file = _sqlite_file(url)
    if file is not None and file.resolve().is_relative_to(home):
        url = f"sqlite:///{file.resolve().relative_to(home)}"
    data = {"store_url": url} | {k: ids[k] for k in identity.KEYS if ids.get(k)}
    tmp = home / f".{RECORD}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, home / RECORD)


def _choose_url(home: Path, record: dict[str, str] | None, store_url: str | None) -> str:
    """The URL to open: the one given (argument or $CUSTODES_STORE_URL), else the recorded one,
    else (a new workspace) the SQLite file in it. A given URL is used only if it reaches the
    recorded store, which `check_identity` decides once connected."""
    given = store_url or settings.raw("CUSTODES_STORE_URL")
    if record is None:
        return given or f"sqlite:///{home / 'custodes.db'}"
    return given or recorded_url(home, record)


def _refuse_missing_file(url: str, home: Path) -> None:
    """No silent fallback: a SQLite store that is not there is an error, never a new store."""
    file = _sqlite_file(url)
    if file is not None and not file.exists():
        raise WorkspaceError(
            f"The workspace at {home} has no store at {public_url(url)}. custodes does not "
            "make a new, empty one in its place: restore the store from its backup, or point "
            "CUSTODES_STORE_URL at the workspace's store (docs/operations.md).",
            code="store_missing",
        )


def check_identity(ws: Workspace, record: dict[str, str]) -> None:
    """Refuse a store that is not the one the workspace recorded, or whose ledger or secrets
    key differs from the workspace's."""
    held = identity.read(ws.engine)
    where = public_url(ws.store_url)
    if held.get(identity.STORE_ID) != record.get(identity.STORE_ID):
        raise WorkspaceError(
            f"The store at {where} is not this workspace's store (recorded: "
            f"{public_url(recorded_url(ws.home, record))}). Unset CUSTODES_STORE_URL or "
            "--store-url to use the recorded one; a store is never switched silently.",
            code="store_mismatch",
        )
    for key, what in ((identity.LEDGER_VKEY, "ledger key"), (identity.SECRETS_ID, "secrets key")):
        if record.get(key) and held.get(key) != record[key]:
            raise WorkspaceError(
                f"The store at {where} records another {what} than this workspace "
                f"({held.get(key) or 'none'}); one deployment has one {what}. Nothing was done.",
                code="store_mismatch",
            )


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
        return Path(settings.raw("CUSTODES_SECRETS_KEY") or self.keys / "secrets.key")

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
    anything an older version (or a careless copy) left readable. An existing workspace keeps
    its store: it is upgraded, never replaced by a new one (a missing SQLite file or an empty
    database is `store_missing`). The record is written by the caller once the keys are
    checked (`services.workspace.init`).
    """
    owner_only()
    path = resolve_home(home)
    if path.exists() and not path.is_dir():
        raise WorkspaceError(f"{path} exists and is not a folder.", code="workspace")
    created = not (path / MARKER).exists()
    record = read_record(path) if path.is_dir() else None
    url = _choose_url(path, record, store_url)
    if not created:
        _refuse_missing_file(url, path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("bulk", "requests", "keys"):
        (path / sub).mkdir(mode=0o700, exist_ok=True)
    _tighten(path)
    ws = Workspace(path, url)
    if not created and store_engine.current_revision(ws.engine) is None:
        raise WorkspaceError(
            f"The store at {public_url(url)} is empty, but the workspace at {path} was made "
            "with a store; restore that store from its backup, or point CUSTODES_STORE_URL "
            "at it (docs/operations.md). A new store is made only with a new workspace.",
            code="store_missing",
        )
    if record is not None:  # before migrating anything: only the recorded store is upgraded
        check_identity(ws, record)
    ws.upgraded_from = store_engine.upgrade(ws.engine)
    identity.ensure_store_id(ws.engine)
    (path / MARKER).write_text("custodes workspace\n")
    return ws, created


def open_workspace(
    home: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    *,
    pool_size: int | None = None,
) -> Workspace:
    """Open an existing workspace on the store it recorded; refuse clearly when there is none,
    when other users can read it (the master file, the store and the keys are confidential),
    when its store is missing, outdated or another one, or when it was made before workspaces
    recorded their store (run 'custodes init' once). `store_url` (else $CUSTODES_STORE_URL)
    may name the recorded store another way (with a password, as another database user).
    `pool_size`: the store connections a server keeps (the library's default otherwise)."""
    owner_only()
    path = resolve_home(home)
    if not (path / MARKER).exists():
        raise WorkspaceError(
            f"No custodes workspace at {path}. Create one with 'custodes init', or join an "
            "existing deployment with 'custodes join' (or point CUSTODES_HOME / --home at an "
            "existing one).",
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
    record = read_record(path)
    if record is None:
        raise WorkspaceError(
            f"The workspace at {path} does not record its store and keys yet (it was made by "
            "an earlier version). Run 'custodes init' on it once, with CUSTODES_STORE_URL set "
            "to its store if that is not the SQLite file in the folder.",
            code="unrecorded_workspace",
        )
    url = _choose_url(path, record, store_url)
    _refuse_missing_file(url, path)
    ws = Workspace(path, url, pool_size=pool_size)
    store_engine.check_current(ws.engine)
    check_identity(ws, record)
    return ws
