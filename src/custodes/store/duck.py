"""DuckDB for small interactive reads (a page of outcomes, one item, one record, a summary).

Opening a DuckDB database costs about 15 ms, more than the read itself; a cursor on one
in-memory database kept for the process costs about 0.3 ms. Each cursor is its own connection
(its registered tables and temporary views are its own, and it may be used from its thread),
all on one thread of DuckDB's: these reads are small, and a server's cores belong to its
request threads. Bulk work (matching, processing, import) opens its own connection with every
core through `bulk` (the one place bulk connections are made; `records.master.connect` for
code that has a workspace): a memory limit and a private spill folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

import duckdb

from custodes import settings
from custodes.errors import WorkspaceError
from custodes.store.files import alive

MEMORY_LIMIT_ENV = "CUSTODES_MEMORY_LIMIT"


def memory_limit() -> str:
    """The memory limit of every DuckDB database custodes opens (each bulk connection, and
    this module's shared one): ``CUSTODES_MEMORY_LIMIT`` (a DuckDB size such as ``4GB`` or
    ``512MB``), else a sixth of the machine's memory, at least 1 GB
    (docs/decisions/2026-12-06-bulk-memory-limit-and-spill.md). DuckDB's own default, 80 % of
    the machine's memory, is where the 18.4 GB peak of the 5M x 1M run came from."""
    value = settings.text(MEMORY_LIMIT_ENV).strip()
    if value:
        if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, re.I):
            raise WorkspaceError(
                f"{MEMORY_LIMIT_ENV} must be a size such as 4GB or 512MB.",
                code="bad_configuration",
            )
        return value.replace(" ", "")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # no POSIX memory figures: a fixed share
        return "4GB"
    return f"{max(total // 6, 1 << 30) >> 20}MB"


_lock = threading.Lock()
_base: duckdb.DuckDBPyConnection | None = None
_inherited: list[duckdb.DuckDBPyConnection] = []  # a forked child's copy of its parent's


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection to the process's shared in-memory database; close it when done."""
    global _base
    with _lock:
        if _base is None:
            _base = duckdb.connect(
                ":memory:",
                config={
                    "threads": 1,
                    "preserve_insertion_order": True,
                    "memory_limit": memory_limit(),
                },
            )
        cur = _base.cursor()
    cur.execute("SET enable_progress_bar = false")  # a per-connection setting
    return cur


def _forget_in_child() -> None:
    """A child forked from a process that used the shared database gets neither its worker
    thread nor its lock's owner: a query there waits forever for a task no thread runs (seen
    in bench/tamper.py's forked runs). The child opens its own on first use, and keeps the
    parent's object unreleased: closing it would wait on threads that are not there."""
    global _base, _lock
    if _base is not None:
        _inherited.append(_base)
    _base = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
SPILL_PREFIX = "duckdb-"  # tmp/duckdb-<pid>-<random>: one spill folder per bulk connection
# a Spark job's checkpoints (matching.backends): tmp/spark-checkpoints-<pid>-<random>
SPARK_CHECKPOINTS_PREFIX = "spark-checkpoints-"
# the private scratch folders of a process in a workspace's tmp/, which `sweep` knows
SCRATCH_PREFIXES = (SPILL_PREFIX, SPARK_CHECKPOINTS_PREFIX)
_swept: set[Path] = set()
_spills: dict[int, Path] = {}


def spill_root(home: Path | None) -> Path:
    """Where bulk connections spill: the workspace's ``tmp/`` (owner-only), else (no workspace
    at hand: a file check before one is chosen) the system's temporary folder."""
    if home is None:
        return Path(tempfile.gettempdir())
    root = home / "tmp"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def sweep(root: Path) -> int:
    """Remove the scratch folders of processes that are gone (a crash, a kill); how many."""
    removed = 0
    for prefix in SCRATCH_PREFIXES:
        for folder in root.glob(f"{prefix}*"):
            pid = folder.name[len(prefix) :].split("-", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or alive(int(pid)):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def scratch(home: Path | None, prefix: str) -> Path:
    """A new private folder ``tmp/<prefix><pid>-…`` (0700) in the workspace folder `home` (the
    system's temporary folder without one), for the caller to remove; the process's first in
    a folder removes the dead processes' first (`sweep`). `prefix`: one of SCRATCH_PREFIXES."""
    root = spill_root(home)
    if root not in _swept:
        sweep(root)
        _swept.add(root)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    os.chmod(folder, 0o700)
    return folder


def bulk(threads: int | None = None, *, home: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB database for bulk work, with the memory limit (`memory_limit`)
    and a private spill folder ``tmp/duckdb-<pid>-…`` (0700) in the workspace folder `home`.
    The folder goes when the connection is closed with `close` or collected; after a crash,
    the process's first bulk connection in that workspace removes the dead ones' (`sweep`).
    Every bulk ``duckdb.connect`` of custodes is this one."""
    spill = scratch(home, SPILL_PREFIX)
    try:
        con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": memory_limit(),
                "temp_directory": str(spill),
                "preserve_insertion_order": True,
            },
        )
    except BaseException:
        shutil.rmtree(spill, ignore_errors=True)
        raise
    _spills[id(con)] = spill
    weakref.finalize(con, _forget, id(con), spill)
    if threads:
        con.execute(f"SET threads={int(threads)}")
    con.execute("SET enable_progress_bar=false")
    return con


def _forget(key: int, spill: Path) -> None:
    if _spills.get(key) == spill:
        del _spills[key]
    shutil.rmtree(spill, ignore_errors=True)


def spill_folder(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The spill folder of a connection made by `bulk` (None for any other)."""
    return _spills.get(id(con))


def close(con: duckdb.DuckDBPyConnection) -> None:
    """Close a bulk connection and remove its spill folder now."""
    con.close()
    spill = _spills.pop(id(con), None)
    if spill is not None:
        shutil.rmtree(spill, ignore_errors=True)
