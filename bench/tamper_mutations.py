"""The tamper campaign's edits (bench/tamper.py): one row of a table updated, inserted or
deleted, or one file of the workspace flipped, truncated or replaced."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

# A credential the attacker chose: a row carrying its hash (a session, a key) would let it in.
FORGED = "tamper-made-up-credential"
FORGED_SHA = hashlib.sha256(FORGED.encode()).hexdigest()


# --- mutations ---------------------------------------------------------------------------------


@dataclass
class Mutation:
    target: str  # "table <name>" or "file <relative path>"
    kind: str  # update | insert | delete | flip | truncate | replace
    detail: str = ""


def store_tables() -> list[sa.Table]:
    from custodes.store.tables import metadata

    return list(metadata.sorted_tables)


def _other_value(rng: random.Random, col: sa.Column, value: Any, others: list[Any]) -> Any:
    """A different value for the column: one another row holds (a plausible edit: another
    agency, user, state, hash), the attacker's credential hash, or the value perturbed."""
    if col.name.endswith("sha256") and rng.random() < 0.3:
        return FORGED_SHA
    choices = [o for o in others if o != value and o is not None]
    if choices and rng.random() < 0.6:
        return rng.choice(choices)
    t = col.type
    if value is None:
        return choices[0] if choices else _blank(col)
    if isinstance(t, sa.Boolean):
        return not value
    if isinstance(t, sa.Integer):
        return value + rng.choice((-1, 1, 1000))
    if isinstance(t, sa.DateTime):
        return value + dt.timedelta(days=rng.choice((-400, -1, 1, 30000)))
    if isinstance(t, sa.Date):
        return value + dt.timedelta(days=rng.choice((-1, 1)))
    if isinstance(t, sa.LargeBinary):
        b = bytearray(value)
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    s = str(value)
    if s[:1] in "[{":
        return s.replace("1", "2", 1) if "1" in s else s + " "
    return s[:-1] + ("x" if s[-1:] != "x" else "y") if s else "x"


def _blank(col: sa.Column) -> Any:
    t = col.type
    if col.name.endswith("sha256"):
        return FORGED_SHA
    if isinstance(t, sa.Boolean):
        return True
    if isinstance(t, sa.Integer):
        return 1
    if isinstance(t, sa.DateTime):
        return dt.datetime.now(dt.UTC)
    if isinstance(t, sa.Date):
        return dt.date.today()
    if isinstance(t, sa.LargeBinary):
        return b"\0" * 32
    return "x"


def mutate_table(
    engine: sa.Engine, table: sa.Table, kind: str, rng: random.Random
) -> Mutation | None:
    """One row updated, inserted (a copy of a row with a new key and one value changed) or
    deleted; None when the table has no row to work from."""
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
        if not rows and kind == "insert":  # a row made up from nothing
            conn.execute(
                sa.insert(table).values(
                    {
                        c.name: _blank(c)
                        for c in table.columns
                        if not (
                            c.primary_key and isinstance(c.type, sa.Integer) and c.autoincrement
                        )
                    }
                )
            )
            return Mutation(f"table {table.name}", kind, "a made-up row")
        if not rows:
            return None
        row = rng.choice(rows)
        key = {c.name: row[c.name] for c in table.primary_key.columns} or row
        where = sa.and_(*(table.c[k] == v for k, v in key.items()))
        if kind == "delete":
            conn.execute(sa.delete(table).where(where))
            return Mutation(f"table {table.name}", kind)
        cols = [c for c in table.columns if not (kind == "insert" and c.primary_key)]
        col = rng.choice(cols or list(table.columns))
        value = _other_value(rng, col, row[col.name], [r[col.name] for r in rows])
        if kind == "update":
            conn.execute(sa.update(table).where(where).values({col.name: value}))
            return Mutation(f"table {table.name}", kind, col.name)
        new = dict(row) | {col.name: value}
        for pk in table.primary_key.columns:
            if isinstance(pk.type, sa.Integer):
                top = conn.execute(sa.select(sa.func.max(pk))).scalar() or 0
                new[pk.name] = top + 1
            elif isinstance(pk.type, sa.String | sa.Text):
                new[pk.name] = f"{row[pk.name]}-t"[: pk.type.length or 64]
        conn.execute(sa.insert(table).values(new))
        return Mutation(f"table {table.name}", kind, col.name)


def workspace_files(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file() and not p.is_symlink())


def mutate_file(home: Path, path: Path, kind: str, rng: random.Random) -> Mutation:
    data = path.read_bytes()
    if kind == "flip" and data:
        b = bytearray(data)
        at = rng.randrange(len(b))
        b[at] ^= 1 << rng.randrange(8)
        data = bytes(b)
    elif kind == "truncate" or (kind == "flip" and not data):
        kind = "truncate"
        data = data[: rng.randrange(len(data))] if data else b""
    else:  # replace: another file's bytes, or random bytes of the same length
        others = [p for p in workspace_files(home) if p != path]
        if others and rng.random() < 0.5:
            data = rng.choice(others).read_bytes()
        else:
            data = rng.randbytes(max(1, len(data)))
    same = data == path.read_bytes()
    path.write_bytes(data)
    return Mutation(f"file {_rel(home, path)}", kind, "the same bytes" if same else "")


def _rel(home: Path, path: Path) -> str:
    """A file's name in the table: ids and hashes folded, so that files of one role pool."""
    rel = path.relative_to(home).as_posix()
    rel = re.sub(r"req-[0-9a-f]{12}", "req-…", rel)
    rel = re.sub(r"rcl-[0-9a-f]{12}", "rcl-…", rel)
    rel = re.sub(r"[0-9a-f]{64}", "<sha>", rel)
    return re.sub(r"/[0-9a-f]{16}/", "/<sha16>/", rel)
