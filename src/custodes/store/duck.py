"""DuckDB for small interactive reads (a page of outcomes, one item, one record, a summary).

Opening a DuckDB database costs about 15 ms, more than the read itself; a cursor on one
in-memory database kept for the process costs about 0.3 ms. Each cursor is its own connection
(its registered tables and temporary views are its own, and it may be used from its thread),
all on one thread of DuckDB's: these reads are small, and a server's cores belong to its
request threads. Bulk work (matching, processing, import) opens its own connection with every
core (`records.master.connect`).
"""

from __future__ import annotations

import os
import threading

import duckdb

_lock = threading.Lock()
_base: duckdb.DuckDBPyConnection | None = None
_inherited: list[duckdb.DuckDBPyConnection] = []  # a forked child's copy of its parent's


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection to the process's shared in-memory database; close it when done."""
    global _base
    with _lock:
        if _base is None:
            _base = duckdb.connect(
                ":memory:", config={"threads": 1, "preserve_insertion_order": True}
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
