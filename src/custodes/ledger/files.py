"""Files custodes reads back, checked against the hash the ledger recorded when they were made.

Whoever holds the disk can edit a master-file generation, a request's items, its match results,
a model, the outcomes or a response. custodes cannot stop that; it notices. Every such file is
recorded when custodes writes it: a `file.stored` event carries its role, its path relative to
the workspace and its SHA-256, and the `files` table names that event for the path. Every use
goes through `verified`, which reads the event the row names (checking the body against its
commitment, and its path and role against the file asked for) and hashes the file in one
sequential read; a difference refuses the use (`file_tampered`, naming the role and the path,
never a value) and is itself a `file.refused` event. `audit` (part of `ledger verify`) checks
every row names its path's latest event and every recorded file still hashes to it.

The hash always comes from the ledger's body, never from the row: a store writer who edits a
row can only point it at another genuine event, which the audit reports (or at nothing, which
refuses the use).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sqlalchemy import Connection, delete, insert, select

from custodes.errors import IntegrityError
from custodes.ledger import log
from custodes.ledger.event_types import FileRefused, FileStored, parse_as
from custodes.ledger.events import Event, commitment
from custodes.store.tables import files, ledger_events
from custodes.workspace import Call, Workspace

STORED = FileStored.TYPE
REFUSED = FileRefused.TYPE
KEYS = tuple(k for _, k in FileStored.KEYS)  # what a file.stored body carries


def sha256_file(path: Path) -> str:
    """SHA-256 of a file in one sequential read (hashlib's own chunked loop; never the whole
    file in memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def relative(ws: Workspace, path: Path) -> str:
    """The path as the ledger names it: relative to the workspace, '/'-separated (taken from
    the names, never by following a link someone planted)."""
    return Path(os.path.abspath(path)).relative_to(os.path.abspath(ws.home)).as_posix()


def record(
    conn: Connection,
    ws: Workspace,
    actor: str,
    role: str,
    path: Path,
    *,
    request_id: str | None = None,
    sha256: str | None = None,
) -> int:
    """Record a file custodes has just written (in the caller's transaction): a `file.stored`
    event with its role, relative path and hash, and the path's row pointing at it."""
    rel = relative(ws, path)
    digest = sha256 or sha256_file(path)
    (idx,) = log.append(
        conn,
        [
            Event(
                FileStored(role=role, path=rel, sha256=digest),
                actor=actor,
                request_id=request_id,
            )
        ],
    )
    conn.execute(delete(files).where(files.c.path == rel))
    conn.execute(insert(files).values(path=rel, role=role, event_idx=idx))
    return idx


def forget(conn: Connection, ws: Workspace, folder: Path) -> None:
    """Drop the rows of files under `folder`, which custodes is removing (an old generation):
    a copy put back there later is unrecorded, so refused."""
    prefix = relative(ws, folder) + "/"
    conn.execute(delete(files).where(files.c.path.startswith(prefix, autoescape=True)))


def unrecorded(ws: Workspace, path: Path) -> bool:
    """A file there (or a link) that no row of the ledger's files names."""
    if not (path.exists() or path.is_symlink()):
        return False
    with ws.engine.connect() as conn:
        row = conn.execute(select(files.c.path).where(files.c.path == relative(ws, path))).first()
    return row is None


def _mismatch(ws: Workspace, conn: Connection, role: str, path: Path) -> tuple[str, str] | None:
    """Why `path` may not be used as `role` (a short code and a sentence), or None."""
    rel = relative(ws, path)
    row = conn.execute(select(files).where(files.c.path == rel)).first()
    if row is None:
        return "unrecorded", "was never recorded in the ledger (placed or restored by hand)"
    ev = conn.execute(
        select(
            ledger_events.c.type,
            ledger_events.c.salt,
            ledger_events.c.body,
            ledger_events.c.commitment,
        ).where(ledger_events.c.idx == row.event_idx)
    ).first()
    if ev is None or ev.type != STORED or commitment(ev.salt, ev.body.encode()) != ev.commitment:
        return "record", "has a record that does not match the ledger"
    stored = parse_as(FileStored, json.loads(ev.body))
    if stored is None or (stored.path, stored.role, row.role) != (rel, role, role):
        return "record", "has a record that names another file"
    if not path.is_file() or path.is_symlink():
        return "missing", "is missing"
    if sha256_file(path) != stored.sha256:
        return "content", "no longer hashes to what the ledger recorded when it was written"
    return None


def verified(call: Call, role: str, path: Path, *, optional: bool = False) -> Path:
    """`path` after checking it is the file the ledger recorded for `role`; otherwise the use
    is refused (`file_tampered`) and the refusal recorded. `optional`: a file not made yet
    (neither on disk nor recorded) passes."""
    ws = call.ws
    with ws.engine.connect() as conn:
        why = _mismatch(ws, conn, role, path)
    if why and why[0] == "unrecorded" and optional and not (path.exists() or path.is_symlink()):
        return path
    if why is None:
        return path
    rel = relative(ws, path)
    with call.transaction() as conn:
        log.append_one(conn, FileRefused(role=role, path=rel, why=why[0]), actor=call.actor)
    raise IntegrityError(
        f"The {role} file {rel} {why[1]}; it was not used (run 'custodes ledger verify').",
        code="file_tampered",
    )


def audit(ws: Workspace, conn: Connection) -> tuple[list[str], list[str]]:
    """Every row names its path's latest `file.stored` event, every recorded file on disk has
    a row, and every file a row names hashes to its event. Returns (problems, checked)."""
    latest: dict[str, tuple[int, dict[str, str]]] = {}
    problems: list[str] = []
    for idx, body in conn.execution_options(yield_per=10_000).execute(
        select(ledger_events.c.idx, ledger_events.c.body)
        .where(ledger_events.c.type == STORED)
        .order_by(ledger_events.c.idx)
    ):
        doc = json.loads(body)
        if doc.get("type") != STORED or not all(isinstance(doc.get(k), str) for k in KEYS):
            problems.append(f"files: event {idx} is filed as {STORED} but its body is not one")
            continue
        latest[doc["path"]] = (idx, doc)
    rows = {r.path: r for r in conn.execute(select(files))}
    for rel, row in sorted(rows.items()):
        if rel not in latest:
            problems.append(f"files: {rel}: its row names no file.stored event (added by hand)")
            continue
        idx, doc = latest[rel]
        if row.event_idx != idx or row.role != doc["role"]:
            problems.append(
                f"files: {rel}: its row does not name the latest file.stored event ({idx})"
            )
        path = ws.home / rel
        if not path.is_file() or path.is_symlink():
            problems.append(f"files: the {doc['role']} file {rel} is missing")
        elif sha256_file(path) != doc["sha256"]:
            problems.append(
                f"files: the {doc['role']} file {rel} no longer hashes to what the ledger "
                "recorded when it was written"
            )
    for rel in sorted(latest.keys() - rows.keys()):
        if (ws.home / rel).exists():
            problems.append(
                f"files: the {latest[rel][1]['role']} file {rel} is recorded in the ledger but "
                "its row is missing (deleted)"
            )
    checked = [f"{len(rows)} recorded files hash to what the ledger recorded"]
    return problems, checked
