"""Benchmark: linking a generated request to a synthetic master file, with ground truth.

Baseline in the same run: raw Splink prediction (the same trained model, the same blocking,
the same standardized inputs, pairs kept at p >= 0.01) — what any Splink user pays. custodes'
linkage adds ranking, the person gate, the household/suffix/twin/TIN flags and the
address-on-record check; the ratio says what those cost. Accuracy is measured against the
generator's truth: wrong-person identifications by kind, and recall of in-file people.

    .venv/bin/python bench/matching.py [--people 1000000] [--items 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, help="keep the workspace here")
    args = ap.parse_args()

    from splink import Linker

    from custodes.matching import evaluate as ev
    from custodes.matching import link as lk
    from custodes.matching import model as mdl
    from custodes.records import master
    from custodes.services import matching, records, requests
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-"))
    home = args.keep or tmp / "ws"
    try:
        init(home)
        ws = open_workspace(home)
        people = staff.administrators(ws)
        staff.add(people, "bench-officer", ["officer"])
        admin, officer = people.admin, people["bench-officer"]
        t = time.perf_counter()
        if not master.current(ws).exists:
            records.generate(ws, admin, args.people, 1)
        t_gen = time.perf_counter() - t
        req = tmp / "req"
        requests.generate(ws, admin, "irc-6103-i-2", args.items, 2, req)
        rid = requests.submit(ws, officer, req).request_id

        t = time.perf_counter()
        trained = matching.train(ws, officer, rid)
        t_train = time.perf_counter() - t

        t = time.perf_counter()
        res = matching.link(ws, officer, rid)
        t_link = time.perf_counter() - t

        # Baseline: raw Splink predict on the same standardized tables with the same model.
        model = mdl.load(ws)
        mf = master.current(ws)
        cache = ws.bulk / "match" / model.master_sha256[:16]
        m_path, r_path = cache / "master.parquet", res.path.parent / "std.parquet"
        be = lk.DuckDBBackend()
        t = time.perf_counter()
        linker = Linker(
            [be.register(m_path, mdl.MASTER), be.register(r_path, mdl.REQUEST)], model.splink
        )
        pred = linker.inference.predict(threshold_match_probability=0.01)
        n_raw = be.con.sql(f"SELECT count(*) FROM {pred.physical_name}").fetchall()[0][0]
        t_raw = time.perf_counter() - t
        be.close()
        assert mf.exists

        report = ev.evaluate(res.path, req / "truth.csv")
        at = report["at_thresholds"]
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"master people / request items           {args.people:>12,} / {args.items:,}")
    print(f"generate master file                    {t_gen:>10.2f} s")
    print(
        f"train (prior, u sampling, m by EM)      {t_train:>10.2f} s   "
        f"(model {trained['model_sha256'][:12]})"
    )
    print(f"raw Splink predict (baseline)           {t_raw:>10.2f} s   ({n_raw:,} pairs)")
    print(f"custodes link (standardize..address)    {t_link:>10.2f} s   ({res.pairs:,} pairs)")
    print(f"ratio link / raw Splink                 {t_link / t_raw:>10.2f} x")
    print(
        f"identified / review / not identified    {res.identified:,} / {res.review:,} / "
        f"{res.not_identified:,}"
    )
    print(
        f"wrong person: in file / absent relative / absent stranger   "
        f"{at['wrong_in_file']} / {at['wrong_absent_relative']} / {at['wrong_absent_stranger']}"
    )
    print(f"precision                               {at['precision']}")
    print(f"recall of in-file people                {100 * at['recall']:.2f} %")
    print(f"review rate                             {100 * at['review_rate']:.2f} %")
    print(f"95% upper bound on wrong-person rate    {at['wrong_rate_upper_95']}")
    print(f"peak RSS                                {peak:>10.2f} GB")
    for g in report["grid"]:
        if g["min_margin_bits"] == 3.0 and g["min_probability"] in (0.9, 0.99, 0.999):
            gate = "gate" if g["gate"] else "no gate"
            print(
                f"  p>={g['min_probability']:<6} margin 3 {gate:<8} "
                f"identified {g['identified']:>8,}"
                f"  wrong {g['wrong']:>5,}  recall {100 * (g['recall'] or 0):.2f} %"
            )


if __name__ == "__main__":
    main()
