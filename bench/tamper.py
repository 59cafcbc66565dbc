"""The tamper campaign (issue #23): single random edits to a workspace that has lived a full
cycle, each on a fresh copy, and what custodes made of each.

The workspace: a synthetic master file, one request released and then recalled, one released
(the agency downloads it), one approved (the officer releases it next), one received (the
officer processes it next), reports and an incident. Each mutation is one of

- an update, insert or delete of one row, in every table of the store (SQLite, or PostgreSQL
  with a template database per copy: ``CREATE DATABASE x TEMPLATE base``);
- a byte flip, a truncation or a replacement of one file the workspace holds.

After it: ``ledger verify`` of the store, then (when verify passed) the next steps users take:
process the received request, release the approved one, sign in (and use a credential the
attacker made up: a row carrying its hash would let it in), download the released response.
Each mutation is

- **detected**: verify failed, or a step was refused with a coded error the clean copy did not
  give;
- **no effect**: every step behaved and answered exactly as on the clean copy;
- **MISSED**: a step behaved or answered differently (or failed without a code) and nothing
  was detected;
- **not applied**: the store refused the edit itself (a constraint).

    .venv/bin/python bench/tamper.py [--mutations 10000] [--store sqlite|postgresql|both]
                                     [--seed 1] [--people 500] [--items 40] [--missed FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("CUSTODES_IDLE_MINUTES", "720")  # the copies outlive a coffee break

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tamper_base import Base, Copy, build, fresh_copy, pg_drop
from tamper_mutations import (
    FORGED,
    Mutation,
    mutate_file,
    mutate_table,
    store_tables,
    workspace_files,
)

CLASSES = ("detected", "no effect", "MISSED", "not applied")


# --- what users do next, and what custodes answers ---------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _step(fn: Callable[[], Any]) -> tuple[str, str]:
    """('ok', digest of the answer) | ('refused', code) | ('crash', exception type)."""
    from custodes.errors import CustodesError

    try:
        return "ok", _digest(fn())
    except CustodesError as exc:
        return "refused", exc.code
    except Exception as exc:
        return "crash", type(exc).__name__


def replay(base: Base, cp: Copy, out: Path) -> dict[str, tuple[str, str]]:
    """verify, then process, release, sign in, use a made-up credential, download."""
    from custodes.access import Caller
    from custodes.decisions import effective
    from custodes.services import decisions, ledger
    from custodes.services import workspace as ws_svc
    from custodes.workspace import open_workspace

    got: dict[str, tuple[str, str]] = {}
    try:
        ws = open_workspace(cp.home, cp.url)
    except Exception as exc:
        from custodes.errors import CustodesError

        code = exc.code if isinstance(exc, CustodesError) else None
        return {"open": ("refused", code) if code else ("crash", type(exc).__name__)}
    who: dict[str, Caller] = base.callers
    try:
        got["verify"] = _step(lambda: ledger.verify_store(ws, who["auditor"]).ok)
        if got["verify"] != ("ok", _digest(True)):
            return got
        rid = base.rids

        def process() -> Any:
            res = decisions.process(ws, who["officer"], rid["received"])
            table = effective.effective_outcomes(ws, rid["received"])
            return [res.counts, table.drop_columns(["ruleset_sha256"]).to_pylist()]

        def release() -> Any:
            decisions.release(ws, who["officer"], rid["approved"], out)
            rows = (out / "response.csv").read_text()
            doc = json.loads((out / "response.json").read_text())
            return [rows, doc.get("counts"), doc.get("recipients")]

        def sign_in() -> Any:
            token = ws_svc.login(ws, "approver", base.password)
            return ws_svc.whoami(ws, ws_svc.caller(ws, token))

        def forged() -> Any:
            return ws_svc.whoami(ws, ws_svc.caller(ws, FORGED))

        def download() -> Any:
            files = decisions.download(ws, who["requester"], rid["released"])
            doc = json.loads(files["response.json"])
            return [files["response.csv"].decode(), doc.get("counts"), doc.get("recipients")]

        def inspect() -> Any:
            # What the officer sees of the released request (the per-item view).
            return decisions.outcomes_page(ws, who["officer"], rid["released"], limit=1000)

        for name, fn in (
            ("process", process),
            ("release", release),
            ("sign-in", sign_in),
            ("made-up credential", forged),
            ("download", download),
            ("outcomes", inspect),
        ):
            got[name] = _step(fn)
    finally:
        ws.close()
    return got


def classify(got: dict[str, tuple[str, str]], baseline: dict[str, tuple[str, str]]) -> str:
    if "open" in got:
        return "detected" if got["open"][0] == "refused" else "MISSED"
    if got["verify"] != baseline["verify"]:
        return "detected" if got["verify"][0] != "crash" else "MISSED"
    differs = {k for k in baseline if got.get(k) != baseline[k]}
    if not differs:
        return "no effect"
    if any(got[k][0] == "refused" for k in differs):
        return "detected"
    return "MISSED"


# --- the campaign ------------------------------------------------------------------------------


@dataclass
class Tally:
    rows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    missed: list[dict[str, Any]] = field(default_factory=list)
    no_effect: list[dict[str, Any]] = field(default_factory=list)  # to justify, one by one
    took: Counter[str] = field(default_factory=Counter)  # seconds by phase, summed
    by: Counter[str] = field(default_factory=Counter)  # how each was decided
    seconds: float = 0.0

    def add(
        self,
        m: Mutation,
        verdict: str,
        got: dict[str, Any],
        took: dict[str, float] | None = None,
        *,
        index: int = -1,
        seed: int = 0,
    ) -> None:
        self.rows[m.target][verdict] += 1
        self.took.update(took or {})
        if verdict == "detected":
            at_use = "open" not in got and got.get("verify") == ("ok", _digest(True))
            self.by["at use" if at_use else "by verify"] += 1
        if verdict == "MISSED" and any(v[0] == "crash" for v in got.values()):
            self.rows[m.target]["uncoded"] += 1
        if verdict == "no effect":
            self.no_effect.append(
                {"index": index, "seed": seed, "target": m.target, "kind": m.kind}
                | {"detail": m.detail}
            )
        if verdict == "MISSED":
            self.missed.append(
                {"index": index, "seed": seed, "target": m.target, "kind": m.kind}
                | {"detail": m.detail, "changed": {k: v for k, v in got.items()}}
            )

    def tried(self) -> int:
        return sum(sum(c[k] for k in CLASSES) for c in self.rows.values())

    def costs(self) -> str:
        n = max(1, self.tried())
        phases = ", ".join(f"{k} {v / n * 1000:.0f} ms" for k, v in sorted(self.took.items()))
        return (
            f"{n} mutations in {self.seconds:.0f} s: {self.seconds / n:.3f} s a mutation "
            f"(in the child, a mutation's mean: {phases}); detected {dict(self.by)}"
        )

    def table(self, title: str) -> str:
        lines = [
            f"{title}",
            "",
            "| table / file | tried | detected | no effect | MISSED | not applied "
            "| (MISSED: an uncoded error) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        total: Counter[str] = Counter()
        for target in sorted(self.rows):
            c = self.rows[target]
            total.update(c)
            lines.append(
                f"| {target} | {sum(c[k] for k in CLASSES)} | "
                + " | ".join(str(c[k]) for k in (*CLASSES, "uncoded"))
                + " |"
            )
        lines.append(
            f"| **all** | **{sum(total[k] for k in CLASSES)}** | "
            + " | ".join(f"**{total[k]}**" for k in (*CLASSES, "uncoded"))
            + " |"
        )
        return "\n".join(lines)


def one(
    base: Base, dest: Path, what: str, target: Any, kind: str, seed: int
) -> tuple[Mutation, str, dict[str, Any], dict[str, float]]:
    """One mutation on a fresh copy: (the mutation, its verdict, what the steps gave, seconds
    spent copying, mutating and replaying)."""
    rng = random.Random(seed)
    took: dict[str, float] = {}
    t = time.perf_counter()
    cp = fresh_copy(base, dest)
    took["copy"] = time.perf_counter() - t
    try:
        t = time.perf_counter()
        if what == "table":
            eng = sa.create_engine(cp.url)
            try:
                m = mutate_table(eng, target, kind, rng)
            except sa.exc.SQLAlchemyError:
                return (
                    Mutation(f"table {target.name}", kind, "refused by the store"),
                    ("not applied"),
                    {},
                    took,
                )
            finally:
                eng.dispose()
            if m is None:  # an empty table: nothing to update or delete, or to copy
                return Mutation(f"table {target.name}", kind, "empty"), "not applied", {}, took
        else:
            m = mutate_file(cp.home, cp.home / target, kind, rng)
        took["mutate"] = time.perf_counter() - t
        t = time.perf_counter()
        got = replay(base, cp, dest / "out")
        took["replay"] = time.perf_counter() - t
        return m, classify(got, base.baseline), got, took
    finally:
        t = time.perf_counter()
        cp.drop()
        took["drop"] = time.perf_counter() - t


CHILD_SECONDS = 600  # a child still running after this is killed, and its mutation reported


def forked(fn: Callable[..., tuple[Any, ...]], *args: Any) -> tuple[Any, ...]:
    """Run `fn` in a child forked from this process (which imported custodes and warmed its
    caches once, on the clean copies), and return what it returned. A fork costs a few
    milliseconds where a new interpreter importing custodes costs seconds (bench/crash.py's
    zygote does the same for the CLI), and each mutation runs in a process of its own: nothing
    one leaves behind (an engine, a cache, a file handle) reaches the next. A child that dies
    or hangs is a finding: it is reported as a crash (uncoded), never dropped."""
    import pickle
    import signal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        status = 0
        try:
            signal.alarm(CHILD_SECONDS)
            out = pickle.dumps(("ok", fn(*args)))
        except BaseException as exc:  # reported to the parent, which decides
            out = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"[:500]))
            status = 1
        try:
            with os.fdopen(w, "wb") as fh:
                fh.write(out)
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, wstatus = os.waitpid(pid, 0)
    if data:
        import pickle

        kind, value = pickle.loads(data)
        if kind == "ok":
            return value
        raise RuntimeError(f"a mutation's run failed in the harness: {value}")
    died = f"child died ({os.waitstatus_to_exitcode(wstatus)})"
    return Mutation("child", "?", died), "MISSED", {"child": ("crash", died)}, {}


def campaign(
    base: Base,
    n: int,
    seed: int,
    work: Path,
    log: Callable[[str], None],
    every: Callable[[Tally, int], None] | None = None,
    minutes: float | None = None,
) -> Tally:
    """`n` single mutations, each on a fresh copy of `base`, spread evenly over every table
    (update/insert/delete) and every file (flip/truncate/replace)."""
    rng = random.Random(seed)
    scratch = work / "scratch"
    cp = fresh_copy(base, scratch)
    try:
        base.baseline = replay(base, cp, scratch / "out")
    finally:
        cp.drop()
    cp = fresh_copy(base, scratch)
    try:
        again = replay(base, cp, scratch / "out")
    finally:
        cp.drop()
    if again != base.baseline:
        raise SystemExit(f"the clean copy does not replay the same twice: {base.baseline} {again}")
    if base.baseline.get("verify") != ("ok", _digest(True)):
        raise SystemExit(f"the clean copy does not verify: {base.baseline}")
    targets: list[tuple[str, Any, str]] = []
    for t in store_tables():
        targets += [("table", t, k) for k in ("update", "insert", "delete")]
    for p in workspace_files(base.home):
        targets += [("file", p.relative_to(base.home), k) for k in ("flip", "truncate", "replace")]
    rng.shuffle(targets)  # then taken in turn: a short run is a random mix, a long one covers all
    tally = Tally()
    t0 = time.perf_counter()
    for i in range(n):
        what, target, kind = targets[i % len(targets)]
        # Each mutation's own seed: a run is reproducible, and one mutation can be replayed
        # alone, whatever ran before it in the parent or in other children.
        mseed = rng.randrange(2**63)
        m, verdict, got, took = forked(one, base, work / f"m{i}", what, target, kind, mseed)
        tally.add(m, verdict, got, took, index=i, seed=mseed)
        tally.seconds = time.perf_counter() - t0
        if (i + 1) % 100 == 0:
            log(f"{i + 1}/{n} mutations, {time.perf_counter() - t0:.0f} s")
        if every and (i + 1) % 25 == 0:
            every(tally, i + 1)
        if minutes is not None and time.perf_counter() - t0 > minutes * 60:
            log(f"stopped after {i + 1} mutations: the {minutes:g} minutes are up")
            break
    return tally


class _Forgetful(dict):  # type: ignore[type-arg]
    """A cache that keeps nothing: the way before rule sets and checks were cached."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def ab(base: Base, n: int, seed: int, work: Path) -> str:
    """The per-mutation cost the way the campaign ran before (in this process, rule sets read
    and checks compiled at every use) against now (a child forked from this warmed process,
    both cached), on the same `n` mutations taken in turn, in the same run: the ratio is what
    to read, the seconds depend on the machine's load."""
    from custodes.rules import provisions
    from custodes.store import dialects

    rng = random.Random(seed)
    targets: list[tuple[str, Any, str]] = []
    for t in store_tables():
        targets += [("table", t, k) for k in ("update", "insert", "delete")]
    for p in workspace_files(base.home):
        targets += [("file", p.relative_to(base.home), k) for k in ("flip", "truncate", "replace")]
    rng.shuffle(targets)
    spent = {"before": 0.0, "now": 0.0}
    loaded, compiled = provisions._LOADED, dialects._COMPILED
    for i in range(n):
        what, target, kind = targets[i % len(targets)]
        mseed = rng.randrange(2**63)
        for way in ("before", "now") if i % 2 else ("now", "before"):
            t = time.perf_counter()
            if way == "before":
                provisions._LOADED, dialects._COMPILED = _Forgetful(), _Forgetful()
                try:
                    one(base, work / f"ab{i}{way}", what, target, kind, mseed)
                finally:
                    provisions._LOADED, dialects._COMPILED = loaded, compiled
            else:
                forked(one, base, work / f"ab{i}{way}", what, target, kind, mseed)
            spent[way] += time.perf_counter() - t
    b, w = spent["before"] / n, spent["now"] / n
    return (
        f"A/B on {n} mutations, same run: before {b:.2f} s a mutation (in-process, no caches), "
        f"now {w:.2f} s (forked, cached): {b / w:.1f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutations", type=int, default=10_000)
    ap.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--people", type=int, default=500)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--missed", type=Path, help="write the MISSED mutations here (JSON)")
    ap.add_argument("--table", type=Path, help="keep the table so far here (every 25)")
    ap.add_argument(
        "--minutes", type=float, help="stop after this long (the table covers what ran)"
    )
    ap.add_argument(
        "--ab", type=int, metavar="N", help="only compare the cost before/now on N mutations"
    )
    args = ap.parse_args()
    stores = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
    missed = {}
    for store in stores:
        with tempfile.TemporaryDirectory(prefix="custodes-tamper-") as tmp:
            t = time.perf_counter()
            base = build(Path(tmp), store, args.people, args.items)
            print(f"{store}: built the workspace in {time.perf_counter() - t:.0f} s", flush=True)
            try:

                def every(tally: Tally, done: int, store: str = store) -> None:
                    if args.table:
                        args.table.write_text(
                            tally.table(f"### {store}: {done} mutations")
                            + "\n\n"
                            + tally.costs()
                            + "\n"
                        )
                    if args.missed:
                        args.missed.write_text(
                            json.dumps(
                                {"missed": tally.missed, "no effect": tally.no_effect},
                                indent=1,
                                default=str,
                            )
                        )

                if args.ab:
                    clean = fresh_copy(base, Path(tmp) / "clean")
                    try:
                        base.baseline = replay(base, clean, Path(tmp) / "clean" / "out")
                    finally:
                        clean.drop()
                    print(ab(base, args.ab, args.seed, Path(tmp)), flush=True)
                    continue
                tally = campaign(
                    base,
                    args.mutations,
                    args.seed,
                    Path(tmp),
                    lambda s: print(s, flush=True),
                    every,
                    args.minutes,
                )
            finally:
                if store == "postgresql":
                    pg_drop(sa.engine.make_url(base.url).database)
            took = time.perf_counter() - t
            print(tally.table(f"### {store}: {tally.tried()} mutations ({took:.0f} s)"), flush=True)
            print(tally.costs(), flush=True)
            missed[store] = {
                "tried": tally.tried(),
                "missed": tally.missed,
                "no effect": tally.no_effect,
            }
    if args.missed:
        args.missed.write_text(json.dumps(missed, indent=1, default=str))


if __name__ == "__main__":
    main()
