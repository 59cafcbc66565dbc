"""What the command line says when things go wrong: one coded line and exit 2 for a path,
permission or encoding mistake, the user's own text shown as typed, and Ctrl-C answered with
how to resume (exit 130), never a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PASSWORD, Template, copy_template
from custodes.access import sessions
from custodes.cli import app
from custodes.services import matching, requests, rules

runner = CliRunner()


@pytest.fixture(scope="module")
def _cli_template(
    _master_template: Template, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Template, str, str]:
    """Made once per module: a master workspace with a request submitted and the model
    trained (the Splink training is most of a test's set-up), and the officer's session."""
    root = tmp_path_factory.mktemp("cli-errors")
    ws, people = copy_template(_master_template, root)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 40, 3, root / "req")
    rid = requests.submit(ws, people["requester"], root / "req").request_id
    matching.train(ws, people["officer"], rid)
    token = sessions.login(ws, "officer", PASSWORD)
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people), rid, token


@pytest.fixture
def cli_ws(_cli_template: tuple[Template, str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of that workspace (and of the request's folder), and the officer's session."""
    template, rid, token = _cli_template
    ws, _ = copy_template(template, tmp_path)
    shutil.copytree(template.home.parent / "req", tmp_path / "req")
    env = {"CUSTODES_SESSION": token, "CUSTODES_STORE_URL": ws.store_url}
    home = ["--home", str(ws.home)]
    ws.close()
    return home, env, rid, tmp_path


def test_paths_that_cannot_be_written_are_coded_errors(cli_ws) -> None:  # type: ignore[no-untyped-def]
    home, env, rid, tmp = cli_ws
    assert runner.invoke(app, ["process", rid, *home], env=env).exit_code == 0
    (tmp / "a-folder.csv").mkdir()
    cases = {
        "a folder where a file goes": (
            ["outcomes", rid, "--out", str(tmp / "a-folder.csv")],
            "output_exists",
        ),
        "a folder that does not exist": (
            ["outcomes", rid, "--out", str(tmp / "no" / "o.csv")],
            "bad_path",
        ),
        "a file where a folder goes": (
            ["release", rid, "--out", str(tmp / "req" / "items.csv")],
            "bad_path",
        ),
    }
    for what, (args, code) in cases.items():
        r = runner.invoke(app, [*args, *home], env=env)
        assert r.exit_code == 2, (what, r.output)
        assert f"({code})" in r.output and "internal error" not in r.output, (what, r.output)


def test_files_that_are_not_utf8_are_coded_errors(cli_ws) -> None:  # type: ignore[no-untyped-def]
    home, env, _, tmp = cli_ws
    bad = tmp / "agreement.yaml"
    bad.write_bytes(b"id: x\nagency: \xe9t\xe9\n")
    admin = {**env, "CUSTODES_SESSION": _login(home, env, "admin")}
    r = runner.invoke(app, ["agreements", "add", str(bad), *home], env=admin)
    assert r.exit_code == 2 and "(bad_encoding)" in r.output
    import shutil

    from custodes.rules.provisions import REFERENCE

    rules = tmp / "rules"
    shutil.copytree(REFERENCE, rules)
    (rules / "irc6103" / "d.yaml").write_bytes(b"id: irc-6103-d\ntitle: \xff\xfe\n")
    r = runner.invoke(app, ["rules", "lint", str(rules)])
    assert r.exit_code == 1 and "not UTF-8" in r.output
    steward = {**env, "CUSTODES_SESSION": _login(home, env, "rule-steward")}
    r = runner.invoke(app, ["rules", "propose", str(rules), *home], env=steward)
    assert r.exit_code == 2 and "(bad_ruleset)" in r.output


def _login(home: list[str], env: dict[str, str], name: str) -> str:
    from custodes.workspace import open_workspace

    ws = open_workspace(home[1], env["CUSTODES_STORE_URL"])
    try:
        return sessions.login(ws, name, PASSWORD)
    finally:
        ws.close()


def test_rich_never_eats_text(cli_ws) -> None:  # type: ignore[no-untyped-def]
    home, env, _, tmp = cli_ws
    req = tmp / "req"
    lines = (req / "items.csv").read_text().splitlines(keepends=True)
    cells = lines[5].split(",")
    cells[1] = "X" * 600
    lines[5] = ",".join(cells)
    (req / "items.csv").write_text("".join(lines))
    scan = tmp / "scan.pdf"  # staff key in only a request received on paper
    scan.write_bytes(b"%PDF-1.4 the agency's letter")
    r = runner.invoke(app, ["submit", str(req), "--paper", str(scan), *home], env=env)
    assert r.exit_code == 2 and "items.csv:6 [first_name]" in r.output
    r = runner.invoke(app, ["match", "link", "--help"])
    assert "requests/<id>/match/linked.parquet" in r.output


def test_ctrl_c_during_process_says_how_to_resume(cli_ws) -> None:  # type: ignore[no-untyped-def]
    home, env, rid, _ = cli_ws
    cmd = [sys.executable, "-m", "custodes", "process", rid, *home]
    full = os.environ | env | {"CUSTODES_MATCH_CHUNK_ITEMS": "5"}
    # Interrupt once the run is inside matching (it rewrites the standardized items first), not
    # at a fixed time: a loaded machine may still be starting Python, where Ctrl-C is Python's
    # own business, not custodes'.
    folder = Path(home[1]) / "requests" / rid
    std, outcomes = folder / "match" / "std.parquet", folder / "decisions" / "outcomes.parquet"
    before = std.stat().st_mtime_ns if std.exists() else 0
    decided = outcomes.stat().st_mtime_ns if outcomes.exists() else 0
    proc = subprocess.Popen(
        cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if std.exists() and std.stat().st_mtime_ns != before:
            break
        time.sleep(0.02)
    time.sleep(float(os.environ.get("CTRL_C_AT", "0.3")))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    finished = outcomes.exists() and outcomes.stat().st_mtime_ns != decided
    if proc.returncode == 0 or (proc.returncode == -signal.SIGINT and finished):
        # done before the interrupt arrived (or it arrived while Python was shutting down)
        pytest.skip("the process finished before the interrupt arrived")
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Exception" not in err
    done = subprocess.run(cmd, env=full, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
