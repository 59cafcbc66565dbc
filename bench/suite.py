"""The suite's own time (never a timed test): `make test`'s pytest run (two workers, whole files
to each) over every test, and over the tests that already existed at an earlier commit — issue
#28 sets its 6-minute target "for the tests that exist when this work starts" (its first
commit, 208ceeb, so the tests of its parent). Both in the same run, one after the other, with
the CPU time of everything each run started (JVMs, servers, browsers: read from a cpuacct
cgroup when this runs as root on cgroup v1, otherwise the children's rusage, which misses what
was never waited for).

A test of today counts as one of then when a test function of that name (without its
parameters) was collected then: tests moved to another module when a module was split still
count, and a test given new parameters counts with all of them. `--module` adds whole modules
whose tests were renamed (test_generator.py's six became fourteen).

    .venv/bin/python bench/suite.py [--since 208ceeb~1] [--only then|all] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CGROUP = Path("/sys/fs/cgroup/cpuacct")


def collect(checkout: Path) -> list[str]:
    """The node ids pytest collects in `checkout` (its own src first on the path)."""
    out = subprocess.run(
        [PY, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=", "-p", "no:cacheprovider"],
        cwd=checkout, env=os.environ | {"PYTHONPATH": str(checkout / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    ids = [line.strip() for line in out.stdout.splitlines() if "::" in line]
    if not ids:
        raise SystemExit(f"nothing collected in {checkout}:\n{out.stdout[-2000:]}{out.stderr}")
    return ids


def base(node: str) -> str:
    return node.split("::")[-1].split("[")[0]


def tests_then(rev: str, modules: list[str]) -> tuple[list[str], int]:
    """Today's tests that existed at `rev`, and how many tests `rev` had."""
    # beside this checkout, so that its tests find ../shared (the test vectors) as these do
    old = ROOT.parent / f".custodes-then-{os.getpid()}"
    git = ["git", "worktree"]
    subprocess.run([*git, "add", "-q", "--detach", str(old), rev], cwd=ROOT, check=True)
    try:
        then = collect(old)
    finally:
        subprocess.run([*git, "remove", "--force", str(old)], cwd=ROOT, check=True)
    names = {base(n) for n in then}
    now = collect(ROOT)
    kept = [n for n in now if base(n) in names or Path(n.split("::")[0]).name in modules]
    return kept, len(then)


def timed(label: str, args: list[str]) -> tuple[float, float | None, str]:
    """Wall and CPU seconds of one pytest run, and its last line."""
    cg = CGROUP / f"custodes-suite-{os.getpid()}-{label}"
    use_cg = CGROUP.is_dir() and os.geteuid() == 0
    if use_cg:
        cg.mkdir()
        pre = f'echo $$ > {cg}/cgroup.procs && exec "$@"'
        cmd = ["bash", "-c", pre, "_", PY, "-m", "pytest", *args]
    else:
        cmd = [PY, "-m", "pytest", *args]
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    cpu: float | None
    if use_cg:
        cpu = int((cg / "cpuacct.usage").read_text()) / 1e9
        cg.rmdir()
    else:  # this run's own children only (the usage accumulates over the runs)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = r.ru_utime + r.ru_stime - before.ru_utime - before.ru_stime
    last = next((x for x in reversed(out.stdout.splitlines()) if " in " in x), "")
    log = Path(tempfile.gettempdir()) / f"custodes-suite-{label}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:  # owner-only, as everything custodes writes
        fh.write(out.stdout + out.stderr)
    return wall, cpu, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--since", default="208ceeb~1", help="the commit whose tests count (#28's start)"
    )
    ap.add_argument("--module", action="append", default=["test_generator.py"],
                    help="a module whose tests all count (renamed since; repeatable)")  # fmt: skip
    ap.add_argument("--only", choices=["then", "all"], help="run only this one of the two")
    ap.add_argument("--workers", default="2")
    args = ap.parse_args()
    common = ["-n", args.workers, "--dist", "loadfile", "--durations=20"]
    runs: list[tuple[str, list[str]]] = []
    if args.only != "then":
        runs.append(("all", common))
    if args.only != "all":
        kept, had = tests_then(args.since, args.module)
        ids = Path(tempfile.mkdtemp(prefix="custodes-suite-")) / "then.txt"
        ids.write_text("\n".join(kept) + "\n")
        print(f"{args.since}: {had} tests then; {len(kept)} of today's count as theirs", flush=True)
        runs.append(("then", [*common, f"@{ids}"]))
    for label, pytest_args in runs:
        wall, cpu, last = timed(label, pytest_args)
        cpu_s = f"{cpu:.0f} s CPU" if cpu is not None else "CPU not known"
        clock = f"{int(wall // 60)} min {wall % 60:.0f} s"
        print(f"{label:>5}: {wall:.1f} s ({clock}), {cpu_s}  — {last}", flush=True)


if __name__ == "__main__":
    main()
