"""Soak (issue #26 item 5): the API under a steady mixed load for half an hour, with a large
request processed and released at the same time. Never a timed test.

    nice -n 10 .venv/bin/python bench/soak.py [--minutes 30] [--rate 100] [--items 1000000]
        [--people 200000] [--postgres ADMIN_URL]

A real `custodes serve` (uvicorn on 127.0.0.1, one worker) over a synthetic workspace: a master
file, staff (officer, approver, auditor) and two agencies, each with its API key. Then, for the
whole run:

- an open-loop mixed load at `--rate` calls a second (sent on time whatever the server does,
  over keep-alive connections; latency from the time each call was due, as `bench/api.py
  --open-loop`): the agencies submit small requests and poll their own requests and jobs;
  staff read requests, outcomes, review groups, the master file's summary and jobs, inspect a
  candidate record for an open request and withdraw what the agencies submitted; anyone
  reads the ledger's checkpoint (`MIX` below);
- beside it, the large request of `--items` items through the API as a user does it: the
  agency uploads it (`Prefer: respond-async`), the officer trains and processes it, resolves
  its review groups, prepares it, the approver approves, the officer releases it and
  downloads the response.

It reports every error (any 5xx, and any 4xx the mix does not expect, by route, status and
problem code), p50/p99 latency and the server's RSS per minute (flat after warm-up is the
target; the job worker process beside it, which runs the large request's jobs, apart), the
large request's steps and how long each took, and `custodes ledger verify` of
the store at the end. Exit 1 when anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from loopback import (
    _drop_database,
    _fresh_database,
    _http_get,
    _pct,
    _rss_one,
    _start_server,
    _tree,
)
from pipeline import _spread_officials
from soak_big_request import BigRequest

PROVISION = "irc-6103-i-2"
AGENCY_A = "U.S. Immigration and Customs Enforcement"
AGENCY_B = "Soak Test Agency"

# The open-loop mix: (name, share of the calls, who calls, statuses expected).
MIX: list[tuple[str, int, str, tuple[int, ...]]] = [
    ("agency: GET its request", 25, "agency", (200,)),
    ("agency: GET /v1/requests", 8, "agency", (200,)),
    ("agency: GET /v1/jobs", 5, "agency", (200,)),
    ("agency: POST /v1/requests (20 items)", 1, "agency", (200, 201)),
    ("staff: GET a request", 15, "officer", (200,)),
    ("staff: GET .../next", 5, "approver", (200,)),
    ("staff: GET .../outcomes?limit=50", 15, "officer", (200,)),
    ("staff: GET .../review/groups", 5, "officer", (200,)),
    ("staff: GET /v1/requests", 5, "officer", (200,)),
    ("staff: GET /v1/records/summary", 3, "auditor", (200,)),
    ("staff: POST /v1/records/inspect", 2, "officer", (200,)),
    ("staff: POST .../withdraw", 1, "officer", (200,)),
    ("anyone: GET /v1/ledger/checkpoint", 5, "", (200,)),
    ("auditor: GET /v1/jobs", 5, "auditor", (200,)),
]


@dataclass
class World:
    """What the load needs to know about the workspace."""

    port: int
    tokens: dict[str, str]  # officer, approver, auditor: session tokens; agency-a/-b: keys
    polled: dict[str, str]  # agency-a/-b: the request each polls
    open_rid: str  # a small request processed and left open (review): staff read it
    record: str | None  # a candidate record of it, for inspections
    small: dict[str, tuple[bytes, bytes]]  # agency-a/-b: envelope, items CSV of a small request
    submitted: list[str] = field(default_factory=list)  # ids the agencies' submissions made
    n: int = 0


def _raw(
    port: int, method: str, path: str, token: str, body: bytes = b"", ctype: str = ""
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    if method != "GET":
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def _multipart(envelope: bytes, items: bytes) -> tuple[bytes, str]:
    import httpx

    req = httpx.Request(
        "POST",
        "http://x/v1/requests",
        files={"envelope": ("envelope.json", envelope), "items": ("items.csv", items)},
    )
    return req.read(), req.headers["content-type"]


def _call(w: World, name: str, rng: random.Random) -> bytes:
    """The bytes of one call of kind `name`."""
    p, t = w.port, w.tokens
    agency = rng.choice(("agency-a", "agency-b"))
    if name == "agency: GET its request":
        return _raw(p, "GET", f"/v1/requests/{w.polled[agency]}", t[agency])
    if name == "agency: GET /v1/requests":
        return _raw(p, "GET", "/v1/requests", t[agency])
    if name == "agency: GET /v1/jobs":
        return _raw(p, "GET", "/v1/jobs", t[agency])
    if name.startswith("agency: POST /v1/requests"):
        # a new request each time: the same items under fresh item ids (1 to 64 characters)
        w.n += 1
        env, items = w.small[agency]
        rows = list(csv.reader(io.StringIO(items.decode())))
        text = io.StringIO()
        out = csv.writer(text, lineterminator="\n")
        out.writerow(rows[0])
        out.writerows([f"s{w.n}-{r[0]}", *r[1:]] for r in rows[1:])  # item_id comes first
        body, ctype = _multipart(env, text.getvalue().encode())
        return _raw(p, "POST", "/v1/requests", t[agency], body, ctype)
    rid = w.open_rid
    if name == "staff: GET a request":
        return _raw(p, "GET", f"/v1/requests/{rid}", t["officer"])
    if name == "staff: GET .../next":
        return _raw(p, "GET", f"/v1/requests/{rid}/next", t["approver"])
    if name == "staff: GET .../outcomes?limit=50":
        return _raw(p, "GET", f"/v1/requests/{rid}/outcomes?limit=50", t["officer"])
    if name == "staff: GET .../review/groups":
        return _raw(p, "GET", f"/v1/requests/{rid}/review/groups", t["officer"])
    if name == "staff: GET /v1/requests":
        return _raw(p, "GET", "/v1/requests", t["officer"])
    if name == "staff: GET /v1/records/summary":
        return _raw(p, "GET", "/v1/records/summary", t["auditor"])
    if name == "staff: POST /v1/records/inspect":
        body = json.dumps(
            {"record_id": w.record, "purpose": "soak: compare the address", "request_id": rid}
        ).encode()
        return _raw(p, "POST", "/v1/records/inspect", t["officer"], body, "application/json")
    if name == "staff: POST .../withdraw":
        target = w.submitted.pop(0)
        body = json.dumps({"reason": "soak: sent by mistake"}).encode()
        return _raw(
            p, "POST", f"/v1/requests/{target}/withdraw", t["officer"], body, "application/json"
        )
    if name == "anyone: GET /v1/ledger/checkpoint":
        return _raw(p, "GET", "/v1/ledger/checkpoint", "")
    if name == "auditor: GET /v1/jobs":
        return _raw(p, "GET", "/v1/jobs", t["auditor"])
    raise ValueError(name)


@dataclass
class Answer:
    kind: str
    due: float  # seconds since the start
    latency: float  # seconds from due to answered (0: no answer)
    status: int  # 0: no answer
    code: str  # the problem's code when it was one


async def open_loop(w: World, rate: float, seconds: float, connections: int) -> list[Answer]:
    """`rate` calls a second of the mix for `seconds`, whatever the answers."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    names = [m[0] for m in MIX]
    weights = [m[1] for m in MIX]
    t0 = loop.time() + 0.1
    n = int(rate * seconds)
    end = t0 + seconds + 30
    due: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
    out: list[Answer] = []

    async def schedule() -> None:
        for i in range(n):
            at = t0 + i / rate
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            kind = rng.choices(names, weights)[0]
            if kind == "staff: POST .../withdraw" and not w.submitted:
                kind = "staff: GET a request"
            if kind == "staff: POST /v1/records/inspect" and not w.record:
                kind = "staff: GET a request"
            due.put_nowait((kind, at))
        for _ in range(connections):
            due.put_nowait(None)

    async def connection() -> None:
        conn: list[Any] = [None, None]
        while (job := await due.get()) is not None:
            kind, at = job
            if kind == "staff: POST .../withdraw" and not w.submitted:  # another took it
                kind = "staff: GET a request"
            ans = Answer(kind, at - t0, 0.0, 0, "")
            out.append(ans)
            left = end - loop.time()
            if left <= 0:  # never sent: the load generator fell behind (not the server's fault)
                ans.status = -1
                continue
            body: list[bytes] = []
            try:
                ans.status, _ = await asyncio.wait_for(
                    _http_get(conn, w.port, _call(w, kind, rng), body), left
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                ans.status = 0
            ans.latency = loop.time() - at
            doc = _doc(body)
            if ans.status >= 400:
                ans.code = str(doc.get("code", "")) if isinstance(doc, dict) else ""
            elif kind.startswith("agency: POST") and ans.status == 201:
                w.submitted.append(doc["request_id"])

    tasks = [asyncio.create_task(schedule())]
    tasks += [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.gather(*tasks)
    return out


def _doc(body: list[bytes]) -> Any:
    try:
        return json.loads(body[0]) if body else None
    except ValueError:
        return None


# --- setup, run, report -----------------------------------------------------------------------


def setup(
    tmp: Path, store: str | None, args: argparse.Namespace
) -> tuple[Path, dict[str, str], dict[str, Any], Any]:
    """The workspace: staff, two agencies, a master file, a small request per agency submitted
    (their polled requests), one of them trained and processed (left open for staff to read),
    and the large request generated (not submitted)."""
    from custodes.access import sessions
    from custodes.services import decisions, ledger, matching, records, requests, rules
    from custodes.services.workspace import init
    from custodes.synthetic import staff as staff_mod
    from custodes.workspace import open_workspace

    home = tmp / "ws"
    init(home, store)
    ws = open_workspace(home, store)
    try:
        people = staff_mod.one_per_role(ws, agency=AGENCY_A)
        staff_mod.add(people, "agency-b", ["requester"], agency=AGENCY_B)
        records.generate(ws, people.admin, args.people, 1)
        rules.register_parties(ws, people.admin, PROVISION)
        small = {}
        polled = {}
        for i, (who, agency) in enumerate(
            (("requester", AGENCY_A), ("agency-b", AGENCY_B)), start=1
        ):
            folder = tmp / f"small-{i}"
            requests.generate(ws, people.admin, PROVISION, args.small_items, 10 + i, folder)
            env = json.loads((folder / "envelope.json").read_text())
            env["agency"] = agency
            (folder / "envelope.json").write_text(json.dumps(env, indent=2))
            small["agency-a" if i == 1 else "agency-b"] = (
                (folder / "envelope.json").read_bytes(),
                (folder / "items.csv").read_bytes(),
            )
            polled["agency-a" if i == 1 else "agency-b"] = requests.submit(
                ws, people[who], folder
            ).request_id
        ledger.checkpoint(ws, people.admin)  # what anyone reads from the ledger
        open_rid = polled["agency-a"]
        matching.train(ws, people["officer"], open_rid)
        decisions.process(ws, people["officer"], open_rid)
        page = decisions.outcomes_page(ws, people["officer"], open_rid, limit=200)
        record = next((r.get("record_id") for r in page["items"] if r.get("record_id")), None)
        tokens = {
            n: sessions.login(ws, n, people.password) for n in ("officer", "approver", "auditor")
        }
        tokens["agency-a"] = people.keys["requester"]
        tokens["agency-b"] = people.keys["agency-b"]
        t = time.perf_counter()
        requests.generate(ws, people.admin, PROVISION, args.items, 3, tmp / "big")
        _spread_officials(tmp / "big", 250)
        print(f"large request of {args.items:,} items generated in {time.perf_counter() - t:.0f} s")
    finally:
        ws.close()
    world = {"polled": polled, "open_rid": open_rid, "record": record, "small": small}
    return home, tokens, world, None


def _rss_split(pid: int) -> tuple[float, float]:
    """RSS in MB of the server (its process, and any child that is not a job worker) and of
    its job worker processes (multiprocessing's spawned children: services/jobs.py)."""
    server = worker = 0.0
    for p in _tree(pid):
        try:
            line = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if p != pid and b"spawn_main" in line:
            worker += _rss_one(p)
        else:
            server += _rss_one(p)
    return server, worker


def report(
    answers: list[Answer],
    rss: list[tuple[float, float, float]],
    big: BigRequest,
    seconds: float,
) -> tuple[list[str], int]:
    expected = {m[0]: m[3] for m in MIX}

    # shed: answered 503 `overloaded` with Retry-After by admission control (nothing done, the
    # client may retry); every other unexpected answer is an error
    def shed(a: Answer) -> bool:
        return a.status == 503 and a.code == "overloaded"

    def bad(a: Answer) -> bool:
        return a.status not in expected[a.kind] and not shed(a) and a.status != -1

    def row(xs: list[Answer]) -> str:
        ok = [a.latency for a in xs if a.status in expected[a.kind]]
        return (
            f"{len(xs):,} | {len(ok):,} | {_pct(ok, 0.5):.1f} | {_pct(ok, 0.99):.1f} | "
            f"{sum(map(shed, xs))} | {sum(map(bad, xs))} | {sum(a.status == -1 for a in xs)}"
        )

    per_min: dict[int, list[Answer]] = defaultdict(list)
    by_kind: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        per_min[int(a.due // 60)].append(a)
        by_kind[a.kind].append(a)
    rss_min: dict[int, list[float]] = defaultdict(list)
    job_min: dict[int, list[float]] = defaultdict(list)
    for t, mb, job_mb in rss:
        rss_min[int(t // 60)].append(mb)
        job_min[int(t // 60)].append(job_mb)
    errors = [a for a in answers if bad(a)]
    lines = [
        f"calls: {len(answers):,} in {seconds:.0f} s ({len(answers) / seconds:.1f}/s asked); "
        f"errors: {len(errors)}; shed (503 overloaded, with Retry-After): "
        f"{sum(map(shed, answers))}; not sent (the load generator fell behind): "
        f"{sum(a.status == -1 for a in answers)}"
    ]
    for (kind, status, code), k in Counter((a.kind, a.status, a.code) for a in errors).items():
        lines.append(f"  error: {kind}: {status or 'no answer'} {code} ×{k}")
    lines.append(
        "| minute | calls | ok | p50 ms | p99 ms | shed 503 | errors | not sent | server RSS MB "
        "| job worker RSS MB |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in sorted(per_min):
        mb = max(rss_min.get(m, [float("nan")]))
        job_mb = max(job_min.get(m, [float("nan")]))
        lines.append(f"| {m + 1} | {row(per_min[m])} | {mb:.0f} | {job_mb:.0f} |")
    lines.append("| call | share | calls | ok | p50 ms | p99 ms | shed 503 | errors | not sent |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, share, _who, _exp in MIX:
        lines.append(f"| {name} | {share} % | {row(by_kind.get(name, []))} |")
    lines.append("large request (through the API, beside the load):")
    for name, start, took, outcome in big.steps:
        lines.append(f"  {name}: started at {start:.0f} s, took {took:.1f} s: {outcome}")
    if big.error:
        lines.append(f"  FAILED: {big.error}")
    elif big.is_alive():
        lines.append("  not finished when the load ended")
    return lines, len(errors) + (1 if big.error or big.is_alive() else 0)


def _options(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--seconds", type=float, help="the load's length in seconds (over --minutes)")
    ap.add_argument("--rate", type=float, default=100, help="calls a second (open loop)")
    ap.add_argument("--items", type=int, default=1_000_000, help="items of the large request")
    ap.add_argument("--people", type=int, default=200_000, help="people in the master file")
    ap.add_argument("--small-items", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--wait-big",
        type=float,
        default=0,
        metavar="MINUTES",
        help="keep the load on until the large request is released, at most this much longer",
    )
    ap.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="a fresh PostgreSQL database made through this server URL (dropped at the end)",
    )
    ap.add_argument("--log", help="the server's output (default: in the run's temporary folder)")
    return ap.parse_args(argv)


def _serve(home: Path, store: str | None, log: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """`custodes serve` on the workspace, once it answers its health check (or the exit)."""
    server, url, port = _start_server(home, store, 1, log=log)
    for _ in range(600):  # a loaded machine takes longer than _start_server waits
        try:
            urllib.request.urlopen(f"{url}/v1/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)
    return server, url, port


def _load(
    w: World, server: subprocess.Popen[bytes], url: str, big_folder: Path, args: argparse.Namespace
) -> tuple[list[Answer], list[tuple[float, float, float]], BigRequest, float]:
    """The mixed load for the run's length (then a minute at a time while the large request is
    not released, up to --wait-big), the large request through the API beside it, and the
    server's RSS every 5 s: the answers, the RSS samples, the large request, how long it took."""
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    rss: list[tuple[float, float, float]] = []
    t0 = time.perf_counter()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                rss.append((time.perf_counter() - t0, *_rss_split(server.pid)))
            stop.wait(5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    big = BigRequest(url, w.tokens, big_folder, t0)
    big.start()
    answers = asyncio.run(open_loop(w, args.rate, seconds, args.connections))
    extra = 0.0
    while big.is_alive() and extra < args.wait_big * 60:  # the load goes on, a minute a time
        answers += [
            Answer(a.kind, a.due + seconds + extra, a.latency, a.status, a.code)
            for a in asyncio.run(open_loop(w, args.rate, 60, args.connections))
        ]
        extra += 60
    took = time.perf_counter() - t0
    stop.set()
    return answers, rss, big, took


def _verify_ledger(home: Path, store: str | None, token: str) -> tuple[list[str], int]:
    """`custodes ledger verify` of the store as the auditor: its lines, and 1 when it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env["CUSTODES_SESSION"] = token
    if store:
        env["CUSTODES_STORE_URL"] = store
    v = subprocess.run(
        [sys.executable, "-m", "custodes", "ledger", "verify", "--home", str(home), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    verdict = "passes" if v.returncode == 0 else f"FAILS (exit {v.returncode})"
    lines = [f"ledger verify at the end: {verdict}"]
    if v.returncode != 0:
        lines.append(v.stdout[-1500:] + v.stderr[-1500:])
    return lines, int(v.returncode != 0)


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="custodes-soak-"))
    store = _fresh_database(args.postgres) if args.postgres else None
    server = None
    try:
        t = time.perf_counter()
        home, tokens, wd, _ = setup(tmp, store, args)
        print(
            f"workspace: {args.people:,} people, two agencies, staff; ready in "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
        log = Path(args.log) if args.log else tmp / "server.log"
        server, url, port = _serve(home, store, log)
        w = World(port, tokens, wd["polled"], wd["open_rid"], wd["record"], wd["small"])
        asyncio.run(open_loop(w, 10, 5, 4))  # warm up: imports, first connections
        w.submitted.clear()
        answers, rss, big, took = _load(w, server, url, tmp / "big", args)
        lines, failures = report(answers, rss, big, took)
        if server.poll() is not None:
            lines.append(f"THE SERVER EXITED ({server.returncode}): {log.read_text()[-3000:]}")
            failures += 1
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        verified, failed = _verify_ledger(home, store, tokens["auditor"])
        lines += verified
        failures += failed
        print(
            f"soak {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {seconds:.0f} s at "
            f"{args.rate:g}/s, {args.items:,}-item request, "
            f"{'PostgreSQL' if store else 'SQLite'}, load average {os.getloadavg()[0]:.1f}"
        )
        print("\n".join(lines), flush=True)
        return 1 if failures else 0
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if args.postgres and store is not None:
            _drop_database(args.postgres, store)


if __name__ == "__main__":
    sys.exit(main())
