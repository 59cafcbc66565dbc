"""What the HTTP benchmarks (`api.py`, `soak.py`) stand on: a `custodes serve` on loopback, its
processes' memory and CPU, a fresh PostgreSQL database for a run, percentiles, and a minimal
HTTP/1.1 client for load generators that cannot spare httpx's CPU."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
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


def _start_server(
    home: Path,
    store: str | None,
    workers: int,
    env_extra: dict[str, str] | None = None,
    log: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str, int]:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CUSTODES")
        or k == "CUSTODES_API_THREADS"
        or k.startswith(("CUSTODES_ADMIT_", "CUSTODES_GRACE"))
    }
    env |= env_extra or {}
    if store:
        env["CUSTODES_STORE_URL"] = store
    cmd = [sys.executable, "-m", "custodes", "serve", "--port", str(port), "--home", str(home)]
    cmd += ["--workers", str(workers)]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the server's own)
    server = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/v1/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return server, url, port


async def _http_get(
    conn: list[asyncio.StreamReader | asyncio.StreamWriter | None],
    port: int,
    request: bytes,
    body: list[bytes] | None = None,
) -> tuple[int, bool]:
    """One call (a GET, or any request written whole in `request`) on a keep-alive connection
    (opened when needed); (status, Retry-After given); the answer's body is appended to `body`
    when given. A minimal HTTP/1.1 client: httpx costs about 1 ms of CPU per call, which a load
    generator on the server's own two cores cannot spare at 800 calls/s."""
    if conn[0] is None:
        conn[0], conn[1] = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = conn[0], conn[1]
    assert isinstance(reader, asyncio.StreamReader) and isinstance(writer, asyncio.StreamWriter)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
        data = await reader.readexactly(int(fields.get("content-length", "0")))
        if body is not None:
            body.append(data)
        if fields.get("connection", "").lower() == "close":
            writer.close()
            conn[0] = conn[1] = None
        return status, "retry-after" in fields
    except BaseException:
        writer.close()
        conn[0] = conn[1] = None
        raise
