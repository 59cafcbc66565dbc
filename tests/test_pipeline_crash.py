"""Crash safety of the main job: the real command killed at every named point, run again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from conftest import PASSWORD, Template, keyed_in
from custodes.access import sessions
from custodes.decisions import effective
from custodes.ledger import audit
from custodes.services.requests import generate as generate_request
from custodes.store.tables import disclosures, ledger_events
from custodes.workspace import Workspace
from shared_pipeline import _approved, state_of


@pytest.fixture
def rid(processed: Template) -> str:
    return (processed.home.parent / "rid").read_text()


# --- crash safety: kill the real command at random points, run it again ----------------------


def _cli(home: Path, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "custodes", *args, "--home", str(home)]


def _env(home: Path, token: str) -> dict[str, str]:
    """A subprocess run by the officer (the session was opened in the base workspace; every
    copy carries it)."""
    return os.environ | {
        "CUSTODES_SESSION": token,
        "CUSTODES_STORE_URL": f"sqlite:///{home.parent / (home.name + '.db')}",
    }


def _copy(src: Template | Path, dst: Path) -> Path:
    """A copy of a workspace (its folder and its SQLite store beside it)."""
    home = src.home if isinstance(src, Template) else src
    dst.mkdir()
    shutil.copytree(home, dst / "master-ws")
    shutil.copy(home.parent / (home.name + ".db"), dst / "master-ws.db")
    return dst / "master-ws"


def _killed_at(cmd: list[str], env: dict[str, str], point: int) -> None:
    """Run `cmd` with a failpoint that kills it (SIGKILL) at the `point`-th named point it
    passes (custodes.failpoints): chosen by event, not by time, so the kill lands on the same
    step however loaded the machine."""
    import signal
    import subprocess

    done = subprocess.run(
        cmd, env=env | {"CUSTODES_FAILPOINT": f"any:{point}"}, capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr[-2000:])


def _run(cmd: list[str], env: dict[str, str]) -> None:
    import subprocess

    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _open(home: Path) -> Workspace:
    from custodes.workspace import open_workspace

    return open_workspace(home, f"sqlite:///{home.parent / (home.name + '.db')}")


def _login(home: Path) -> str:
    """A session of the officer opened in `home` (every copy made afterwards carries it)."""
    ws = _open(home)
    try:
        return sessions.login(ws, "officer", PASSWORD)
    finally:
        ws.close()


@pytest.mark.slow
def test_process_killed_anywhere_resumes_identically(processed: Template, tmp_path: Path) -> None:
    import random

    base = _copy(processed, tmp_path / "base")
    officer_token = _login(base)
    ws = _open(base)
    generate_request(ws, processed.callers.admin, "irc-6103-i-2", 150, 31, tmp_path / "req")
    rid = keyed_in(
        ws, processed.callers["officer"], processed.callers["approver"], tmp_path / "req"
    ).request_id
    ws.close()
    ref = _copy(base, tmp_path / "ref")
    passed = tmp_path / "points"  # the named points an uninterrupted run passes, in order
    _run(
        _cli(ref, "process", rid),
        _env(ref, officer_token) | {"CUSTODES_FAILPOINT": f"count:{passed}"},
    )
    points = len(passed.read_text().splitlines())
    assert points >= 6, passed.read_text()
    reference = pq.read_table(ref / "requests" / rid / "decisions" / "outcomes.parquet")
    rng = random.Random(5)
    interrupted = []
    # the first and the last point, and four drawn between them
    at = sorted({1, points, *rng.sample(range(2, points), min(4, points - 2))})
    for k, point in enumerate(at):
        home = _copy(base, tmp_path / f"k{k}")
        _killed_at(_cli(home, "process", rid), _env(home, officer_token), point)
        w = _open(home)
        interrupted.append(state_of(w, rid))
        w.close()
        _run(_cli(home, "process", rid), _env(home, officer_token))
        got = pq.read_table(home / "requests" / rid / "decisions" / "outcomes.parquet")
        assert got.equals(reference), f"kill {k} at point {point}"
        w = _open(home)
        assert state_of(w, rid) in ("decided", "in_review")
        w.close()
    # The kills landed at different stages (before, between and after the transitions).
    print("states at the kills:", interrupted)
    assert len(set(interrupted)) >= 2


@pytest.mark.slow
def test_release_killed_anywhere_discloses_once_with_ledger(
    processed: Template, rid: str, tmp_path: Path
) -> None:
    import random

    base = _copy(processed, tmp_path / "base")
    officer_token = _login(base)
    ws = _open(base)
    _approved(ws, processed.callers, rid)
    expected = sum(
        o == "DISCLOSE" for o in effective.effective_outcomes(ws, rid)["outcome"].to_pylist()
    )
    ws.close()
    ref = _copy(base, tmp_path / "ref")
    passed = tmp_path / "points"  # the named points an uninterrupted release passes
    env = _env(ref, officer_token) | {"CUSTODES_FAILPOINT": f"count:{passed}"}
    _run(_cli(ref, "release", rid, "--out", str(tmp_path / "ref-out")), env)
    reference = (tmp_path / "ref-out" / "response.csv").read_bytes()
    points = len(passed.read_text().splitlines())
    assert points >= 5, passed.read_text()
    rng = random.Random(7)
    at = sorted({1, points, *rng.sample(range(2, points), min(3, points - 2))})
    for k, point in enumerate(at):
        home = _copy(base, tmp_path / f"k{k}")
        out = tmp_path / f"out{k}"
        _killed_at(_cli(home, "release", rid, "--out", str(out)), _env(home, officer_token), point)
        shutil.rmtree(out, ignore_errors=True)
        _run(_cli(home, "release", rid, "--out", str(out)), _env(home, officer_token))
        assert (out / "response.csv").read_bytes() == reference, f"kill {k}"
        w = _open(home)
        with w.engine.connect() as conn:
            rows = conn.execute(sa.select(disclosures.c.item_id)).scalars().all()
            leaves = (
                conn.execute(
                    sa.select(ledger_events.c.record_id).where(ledger_events.c.type == "disclosure")
                )
                .scalars()
                .all()
            )
        assert len(rows) == len(set(rows)) == len(leaves) == expected, f"kill {k}"
        assert state_of(w, rid) == "released"
        assert audit.audit_store(w).ok, f"kill {k}"
        w.close()
