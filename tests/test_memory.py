"""Bounded memory on the embedded engine: every bulk DuckDB connection has a memory limit and a
private spill folder in the workspace (owner-only, removed afterwards, and after a crash at the
next start), and a job under a tiny limit still completes by spilling to it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import keyed_in
from custodes.errors import WorkspaceError
from custodes.records import master
from custodes.services import decisions as svc
from custodes.services import matching as matching_svc
from custodes.services.requests import generate as generate_request
from custodes.services.rules import register_parties
from custodes.store import duck


def _setting(con, name: str) -> str:  # type: ignore[no-untyped-def]
    return con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]


def test_bulk_connection_has_the_limit_and_a_private_spill_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTODES_MEMORY_LIMIT", "300MB")
    con = master.connect(home=tmp_path)
    spill = master.spill_folder(con)
    assert spill is not None and spill.parent == tmp_path / "tmp"
    assert spill.name.startswith(f"duckdb-{os.getpid()}-")
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "tmp").stat().st_mode) == 0o700
    assert _setting(con, "temp_directory") == str(spill)
    assert _setting(con, "memory_limit") in ("286.1 MiB", "300.0 MB")  # DuckDB prints either
    master.close(con)
    assert not spill.exists()


def test_default_limit_is_a_share_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODES_MEMORY_LIMIT", raising=False)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mb = int(duck.memory_limit().removesuffix("MB"))
    assert mb == max(total // 6, 1 << 30) >> 20
    assert mb * (1 << 20) < total / 2


def test_a_bad_memory_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODES_MEMORY_LIMIT", "lots")
    with pytest.raises(WorkspaceError) as e:
        master.connect(home=tmp_path)
    assert e.value.code == "bad_configuration"
    assert not list((tmp_path / "tmp").glob("duckdb-*"))  # nothing left behind


def test_a_collected_connection_removes_its_folder(tmp_path: Path) -> None:
    con = master.connect(home=tmp_path)
    spill = master.spill_folder(con)
    assert spill is not None and spill.exists()
    del con
    import gc

    gc.collect()
    assert not spill.exists()


def test_a_crashed_process_folder_goes_at_the_next_start(tmp_path: Path) -> None:
    """A process killed mid-spill leaves its folders (DuckDB's spill, a Spark job's
    checkpoints); the next process's first bulk connection in the workspace removes them (and
    leaves a live process's alone)."""
    code = (
        "import os, sys; from pathlib import Path; from custodes.records import master; "
        "from custodes.store import duck; h = Path(sys.argv[1]); c = master.connect(home=h); "
        "print(duck.scratch(h, 'spark-checkpoints-'), flush=True); "
        "print(master.spill_folder(c), flush=True); os._exit(9)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    dead = [Path(line) for line in out.stdout.split()]
    assert out.returncode == 9 and len(dead) == 2 and all(d.exists() for d in dead)
    assert dead[0].name.startswith("spark-checkpoints-") and dead[1].name.startswith("duckdb-")
    live = tmp_path / "tmp" / f"duckdb-{os.getppid()}-x"  # a running process's (pytest's parent)
    live.mkdir()
    duck._swept.discard(tmp_path / "tmp")  # this process's first connection there
    con = master.connect(home=tmp_path)
    assert not any(d.exists() for d in dead) and live.exists()
    master.close(con)


def test_a_connection_spills_past_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTODES_MEMORY_LIMIT", "100MB")
    con = master.connect(threads=1, home=tmp_path)
    spill = master.spill_folder(con)
    # ~250 MB of rows in a temporary table: more than the limit, so blocks go to the folder
    con.execute(
        "CREATE TEMP TABLE t AS SELECT range AS i, md5(range::VARCHAR) || md5((range+1)::VARCHAR)"
        " AS s FROM range(3000000)"
    )
    used = con.execute("SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()").fetchall()
    assert used[0][0] > 0
    assert spill is not None and any(spill.iterdir())
    assert con.execute("SELECT count(DISTINCT s) FROM t").fetchall()[0][0] == 3_000_000
    master.close(con)
    assert not spill.exists()


def test_the_job_completes_under_a_tiny_limit(
    master_ws, people, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Train and process a small request with 100 MB for DuckDB: every item gets an
    outcome, and no spill folder is left in the workspace."""
    ws = master_ws
    monkeypatch.setenv("CUSTODES_MEMORY_LIMIT", "100MB")
    register_parties(ws, people.admin, "irc-6103-i-2")
    generate_request(ws, people.admin, "irc-6103-i-2", 300, 5, tmp_path / "req")
    rid = keyed_in(ws, people["officer"], people["approver"], tmp_path / "req").request_id
    matching_svc.train(ws, people["officer"], rid)
    res = svc.process(ws, people["officer"], rid)
    assert sum(res.counts.values()) == 300
    out = pq.read_table(ws.request_folder(rid) / "decisions" / "outcomes.parquet")
    assert out.num_rows == 300
    assert not list((ws.home / "tmp").glob("duckdb-*"))
