"""The command line: help, JSON output, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custodes.cli import app
from custodes.cli.commands import load_all

runner = CliRunner()


def _all_commands() -> list[list[str]]:
    """Every command and group of the CLI, walked from the app itself."""
    import typer.main

    out: list[list[str]] = []

    def walk(cmd, path: list[str]) -> None:  # type: ignore[no-untyped-def]
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    load_all()  # the root imports a command's module only when asked for that command
    walk(typer.main.get_command(app), [])
    return out


COMMANDS = _all_commands()


@pytest.fixture(scope="module")
def built_once() -> Iterator[None]:
    """The app's Click command built once for the help tests below (the runner otherwise
    builds the whole tree from the Typer app at every call, half the cost of a help screen;
    the screens are the same)."""
    import typer.main
    import typer.testing

    load_all()
    built = typer.main.get_command(app)
    real = typer.testing._get_command
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", lambda a: built if a is app else real(a))
        yield


@pytest.mark.usefixtures("built_once")
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_reads_well(cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def test_h_global_json_and_whole_first_sentences(tmp_path: Path) -> None:
    """#24: `-h` is help everywhere; `--json` before the command works like after it; a
    command's line in its group's list is its whole first sentence, not cut at "(26 U.S.C."."""
    import typer.main

    for cmd in ([], ["report"], ["report", "jct"]):
        r = runner.invoke(app, [*cmd, "-h"])
        assert r.exit_code == 0 and "Usage" in r.output, r.output
    home = str(tmp_path / "none")
    r = runner.invoke(app, ["--json", "status", "--home", home])
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "no_workspace"
    r = runner.invoke(app, ["status", "--home", home])  # and only for that command
    assert r.exit_code == 2 and "error (no_workspace)" in r.output

    def lines(cmd, path):  # type: ignore[no-untyped-def]
        for name, sub in getattr(cmd, "commands", {}).items():
            yield [*path, name], sub.get_short_help_str(limit=150)
            yield from lines(sub, [*path, name])

    for path, text in lines(typer.main.get_command(app), []):
        assert text.count("(") == text.count(")") or text.endswith("…"), (path, text)
        assert not text.endswith(("U.S.C.", "e.g.", "i.e.")), (path, text)
    r = runner.invoke(app, ["report", "-h"])
    assert "Joint Committee on Taxation (26 U.S.C. 6103(p)(3)(C))" in " ".join(r.output.split())


def test_login_json_prints_a_session_without_replacing_the_stored_one(
    tmp_path: Path, sign_in
) -> None:  # type: ignore[no-untyped-def]
    from conftest import PASSWORD
    from custodes.cli import session

    home = tmp_path / "w"
    runner.invoke(app, ["init", "--home", str(home)])
    sign_in(str(home))
    login = ["login", "auditor", "--password-stdin", "--home", str(home)]
    r = runner.invoke(app, login, input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    stored = session.token(home)
    assert stored
    r = runner.invoke(app, [*login, "--json"], input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)["session"]
    assert printed != stored and session.token(home) == stored


def test_every_command_is_covered() -> None:
    assert len(COMMANDS) > 30 and ["ledger", "verify"] in COMMANDS


def test_workflow_with_json(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "w")
    r = runner.invoke(app, ["init", "--home", home, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["created"] is True
    env = sign_in(home)["administrator"]
    r = runner.invoke(
        app,
        ["records", "generate", "--people", "300", "--seed", "2", "--home", home, "--json"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["people"] == 300
    r = runner.invoke(
        app,
        [
            "requests",
            "generate",
            "--provision",
            "irc-6103-i-2",
            "--items",
            "50",
            "--out",
            str(tmp_path / "req"),
            "--home",
            home,
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["items"] == 50
    r = runner.invoke(app, ["status", "--home", home], env=env)
    assert r.exit_code == 0 and "Master file" in r.stdout


def test_errors_are_one_line_with_code(tmp_path: Path) -> None:
    home = str(tmp_path / "none")
    r = runner.invoke(app, ["status", "--home", home])
    assert r.exit_code == 2
    assert "no_workspace" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["status", "--home", home, "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout)["error"]["code"] == "no_workspace"


def test_validation_errors_in_json(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "w")
    runner.invoke(app, ["init", "--home", home])
    env = sign_in(home)["administrator"]
    (tmp_path / "p.csv").write_text(
        "tin,tin_type,first_name,middle_name,last_name,suffix,dob\n12345678,SSN,A,,B,,1980-01-01\n"
    )
    (tmp_path / "a.csv").write_text("tin,tax_year,street,unit,city,state,zip\n")
    r = runner.invoke(
        app,
        [
            "records",
            "import",
            str(tmp_path / "p.csv"),
            str(tmp_path / "a.csv"),
            "--home",
            home,
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 2
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "validation_failed"
    assert error["problems"][0] == {
        "file": "p.csv",
        "line": 2,
        "column": "tin",
        "message": "TIN must be 9 digits, optionally written NNN-NN-NNNN",
    }


def test_console_script_runs(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "custodes", "--version"], capture_output=True, text=True, check=True
    )
    assert r.stdout.startswith("custodes ")


def test_ledger_commands_and_refusals(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    home = ["--home", str(tmp_path / "w")]
    r = runner.invoke(app, ["init", "--origin", "custodes.test/cli", *home, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["ledger_key_created"]  # init makes the key
    env = sign_in(tmp_path / "w")["administrator"]
    vkey = runner.invoke(app, ["ledger", "key", *home], env=env).stdout.strip()
    assert vkey.startswith("custodes.test/cli+")
    r = runner.invoke(app, ["ledger", "keygen", *home], env=env)
    assert r.exit_code == 2 and "key_exists" in r.output
    r = runner.invoke(app, ["agencies", "add", "Agency A", "--safeguards-current", *home], env=env)
    assert r.exit_code == 0
    r = runner.invoke(app, ["ledger", "checkpoint", *home, "--json"], env=env)
    size = json.loads(r.stdout)["size"]
    assert r.exit_code == 0 and size > 7  # users, grants, the agency, every access
    out = tmp_path / "exp"
    assert runner.invoke(app, ["ledger", "export", str(out), *home], env=env).exit_code == 0
    r = runner.invoke(app, ["ledger", "verify", str(out)])
    assert r.exit_code == 2 and "missing_key" in r.output
    r = runner.invoke(app, ["ledger", "verify", str(out), "--key", vkey])
    assert r.exit_code == 0 and "Verified" in r.stdout
    r = runner.invoke(app, ["ledger", "verify", str(out), "--key", "not-a-key"])
    assert r.exit_code == 2 and "bad_key" in r.output
    cp = (out / "checkpoint").read_text()
    size = int(cp.splitlines()[1])
    (out / "checkpoint").write_text(cp.replace(f"\n{size}\n", f"\n{size + 1}\n"))
    r = runner.invoke(app, ["ledger", "verify", str(out), "--key", vkey])
    assert r.exit_code == 1 and "FAIL" in r.stdout
    r = runner.invoke(app, ["ledger", "prove", "0", "--out", str(tmp_path / "r"), *home], env=env)
    assert r.exit_code == 0
    r = runner.invoke(app, ["ledger", "verify", str(tmp_path / "r"), "--key", vkey])
    assert r.exit_code == 0
    r = runner.invoke(app, ["ledger", "prove", "50000", *home], env=env)
    assert r.exit_code == 2 and "bad_index" in r.output
    assert runner.invoke(app, ["ledger", "verify", *home], env=env).exit_code == 0
    assert runner.invoke(app, ["ledger", "status", *home, "--json"], env=env).exit_code == 0


def test_registry_and_witness_refusals(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    home = ["--home", str(tmp_path / "w")]
    runner.invoke(app, ["init", *home])
    env = sign_in(tmp_path / "w")["administrator"]
    runner.invoke(app, ["agencies", "add", "Agency A", *home], env=env)
    r = runner.invoke(
        app,
        [
            "officials",
            "add",
            "--agency",
            "Agency A",
            "--name",
            "N",
            "--title",
            "T",
            "--role",
            "head_of_agency",
            "--from",
            "01/02/2025",
            *home,
        ],
        env=env,
    )
    assert r.exit_code == 2 and "bad_date" in r.output
    r = runner.invoke(app, ["agencies", "add", " ", *home], env=env)
    assert r.exit_code == 2 and "bad_argument" in r.output
    r = runner.invoke(app, ["witness", "keygen", "bad name", "--out", str(tmp_path / "k")])
    assert r.exit_code == 2 and "bad_argument" in r.output and not (tmp_path / "k").exists()
    wkey = runner.invoke(app, ["witness", "keygen", "w.test", "--out", str(tmp_path / "w.key")])
    r = runner.invoke(
        app,
        [
            "ledger",
            "cosign",
            "--witness",
            "http://127.0.0.1:9",
            "--witness-key",
            wkey.stdout.strip(),
            *home,
        ],
        env=env,
    )
    assert r.exit_code == 2 and "witness_unreachable" in r.output


def test_every_command_only_translates() -> None:
    """A command parses, calls one service and renders: no body longer than about 25 lines,
    and no face module touches a room directly (tests/test_architecture.py pins that)."""
    import ast
    import inspect
    import textwrap

    import typer.main

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd.callback

    long = {}
    for name, callback in walk(typer.main.get_command(app), []):
        fn = ast.parse(textwrap.dedent(inspect.getsource(callback))).body[0]
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # type: ignore[attr-defined]
        lines = body[-1].end_lineno - body[0].lineno + 1
        if lines > 25:
            long[name] = lines
    assert not long, long


def test_readme_commands_exist() -> None:
    """Every `custodes …` line of the README's usage names a real command and real options."""
    import re
    import shlex

    import typer.main

    root = typer.main.get_command(app)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    usage = readme[readme.index("## Usage") :]
    lines = [
        ln.split("#")[0].strip()
        for ln in usage.split("```")[1].splitlines()
        if ln.strip().startswith("custodes ")
    ]
    assert len(lines) > 40
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part.replace("\\", "").replace("…", "x"))[1:]
            cmd, i = root, 0
            while i < len(words) and hasattr(cmd, "commands") and words[i] in cmd.commands:
                cmd, i = cmd.commands[words[i]], i + 1
            assert not hasattr(cmd, "commands"), part
            known = {o for p in cmd.params for o in getattr(p, "opts", [])}
            for w in words[i:]:
                if re.fullmatch(r"--[a-z-]+", w):
                    assert w in known, (part, w)


def test_readme_second_factor_policy_runs_as_written(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    """Issue #22, item 8: the README's own 'users policy --totp-roles approver,administrator'
    failed with separation_of_duties (a policy names roles; it does not hold them). Runs the
    README's line exactly, then a second administrator confirms it."""
    import shlex

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "users policy --totp-roles" in ln)
    words = shlex.split(line.split("#")[0])
    assert words[:3] == ["custodes", "users", "policy"] and "administrator" in words[-1]
    home = str(tmp_path / "w")
    assert runner.invoke(app, ["init", "--home", home]).exit_code == 0
    env = sign_in(home)
    r = runner.invoke(app, [*words[1:], "--home", home, "--json"], env=env["administrator"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["pending"] == "administrator,approver"
    r = runner.invoke(
        app,
        ["users", "policy", "--confirm", "--home", home, "--json"],
        env=env["second_administrator"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["value"] == "administrator,approver"


def test_changes_list_and_confirm_by_id(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    """Issue #22, items 4-5: the queue on the command line. A reset by one administrator is
    listed with its id; the proposer cannot confirm it; a second administrator confirms that
    id and receives the second half of the code; the user enrols with both halves."""
    home = str(tmp_path / "w")
    assert runner.invoke(app, ["init", "--home", home]).exit_code == 0
    env = sign_in(home)
    h = ["--home", home]
    reset = json.loads(
        runner.invoke(
            app, ["users", "totp", "auditor", *h, "--json"], env=env["administrator"]
        ).stdout
    )
    listed = runner.invoke(app, ["changes", "list", *h, "--json"], env=env["second_administrator"])
    assert listed.exit_code == 0, listed.output
    (change,) = [c for c in json.loads(listed.stdout) if c["subject"] == "auditor"]
    assert change["id"] == reset["change"] and change["kind"] == "reset"
    shown = runner.invoke(app, ["changes", "list", *h], env=env["second_administrator"])
    assert "credential reset for auditor" in shown.stdout
    r = runner.invoke(app, ["changes", "confirm", change["id"], *h], env=env["administrator"])
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    r = runner.invoke(app, ["changes", "confirm", "f" * 64, *h], env=env["second_administrator"])
    assert r.exit_code == 2 and "unknown_change" in r.output
    r = runner.invoke(
        app, ["changes", "confirm", change["id"], *h], env=env["second_administrator"]
    )
    assert r.exit_code == 0 and "Second half of auditor's one-time enrolment code" in r.stdout
    second = r.stdout.strip().splitlines()[-1]
    assert second.startswith("ce2_")
    r = runner.invoke(
        app,
        ["enrol", "auditor", "--stdin", *h],
        input=f"{reset['enrolment_code']} {second}\nthe auditor's new password\n",
    )
    assert r.exit_code == 0, r.output


def test_tables_keep_ids_whole_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """#24: in an 80-column terminal the request ids are whole; the wordy columns wrap."""
    import io

    from rich.console import Console

    from custodes.cli import render

    screen = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=screen, width=80, highlight=False))
    rows = [
        {
            "id": f"req-{i:012x}",
            "state": "in_review",
            "agency": "U.S. Immigration and Customs Enforcement",
            "provision": "irc-6103-i-2",
            "items": 1000,
            "submitted_at": "2026-12-06T09:31:12+00:00",
            "next": "resolve the items in review (an officer), then prepare the release",
        }
        for i in range(3)
    ]
    render.rows("Requests", rows, [(k.replace("_", " "), k) for k in rows[0]])
    shown = screen.getvalue()
    assert all(r["id"] in shown for r in rows), shown
    assert max(len(line) for line in shown.splitlines()) <= 80
