"""Benchmark: how fast the command line starts (issue #27), against `python -c pass` in the
same run.

Each command runs as a whole process, `--runs` times after one warm-up, alternating with the
baseline so that a drift in the machine's speed hits both; the median of each and the median
of the pairwise ratios are printed. Commands: `custodes --help`, `custodes whoami` (signed in,
in a fresh workspace), and — for the figure before the lazy root — a process that imports
every command module, as `custodes --help` used to.

    .venv/bin/python bench/cli.py [--runs 11]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSWORD = "bench-password-0123456789"


def wall(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from custodes.cli import main; main()", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory() as tmp:
        home = str(Path(tmp) / "ws")
        env = {**os.environ, "CUSTODES_HOME": home}
        subprocess.run(
            cli("init", "--admin", "chief", "--password-stdin"),
            input=PASSWORD + "\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            cli("login", "chief", "--password-stdin"),
            input=PASSWORD + "\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        baseline = [sys.executable, "-c", "pass"]
        cases = {
            "custodes --help": cli("--help"),
            "custodes whoami": cli("whoami"),
            "every command module imported": [
                sys.executable,
                "-c",
                "from custodes.cli.commands import load_all; load_all()",
            ],
        }
        print(f"{'command':<32} {'median s':>9} {'python -c pass s':>17} {'ratio':>7}")
        for name, argv in cases.items():
            wall(argv, env)
            wall(baseline, env)
            pairs = [(wall(argv, env), wall(baseline, env)) for _ in range(runs)]
            a = statistics.median(p[0] for p in pairs)
            b = statistics.median(p[1] for p in pairs)
            r = statistics.median(p[0] / p[1] for p in pairs)
            print(f"{name:<32} {a:>9.3f} {b:>17.3f} {r:>7.1f}")


if __name__ == "__main__":
    main()
