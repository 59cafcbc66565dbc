"""Load check of the HTTP API on loopback (never a timed test).

A real `custodes serve` (uvicorn, one worker) over a synthetic workspace. Sustained status and
outcome-page reads at a target rate from concurrent clients, with small submissions running
beside them; p50/p99 latency, errors and the server's memory. Baseline in the same run: the
same status reads through the services in-process (what the HTTP layer adds). Then one large
submission over HTTP against copying the same upload on disk.

    .venv/bin/python bench/api.py [--people 20000] [--rate 200] [--seconds 20]
        [--big-items 1000000]

Open loop (`--open-loop 50,100,200,400,800`): an agency's status reads
(`GET /v1/requests/{id}` with its key) sent at a fixed rate whatever the server does, over
`--connections` keep-alive connections; each call's latency runs from the time it was
scheduled, so a server that falls behind is charged for the calls queued behind it. Per rate:
the achieved rate, p50/p99/p99.9 of the answered calls, and 503s (with Retry-After) against
other errors; baseline in the same run: the same route at `--baseline-rate` (10/s). Then
SIGTERM during a burst at the highest rate: how long the server takes to exit, and what the
calls in flight were answered.

    .venv/bin/python bench/api.py --open-loop 50,100,200,400,800 [--seconds 10]
        [--connections 64] [--people 5000] [--postgres ADMIN_URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loopback import (
    _cpu_s,
    _drop_database,
    _fresh_database,
    _http_get,
    _pct,
    _rss_mb,
    _start_server,
)


class _Shot:
    """One scheduled call: when it was due, when its answer came, what the answer was."""

    __slots__ = ("at", "done", "retry_after", "status")

    def __init__(self, at: float) -> None:
        self.at = at
        self.done = 0.0
        self.status = 0  # 0: no answer (connection refused, reset, timed out, never sent)
        self.retry_after = False


async def _open_loop(
    port: int,
    path: str,
    key: str,
    rate: float,
    seconds: float,
    connections: int,
    *,
    drain: float = 30.0,
    on_started: Any = None,
) -> tuple[list[_Shot], float]:
    """Send `rate` calls a second for `seconds` over `connections` connections, whatever the
    answers; wait at most `drain` seconds after the last is due. (calls, elapsed)."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    n = max(1, int(rate * seconds))
    t0 = loop.time() + 0.1
    end = t0 + seconds + drain
    shots = [_Shot(t0 + i / rate) for i in range(n)]
    due: asyncio.Queue[_Shot | None] = asyncio.Queue()

    async def schedule() -> None:
        for shot in shots:
            wait = shot.at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            due.put_nowait(shot)
        for _ in range(connections):
            due.put_nowait(None)

    async def connection() -> None:
        conn: list[Any] = [None, None]
        while (shot := await due.get()) is not None:
            left = end - loop.time()
            if left <= 0:
                continue  # never sent: counted as unanswered
            try:
                shot.status, shot.retry_after = await asyncio.wait_for(
                    _http_get(conn, port, request), left
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                shot.status = 0
            shot.done = loop.time()
        if conn[1] is not None:
            conn[1].close()

    tasks = [asyncio.create_task(schedule())]
    tasks += [asyncio.create_task(connection()) for _ in range(connections)]
    if on_started is not None:
        loop.call_later(on_started[0], on_started[1])
    await asyncio.gather(*tasks)
    last = max((s.done for s in shots if s.done), default=t0)
    for s in shots:  # latency from the time each call was due
        s.at, s.done = 0.0, (s.done - s.at if s.done else 0.0)
    return shots, max(last - t0, 1e-9)


def _row(rate: float, shots: list[_Shot], elapsed: float) -> dict[str, float]:
    ok = [s.done for s in shots if s.status == 200]
    busy = [s for s in shots if s.status == 503]
    return {
        "rate": rate,
        "sent": len(shots),
        "ok": len(ok),
        "achieved": len(ok) / elapsed,
        "answered": sum(1 for s in shots if s.status) / elapsed,
        "p50": _pct(ok, 0.5),
        "p99": _pct(ok, 0.99),
        "p999": _pct(ok, 0.999),
        "busy": len(busy),
        "busy_no_retry_after": sum(1 for s in busy if not s.retry_after),
        "busy_p99": _pct([s.done for s in busy], 0.99),
        "errors": sum(1 for s in shots if s.status not in (200, 503)),
        "unanswered": sum(1 for s in shots if s.status == 0),
    }


def _sigterm_burst(
    server: subprocess.Popen[bytes], port: int, path: str, key: str, rate: float, grace: int, n: int
) -> tuple[list[_Shot], int | str, float]:
    """SIGTERM two seconds into a burst at `rate` over `n` connections: the burst's calls, what
    the server exited with, and how long it took to exit after the signal."""
    sent: dict[str, float] = {}

    def term() -> None:
        sent["at"] = time.perf_counter()
        server.send_signal(signal.SIGTERM)

        def ended() -> None:
            try:
                server.wait(grace + 60)
            except subprocess.TimeoutExpired:
                return
            sent["exit"] = time.perf_counter()

        threading.Thread(target=ended, daemon=True).start()

    shots, _ = asyncio.run(_open_loop(port, path, key, rate, 4, n, drain=5, on_started=(2, term)))
    try:
        code: int | str = server.wait(grace + 60)
    except subprocess.TimeoutExpired:
        code = "nothing (still running; killed)"
    time.sleep(0.1)
    return shots, code, sent.get("exit", time.perf_counter()) - sent["at"]


def _print_open_loop(
    store: str | None,
    args: argparse.Namespace,
    base: dict[str, float],
    rows: list[dict[str, float]],
    burst: tuple[list[_Shot], int | str, float],
) -> None:
    """The open-loop table under its baseline, then what the SIGTERM burst was answered."""
    store_name = "PostgreSQL" if store else "SQLite"
    print(
        f"open loop, {store_name}, {args.connections} connections, {args.seconds} s per rate, "
        f"GET /v1/requests/{{id}} with an agency key"
    )
    print(
        f"baseline {base['rate']:.0f}/s: p50 {base['p50']:.1f} ms, p99 {base['p99']:.1f} ms, "
        f"{base['ok']} ok, {base['busy']} 503, {base['errors']} errors"
    )
    print(
        "| asked /s | achieved ok/s | answered /s | p50 ms | p99 ms | p99.9 ms | p99 / baseline "
        "| 503 (all with Retry-After) | 503 p99 ms | errors | cores: server, load generator |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ra = "yes" if not r["busy_no_retry_after"] else f"{r['busy_no_retry_after']} without"
        print(
            f"| {r['rate']:.0f} | {r['achieved']:.0f} | {r['answered']:.0f} | {r['p50']:.1f} | "
            f"{r['p99']:.1f} | {r['p999']:.1f} | {r['p99'] / base['p99']:.1f}x | "
            f"{r['busy']:,} ({ra}) | {r['busy_p99']:.1f} | {r['errors']} | {r['cpu']:.2f}, "
            f"{r['gen']:.2f} |"
        )
    shots, code, stopped = burst
    statuses: dict[int, int] = {}
    for s in shots:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    print(
        f"SIGTERM 2 s into {rows[-1]['rate']:.0f}/s: exited {code} after {stopped:.2f} s (grace "
        f"{args.grace} s); answers during the burst: "
        + ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(statuses.items()))
    )


def open_loop_table(
    home: Path, store: str | None, args: argparse.Namespace, rid: str, key: str
) -> None:
    """The open-loop table, then SIGTERM under a burst."""
    rates = [float(r) for r in args.open_loop.split(",")]
    server, _url, port = _start_server(home, store, args.workers)
    path = f"/v1/requests/{rid}"
    rows = []
    try:
        # warm up (imports, first connections), then the baseline at a low rate
        asyncio.run(_open_loop(port, path, key, 20, 2, 4))
        base = _row(
            args.baseline_rate,
            *asyncio.run(_open_loop(port, path, key, args.baseline_rate, min(args.seconds, 10), 4)),
        )
        for rate in rates:
            time.sleep(1)
            cpu0, gen0, w0 = _cpu_s(server.pid), time.process_time(), time.perf_counter()
            shots, elapsed = asyncio.run(
                _open_loop(port, path, key, rate, args.seconds, args.connections)
            )
            row = _row(rate, shots, elapsed)
            took = time.perf_counter() - w0
            row["cpu"] = (_cpu_s(server.pid) - cpu0) / took
            row["gen"] = (time.process_time() - gen0) / took
            rows.append(row)
        # SIGTERM two seconds into a burst at the highest rate
        time.sleep(1)
        burst = _sigterm_burst(server, port, path, key, rates[-1], args.grace, args.connections)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    _print_open_loop(store, args, base, rows, burst)


def _options() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--rate", type=int, default=200, help="target reads per second")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--big-items", type=int, default=1_000_000)
    ap.add_argument(
        "--submitters", type=int, default=1, help="clients submitting back to back (0: reads only)"
    )
    ap.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    ap.add_argument(
        "--open-loop",
        metavar="RATES",
        help="open-loop mode: status reads at each of these rates (comma-separated, per second)",
    )
    ap.add_argument("--connections", type=int, default=64, help="open loop: connections")
    ap.add_argument("--baseline-rate", type=float, default=10, help="open loop: baseline rate")
    ap.add_argument("--grace", type=int, default=10, help="open loop: the server's --grace")
    ap.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="use a fresh PostgreSQL database made through this server URL, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres (dropped at the end)",
    )
    return ap.parse_args()


def _workspace(home: Path, store: str | None, tmp: Path, people_n: int) -> tuple[Any, ...]:
    """A workspace with one user per role, `people_n` people and the parties of §6103(i)(2),
    and one request of 2,000 items submitted, its model trained and processed (its files in
    tmp/req): the workspace, its staff, the request's id, the officer's session token and the
    requester's confirmed API key."""
    from custodes.access import sessions
    from custodes.services import decisions, matching, records, requests, rules, users
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.workspace import open_workspace

    init(home, store)
    ws = open_workspace(home, store)
    people = staff.one_per_role(ws)
    records.generate(ws, people.admin, people_n, 1)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 2000, 2, tmp / "req")
    rid = requests.submit(ws, people["requester"], tmp / "req").request_id
    matching.train(ws, people["officer"], rid)
    decisions.process(ws, people["officer"], rid)
    token = sessions.login(ws, "officer", people.password)
    key = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")
    return ws, people, rid, token, key


def _closed_loop(
    url: str, pid: int, req: Path, rid: str, token: str, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Status and outcome-page reads at the target rate (8 status clients, one outcomes
    client) beside back-to-back submissions of `req`, for --seconds: each kind's latencies,
    the errors, the server's RSS before and after and its CPU, the load generator's CPU, and
    how long it took (longer than asked when the server falls behind)."""
    import httpx

    staff_h = {"Authorization": f"Bearer {token}"}
    agency_h = {"Authorization": f"Bearer {key}"}
    lat: dict[str, list[float]] = {"status": [], "outcomes": [], "submit": []}
    errors = {"n": 0}
    stop = time.perf_counter() + args.seconds
    lock = threading.Lock()

    def reader(kind: str, path: str, every: float) -> None:
        with httpx.Client(base_url=url, headers=staff_h, timeout=30) as c:
            nxt = time.perf_counter()
            while nxt < stop:
                t = time.perf_counter()
                r = c.get(path)
                with lock:
                    lat[kind].append(time.perf_counter() - t)
                    errors["n"] += r.status_code != 200
                nxt += every
                time.sleep(max(0.0, nxt - time.perf_counter()))

    def submitter() -> None:
        files = {
            "envelope": (req / "envelope.json").read_bytes(),
            "items": (req / "items.csv").read_bytes(),
        }
        with httpx.Client(base_url=url, headers=agency_h, timeout=120) as c:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = c.post("/v1/requests", files=files)
                with lock:
                    lat["submit"].append(time.perf_counter() - t)
                    errors["n"] += r.status_code not in (200, 201)

    clients = 8
    status_rate = args.rate * 0.8 / clients
    threads = [
        threading.Thread(target=reader, args=("status", f"/v1/requests/{rid}", 1 / status_rate))
        for _ in range(clients)
    ]
    outcomes = f"/v1/requests/{rid}/outcomes?limit=50"
    threads.append(
        threading.Thread(target=reader, args=("outcomes", outcomes, 1 / (args.rate * 0.2)))
    )
    threads += [threading.Thread(target=submitter) for _ in range(args.submitters)]
    rss0 = _rss_mb(pid)
    cpu0, gen0, wall0 = _cpu_s(pid), time.process_time(), time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {
        "lat": lat,
        "errors": errors["n"],
        "rss": (rss0, _rss_mb(pid)),
        "cpu_server": _cpu_s(pid) - cpu0,
        "cpu_gen": time.process_time() - gen0,
        "took": time.perf_counter() - wall0,
    }


def _big_submission(
    home: Path, store: str | None, admin: Any, tmp: Path, url: str, key: str, n: int
) -> dict[str, Any]:
    """One large submission of `n` items over HTTP, against copying the same bytes on disk:
    with `Prefer: respond-async` (202 once the upload is on disk, then its job to its end),
    then the same upload answered synchronously (a duplicate by now: intake still reads,
    checks and hashes every line before it can say so)."""
    import httpx

    from custodes.services import requests
    from custodes.workspace import open_workspace

    big = tmp / "big"
    t0 = time.perf_counter()
    ws = open_workspace(home, store)
    requests.generate(ws, admin, "irc-6103-i-2", n, 3, big)
    ws.close()
    gen = time.perf_counter() - t0
    t = time.perf_counter()
    shutil.copyfile(big / "items.csv", tmp / "copy.csv")
    t_copy = time.perf_counter() - t
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=3600) as c:
        t = time.perf_counter()
        with open(big / "envelope.json", "rb") as e, open(big / "items.csv", "rb") as i:
            ra = c.post(
                "/v1/requests",
                files={"envelope": e, "items": i},
                headers={"Prefer": "respond-async"},
            )
        t_async = time.perf_counter() - t
        while ra.status_code == 202:
            job = c.get(ra.headers["location"]).json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        t_async_done = time.perf_counter() - t
        async_state = job["state"] if ra.status_code == 202 else str(ra.status_code)
        t = time.perf_counter()
        with open(big / "envelope.json", "rb") as e, open(big / "items.csv", "rb") as i:
            r = c.post("/v1/requests", files={"envelope": e, "items": i})
        t_big = time.perf_counter() - t
    return {
        "gen": gen,
        "t_copy": t_copy,
        "async": (ra.status_code, t_async, async_state, t_async_done),
        "sync": (r.status_code, t_big),
    }


def _report(
    args: argparse.Namespace, base: list[float], load: dict[str, Any], big: dict[str, Any]
) -> None:
    took, cpu_server, cpu_gen = load["took"], load["cpu_server"], load["cpu_gen"]
    total = sum(len(v) for v in load["lat"].values())
    print(f"workspace: {args.people:,} people; reads target {args.rate}/s for {args.seconds} s")
    print(
        f"requests served: {total:,} in {took:.1f} s ({total / took:.0f}/s), "
        f"errors: {load['errors']}"
    )
    print(
        f"baseline status via services in-process: p50 {_pct(base, 0.5):.1f} ms, "
        f"p99 {_pct(base, 0.99):.1f} ms"
    )
    for kind, xs in load["lat"].items():
        if xs:
            print(
                f"{kind:<9} n={len(xs):>6}  p50 {_pct(xs, 0.5):7.1f} ms  "
                f"p99 {_pct(xs, 0.99):7.1f} ms  mean {statistics.mean(xs) * 1000:7.1f} ms"
            )
    print(f"server RSS: {load['rss'][0]:.0f} MB before, {load['rss'][1]:.0f} MB after the load")
    print(
        f"CPU during the load: server {cpu_server:.1f} s ({cpu_server / took:.2f} cores, "
        f"{cpu_server / max(total, 1) * 1000:.2f} ms per request); load generator "
        f"{cpu_gen:.1f} s ({cpu_gen / took:.2f} cores)"
    )
    (a_status, t_async, async_state, t_async_done), (s_status, t_big) = big["async"], big["sync"]
    t_copy = big["t_copy"]
    print(
        f"large submission ({args.big_items:,} items, generated in {big['gen']:.1f} s; copying "
        f"the upload {t_copy:.2f} s):\n"
        f"  Prefer: respond-async: {a_status} in {t_async:.2f} s "
        f"(ratio {t_async / max(t_copy, 1e-9):.1f}x), job {async_state} "
        f"after {t_async_done:.1f} s\n"
        f"  synchronous: {s_status} in {t_big:.1f} s (ratio {t_big / max(t_copy, 1e-9):.1f}x)"
    )


def main() -> None:
    args = _options()
    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-api-"))
    home = tmp / "ws"
    store: str | None = None
    try:
        store = _fresh_database(args.postgres) if args.postgres else None
        ws, people, rid, token, key = _workspace(home, store, tmp, args.people)
        if args.open_loop:
            ws.close()
            os.environ["CUSTODES_GRACE"] = str(args.grace)
            open_loop_table(home, store, args, rid, key)
            return
        # Baseline: status reads through the services, in-process.
        from custodes.services import requests

        base = []
        for _ in range(500):
            t = time.perf_counter()
            requests.status(ws, people["officer"], rid)
            base.append(time.perf_counter() - t)
        ws.close()
        server, url, _port = _start_server(home, store, args.workers)
        load = _closed_loop(url, server.pid, tmp / "req", rid, token, key, args)
        big = _big_submission(home, store, people.admin, tmp, url, key, args.big_items)
        server.terminate()
        server.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.postgres and store is not None:
            _drop_database(args.postgres, store)
    _report(args, base, load, big)


if __name__ == "__main__":
    main()
