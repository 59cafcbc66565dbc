"""Benchmark: reading one page of a large request's outcomes, and one item's explanation.

What the console and `GET /v1/requests/{id}/outcomes` do on every click. Baseline in the same
run: the previous way, reading the whole effective-outcomes table and filtering and slicing it
in Python (`effective.view`); against the page pushed into the query with its filters bound as
parameters (`effective.view_page`, `effective_outcomes(item=...)`).

    .venv/bin/python bench/outcomes.py [--people 200000] [--items 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _ms(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc

    from custodes.decisions import effective
    from custodes.services import decisions, matching, records, requests, rules
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    sys_path = Path(__file__).parent
    import sys

    sys.path.insert(0, str(sys_path))
    from pipeline import _spread_officials  # type: ignore[import-not-found]

    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-outcomes-"))
    try:
        init(tmp / "ws")
        ws = open_workspace(tmp / "ws")
        people = staff.one_per_role(ws)
        t = time.perf_counter()
        records.generate(ws, people.admin, args.people, 1)
        rules.register_parties(ws, people.admin, "irc-6103-i-2")
        requests.generate(ws, people.admin, "irc-6103-i-2", args.items, 2, tmp / "req")
        _spread_officials(tmp / "req", 250)
        rid = requests.submit(ws, people["requester"], tmp / "req").request_id
        matching.train(ws, people["officer"], rid)
        decisions.process(ws, people["officer"], rid)
        setup = time.perf_counter() - t
        item = effective.view(ws, rid)["item_id"][args.items // 2].as_py()

        def old_page(outcome: str | None = None, check: str | None = None) -> list:  # type: ignore[type-arg]
            table = effective.view(ws, rid)
            if outcome:
                table = table.filter(pc.equal(table["outcome"], outcome))
            if check:
                keep = [check in (c or []) for c in table["checks"].to_pylist()]
                table = table.filter(pa.array(keep))
            return table.slice(0, 50).to_pylist()  # type: ignore[no-any-return]

        def new_page(outcome: str | None = None, check: str | None = None) -> list:  # type: ignore[type-arg]
            table, _ = effective.view_page(
                ws, rid, outcome=outcome, check=check, offset=0, limit=50
            )
            return table.to_pylist()  # type: ignore[no-any-return]

        assert old_page() == new_page() and old_page("WITHHOLD") == new_page("WITHHOLD")
        cases = {
            "first page of 50": ({}, {}),
            "outcome=WITHHOLD": ({"outcome": "WITHHOLD"}, {"outcome": "WITHHOLD"}),
            "failing check": ({"check": "official-caseload"}, {"check": "official-caseload"}),
        }
        print(f"{args.items:,} items against {args.people:,} people (set-up {setup:.0f} s)")
        print(f"{'read':<22}{'whole table (ms)':>18}{'pushed down (ms)':>18}{'ratio':>8}")
        for name, (a, b) in cases.items():
            old = _ms(lambda a=a: old_page(**a), args.repeat)
            new = _ms(lambda b=b: new_page(**b), args.repeat)
            print(f"{name:<22}{old:>18.1f}{new:>18.1f}{old / new:>7.1f}x")
        old = _ms(
            lambda: [
                r for r in effective.effective_outcomes(ws, rid).to_pylist() if r["item_id"] == item
            ],
            args.repeat,
        )
        new = _ms(lambda: effective.effective_outcomes(ws, rid, item=item).to_pylist(), args.repeat)
        print(f"{'one item (explain)':<22}{old:>18.1f}{new:>18.1f}{old / new:>7.1f}x")
        ws.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
