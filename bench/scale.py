"""Benchmark: the cost model. Time and peak memory (RSS of the whole process tree) of each stage
of the main job, for master files and requests of several sizes, and how each stage grows.

For every master size (`--people`) and request size (`--items`): submit → train → process (its
stages: rules, matching, rules after matching, decisions) → review (withhold all) → prepare →
approve → release, each stage in its own child process, sampled every 0.1 s with psutil over the
child and everything it starts (DuckDB threads, a Spark JVM). The process's stages get the peak
of their own time window. Generation (the master file, the request) is excluded from the
figures and cached in `--cache` (one workspace per master size), so later runs reuse it.

Baseline in the same run: `baseline` is the time and peak of one DuckDB pass over the master
file (standardize-sized: every column read and hashed once) — the floor any stage that touches
the whole master file pays; ratios are printed against it.

The fit: for each stage, least squares of log(time) (and log(peak)) on log(people) and
log(items), over every row of the engine in `--cache/results.jsonl` (rows accumulate across
runs); the exponents say how the stage grows with master size and item count.

    nice -n 10 .venv/bin/python bench/scale.py --people 1000000,5000000 --items 100000 \\
        --cache /tmp/custodes-scale [--engine duckdb|spark] [--mixes none,typical] [--evaluate]
    .venv/bin/python bench/scale.py --cache /tmp/custodes-scale --fit-only

`--engine` is passed to `match train` and `process` as `engine=` when they take it (the Spark
engine); with the default `duckdb` nothing is passed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# A stage is one call that can outlast the inactivity timeout (the 25M master file's generation
# and import took 25 min in one call): the bench's sessions must not idle out meanwhile.
os.environ.setdefault("CUSTODES_IDLE_MINUTES", "720")

STAGES = ("submit", "train", "process", "review", "prepare", "approve", "release")
JOB = ("train", "process", "prepare", "release")  # the whole job (plus the small ones)


# ----------------------------------------------------------------------------- child side


def _staff(home: Path):  # type: ignore[no-untyped-def]
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    ws = open_workspace(home)
    people = staff.Staff(ws, password=(home.parent / "password").read_text().strip())
    return ws, people


def _engine_kw(fn: Any, engine: str) -> dict[str, str]:
    if engine == "duckdb":
        return {}
    params = inspect.signature(inspect.unwrap(fn)).parameters
    if "engine" in params:
        return {"engine": engine}
    if "backend" in params:  # before the whole-job engine: Splink's backend only
        return {"backend": engine}
    return {}


def _spread_officials(folder: Path, n: int) -> None:
    """`n` officials instead of six, so the caseload check (at most 500 cases per official)
    leaves items to disclose (bench/pipeline.py does the same). The default gives each about
    400 items: 250 for 100k items, 3,200 for 1.28M. (Before 2026-12-06's quiet-machine runs it
    was 250 at every size, which sent 522,849 of 1.28M items to review.)"""
    import duckdb

    env = json.loads((folder / "envelope.json").read_text())
    env["officials"] = [
        {"id": f"OFF-{i:03d}", "name": f"Synthetic Agent {i}", "title": "Special Agent"}
        for i in range(1, n + 1)
    ]
    (folder / "envelope.json").write_text(json.dumps(env, indent=2))
    items, tmp = folder / "items.csv", folder / "items.tmp.csv"
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * REPLACE (printf('OFF-%03d', 1 + hash(item_id) % {n}) AS official_id)
            FROM read_csv('{items}', all_varchar=true)) TO '{tmp}' (HEADER)"""
    )
    con.close()
    tmp.replace(items)


def _setup(home: Path, people: int) -> None:
    """The workspace (created, or upgraded from a previous run's), its administrators (their
    password kept beside it) and what `pipeline.populate` adds (idempotent: after a failed
    setup too)."""
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace
    from pipeline import populate

    init(home)  # creates the workspace, or upgrades the one a previous run made
    ws = open_workspace(home)
    pw = home.parent / "password"
    if not pw.exists():
        pw.write_text(staff.random_password() + "\n")
        pw.chmod(0o600)
    populate(ws, staff.administrators(ws, pw.read_text().strip()), people)


def _evaluated(report: dict[str, Any]) -> dict[str, Any]:
    """What the parent records of the matching evaluation against the ground truth."""
    at, e = report["at_thresholds"], report.get("evidence") or {}
    return {
        "wrong": at["wrong"],
        "identified": at.get("identified"),  # of which `wrong` (the rule-of-3 bound's base)
        "wrong_kinds": [
            at["wrong_in_file"],
            at["wrong_absent_relative"],
            at["wrong_absent_stranger"],
        ],
        "recall": at["recall"],
        "review_rate": at["review_rate"],
        "wrong_rate_upper_95": at["wrong_rate_upper_95"],
        "ceiling": e.get("ceiling_recall"),
        "recall_within_ceiling": e.get("recall_within_ceiling"),
    }


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One step, run in its own process; returns what the parent records."""
    home = Path(args.home)
    step = args.step
    if step == "setup":
        _setup(home, args.people)
        return {}
    ws, people = _staff(home)
    if step == "request":
        from custodes.services import requests

        out = Path(args.req)
        requests.generate(
            ws, people.login("admin"), "irc-6103-i-2", args.items, 2, out, corruption=args.mix
        )
        _spread_officials(out, args.officials or max(250, -(-args.items // 400)))
        return {}
    from custodes.services import decisions, matching, requests

    officer = people.login("bench-officer")
    if step == "submit":
        # staff key in a request received on paper (its scan's hash); a second confirms it
        scan = hashlib.sha256(f"scan of {args.req}".encode()).hexdigest()
        sub = requests.submit(ws, people.login("bench-clerk"), Path(args.req), paper_sha256=scan)
        if not sub.duplicate:
            requests.confirm_paper(ws, officer, sub.request_id)
        return {"rid": sub.request_id}
    rid = args.rid
    if step == "train":
        matching.train(ws, officer, rid, **_engine_kw(matching.train, args.engine))
        return {}
    if step == "process":
        t0 = time.time()
        res = decisions.process(ws, officer, rid, **_engine_kw(decisions.process, args.engine))
        return {"t0": t0, "stages": res.stages, "counts": res.counts}
    if step == "review":
        n = decisions.review_list(ws, officer, rid)
        if n:
            decisions.review_resolve(ws, officer, rid, "WITHHOLD", "bench")
        return {"reviewed": len(n)}
    if step == "prepare":
        decisions.prepare(ws, officer, rid)
        return {}
    if step == "approve":
        decisions.approve(ws, people.login("bench-approver"), rid)
        return {}
    if step == "release":
        done = decisions.release(ws, officer, rid, Path(args.req).parent / f"out-{rid}")
        return {"disclosed": done.disclosed, "withheld": done.withheld}
    if step == "evaluate":
        return _evaluated(matching.evaluate(ws, officer, Path(args.req) / "truth.csv", rid))
    if step == "baseline":
        from custodes.records import master

        con = master.connect()
        t = time.perf_counter()
        people = master.current(ws).path("people")
        con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM read_parquet('{people}')")
        master.close(con)
        return {"seconds": time.perf_counter() - t}
    raise SystemExit(f"unknown step {step}")


# ---------------------------------------------------------------------------- parent side


class Sampler:
    """Peak RSS of a process and all its descendants, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.samples.append((time.time(), total))
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, lo: float = 0.0, hi: float = math.inf) -> int:
        return max((r for t, r in self.samples if lo <= t <= hi), default=0)


def run_child(
    args: argparse.Namespace, step: str, **kw: Any
) -> tuple[dict[str, Any], float, Sampler]:
    cmd = [sys.executable, __file__, "--child", step, "--home", str(args.home)]
    cmd += ["--engine", args.engine]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ)
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    s = Sampler(p.pid)
    out, _ = p.communicate()
    s.stop()
    secs = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"step {step} failed (exit {p.returncode})")
    return json.loads(out.strip().splitlines()[-1]), secs, s


def fit(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """log(value) = a + b·log(people) + c·log(items), least squares over the rows."""
    import numpy as np

    pts = [(r["people"], r["items"], r[key]) for r in rows if r.get(key)]
    if len(pts) < 2:
        return {}
    P = np.log([p for p, _, _ in pts])
    Ii = np.log([i for _, i, _ in pts])
    y = np.log([v for _, _, v in pts])
    cols, names = [np.ones(len(pts))], ["a"]
    if len(set(P)) > 1:
        cols.append(P)
        names.append("people")
    if len(set(Ii)) > 1:
        cols.append(Ii)
        names.append("items")
    if len(cols) == 1 or len(pts) < len(cols):
        return {}  # as many unknowns as points or more: no fit (lstsq would invent one)
    X = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    return dict(zip(names, map(float, coef), strict=True)) | {
        "n": len(pts),
        "rms_log": float(np.sqrt(np.mean(resid**2))),
    }


def predict(f: dict[str, Any], people: float, items: float) -> float | None:
    if not f:
        return None
    return math.exp(
        f["a"] + f.get("people", 0) * math.log(people) + f.get("items", 0) * math.log(items)
    )


def _label(r: dict[str, Any]) -> str:
    return f"{r['people'] / 1e6:g}M×{r['items'] / 1e3:g}k {r['mix']}"


# Rows of earlier runs kept with the code (the cache of a run does not outlive its machine).
KEPT = Path(__file__).resolve().parent / "results"


def report(results: list[Path], engine: str, extrapolate: list[tuple[int, int]]) -> None:
    rows = [
        json.loads(x)
        for f in results
        if f.exists()
        for x in f.read_text().splitlines()
        if x.strip()
    ]
    rows = [r for r in rows if r["engine"] == engine]
    if not rows:
        print("no results yet")
        return
    stages = list(dict.fromkeys(k for r in rows for k in r["stages"]))
    print(f"\nengine {engine}: seconds / peak RSS of the whole process tree (GB)\n")
    head = f"{'stage':<34}" + "".join(f"{_label(r):>24}" for r in rows)
    print(head)
    for st in stages:
        cells = []
        for r in rows:
            v = r["stages"].get(st)
            if not v:
                cells.append(f"{'':>24}")
                continue
            peak = f"{v['peak'] / 1e9:>6.2f} GB" if v.get("peak") else f"{'—':>9}"
            cells.append(f"{v['seconds']:>9.1f} s {peak}")
        print(f"{st:<34}" + "".join(f"{c:>24}" for c in cells))
    for label, key in (("whole job", "job_seconds"), ("whole-job peak (GB)", "job_peak")):
        cells = [
            f"{r[key]:>9.1f} s" if key == "job_seconds" else f"{r[key] / 1e9:>9.2f} GB"
            for r in rows
        ]
        print(f"{label:<34}" + "".join(f"{c:>24}" for c in cells))
    cells = [f"{r['job_seconds'] / r['baseline_seconds']:>9.1f}x" for r in rows]
    print(f"{'ratio whole job / baseline pass':<34}" + "".join(f"{c:>24}" for c in cells))
    for r in rows:
        if r.get("accuracy"):
            a = r["accuracy"]
            kinds = "/".join(map(str, a["wrong_kinds"]))
            pct = {k: 100 * (a[k] or 0) for k in ("recall", "review_rate", "ceiling")}
            within = 100 * (a["recall_within_ceiling"] or 0)
            print(
                f"accuracy {r['people']:,} × {r['items']:,} mix {r['mix']}: wrong {a['wrong']} "
                + (f"of {a['identified']:,} identified " if a.get("identified") else "")
                + f"({kinds}), recall {pct['recall']:.2f} %, review {pct['review_rate']:.2f} %, "
                f"ceiling {pct['ceiling']:.2f} % (recall within {within:.2f} %), "
                f"rule-of-3 bound {a['wrong_rate_upper_95']}"
                + (f" — {r['note']}" if r.get("note") else "")  # a kept row's context
            )
    print("\nfit: log(y) = a + b·log(people) + c·log(items) (mix none rows)")
    base = [r for r in rows if r["mix"] == "none"] or rows
    for st in [*stages, "job"]:
        per = [
            {
                "people": r["people"],
                "items": r["items"],
                "seconds": r["job_seconds"]
                if st == "job"
                else r["stages"].get(st, {}).get("seconds"),
                "peak": r["job_peak"] if st == "job" else r["stages"].get(st, {}).get("peak"),
            }
            for r in base
        ]
        ft, fp = fit(per, "seconds"), fit(per, "peak")
        if not ft:
            continue
        ex = "  ".join(
            f"{p / 1e6:g}M×{i / 1e6:g}M: {predict(ft, p, i) / 3600:.2f} h, "
            f"{predict(fp, p, i) / 1e9:.1f} GB"
            for p, i in extrapolate
            if fp
        )
        print(
            f"{st:<34} time ∝ people^{ft.get('people', 0):.2f} items^{ft.get('items', 0):.2f}"
            f" (rms {ft['rms_log']:.2f}); peak ∝ people^{fp.get('people', 0):.2f}"
            f" items^{fp.get('items', 0):.2f}   {ex}"
        )


def _fresh(req: Path) -> Path:
    """A copy of the cached request that intake does not take for the one already submitted
    (its reason names the run; the items are hard links)."""
    run = req.parent / f"{req.name}-run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    run.mkdir(mode=0o700)
    env = json.loads((req / "envelope.json").read_text())
    env["reason"] = f"{env.get('reason', '')} (benchmark run {run.name})"
    (run / "envelope.json").write_text(json.dumps(env, indent=2))
    for f in req.iterdir():
        if f.name != "envelope.json":
            os.link(f, run / f.name)
    return run


def one(args: argparse.Namespace, people: int, items: int, mix: str) -> dict[str, Any]:
    cache = Path(args.cache) / f"people-{people}"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    args.home = cache / "ws"
    t = time.perf_counter()
    run_child(args, "setup", people=people)
    officials = args.officials or max(250, -(-items // 400))
    req = cache / f"req-{items}-{mix}-off{officials}"
    if not (req / "truth.csv").exists():
        run_child(args, "request", req=req, items=items, mix=mix, officials=args.officials)
    print(f"{people:,} × {items:,} {mix}: generation {time.perf_counter() - t:.0f} s (excluded)")
    req = _fresh(req)
    _, base_s, bs = run_child(args, "baseline")
    row: dict[str, Any] = {
        "engine": args.engine,
        "people": people,
        "items": items,
        "mix": mix,
        "officials": officials,
        "memory_limit": os.environ.get("CUSTODES_MEMORY_LIMIT"),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "baseline_seconds": base_s,
        "baseline_peak": bs.peak(),
        "stages": {},
    }
    rid = ""
    for step in STAGES:
        kw: dict[str, Any] = {"req": req}
        if rid:
            kw["rid"] = rid
        out, secs, s = run_child(args, step, **kw)
        rid = out.get("rid", rid)
        row["stages"][step] = {"seconds": secs, "peak": s.peak()}
        print(f"  {step:<12} {secs:>8.1f} s  peak {s.peak() / 1e9:6.2f} GB  {out}", flush=True)
        if step == "process":
            lo = out["t0"]
            for name, d in out["stages"].items():
                row["stages"][f"  process: {name}"] = {"seconds": d, "peak": s.peak(lo, lo + d)}
                lo += d
    if args.evaluate:  # truth.csv: the generator's, hard-linked into the run's folder
        acc, _, _ = run_child(args, "evaluate", req=req, rid=rid)
        row["accuracy"] = acc
        print(f"  accuracy {acc}")
    main_stages = [v for k, v in row["stages"].items() if not k.startswith("  ")]
    row["job_seconds"] = sum(v["seconds"] for v in main_stages)
    row["job_peak"] = max(v["peak"] for v in main_stages)
    with open(Path(args.cache) / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def sizes(s: str) -> list[int]:
    return [int(float(x)) for x in s.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--people", type=sizes, default=[1_000_000])
    ap.add_argument("--items", type=sizes, default=[100_000])
    ap.add_argument("--mixes", type=lambda s: s.split(","), default=["none"])
    ap.add_argument("--engine", default="duckdb", help="duckdb (default) or spark")
    ap.add_argument(
        "--cache", default="/tmp/custodes-scale", help="master files, requests, results"
    )
    ap.add_argument("--evaluate", action="store_true", help="accuracy against the truth too")
    ap.add_argument("--setup-only", action="store_true", help="generate the master files only")
    ap.add_argument("--fit-only", action="store_true", help="print the table and fit only")
    ap.add_argument(
        "--extrapolate",
        type=lambda s: [tuple(sizes(x.replace("x", ","))) for x in s.split(";")],
        default=[(250_000_000, 7_300_000)],
        help="PEOPLExITEMS;… (default 250e6x7.3e6)",
    )
    ap.add_argument(
        "--no-kept",
        action="store_true",
        help="leave out the rows kept in bench/results/scale-*.jsonl (earlier runs) from the fit",
    )
    # child-process arguments
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--req", help=argparse.SUPPRESS)
    ap.add_argument("--rid", help=argparse.SUPPRESS)
    ap.add_argument("--mix", default="none", help=argparse.SUPPRESS)
    ap.add_argument(
        "--officials",
        type=int,
        default=0,
        help="officials the request names (default: one per 400 items, at least 250)",
    )
    args = ap.parse_args()
    if args.child:
        args.step = args.child
        if args.step == "setup":
            args.people = args.people[0]
        if args.step == "request":
            args.items = args.items[0]
        print(json.dumps(child(args), default=str))
        return
    Path(args.cache).mkdir(parents=True, exist_ok=True, mode=0o700)
    results = Path(args.cache) / "results.jsonl"
    if not args.fit_only:
        for people in args.people:
            if args.setup_only:
                args.home = Path(args.cache) / f"people-{people}" / "ws"
                args.home.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                t = time.perf_counter()
                run_child(args, "setup", people=people)
                print(f"{people:,}: master file ready ({time.perf_counter() - t:.0f} s)")
                continue
            for items in args.items:
                for mix in args.mixes:
                    one(args, people, items, mix)
    kept = [] if args.no_kept else sorted(KEPT.glob("scale-*.jsonl"))
    report([*kept, results], args.engine, args.extrapolate)


if __name__ == "__main__":
    main()
