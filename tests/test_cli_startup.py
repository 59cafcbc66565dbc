"""The command line starts at once: `custodes --help` imports no command's dependencies, and a
command imports only its own module (issue #27). Times are measured by bench/cli.py, never
asserted here; what is pinned is what gets imported."""

from __future__ import annotations

import json
import subprocess
import sys

import typer
from typer.testing import CliRunner

from custodes.cli.commands import load_all
from custodes.cli.root import COMMANDS, app

# What a command line that only prints help, or says who is signed in, has no use for.
HEAVY = ("sqlalchemy", "duckdb", "splink", "fpdf", "cryptography", "pyarrow", "argon2", "pyspark")
FOR_WHOAMI = ("duckdb", "splink", "fpdf", "pyarrow", "pyspark", "fastapi", "matplotlib")


def _modules_after(*argv: str, env: dict[str, str] | None = None) -> set[str]:
    code = (
        "import json, sys\n"
        "from custodes.cli import main\n"
        f"sys.argv = ['custodes', *{list(argv)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stdout.write('\\n' + json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.rsplit("\n", 1)[1])}


def test_help_imports_no_heavy_module() -> None:
    loaded = _modules_after("--help")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_whoami_imports_only_what_it_uses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    env = {**os.environ, "CUSTODES_HOME": str(tmp_path / "none")}
    loaded = _modules_after("whoami", env=env)
    assert not loaded & set(FOR_WHOAMI), sorted(loaded & set(FOR_WHOAMI))


def test_the_table_of_commands_is_what_the_modules_register() -> None:
    load_all()
    registered = typer.main.get_group(app).commands
    assert list(registered) != [] and set(registered) == set(COMMANDS)
    for name, (module, line) in COMMANDS.items():
        command = registered[name]
        assert command.callback is None or command.callback.__module__ == f"custodes.cli.{module}"
        assert line.endswith(".") and len(line) <= 56, name  # one line at 80 columns


def test_every_command_answers_help() -> None:
    runner = CliRunner()
    root = runner.invoke(app, ["--help"])
    assert root.exit_code == 0
    for name in COMMANDS:
        assert name in root.output
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_an_unknown_command_is_refused() -> None:
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
