"""Benchmark: the whole main job on a large request, against raw Splink linkage in the same run.

custodes: submit → train → process (rules, matching, rules after matching, decisions) → review
(withhold all) → prepare → approve → release (response + one ledger leaf per disclosure).
Baseline: raw Splink linkage on the same standardized inputs — the same training sequence on a
fresh linker, then predict at p ≥ 0.01 — which is what linking alone costs any Splink user.

The generated request names six officials; the reference rule set's caseload check (at most
500 distinct cases per official) would send almost every item of a 100k request to review, so
this benchmark spreads the items over 250 officials to exercise disclosure and release.

    .venv/bin/python bench/pipeline.py [--people 1000000] [--items 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def _spread_officials(folder: Path, n: int) -> None:
    import duckdb

    env = json.loads((folder / "envelope.json").read_text())
    env["officials"] = [
        {"id": f"OFF-{i:03d}", "name": f"Synthetic Agent {i}", "title": "Special Agent"}
        for i in range(1, n + 1)
    ]
    (folder / "envelope.json").write_text(json.dumps(env, indent=2))
    items = folder / "items.csv"
    tmp = folder / "items.tmp.csv"
    duckdb.sql(
        f"""COPY (SELECT * REPLACE (printf('OFF-%03d', 1 + hash(item_id) % {n}) AS official_id)
            FROM read_csv('{items}', all_varchar=true)) TO '{tmp}' (HEADER)"""
    )
    tmp.replace(items)


def _options() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the workspace here")
    return ap.parse_args()


def populate(ws: Any, users: Any, people: int) -> None:
    """Beside the administrators in `users`: a clerk, an officer and an approver (the names
    the steps take), `people` people unless the master file exists, and the parties of
    §6103(i)(2) (idempotent). Also `scale.py`'s setup."""
    from custodes.records import master
    from custodes.services import records
    from custodes.services.rules import register_parties
    from custodes.synthetic import staff

    for name, role in (
        ("bench-clerk", "officer"),
        ("bench-officer", "officer"),
        ("bench-approver", "approver"),
    ):
        staff.add(users, name, [role])
    if not master.current(ws).exists:
        records.generate(ws, users.admin, people, 1)
    register_parties(ws, users.admin, "irc-6103-i-2")


def _workspace(home: Path, people: int) -> tuple[Any, Any]:
    """The workspace (a kept one reuses its master file) with its administrators and what
    `populate` adds."""
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    init(home)
    ws = open_workspace(home)
    users = staff.administrators(ws)
    populate(ws, users, people)
    return ws, users


def _timed(times: dict[str, float], name: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    result = fn(*a, **kw)
    times[name] = time.perf_counter() - t
    return result


def _custodes_job(
    ws: Any, users: Any, req: Path, out: Path, times: dict[str, float]
) -> tuple[str, Any, Any]:
    """The whole job on the request in `req`, each step timed into `times`: the request's id,
    what processing counted and what the release disclosed."""
    from custodes.services import decisions, matching, requests

    officer, approver = users["bench-officer"], users["bench-approver"]
    # staff key in a request received on paper (its scan's hash); a second confirms it
    scan = hashlib.sha256(f"scan of {req}".encode()).hexdigest()
    sub = _timed(
        times,
        "submit (shape checks, copy, hash)",
        requests.submit,
        ws,
        users["bench-clerk"],
        req,
        paper_sha256=scan,
    )
    rid = sub.request_id
    requests.confirm_paper(ws, officer, rid)
    _timed(times, "train the model", matching.train, ws, officer, rid)
    res = _timed(times, "process (total)", decisions.process, ws, officer, rid)
    for k, v in res.stages.items():
        times[f"  process: {k}"] = v
    if res.counts.get("REVIEW"):
        _timed(
            times,
            "review: withhold all",
            decisions.review_resolve,
            ws,
            officer,
            rid,
            "WITHHOLD",
            "bench",
        )
    _timed(times, "prepare", decisions.prepare, ws, officer, rid)
    _timed(times, "approve", decisions.approve, ws, approver, rid)
    done = _timed(times, "release (response + ledger)", decisions.release, ws, officer, rid, out)
    return rid, res, done


def _raw_splink(ws: Any, rid: str, items: int) -> tuple[float, float]:
    """Raw Splink linkage (train + predict) on the same standardized inputs: the seconds of
    each."""
    from splink import Linker

    from custodes.matching import backends as lk
    from custodes.matching import model as mdl

    model = mdl.load(ws)
    m_path = ws.bulk / "match" / model.master_sha256[:16] / "master.parquet"
    r_path = ws.home / "requests" / rid / "match" / "std.parquet"
    be = lk.DuckDBBackend()
    t = time.perf_counter()
    linker = Linker(
        [be.register(m_path, mdl.MASTER), be.register(r_path, mdl.REQUEST)],
        mdl.settings(),
        log_level=mdl.log_level(),
    )
    n_m = be.con.sql("SELECT count(*) FROM master_input").fetchall()[0][0]
    mdl.train_linker(linker, master_rows=n_m, request_rows=items)
    t_raw_train = time.perf_counter() - t
    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=0.01)
    be.con.sql(f"SELECT count(*) FROM {pred.physical_name}").fetchall()
    t_raw_predict = time.perf_counter() - t
    be.close()
    return t_raw_train, t_raw_predict


def main() -> None:
    args = _options()
    from custodes.services import requests

    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-"))
    home = args.keep or tmp / "ws"
    times: dict[str, float] = {}
    try:
        ws, users = _workspace(home, args.people)
        req = tmp / "req"
        requests.generate(ws, users.admin, "irc-6103-i-2", args.items, int(time.time()), req)
        _spread_officials(req, 250)
        rid, res, done = _custodes_job(ws, users, req, tmp / "out", times)
        # Baseline: raw Splink linkage (train + predict) on the same standardized inputs.
        t_raw_train, t_raw_predict = _raw_splink(ws, rid, args.items)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    raw = t_raw_train + t_raw_predict
    ours = sum(v for k, v in times.items() if not k.startswith("  "))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"master people / request items      {args.people:>12,} / {args.items:,}")
    print(f"outcomes                           {res.counts}")
    print(f"disclosed / withheld               {done.disclosed:,} / {done.withheld:,}")
    for k, v in times.items():
        print(f"{k:<45} {v:>8.2f} s")
    print(f"baseline: raw Splink train           {t_raw_train:>8.2f} s")
    print(f"baseline: raw Splink predict         {t_raw_predict:>8.2f} s")
    print(f"whole custodes job (submit..release)  {ours:>8.2f} s")
    print(f"ratio whole job / raw Splink linkage {ours / raw:>8.2f} x")
    proc = times["process (total)"]
    print(f"ratio process / raw Splink predict   {proc / t_raw_predict:>8.2f} x")
    print(f"peak RSS                             {peak:>8.2f} GB")


if __name__ == "__main__":
    main()
