"""Load check of the HTTP API on loopback (never a timed test).

A real `custodes serve` (uvicorn, one worker) over a synthetic workspace. Sustained status and
outcome-page reads at a target rate from concurrent clients, with small submissions running
beside them; p50/p99 latency, errors and the server's memory. Baseline in the same run: the
same status reads through the services in-process (what the HTTP layer adds). Then one large
submission over HTTP against copying the same upload on disk.

    .venv/bin/python bench/api.py [--people 20000] [--rate 200] [--seconds 20]
        [--big-items 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's workers under `--workers N`)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in Path(f"/proc/{p}/task").glob("*/children"):
            todo += [int(c) for c in t.read_text().split()]
    return out


def _rss_mb(pid: int) -> float:
    return sum(_rss_one(p) for p in _tree(pid))


def _rss_one(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process and its workers have used (from /proc)."""
    return sum(_cpu_one(p) for p in _tree(pid))


def _cpu_one(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fresh_database(admin_url: str) -> str:
    """A new, empty PostgreSQL database for this run; its URL."""
    import secrets

    import sqlalchemy as sa

    name = f"custodes_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # a name made here, not input
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_database(admin_url: str, store: str) -> None:
    import sqlalchemy as sa

    name = store.rsplit("/", 1)[1]
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def main() -> None:
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
        "--postgres",
        metavar="ADMIN_URL",
        help="use a fresh PostgreSQL database made through this server URL, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres (dropped at the end)",
    )
    args = ap.parse_args()

    import httpx

    from custodes.access import sessions
    from custodes.services import decisions, matching, records, requests, rules, users
    from custodes.services.workspace import init
    from custodes.synthetic import staff
    from custodes.synthetic.staff import PASSWORD
    from custodes.workspace import open_workspace

    tmp = Path(tempfile.mkdtemp(prefix="custodes-bench-api-"))
    home = tmp / "ws"
    store: str | None = None
    try:
        store = _fresh_database(args.postgres) if args.postgres else None
        init(home, store)
        ws = open_workspace(home, store)
        people = staff.one_per_role(ws)
        records.generate(ws, people.admin, args.people, 1)
        rules.register_parties(ws, people.admin, "irc-6103-i-2")
        requests.generate(ws, people.admin, "irc-6103-i-2", 2000, 2, tmp / "req")
        rid = requests.submit(ws, people["requester"], tmp / "req").request_id
        matching.train(ws, people["officer"], rid)
        decisions.process(ws, people["officer"], rid)
        token = sessions.login(ws, "officer", PASSWORD)
        key = users.key(ws, people.admin, "requester")["key"]
        users.confirm(ws, people.second_admin, "requester")

        # Baseline: status reads through the services, in-process.
        base = []
        for _ in range(500):
            t = time.perf_counter()
            requests.status(ws, people["officer"], rid)
            base.append(time.perf_counter() - t)
        ws.close()

        port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CUSTODES") or k == "CUSTODES_API_THREADS"
        }
        if store:
            env["CUSTODES_STORE_URL"] = store
        cmd = [sys.executable, "-m", "custodes", "serve", "--port", str(port), "--home", str(home)]
        cmd += ["--workers", str(args.workers)]
        server = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/v1/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)

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
                "envelope": (tmp / "req" / "envelope.json").read_bytes(),
                "items": (tmp / "req" / "items.csv").read_bytes(),
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
        threads += [
            threading.Thread(
                target=reader,
                args=("outcomes", f"/v1/requests/{rid}/outcomes?limit=50", 1 / (args.rate * 0.2)),
            ),
        ]
        threads += [threading.Thread(target=submitter) for _ in range(args.submitters)]
        rss0 = _rss_mb(server.pid)
        cpu0, gen0, wall0 = _cpu_s(server.pid), time.process_time(), time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        rss1 = _rss_mb(server.pid)
        cpu_server, cpu_gen = _cpu_s(server.pid) - cpu0, time.process_time() - gen0
        took = time.perf_counter() - wall0  # longer than asked when the server falls behind

        # One large submission over HTTP, against copying the same bytes on disk.
        big = tmp / "big"
        t0 = time.perf_counter()
        ws = open_workspace(home, store)
        requests.generate(ws, people.admin, "irc-6103-i-2", args.big_items, 3, big)
        ws.close()
        gen = time.perf_counter() - t0
        t = time.perf_counter()
        shutil.copyfile(big / "items.csv", tmp / "copy.csv")
        t_copy = time.perf_counter() - t
        with httpx.Client(base_url=url, headers=agency_h, timeout=3600) as c:
            # Prefer: respond-async: 202 once the upload is on disk; then the job to its end
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
            # the same upload answered synchronously (a duplicate by now: intake still reads,
            # checks and hashes every line before it can say so)
            t = time.perf_counter()
            with open(big / "envelope.json", "rb") as e, open(big / "items.csv", "rb") as i:
                r = c.post("/v1/requests", files={"envelope": e, "items": i})
            t_big = time.perf_counter() - t
        server.terminate()
        server.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.postgres and store is not None:
            _drop_database(args.postgres, store)

    total = sum(len(v) for v in lat.values())
    print(f"workspace: {args.people:,} people; reads target {args.rate}/s for {args.seconds} s")
    print(
        f"requests served: {total:,} in {took:.1f} s ({total / took:.0f}/s), errors: {errors['n']}"
    )
    print(
        f"baseline status via services in-process: p50 {_pct(base, 0.5):.1f} ms, "
        f"p99 {_pct(base, 0.99):.1f} ms"
    )
    for kind, xs in lat.items():
        if xs:
            print(
                f"{kind:<9} n={len(xs):>6}  p50 {_pct(xs, 0.5):7.1f} ms  "
                f"p99 {_pct(xs, 0.99):7.1f} ms  mean {statistics.mean(xs) * 1000:7.1f} ms"
            )
    print(f"server RSS: {rss0:.0f} MB before, {rss1:.0f} MB after the load")
    print(
        f"CPU during the load: server {cpu_server:.1f} s ({cpu_server / took:.2f} cores, "
        f"{cpu_server / max(total, 1) * 1000:.2f} ms per request); load generator "
        f"{cpu_gen:.1f} s ({cpu_gen / took:.2f} cores)"
    )
    print(
        f"large submission ({args.big_items:,} items, generated in {gen:.1f} s; copying the "
        f"upload {t_copy:.2f} s):\n"
        f"  Prefer: respond-async: {ra.status_code} in {t_async:.2f} s "
        f"(ratio {t_async / max(t_copy, 1e-9):.1f}x), job {async_state} "
        f"after {t_async_done:.1f} s\n"
        f"  synchronous: {r.status_code} in {t_big:.1f} s (ratio {t_big / max(t_copy, 1e-9):.1f}x)"
    )


if __name__ == "__main__":
    main()
