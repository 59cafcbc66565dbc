"""What a test's `workspace` + `staff` cost (never a timed test): the way tests/conftest.py
made them before issue #28 item 7 (a new workspace, then two administrators and a user per
role through the door, each with a full-cost argon2id hash) against the way it makes them now
(a copy of a template made once per run). Both measured in the same run, alternating, so the
ratio holds on a loaded machine.

    PYTHONPATH=src .venv/bin/python bench/fixtures.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import PASSWORD, make_workspace
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import open_workspace


def made(root: Path) -> float:
    t = time.perf_counter()
    ws = make_workspace(root / "ws")
    staff_mod.one_per_role(ws, password=PASSWORD)
    took = time.perf_counter() - t
    ws.close()
    return took


def copied(template: Path, people: Staff, root: Path) -> float:
    t = time.perf_counter()
    shutil.copytree(template, root / "ws")
    ws = open_workspace(root / "ws")
    Staff(ws, dict(people.callers), people.password)
    took = time.perf_counter() - t
    ws.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for name in [n for n in os.environ if n.startswith("CUSTODES_")]:
        del os.environ[name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws = make_workspace(root / "template")
        people = staff_mod.one_per_role(ws, password=PASSWORD)
        ws.close()
        before, after = [], []
        for i in range(args.rounds):
            before.append(made(root / f"m{i}"))
            after.append(copied(root / "template", people, root / f"c{i}"))
    b, a = statistics.median(before), statistics.median(after)
    print(f"rounds: {args.rounds}; load average {os.getloadavg()[0]:.1f}")
    for what, runs, m in (("made (before)", before, b), ("copied (after)", after, a)):
        print(f"{what:15} median {m:.2f} s  (min {min(runs):.2f}, max {max(runs):.2f})")
    print(f"ratio before/after: {b / a:.0f}x")


if __name__ == "__main__":
    main()
