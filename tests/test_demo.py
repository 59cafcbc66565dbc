"""`make demo` runs the main job end to end: it must keep working (it broke once unnoticed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "custodes.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_demo_runs_the_main_job_and_says_why_items_are_in_review(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env |= {"CUSTODES_HOME": str(tmp_path / "demo"), "DEMO_PEOPLE": "3000", "COLUMNS": "200"}
    done = _demo(env)
    out = done.stdout
    assert "Review:" in out and ("why in review" in out or "none needs an officer" in out)
    assert "Prepared by demo-officer, approved by demo-approver (two people)." in out
    assert "Released:" in out and (tmp_path / "demo" / "demo-response" / "response.csv").exists()
    assert "Traceback" not in done.stderr
    assert "cosigns every checkpoint" in out and "\u2014 witness.local " in out
    reports = tmp_path / "demo" / "demo-reports"
    made = sorted(p.suffix for p in reports.iterdir())
    assert made == [".csv", ".html", ".html", ".pdf"], made
    assert str(reports) in out and "custodes report verify" in out
    # the console's demo users, each with a one-time code, and where to open it
    assert "http://127.0.0.1:8600/enrol" in out
    assert all(name in out for name in ("officer-1", "approver-1", "auditor-1"))
    # `make demo` again on the same workspace: new one-time codes, no crash
    again = _demo(env)
    assert "http://127.0.0.1:8600/enrol" in again.stdout and "Traceback" not in again.stderr


@pytest.fixture(autouse=True)
def _stop_the_demo_witness(tmp_path: Path) -> Iterator[None]:
    """The demo leaves its witness running beside the workspace (for the console): stopped
    here, by the pid it recorded in its own folder."""
    yield
    from custodes.ledger import witness

    found = witness.running(tmp_path / "demo-witness")
    if found:
        os.kill(found[0], signal.SIGTERM)
