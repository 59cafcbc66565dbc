"""`make demo` runs the main job end to end: it must keep working (it broke once unnoticed)."""

from __future__ import annotations

import os
import re
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
    # 900 items: enough for the caseload rule to send the second request to review
    env |= {
        "CUSTODES_HOME": str(tmp_path / "demo"),
        "DEMO_PEOPLE": "3000",
        "DEMO_ITEMS": "900",
        "COLUMNS": "200",
    }
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
    assert all(name in out for name in ("officer-1", "approver-1", "auditor-1", "administrator-1"))
    # Issue #24 item 9: it ends where a newcomer starts — work in every queue — and says how the
    # agency's system and an administrator get in; no password is fixed in the source
    waiting = _waiting(out)
    assert sorted(waiting.values()) == ["in review", "prepared", "released"], waiting
    key = re.search(r"Bearer (ck_[A-Za-z0-9_-]+)", out)
    assert key, out[-2000:]
    password = tmp_path / "demo" / "keys" / "demo-staff.password"
    assert password.stat().st_mode & 0o077 == 0 and str(password) in out
    from custodes.access import sessions
    from custodes.services import requests
    from custodes.services import workspace as ws_svc

    ws = ws_svc.open_workspace(tmp_path / "demo")
    try:
        agency = ws_svc.caller(ws, key.group(1))
        assert {r["id"] for r in requests.listing(ws, agency)} == set(waiting)
        admin = ws_svc.caller(ws, sessions.login(ws, "admin", password.read_text().strip()))
        assert "administrator" in admin.roles
    finally:
        ws.close()
    # `make demo` again on the same workspace: new one-time codes, no crash
    again = _demo(env | {"COLUMNS": "80"})
    assert "http://127.0.0.1:8600/enrol" in again.stdout and "Traceback" not in again.stderr
    assert _waiting(again.stdout) == waiting
    # each code whole on its line in an 80-column terminal (a table cut them short there)
    code = re.search(r"^  officer-1 \(officer\): (ce_\S+ ce2_\S+)$", again.stdout, re.MULTILINE)
    assert code and "…" not in code.group(1), again.stdout[-3000:]


def _waiting(out: str) -> dict[str, str]:
    """The 'Work waiting in the console' table: request -> state."""
    table = out[out.index("Work waiting in the console") :]
    return dict(re.findall(r"│ (req-[0-9a-f]{12}) │ (released|in review|prepared|decided) ", table))


@pytest.fixture(autouse=True)
def _stop_the_demo_witness(tmp_path: Path) -> Iterator[None]:
    """The demo leaves its witness running beside the workspace (for the console): stopped
    here, by the pid it recorded in its own folder."""
    yield
    from custodes.tlog import witness

    found = witness.running(tmp_path / "demo-witness")
    if found:
        os.kill(found[0], signal.SIGTERM)
