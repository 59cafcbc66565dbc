"""The crash campaign (issue #26 item 1): SIGKILL the real CLI at chosen events, resume the way
a user would, finish the flow, and check that nothing was lost or doubled.

    python bench/crash.py --backend sqlite --kills 200
    python bench/crash.py --backend postgresql --kills 200

The flow is the main job through the CLI, each command a process of its own (forked from a
"zygote" that imported custodes once; `--spawn`: `python -m custodes` itself), signed in with a
stored session (CUSTODES_SESSION): submit, match train, process, review, prepare, approve,
release, recall, certify-destruction, report. An uninterrupted run first snapshots the
workspace (folder and store) before every stage and counts the failpoint events each stage
passes (`CUSTODES_FAILPOINT=count:FILE`: store commits, ledger appends, file writes). Each kill
then starts from a copy of the snapshot before its stage (SQLite: the files; PostgreSQL: a new
database `CREATE DATABASE … TEMPLATE …`), runs the stage with `CUSTODES_FAILPOINT=any:N`
(SIGKILL at the Nth event of any kind), runs the same command again (what a user does after a
crash; a coded refusal that says the step is already done counts as resumed when the flow then
finishes), runs the rest of the flow, and checks the invariants:

- every disclosure row has exactly one ledger leaf, and every disclosure leaf its row;
- no request is released twice (one `released` transition per request);
- no file is half-written (no staged temporary file left anywhere in the workspace or the
  outputs) and every output file (response, recall notice, report) has the ledger event that
  records its SHA-256;
- `custodes ledger verify` of the store passes (the ledger's own audit and the business tables
  against it);
- every request folder has its row;
- the response files are byte-identical to the uninterrupted run's (but for response.json's
  checkpoint and the request id: see `response_files`).

Kills are spread evenly over each stage's events (every event when the budget allows; beyond
that, the resuming command is killed too: see `plan`). It prints a line per kill, then a table
of kills per stage with recovered and violated counts, and each violation's details.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crash_copies
from crash_copies import Backend, Copy, Postgres, clone, prepare_workspace, zygote_main

TODAY = dt.datetime.now(dt.UTC).date().isoformat()  # a certification follows its recall
STAGES = (
    "submit",
    "train",
    "process",
    "review",
    "prepare",
    "approve",
    "release",
    "recall",
    "certify",
    "report",
)


# --- the flow ---------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    who: str
    args: Callable[[Copy, dict[str, str]], list[str]]
    # After the command (or its resumption) succeeded: what the flow learns from its JSON
    # output; on a coded refusal at resumption, what it reads back instead (a user asks).
    learn: Callable[[Copy, dict[str, str], dict[str, Any] | None], None] = lambda c, s, o: None


def _learn_request(c: Copy, s: dict[str, str], out: dict[str, Any] | None) -> None:
    if out is not None:
        s["rid"] = out["request_id"]
    else:  # the agency's own list: its one request
        listed = json.loads(c.cli("requester", "requests", "list", "--json").stdout)
        s["rid"] = listed[0]["id"]


def _learn_recall(c: Copy, s: dict[str, str], out: dict[str, Any] | None) -> None:
    if out is not None:
        s["recall"] = out["recall_id"]
    else:
        listed = json.loads(c.cli("officer", "recalls", "--json").stdout)
        s["recall"] = listed[0]["recall_id"]


def _review(c: Copy, s: dict[str, str]) -> list[str]:
    return ["review", s["rid"], "--withhold-all", "--reason", "unsure"]


FLOW = [
    Stage("submit", "requester", lambda c, s: ["submit", str(c.req)], _learn_request),
    Stage("train", "officer", lambda c, s: ["match", "train", "--request", s["rid"]]),
    Stage("process", "officer", lambda c, s: ["process", s["rid"]]),
    Stage("review", "officer", _review),
    Stage("prepare", "officer", lambda c, s: ["prepare", s["rid"]]),
    Stage("approve", "approver", lambda c, s: ["approve", s["rid"]]),
    Stage(
        "release", "officer", lambda c, s: ["release", s["rid"], "--out", str(c.out / "response")]
    ),
    Stage(
        "recall",
        "officer",
        lambda c, s: [
            "recall",
            s["rid"],
            "--reason",
            "court ruling",
            "--out",
            str(c.out / "recall"),
        ],
        _learn_recall,
    ),
    Stage(
        "certify",
        "officer",
        lambda c, s: [
            "certify-destruction",
            s["recall"],
            "--by",
            "A. Recipient, CISO",
            "--on",
            TODAY,
        ],
    ),
    Stage(
        "report",
        "officer",
        lambda c, s: ["report", "request", s["rid"], "--out", str(c.out / "request-report.html")],
    ),
]
assert tuple(st.name for st in FLOW) == STAGES


def _json(r: subprocess.CompletedProcess[str]) -> dict[str, Any] | None:
    try:
        out = json.loads(r.stdout)
    except ValueError:
        return None
    return out if isinstance(out, dict) and "error" not in out else None


def run_stage(
    c: Copy, st: Stage, s: dict[str, str], failpoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    return c.cli(st.who, *st.args(c, s), "--json", failpoint=failpoint)


class FlowFailed(Exception):
    pass


def finish(
    c: Copy,
    s: dict[str, str],
    stages: list[Stage],
    kill_at: dict[str, int] | None = None,
    killed: list[tuple[str, int]] | None = None,
    refusals: list[str] | None = None,
) -> None:
    """Run the rest of the flow; a stage named in `kill_at` is first killed at that event
    (appended to `killed` when it landed), then run again as a user would."""
    for st in stages:
        if kill_at and st.name in kill_at:
            k = run_stage(c, st, s, failpoint=f"any:{kill_at[st.name]}")
            if k.returncode == -9 and killed is not None:
                killed.append((st.name, kill_at[st.name]))
            elif k.returncode in (0, 1):  # it finished before its event: it is done
                st.learn(c, s, _json(k))
                continue
        r = run_stage(c, st, s)
        resumed = bool(kill_at and st.name in kill_at)  # a coded refusal may say it is done
        if r.returncode not in (0, 1) and not (resumed and r.returncode == 2):
            raise FlowFailed(f"{st.name}: exit {r.returncode}: {_error(r)}")
        if r.returncode == 2 and refusals is not None:
            refusals.append(f"{st.name} resumed: {_error(r)}")
        st.learn(c, s, _json(r) if r.returncode in (0, 1) else None)


def _error(r: subprocess.CompletedProcess[str]) -> str:
    try:
        e = json.loads(r.stdout)["error"]
        return f"{e['code']}: {e['message'][:160]}"
    except (ValueError, KeyError, TypeError):
        return (r.stderr.strip().splitlines() or ["(no output)"])[-1][:200]


# --- the invariants ---------------------------------------------------------------------------


def response_files(c: Copy, rid: str) -> dict[str, bytes]:
    """The response as it must be identical between runs: its files, with the request's id
    written as `REQUEST` (a submission killed before its commit gets a new random id when it is
    made again) and response.json without its `checkpoint` (a signed checkpoint of the ledger
    at release, whose size counts the events of the commands run before it, a resumed one's
    too; `ledger verify` checks it)."""
    folder = c.out / "response"
    out = {}
    for p in sorted(folder.iterdir()) if folder.exists() else []:
        data = p.read_bytes()
        if p.name == "response.json":
            doc = json.loads(data)
            doc.pop("checkpoint", None)
            data = json.dumps(doc, indent=2).encode()
        out[p.name] = data.replace(rid.encode(), b"REQUEST")
    return out


# What the finished flow delivers: the response, the recall notice, the request report.
OUTPUTS = (
    "response/response.csv",
    "response/response.json",
    "recall/notice.json",
    "recall/notice.txt",
    "request-report.html",
)


def check(c: Copy, rid: str, baseline: dict[str, bytes]) -> list[str]:
    """Every broken invariant, in words (none: the copy is whole)."""
    problems: list[str] = []
    v = c.cli("auditor", "ledger", "verify", "--json")
    if v.returncode != 0:
        problems.append(f"ledger verify: exit {v.returncode}: {v.stdout[-400:] or _error(v)}")
    engine = sa.create_engine(c.url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            n_rows = conn.execute(sa.text("SELECT count(*) FROM disclosures")).scalar_one()
            leaves: Counter[tuple[str, str]] = Counter()
            released: Counter[str] = Counter()
            recorded: set[str] = set()  # every string an event carries: hashes, recall ids
            for kind, body in conn.execute(sa.text("SELECT type, body FROM ledger_events")):
                b = json.loads(body)
                if kind == "disclosure":
                    leaves[(b.get("request_id"), b.get("item_sha256"))] += 1
                if kind == "request.transition" and b.get("to") == "released":
                    released[b.get("request_id")] += 1
                recorded.update(_strings(b))
            checkpoints = {r[0] for r in conn.execute(sa.text("SELECT checkpoint FROM releases"))}
            ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM requests"))}
    finally:
        engine.dispose()
    if sum(leaves.values()) != n_rows or any(n != 1 for n in leaves.values()):
        problems.append(
            f"disclosures: {n_rows} rows, {sum(leaves.values())} leaves for {len(leaves)} items"
        )
    if any(n != 1 for n in released.values()):
        problems.append(f"released twice: {dict(released)}")
    for folder in (c.home, c.out):
        for p in folder.rglob("*.tmp"):
            problems.append(f"half-written file left: {p.relative_to(c.root)}")
    for name in OUTPUTS:
        if not (c.out / name).is_file():
            problems.append(f"lost: out/{name} was never written")
    for p in sorted((c.home / "requests").iterdir()):
        if p.name not in ids:
            problems.append(f"request folder without its row: {p.relative_to(c.root)}")
    for p in sorted(q for q in c.out.rglob("*") if q.is_file()):
        if not _has_event(p, recorded, checkpoints):
            problems.append(f"file without its event: {p.relative_to(c.root)}")
    got = response_files(c, rid)
    if got != baseline:
        differ = sorted(k for k in got.keys() | baseline.keys() if got.get(k) != baseline.get(k))
        problems.append(f"response differs from the uninterrupted run's: {differ}")
    return problems


def _has_event(p: Path, recorded: set[str], checkpoints: set[str | None]) -> bool:
    """An output file and the event that records it: its SHA-256 in an event (the response's
    CSV, a report); response.json names the CSV's hash and carries the release's checkpoint;
    a recall notice names its recall, whose events name it."""
    data = p.read_bytes()
    if hashlib.sha256(data).hexdigest() in recorded:
        return True
    if p.name == "response.json":
        doc = json.loads(data)
        return doc.get("response_sha256") in recorded and doc.get("checkpoint") in checkpoints
    if p.name.startswith("notice."):
        return any(
            w in recorded for w in re.findall(rb"rcl-[0-9a-f]{12}", data)[:1] for w in [w.decode()]
        )
    return False


def _strings(body: Any) -> list[Any]:
    if isinstance(body, dict):
        return [x for v in body.values() for x in _strings(v)]
    if isinstance(body, list):
        return [x for v in body for x in _strings(v)]
    return [body] if isinstance(body, str) else []


# --- the campaign -----------------------------------------------------------------------------


@dataclass
class Result:
    stage: str
    point: int
    event: str
    killed: bool
    resumed_with: str  # "ok" or the coded refusal the same command answered
    problems: list[str] = field(default_factory=list)
    again: bool = False  # killed a second time, while resuming
    # `--chain`: the later stages each killed once too, then resumed: (stage, N, event kind)
    chained: list[tuple[str, int, str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # later stages' coded refusals resuming

    def kills(self) -> list[tuple[str, str]]:
        """Every kill that landed in this run: (stage, event kind)."""
        out = [(self.stage, self.event)] if self.killed else []
        out += [(self.stage, "again")] if self.again else []
        return out + [(stage, kind) for stage, _n, kind in self.chained]


def baseline_run(
    backend: Backend, base: Copy, work: Path
) -> tuple[list[tuple[Copy, dict]], list[list[str]], dict[str, bytes]]:
    """The uninterrupted run: a snapshot before each stage, each stage's events in order, and
    the response it writes."""
    c = clone(backend, base, work / "baseline")
    s: dict[str, str] = {}
    snaps: list[tuple[Copy, dict[str, str]]] = []
    events: list[list[str]] = []
    for i, st in enumerate(FLOW):
        snaps.append((clone(backend, c, work / f"before-{i:02d}-{st.name}"), dict(s)))
        log = work / f"events-{st.name}.txt"
        r = run_stage(c, st, s, failpoint=f"count:{log}")
        if r.returncode not in (0, 1):
            raise SystemExit(f"the uninterrupted run failed at {st.name}: {_error(r)}\n{r.stderr}")
        st.learn(c, s, _json(r))
        events.append(log.read_text().split() if log.exists() else [])
    baseline = response_files(c, s["rid"])
    problems = check(c, s["rid"], baseline)
    if problems:
        raise SystemExit(f"the uninterrupted run breaks an invariant: {problems}")
    return snaps, events, baseline


def plan(events: list[list[str]], kills: int) -> list[tuple[int, int, int | None]]:
    """(stage index, N, M) for each kill: SIGKILL at the stage's Nth event, then (M not None)
    again at the Mth event of the same command run to resume. Every event of every stage once
    when the budget allows, otherwise an even spread over each stage's events in proportion to
    their number; a budget beyond every event goes to kills during the resumption too (a crash
    while recovering from a crash), spread evenly over the pairs (N, M)."""
    total = sum(len(e) for e in events)
    out: list[tuple[int, int, int | None]] = []
    for i, ev in enumerate(events):
        n = len(ev)
        k = min(n, n if total <= kills else max(1, round(kills * n / total)))
        out += [(i, 1 + (j * n) // k, None) for j in range(k)]
    pairs = [
        (i, n, m)
        for i, ev in enumerate(events)
        for n in range(1, len(ev) + 1)
        for m in range(1, len(ev) + 1)
    ]
    extra = min(max(0, kills - len(out)), len(pairs))
    out += [pairs[(j * len(pairs)) // extra] for j in range(extra)]
    return out


def at_points(events: list[list[str]], at: list[str]) -> list[tuple[int, int, int | None]]:
    """(stage index, N) for points named STAGE:KIND:K, the Kth event of KIND in STAGE (e.g.
    `recall:file.write:1`, the recall's first file write)."""
    out = []
    for point in at:
        stage, kind, k = point.rsplit(":", 2)
        i = STAGES.index(stage)
        ns = [n for n, e in enumerate(events[i], 1) if e == kind]
        out.append((i, ns[int(k) - 1], None))
    return out


def one_kill(
    backend: Backend,
    snaps: list[tuple[Copy, dict[str, str]]],
    events: list[list[str]],
    baseline: dict[str, bytes],
    work: Path,
    i: int,
    n: int,
    m: int | None,
    keep: bool,
    chain: int | None = None,
) -> Result:
    st = FLOW[i]
    snap, state = snaps[i]
    c = clone(backend, snap, work / f"kill-{st.name}-{n:04d}-{m or 0:04d}")
    s = dict(state)
    res = Result(st.name, n, events[i][n - 1], False, "")
    landed: list[tuple[str, int]] = []  # --chain: the later stages' kills that landed
    try:
        r = run_stage(c, st, s, failpoint=f"any:{n}")
        res.killed = r.returncode == -9
        if not res.killed:
            res.problems.append(f"not killed at event {n}: exit {r.returncode} {_error(r)}")
        if m is not None:  # killed again while resuming (if the resumption gets that far)
            res.again = run_stage(c, st, s, failpoint=f"any:{m}").returncode == -9
        again = run_stage(c, st, s)  # what a user runs after the crash: the same command
        if again.returncode in (0, 1):
            res.resumed_with = "ok"
        elif again.returncode == 2:
            res.resumed_with = _error(again).split(":")[0]
        else:
            res.problems.append(f"resuming {st.name}: exit {again.returncode}: {_error(again)}")
        st.learn(c, s, _json(again))
        # --chain: every later stage killed once too (its event picked by the run's number,
        # so that successive runs walk each stage's events), then resumed
        kill_at = (
            {
                FLOW[j].name: 1 + (chain + j) % len(events[j])
                for j in range(i + 1, len(FLOW))
                if events[j]
            }
            if chain is not None
            else None
        )
        finish(c, s, FLOW[i + 1 :], kill_at, landed, res.refusals)
        res.problems += check(c, s["rid"], baseline)
    except (FlowFailed, subprocess.TimeoutExpired, ValueError, KeyError, IndexError) as exc:
        res.problems.append(f"flow did not finish: {type(exc).__name__}: {exc}")
    res.chained = [(name, k, events[STAGES.index(name)][k - 1]) for name, k in landed]
    print(
        f"{st.name} at {n} ({res.event}){f' then {m}' if m else ''}"
        f"{' (killed twice)' if res.again else ''}"
        + "".join(f", {name} at {k}" for name, k, _e in res.chained)
        + f"{f' resumed: {res.resumed_with}' if res.resumed_with != 'ok' else ''}"
        + "".join(f" ({x})" for x in res.refusals)
        + ": "
        + ("; ".join(res.problems) if res.problems else "recovered"),
        flush=True,
    )
    if not keep or not res.problems:
        backend.drop(c.url)
        shutil.rmtree(c.root, ignore_errors=True)
    return res


def campaign(args: argparse.Namespace) -> list[Result]:
    crash_copies.SPAWN = args.spawn  # how a copy runs the CLI
    backend: Backend = Postgres() if args.backend == "postgresql" else Backend()
    work = Path(args.work or tempfile.mkdtemp(prefix=f"crash-{backend.name}-"))
    try:
        t0 = time.perf_counter()
        base = prepare_workspace(backend, work / "template", args.people, args.items, args.seed)
        snaps, events, baseline = baseline_run(backend, base, work)
        print(
            f"{backend.name}: uninterrupted run in {time.perf_counter() - t0:.0f} s; events per "
            "stage: "
            + ", ".join(f"{st.name} {len(e)}" for st, e in zip(FLOW, events, strict=True)),
            flush=True,
        )
        todo = plan(events, args.kills) if not args.at else at_points(events, args.at)
        if args.stages:
            todo = [t for t in todo if FLOW[t[0]].name in args.stages]
        # Every stage's first kills before any stage's later ones, single kills before pairs:
        # a campaign stopped early still has a spread.
        todo.sort(key=lambda t: (t[2] is not None, t[1] / len(events[t[0]]), t[0]))
        todo = todo[args.offset :]
        if args.chain:  # a run kills every later stage too: fewer runs for the same kills
            todo = [t for t in todo if t[2] is None]
        deadline = time.monotonic() + args.minutes * 60 if args.minutes else None

        def go(r: int, t: tuple[int, int, int | None]) -> Result | None:
            if deadline is not None and time.monotonic() > deadline:
                return None  # out of time: the table says how many ran
            chain = (
                (r if args.chain_run is None else args.chain_run + r - args.offset)
                if args.chain
                else None
            )
            return one_kill(backend, snaps, events, baseline, work, *t, args.keep, chain)

        with ThreadPoolExecutor(args.jobs) as pool:
            results = [
                x for x in pool.map(go, range(args.offset, args.offset + len(todo)), todo) if x
            ]
        print(table(backend.name, results, time.perf_counter() - t0), flush=True)
        for r in results:
            if r.problems:
                print(f"VIOLATED {r.stage} at event {r.point} ({r.event}): {r.problems}")
        return results
    finally:
        backend.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def table(name: str, results: list[Result], seconds: float) -> str:
    """Kills per stage (a run's first kill, a second kill while resuming, and with `--chain`
    one in each later stage), by event, with whether the run they were in recovered."""
    n_kills = sum(len(r.kills()) for r in results)
    lines = [
        f"{name}: {n_kills} kills in {len(results)} runs "
        f"({sum(not r.problems for r in results)} recovered, "
        f"{sum(bool(r.problems) for r in results)} violated), {seconds:.0f} s",
        "| stage | kills | at commit | at ledger.append | at file.write | at group commit "
        "| killed again resuming | kills in runs recovered | kills in runs violated "
        "| resumed with a refusal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for stage in (*STAGES, "all"):
        ks = [(k, bool(r.problems)) for r in results for k in r.kills() if stage in (k[0], "all")]
        if not ks:
            continue
        kinds = Counter(k[1] for k, _bad in ks)
        refused = Counter(
            r.resumed_with
            for r in results
            if stage in (r.stage, "all") and r.resumed_with not in ("ok", "")
        )
        bad = sum(1 for _k, b in ks if b)
        lines.append(
            f"| {stage} | {len(ks)} | {kinds['commit']} | "
            f"{kinds['ledger.append']} | {kinds['file.write']} | "
            f"{kinds['group_commit.before_commit']} | {kinds['again']} | "
            f"{len(ks) - bad} | {bad} | "
            + (", ".join(f"{k} ×{v}" for k, v in sorted(refused.items())) or "—")
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--kills", type=int, default=200, help="How many kills (at most).")
    p.add_argument("--people", type=int, default=400, help="People in the master file.")
    p.add_argument("--items", type=int, default=12, help="Items in the request.")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--jobs", type=int, default=1, help="Kills run at once.")
    p.add_argument("--stages", nargs="*", help="Only kills in these stages.")
    p.add_argument(
        "--offset",
        type=int,
        default=0,
        help="Skip this many of the planned kills (to share "
        "a campaign between processes: one runs the first ones, another from here).",
    )
    p.add_argument(
        "--at", nargs="*", help="Kill only at these points, STAGE:KIND:K (Kth KIND event)."
    )
    p.add_argument(
        "--chain",
        action="store_true",
        help="In each run, kill every later stage once too (then resume it): several kills "
        "per run, crashes compounding.",
    )
    p.add_argument(
        "--chain-run",
        type=int,
        help="With --chain: number the runs from this (the later stages' events follow it; "
        "to replay a run of the log with --at).",
    )
    p.add_argument(
        "--minutes", type=float, default=0, help="Start no new run after this long (0: none)."
    )
    p.add_argument("--work", help="Working folder (default: a new temporary one).")
    p.add_argument("--keep", action="store_true", help="Keep the copies that broke something.")
    p.add_argument(
        "--spawn", action="store_true", help="Run `python -m custodes` for each command."
    )
    args = p.parse_args(argv)
    results = campaign(args)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        zygote_main()
        sys.exit(0)
    os.environ.pop("CUSTODES_FAILPOINT", None)  # the campaign itself never dies
    sys.exit(main())
