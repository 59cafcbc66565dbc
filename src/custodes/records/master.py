"""Where the master file lives: immutable generations of Parquet tables, switched atomically.

``bulk/master/CURRENT`` names the live generation folder (``g000001`` ...), each holding
``people.parquet`` and ``addresses.parquet`` and, for a synthetic master file, the ground truth
``population.parquet``. A writer builds a whole new generation beside the live one and then
replaces CURRENT with one atomic rename, so a reader never sees half an import and a crash
leaves the previous generation live.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
from sqlalchemy import Connection

from custodes.errors import ConflictError, IntegrityError
from custodes.ledger import files
from custodes.store import duck
from custodes.store.sql import parquet
from custodes.workspace import Call, Workspace

SYNTHETIC = "SYNTHETIC"  # marks a generation made wholly by `records generate`
TABLES = ("people", "addresses", "population")  # a generation's files, each recorded


@dataclass(frozen=True)
class MasterFile:
    folder: Path | None

    @property
    def synthetic(self) -> bool:
        """True when every person in it was generated (no real person was ever imported)."""
        return self.folder is not None and (self.folder / SYNTHETIC).exists()

    def path(self, table: str) -> Path:
        if self.folder is None:
            raise ConflictError(
                "The workspace has no master file yet: load one with 'custodes records import' "
                "or create a synthetic one with 'custodes records generate'.",
                code="no_master_file",
            )
        return self.folder / f"{table}.parquet"

    def has(self, table: str) -> bool:
        return self.folder is not None and (self.folder / f"{table}.parquet").exists()

    @property
    def exists(self) -> bool:
        return self.has("people")

    def sha256(self) -> str:
        """Content hash of the master file: the people and address tables' bytes."""
        h = hashlib.sha256()
        for table in ("people", "addresses"):
            with open(self.path(table), "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()


def _root(ws: Workspace) -> Path:
    return ws.bulk / "master"


def current(ws: Workspace) -> MasterFile:
    pointer = _root(ws) / "CURRENT"
    if not pointer.exists():
        return MasterFile(None)
    folder = _root(ws) / pointer.read_text().strip()
    if not folder.is_dir():
        raise IntegrityError(
            f"The master file's live generation {folder.name} is missing.", code="master_corrupt"
        )
    return MasterFile(folder)


def new_generation(ws: Workspace) -> Path:
    root = _root(ws)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[1:]) for p in root.glob("g*") if p.name[1:].isdigit()]
    folder = root / f"g{max(numbers, default=0) + 1:06d}"
    folder.mkdir()
    return folder


def generation(ws: Workspace, name: str) -> Path | None:
    """A generation's folder by its name (g000001…), if it is there (a pending import's)."""
    if not re.fullmatch(r"g\d{6}", name or ""):
        return None
    folder = _root(ws) / name
    return folder if folder.is_dir() and not folder.is_symlink() else None


def publish(ws: Workspace, folder: Path) -> MasterFile:
    """Make `folder` the live generation (atomic) and remove older ones."""
    root = _root(ws)
    tmp = root / "CURRENT.tmp"
    tmp.write_text(folder.name + "\n")
    with open(tmp) as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, root / "CURRENT")
    for old in root.glob("g*"):
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return MasterFile(folder)


def record_generation(conn: Connection, call: Call, folder: Path) -> None:
    """Record, in the transaction that makes `folder` live, each of its tables and the CURRENT
    pointer that will name it (`ledger.files`); rows of older generations go (their folders
    are removed on publish, and a copy put back is unrecorded)."""
    ws = call.ws
    files.forget(conn, ws, _root(ws))
    for table in TABLES:
        path = folder / f"{table}.parquet"
        if path.exists():
            files.record(conn, ws, call.actor, f"master.{table}", path)
    if (folder / SYNTHETIC).exists():  # lets 'requests generate' draw from it: recorded too
        files.record(conn, ws, call.actor, "master.synthetic", folder / SYNTHETIC)
    pointer = (folder.name + "\n").encode()
    files.record(
        conn,
        ws,
        call.actor,
        "master.current",
        _root(ws) / "CURRENT",
        sha256=hashlib.sha256(pointer).hexdigest(),
    )


def verified(call: Call) -> MasterFile:
    """The live master file after checking the CURRENT pointer and every table of its
    generation against the hashes the ledger recorded (one sequential read of each); a file
    that differs refuses the use (`file_tampered`)."""
    ws = call.ws
    mf = current(ws)
    if mf.folder is None:
        return mf
    files.verified(call, "master.current", _root(ws) / "CURRENT")
    for table in TABLES:
        if mf.has(table) or table != "population":
            files.verified(call, f"master.{table}", mf.path(table))
    if mf.synthetic:  # a marker put into an imported generation would pass real people off
        files.verified(call, "master.synthetic", mf.folder / SYNTHETIC)
    return mf


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def connect(
    threads: int | None = None, *, ws: Workspace | None = None, home: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A bulk DuckDB connection (`store.duck.bulk`: the memory limit, a private spill folder
    in the workspace `ws` or the workspace folder `home`). Close it with `close`."""
    return duck.bulk(threads, home=ws.home if ws is not None else home)


close = duck.close
spill_folder = duck.spill_folder


def summary(ws: Workspace) -> dict[str, object]:
    """Counts that describe the master file without revealing anyone in it."""
    mf = current(ws)
    if not mf.exists:
        return {"people": 0, "addresses": 0}
    con = connect()
    p, a = str(mf.path("people")), str(mf.path("addresses"))
    people, itin, suffixed = con.execute(
        f"SELECT count(*), count(*) FILTER (tin_type='ITIN'), count(*) FILTER (suffix IS NOT NULL)"
        f" FROM {parquet(p)}"
    ).fetchall()[0]
    rows, years_lo, years_hi, shared = con.execute(
        f"""WITH a AS (SELECT * FROM {parquet(a)}),
                 latest AS (SELECT record_id, max(tax_year) AS tax_year FROM a GROUP BY 1),
                 last AS (SELECT record_id, street||'|'||coalesce(unit,'')||'|'||zip AS addr
                          FROM a JOIN latest USING (record_id, tax_year)),
                 households AS (SELECT addr, count(*) AS n FROM last GROUP BY 1)
            SELECT (SELECT count(*) FROM a), (SELECT min(tax_year) FROM a),
                   (SELECT max(tax_year) FROM a),
                   (SELECT coalesce(sum(n),0) FROM households WHERE n > 1)"""
    ).fetchall()[0]
    out: dict[str, object] = {
        "people": people,
        "itin": itin,
        "with_suffix": suffixed,
        "addresses": rows,
        "tax_years": [years_lo, years_hi],
        "people_sharing_last_address": shared,
        "sha256": mf.sha256(),
        "generation": mf.folder.name if mf.folder else None,
    }
    if mf.has("population"):
        pop = str(mf.path("population"))
        absent, twins = con.execute(
            f"SELECT count(*) FILTER (NOT filer), count(*) FILTER (twin_of IS NOT NULL)"
            f" FROM {parquet(pop)}"
        ).fetchall()[0]
        out["synthetic_non_filers"] = absent
        out["twins"] = twins
    con.close()
    return out


def lookup(ws: Workspace, record_id: str) -> dict[str, object] | None:
    """One person's record and the addresses they filed from, or None. Callers record the
    inspection first (decisions.inspection): this function does not check who is asking."""
    mf = current(ws)
    con = duck.cursor()
    try:
        person = con.execute(
            f"SELECT * FROM {parquet(mf.path('people'))} WHERE record_id = ?", [record_id]
        ).fetchall()
        if not person:
            return None
        cols = [d[0] for d in con.description]
        rows = con.execute(
            f"SELECT tax_year, street, unit, city, state, zip FROM "
            f"{parquet(mf.path('addresses'))} WHERE record_id = ? ORDER BY tax_year DESC",
            [record_id],
        ).fetchall()
        acols = [d[0] for d in con.description]
    finally:
        con.close()
    return dict(zip(cols, person[0], strict=True)) | {
        "addresses": [dict(zip(acols, r, strict=True)) for r in rows]
    }


def tins(ws: Workspace, record_ids: set[str]) -> dict[str, str]:
    """The TINs of these records (NNN-NN-NNNN). Callers record the inspection first: this
    function does not check who is asking."""
    if not record_ids:
        return {}
    import pyarrow.parquet as pq

    t = pq.read_table(
        current(ws).path("people"),
        columns=["record_id", "tin"],
        filters=[("record_id", "in", sorted(record_ids))],
    )
    return {
        r: f"{x[:3]}-{x[3:5]}-{x[5:]}"
        for r, x in zip(t["record_id"].to_pylist(), t["tin"].to_pylist(), strict=True)
    }
