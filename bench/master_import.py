"""Benchmark: importing a master file (`records import`'s validation, merge and new generation),
its time, peak memory and peak spill to the workspace's disk, against DuckDB reading the same
files once, in the same run.

A synthetic master file of `--people` is generated once (cached in `--cache`); each repeat
imports its people and addresses into a fresh, empty workspace (`records import`: validated,
merged into nothing, written as a new generation that waits for a second administrator). The
spill is the size of the workspace's `tmp/` (DuckDB's spill folder), sampled every 0.2 s;
memory is the RSS of this process. Baseline: one DuckDB pass over both files (every column
read and hashed).

    .venv/bin/python bench/master_import.py [--people 1000000] [--repeat 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

import duckdb
import psutil

from custodes.records import master
from custodes.services import records
from custodes.services.workspace import init
from custodes.store.sql import parquet
from custodes.store.sql import path as sqlpath
from custodes.synthetic.staff import administrators
from custodes.workspace import open_workspace

PASSWORD = "bench-import-password-1"


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # a spill file just removed
                total += (Path(root) / f).stat().st_size
    return total


class Sampler(threading.Thread):
    """Peak spill (bytes under `folder`) and peak RSS of this process, every 0.2 s."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.spill, self.rss = folder, 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._halt.wait(0.2):
            self.spill = max(self.spill, _tree_size(self.folder))
            self.rss = max(self.rss, me.memory_info().rss)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def source(cache: Path, people: int) -> tuple[Path, Path]:
    """The generated master file's people and addresses (generated once, then reused)."""
    files = cache / f"master-{people}"
    if not (files / "addresses.parquet").exists():
        home = cache / f"gen-{people}"
        shutil.rmtree(home, ignore_errors=True)
        init(home)
        ws = open_workspace(home)
        records.generate(ws, administrators(ws, PASSWORD).admin, people, 1)
        files.mkdir(parents=True, exist_ok=True, mode=0o700)
        cur = master.current(ws)
        shutil.copyfile(cur.path("people"), files / "people.parquet")
        # the stored addresses carry the record id the import assigns; an import file does not
        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT * EXCLUDE (record_id) FROM {parquet(cur.path('addresses'))}) "
            f"TO {sqlpath(files / 'addresses.parquet')} (FORMAT parquet, COMPRESSION zstd)"
        )
        con.close()
        shutil.rmtree(home)
    return files / "people.parquet", files / "addresses.parquet"


def baseline(people: Path, addresses: Path) -> float:
    t = time.perf_counter()
    con = duckdb.connect()
    for f in (people, addresses):
        con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {parquet(f)}").fetchall()
    con.close()
    return time.perf_counter() - t


def one_import(cache: Path, people: Path, addresses: Path) -> tuple[float, int, int]:
    home = cache / "import-ws"
    shutil.rmtree(home, ignore_errors=True)
    init(home)
    ws = open_workspace(home)
    admin = administrators(ws, PASSWORD).admin
    sampler = Sampler(home / "tmp")
    sampler.start()
    t = time.perf_counter()
    records.import_(ws, admin, people, addresses)  # validated, merged, written (proposed)
    secs = time.perf_counter() - t
    sampler.stop()
    shutil.rmtree(home)
    return secs, sampler.spill, sampler.rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/custodes-bench-import"))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    people, addresses = source(args.cache, args.people)
    mb = (people.stat().st_size + addresses.stat().st_size) / 1e6
    print(f"master file: {args.people:,} people, {mb:,.0f} MB of Parquet")
    for n in range(args.repeat):
        base = baseline(people, addresses)
        secs, spill, rss = one_import(args.cache, people, addresses)
        print(
            f"run {n + 1}: baseline pass {base:.1f} s; import {secs:.1f} s ({secs / base:.1f}×), "
            f"peak spill {spill / 1e9:.2f} GB, peak RSS {rss / 1e9:.2f} GB"
        )


if __name__ == "__main__":
    main()
