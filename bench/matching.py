"""Benchmark: linking requests to a master file, with ground truth, at every corruption mix and
on FEBRL4 (data nobody here generated).

Synthetic part: one master file, then for each corruption mix (`requests generate --corruption`)
a request drawn from it, trained on and linked. Baseline in the same run: raw Splink prediction
(the same trained model, the same blocking, the same standardized inputs, pairs kept at
p >= 0.01) — what any Splink user pays. custodes' linkage adds ranking, the person gate, the
household/suffix/twin/TIN flags and the address-on-record check; the ratio says what those
cost. Accuracy against the generator's truth: wrong-person identifications by kind, recall of
in-file people, review rate, and the rule-of-three bound.

FEBRL4 part (`--febrl`): the 5,000 originals become the master file and the 5,000 corrupted
duplicates a request, run through the real command line in subprocesses (`records import`,
`submit`, `match train`, `process`, `match evaluate`) and scored against the true links; the
baseline is plain Splink's best candidate at p >= 0.99 on the same pairs (no gate, no margin).

Each run also prints the person evidence the list still carries (the share of on-file items
with two of first name, DOB and TIN within a typo: the recall a gate that protects relatives
can reach) and a what-if for counsel: the same request linked again with the Jr/Sr rule eased
(a DOB up to 40 years off outweighed by TIN + name + house; not the default).

    .venv/bin/python bench/matching.py [--people 1000000] [--items 100000]
        [--mixes none,typical,heavy] [--febrl] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _evidence(report: dict[str, Any]) -> str:
    """The person evidence the list still carries (matching/evaluate.py `_evidence`)."""
    e = report.get("evidence")
    if not e:
        return ""
    return (
        f"    two of first name/DOB/TIN on the list: {e['carrying_two_of_three']:,} of "
        f"{e['in_file']:,} on file = ceiling {100 * e['ceiling_recall']:.2f} %; identified "
        f"{100 * e['recall_within_ceiling']:.2f} % of those, {e['identified_on_less']:,} on less"
    )


WHAT_IF = "(a DOB up to 40 years off outweighed by TIN + name + house; not the default)"


def _what_if(ws: Any, officer: Any, rid: str, truth: Path) -> dict[str, Any]:
    """The trade-off for counsel: the figures if the gate let a date of birth up to 40 years
    off (the model's maximum `generation_years`) be outweighed by an exact TIN, the name and
    the house — the Jr/Sr guarantee eased. Links again with the defaults afterwards."""
    from custodes.services import matching

    matching.link(ws, officer, rid, overrides={"generation_years": 40.0})
    at = matching.evaluate(ws, officer, truth, rid)["at_thresholds"]
    matching.link(ws, officer, rid)
    return at


def _row(label: str, at: dict[str, Any], extra: str = "") -> str:
    bound = at["wrong_rate_upper_95"]
    return (
        f"{label:<28} {at['wrong']:>5} ({at['wrong_in_file']}/{at['wrong_absent_relative']}/"
        f"{at['wrong_absent_stranger']})  {100 * (at['recall'] or 0):6.2f} %  "
        f"{100 * at['review_rate']:5.2f} %  {bound if bound is not None else '-':>10}  {extra}"
    )


HEADER = (
    f"{'':<28} wrong (in file/relative/stranger)  recall  review  rule-of-3 bound  time\n"
    + "-" * 100
)


def synthetic(args: argparse.Namespace, tmp: Path) -> None:
    from splink import Linker

    from custodes.matching import backends as lk
    from custodes.matching import model as mdl
    from custodes.records import master
    from custodes.services import matching, records, requests
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    home = args.keep or tmp / "ws"
    init(home)
    ws = open_workspace(home)
    people = staff.administrators(ws)
    staff.add(people, "bench-officer", ["officer"])
    admin, officer = people.admin, people["bench-officer"]
    t = time.perf_counter()
    if not master.current(ws).exists:
        records.generate(ws, admin, args.people, 1)
    print(f"master people / request items: {args.people:,} / {args.items:,}")
    print(f"generate master file: {time.perf_counter() - t:.2f} s\n")
    lines = []
    for mix in args.mixes:
        req = tmp / f"req-{mix}"
        requests.generate(ws, admin, "irc-6103-i-2", args.items, 2, req, corruption=mix)
        # staff key in a request from paper (its scan's hash); matching needs no confirmation
        scan = hashlib.sha256(str(req).encode()).hexdigest()
        rid = requests.submit(ws, officer, req, paper_sha256=scan).request_id
        t = time.perf_counter()
        matching.train(ws, officer, rid)
        t_train = time.perf_counter() - t
        t = time.perf_counter()
        res = matching.link(ws, officer, rid)
        t_link = time.perf_counter() - t

        # Baseline: raw Splink predict on the same standardized tables with the same model.
        model = mdl.load(ws)
        cache = ws.bulk / "match" / model.master_sha256[:16]
        be = lk.DuckDBBackend()
        t = time.perf_counter()
        linker = Linker(
            [
                be.register(cache / "master.parquet", mdl.MASTER),
                be.register(res.path.parent / "std.parquet", mdl.REQUEST),
            ],
            model.splink,
        )
        pred = linker.inference.predict(threshold_match_probability=0.01)
        be.con.sql(f"SELECT count(*) FROM {pred.physical_name}").fetchall()
        t_raw = time.perf_counter() - t
        be.close()

        whatif = _what_if(ws, officer, rid, req / "truth.csv")
        report = matching.evaluate(ws, officer, req / "truth.csv", rid)
        at = report["at_thresholds"]
        lines.append(
            _row(
                f"mix {mix}",
                at,
                f"train {t_train:.1f} s, link {t_link:.1f} s, raw Splink {t_raw:.1f} s "
                f"(ratio {t_link / t_raw:.2f}x)",
            )
        )
        lines.append(_evidence(report))
        lines.append(_row("  what if: Jr/Sr rule eased", whatif, WHAT_IF))
        worst = sorted(
            ((k, v) for k, v in report["by_corruption"].items() if k != "none"),
            key=lambda kv: kv[1]["identified"] / max(kv[1]["items"], 1),
        )[:4]
        for k, v in worst:
            lines.append(
                f"    {k:<24} {v['items']:>6} items: identified {v['identified']}, review "
                f"{v['review']}, not identified {v['not_identified']}, wrong {v['wrong']}"
            )
    ws.close()
    print(HEADER)
    print("\n".join(lines))


def febrl(tmp: Path) -> None:
    from custodes.access import caller, sessions
    from custodes.services import rules, users
    from custodes.services.workspace import init
    from custodes.synthetic import febrl as fb
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    data = fb.prepare(tmp / "febrl")
    home = tmp / "febrl-ws"
    init(home)
    ws = open_workspace(home)
    people = staff.administrators(ws)
    staff.add(people, "officer", ["officer"])
    staff.add(people, "agency", ["requester"], agency=fb.AGENCY)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    token = {
        who: sessions.login(ws, who, people.password) for who in ("admin", "admin2", "officer")
    }
    issued = users.key(ws, people.admin, "agency")  # the agency's own account submits
    users.confirm_change(ws, people.second_admin, issued["change"])
    token["agency"] = issued["key"]
    ws.close()

    def cli(who: str, *args: str) -> dict[str, Any]:
        env = os.environ | {"CUSTODES_SESSION": token[who]}
        cmd = [sys.executable, "-m", "custodes", *args, "--home", str(home), "--json"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{' '.join(args[:2])} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    t0 = time.perf_counter()
    imported = cli("admin", "records", "import", str(data.people), str(data.addresses))
    cli("admin2", "changes", "confirm", imported["change"])  # a second administrator
    rid = cli("agency", "submit", str(data.request))["request_id"]
    cli("officer", "match", "train", "--request", rid)
    cli("officer", "process", rid)
    elapsed = time.perf_counter() - t0
    ws = open_workspace(home)
    officer = caller(ws, token["officer"])
    whatif = _what_if(ws, officer, rid, data.truth)
    ws.close()
    report = cli("officer", "match", "evaluate", rid, "--truth", str(data.truth))
    plain = next(
        g
        for g in report["grid"]
        if not g["gate"] and g["min_margin_bits"] == 0.0 and g["min_probability"] == 0.99
    )
    print(f"\nFEBRL4: {data.master_rows:,} master records, {data.items:,} items, "
          f"{data.on_file:,} on file")  # fmt: skip
    print(HEADER)
    print(_row("custodes (CLI, 4 commands)", report["at_thresholds"], f"{elapsed:.1f} s"))
    print(_evidence(report))
    print(_row("  what if: Jr/Sr rule eased", whatif, WHAT_IF))
    print(
        f"{'plain Splink p >= 0.99':<28} {plain['wrong']:>5}{'':<9}  "
        f"{100 * (plain['recall'] or 0):6.2f} %  (no gate, no margin)"
    )
    for k, v in report["by_corruption"].items():
        if k != "none":
            print(f"    {k}: {v}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--mixes", type=lambda s: s.split(","), default=["none", "typical", "heavy"])
    ap.add_argument("--febrl", action="store_true", help="also run FEBRL4 through the CLI")
    ap.add_argument("--only-febrl", action="store_true", help="run FEBRL4 only")
    ap.add_argument("--keep", type=Path, help="keep the synthetic workspace here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-"))
    try:
        if not args.only_febrl:
            synthetic(args, tmp)
        if args.febrl or args.only_febrl:
            febrl(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"\npeak RSS {peak:.2f} GB")


if __name__ == "__main__":
    main()
