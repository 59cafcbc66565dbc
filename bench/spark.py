"""Benchmark: `process --engine spark` on a standalone cluster against DuckDB, same run.

A master file of `--people` and a request of `--items` are generated, the model is trained once
(DuckDB), and the workspace is copied: one copy is processed on DuckDB (the baseline), the
other with `--engine spark` on a standalone cluster started here (a master and `--workers`
workers of 1 core and `--worker-memory` each, pyspark's own launcher, 127.0.0.1). Reports each
engine's seconds and peak memory per stage (RSS of every process of this one's tree: on Spark
the driver's JVM and the cluster's master, workers and executors), the ratio, and whether the
outcomes agree item by item (decision, record, checks, reasons, flags).

    nice -n 10 .venv/bin/python bench/spark.py [--people 1000000] [--items 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

COMPARED = ("outcome", "record_id", "checks", "review_reasons", "failed", "candidate", "flags")


def _differences(a: Path, b: Path) -> int:
    import duckdb

    cond = " OR ".join(f"x.{c} IS DISTINCT FROM y.{c}" for c in COMPARED)
    return int(
        duckdb.sql(
            f"""SELECT count(*) FROM read_parquet('{a}') x FULL JOIN read_parquet('{b}') y
                USING (item_id) WHERE x.item_id IS NULL OR y.item_id IS NULL OR {cond}"""
        ).fetchall()[0][0]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="1g")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces (and print where)")
    args = ap.parse_args()

    from custodes.services import decisions, matching, records, requests
    from custodes.services.rules import register_parties
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace
    from scale import Sampler  # bench/scale.py's: peak RSS of a process tree
    from spark_cluster import start, stop

    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-spark-"))
    try:
        home = tmp / "base"
        init(home)
        ws = open_workspace(home)
        people = staff.administrators(ws)
        for name in ("bench-clerk", "bench-officer"):
            staff.add(people, name, ["officer"])
        t = time.perf_counter()
        records.generate(ws, people.admin, args.people, 1)
        register_parties(ws, people.admin, "irc-6103-i-2")
        requests.generate(ws, people.admin, "irc-6103-i-2", args.items, 7, tmp / "req")
        # staff key in a request received on paper (its scan's hash); a second confirms it
        scan = hashlib.sha256(b"scan of the benchmark's request").hexdigest()
        rid = requests.submit(ws, people["bench-clerk"], tmp / "req", paper_sha256=scan).request_id
        requests.confirm_paper(ws, people["bench-officer"], rid)
        matching.train(ws, people["bench-officer"], rid)
        ws.close()
        print(f"generated and trained in {time.perf_counter() - t:.0f} s", flush=True)
        results = {}
        peaks: dict[str, dict[str, int]] = {}
        for engine in ("duckdb", "spark"):
            copy = tmp / engine
            shutil.copytree(home, copy)
            cluster = None
            if engine == "spark":
                (tmp / "cluster").mkdir(mode=0o700)
                cluster = start(tmp / "cluster", args.workers, args.worker_memory)
                os.environ["CUSTODES_SPARK_MASTER"] = cluster.url
                os.environ["CUSTODES_SPARK_DRIVER_HOST"] = cluster.driver_host
            try:
                w = open_workspace(copy)
                # every process of this one's tree: the driver's JVM, and on Spark the
                # cluster's master, workers and executors (started from here)
                sampler = Sampler(os.getpid())
                t0, t = time.time(), time.perf_counter()
                res = decisions.process(w, people["bench-officer"], rid, engine=engine)
                results[engine] = (time.perf_counter() - t, res)
                sampler.stop()
                peaks[engine] = {"process (total)": sampler.peak()}
                for stage, secs in res.stages.items():
                    peaks[engine][stage] = sampler.peak(t0, t0 + secs)
                    t0 += secs
                w.close()
            finally:
                if cluster is not None:
                    from pyspark.sql import SparkSession

                    s = SparkSession.getActiveSession()
                    if s is not None:
                        s.stop()
                    stop(cluster)
            print(f"{engine}: {results[engine][0]:.1f} s {res.counts}", flush=True)
        out = {e: tmp / e / "requests" / rid / "decisions" / "outcomes.parquet" for e in results}
        diff = _differences(out["duckdb"], out["spark"])
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    (td, rd), (ts, rs) = results["duckdb"], results["spark"]
    print(f"\nmaster people / request items   {args.people:,} / {args.items:,}")
    print(f"cluster                         {args.workers} workers × 1 core, {args.worker_memory}")
    head = ("duckdb s", "spark s", "ratio", "duckdb GB", "spark GB")
    print(f"{'stage':40} {head[0]:>9} {head[1]:>9} {head[2]:>6} {head[3]:>10} {head[4]:>9}")
    for k in [*rd.stages, "process (total)"]:
        a = td if k == "process (total)" else rd.stages[k]
        b = ts if k == "process (total)" else rs.stages.get(k, float("nan"))
        ga, gb = peaks["duckdb"].get(k, 0) / 1e9, peaks["spark"].get(k, 0) / 1e9
        print(f"{k:40} {a:9.1f} {b:9.1f} {b / a:6.2f} {ga:10.2f} {gb:9.2f}")
    print(f"outcomes (duckdb)               {rd.counts}")
    print(f"items whose outcome differs     {diff}")


if __name__ == "__main__":
    main()
