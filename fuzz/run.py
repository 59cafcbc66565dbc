"""Run every fuzzing harness, one after the other, and print a table.

    nice -n 10 python fuzz/run.py --execs 100000 [--max-time 300] [--only envelope,witness]
        [--time-for envelope=240,checkpoint=240] [--json FILE]

Each harness runs in its own process (`fuzz/fuzz_one.py`, atheris/libFuzzer) until it has
made `--execs` executions or run `--max-time` seconds, whichever comes first; its corpus
starts from the harness's seeds and grows in `fuzz/corpus/NAME/` (not kept in git). The table:
harness, executions, execs/s, coverage (libFuzzer's `cov`, edges of custodes' code reached,
and `ft`, features), corpus units added, crashing executions and distinct crashers (saved
under `fuzz/crashers/NAME/`; move each, once fixed, to `tests/fuzz_regressions/NAME/`).
With `--json FILE` the rows are also written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# The largest input each harness mutates to (an export's tile is 8 KiB; Parquet seeds ~6 KiB).
MAX_LEN = {"ledger_export": 1 << 16, "items_parquet": 1 << 15, "ruleset": 1 << 15}
# libFuzzer dictionaries (fuzz/dicts/): tokens a mutation would rarely spell by chance.
DICTS = {
    "envelope": "json.dict",
    "api_json": "json.dict",
    "agreement": "yaml.dict",
    "ruleset": "yaml.dict",
    "checkpoint": "note.dict",
    "receipt": "note.dict",
    "witness": "note.dict",
    "ledger_export": "note.dict",
    "items_csv": "csv.dict",
}


def run_one(name: str, execs: int, max_time: int) -> dict[str, object]:
    corpus = HERE / "corpus" / name  # fuzz_one.py writes the harness's seeds into it
    cmd = [
        sys.executable,
        str(HERE / "fuzz_one.py"),
        name,
        f"-runs={execs}",
        f"-max_total_time={max_time}",
        f"-max_len={MAX_LEN.get(name, 4096)}",
        "-timeout=60",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        *([f"-dict={HERE / 'dicts' / DICTS[name]}"] if name in DICTS else []),
        f"-artifact_prefix={HERE / 'crashers' / name}/",
        str(corpus),
    ]
    (HERE / "crashers" / name).mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.monotonic() - started
    log = proc.stderr
    (HERE / "logs").mkdir(exist_ok=True)
    (HERE / "logs" / f"{name}.log").write_text(log[-200_000:])

    def stat(key: str) -> int:
        m = re.findall(rf"{key}:\s*(\d+)", log)
        return int(m[-1]) if m else 0

    status = re.findall(r"#\d+\s+\w+\s+cov: (\d+) ft: (\d+)", log)
    cov, ft = (int(status[-1][0]), int(status[-1][1])) if status else (0, 0)
    executed = stat("stat::number_of_executed_units")
    counts = HERE / "logs" / f"{name}.crashes"
    crashing, crashers = map(int, counts.read_text().split()) if counts.exists() else (0, 0)
    return {
        "harness": name,
        "executions": executed,
        "seconds": round(elapsed, 1),
        "execs_per_s": round(executed / elapsed, 1) if elapsed else 0,
        "cov": cov,
        "ft": ft,
        "new_units": stat("stat::new_units_added"),
        "crashing_execs": crashing,
        "crashers": crashers,
        "exit": proc.returncode,
    }


def main() -> None:
    from fuzz import harnesses

    names = [*harnesses.HARNESSES, "api_json"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--execs", type=int, default=10_000, help="executions per harness (cap)")
    ap.add_argument("--max-time", type=int, default=300, help="seconds per harness (cap)")
    ap.add_argument(
        "--time-for",
        default="",
        help="per-harness time caps overriding --max-time, e.g. envelope=240,checkpoint=240",
    )
    ap.add_argument("--only", default="", help="comma-separated harness names")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    chosen = [n for n in args.only.split(",") if n] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        ap.error(f"unknown harness(es): {', '.join(unknown)}; known: {', '.join(names)}")
    time_for = {k: int(v) for k, v in (p.split("=") for p in args.time_for.split(",") if p)}
    rows = []
    header = f"{'harness':<14} {'executions':>10} {'s':>6} {'exec/s':>8} {'cov':>6} {'ft':>6} "
    header += f"{'new':>5} {'crash-execs':>11} {'crashers':>8}"
    print(header, flush=True)
    for name in chosen:
        r = run_one(name, args.execs, time_for.get(name, args.max_time))
        rows.append(r)
        print(
            f"{r['harness']:<14} {r['executions']:>10} {r['seconds']:>6} {r['execs_per_s']:>8} "
            f"{r['cov']:>6} {r['ft']:>6} {r['new_units']:>5} {r['crashing_execs']:>11} "
            f"{r['crashers']:>8}",
            flush=True,
        )
    total = sum(int(r["executions"]) for r in rows)  # type: ignore[call-overload]
    crashers = sum(int(r["crashers"]) for r in rows)  # type: ignore[call-overload]
    print(f"{'total':<14} {total:>10}{'':>53}{crashers:>8}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
