"""serve: the HTTP API and the web console under uvicorn."""

from __future__ import annotations

import ipaddress
import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from custodes import settings
from custodes.cli.root import HomeOpt, app, guarded
from custodes.errors import InputError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _check(host: str, home: object) -> Path:
    if host not in LOOPBACK and not settings.flag("CUSTODES_BEHIND_TLS_PROXY"):
        raise InputError(
            f"Refusing to listen on {host} without TLS: run behind a TLS-terminating reverse "
            "proxy and set CUSTODES_BEHIND_TLS_PROXY=1 (docs/api.md).",
            code="bad_argument",
        )
    from custodes.services import workspace as ws_svc

    ws = ws_svc.open_workspace(home)  # type: ignore[arg-type]  # a clear error now
    ws.close()
    return ws.home


def _socket(path: Path) -> Path:
    """A Unix domain socket to serve on: its folder must be the caller's own and closed to
    everyone else (0700), so no other local user can connect; a stale socket is replaced,
    anything else in its place refused."""
    folder = path.parent
    if not folder.is_dir() or folder.is_symlink():
        raise InputError(f"{folder}: no such folder (for --uds).", code="bad_path")
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise InputError(
            f"{folder}: the socket's folder must be yours and closed to others "
            f"(chmod 700 {folder}): any local user who can reach the socket can call custodes.",
            code="bad_path",
        )
    if path.is_symlink() or (path.exists() and not stat.S_ISSOCK(path.lstat().st_mode)):
        raise InputError(f"{path}: exists and is not a socket.", code="bad_path")
    path.unlink(missing_ok=True)  # a socket a stopped server left behind
    return path


def other_login_users(passwd: str, me: int) -> list[str]:
    """Accounts other than `me` that can log in (a real shell, a user or root uid), from the
    text of /etc/passwd: on such a host anyone can reach a loopback port."""
    out = []
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) < 7 or not parts[2].isdigit():
            continue
        uid, shell = int(parts[2]), parts[6].strip()
        if uid == me or (uid != 0 and uid < 1000) or uid == 65534:
            continue
        if not shell or shell.endswith(("nologin", "false", "sync", "halt", "shutdown")):
            continue
        out.append(parts[0])
    return out


def _warn_shared_host(host: str, port: int) -> None:
    try:
        others = other_login_users(Path("/etc/passwd").read_text(), os.getuid())
    except OSError:
        return
    if others:
        sys.stderr.write(
            f"warning: {len(others)} other account(s) can log in to this machine and reach "
            f"{host}:{port} (cookies are not kept apart by port). On a shared host, serve on a "
            "Unix socket in a folder only you can open (--uds PATH) behind a reverse proxy on a "
            "dedicated host name (docs/api.md).\n"
        )


def _proxies(given: list[str] | None) -> str:
    """The trusted proxies (this option, else CUSTODES_TRUSTED_PROXY), checked now: the only
    peers whose X-Forwarded-For names the client a sign-in is throttled by."""
    parts = [p for g in (given or []) for p in g.replace(",", " ").split()]
    if not parts:
        parts = settings.items("CUSTODES_TRUSTED_PROXY")
    for p in parts:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise InputError(
                "--trusted-proxy takes an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24).",
                code="bad_argument",
            ) from None
    return ",".join(parts)


def _witness(key: Path, logs: list[str], state: Path | None, home: Path) -> None:
    """Check the witness's key and logs now (a clear error, not one per worker), then hand
    them to the server processes through the environment."""
    from custodes.services import ledger as ledger_svc

    state = (state or home / "witness.db").resolve()
    ledger_svc.witness(key, logs, state)
    settings.put("CUSTODES_WITNESS_KEY", str(key.resolve()))
    settings.put("CUSTODES_WITNESS_LOGS", " ".join(logs))
    settings.put("CUSTODES_WITNESS_STATE", str(state))


def _setting(name: str, low: int, high: int) -> int | None:
    """A whole-number setting from the environment, checked now (a clear error here, not a
    traceback from every server process); None when unset."""
    raw = settings.text(name).strip()
    if not raw:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InputError(
            f"{name} must be a whole number from {low} to {high}.", code="bad_argument"
        )
    return int(raw)


def _admission(
    reads: int | None, writes: int | None, wait_ms: int | None, grace: int | None
) -> int:
    """The admission limits and the grace period, handed to the server processes through the
    environment (like the witness) and checked now; returns the grace period in seconds."""
    for name, value in (
        ("CUSTODES_ADMIT_READS", reads),
        ("CUSTODES_ADMIT_WRITES", writes),
        ("CUSTODES_ADMIT_WAIT_MS", wait_ms),
        ("CUSTODES_GRACE", grace),
    ):
        if value is not None:
            settings.put(name, str(value))
    for name, high in (
        ("CUSTODES_ADMIT_READS", 1024),
        ("CUSTODES_ADMIT_WRITES", 1024),
        ("CUSTODES_ADMIT_WAIT_MS", 60_000),
        ("CUSTODES_ADMIT_QUEUE", 100_000),
    ):
        _setting(name, 0 if name.endswith(("WAIT_MS", "QUEUE")) else 1, high)
    grace_s = _setting("CUSTODES_GRACE", 0, 3600)
    return 10 if grace_s is None else grace_s


# --- the options (each a named type, so `serve` reads as its steps) ------------------------------

HostOpt = Annotated[
    str, typer.Option("--host", help="Address to listen on (loopback unless you say so).")
]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes.")]
WitnessKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--witness-key",
        help="Also run a C2SP witness at POST /v1/witness/add-checkpoint, signing with "
        "this key (custodes witness keygen).",
    ),
]
WitnessLogOpt = Annotated[
    list[str] | None,
    typer.Option("--witness-log", help="Verifier key of a log to witness (repeatable)."),
]
WitnessStateOpt = Annotated[
    Path | None,
    typer.Option("--witness-state", help="The witness's state file (default: in the home)."),
]
TrustedProxyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--trusted-proxy",
        help="Address (or network) of the reverse proxy whose X-Forwarded-For names the "
        "client (repeatable; default: CUSTODES_TRUSTED_PROXY). Anyone else's is ignored.",
    ),
]
AdmitReadsOpt = Annotated[
    int | None,
    typer.Option(
        "--admit-reads",
        min=1,
        max=1024,
        help="Reads (GET) each process runs at once; more wait briefly, then get 503 "
        "[env CUSTODES_ADMIT_READS; default 2].",
    ),
]
AdmitWritesOpt = Annotated[
    int | None,
    typer.Option(
        "--admit-writes",
        min=1,
        max=1024,
        help="Writes (POST, DELETE) each process runs at once, apart from the reads "
        "[env CUSTODES_ADMIT_WRITES; default 4].",
    ),
]
AdmitWaitOpt = Annotated[
    int | None,
    typer.Option(
        "--admit-wait-ms",
        min=0,
        max=60_000,
        help="How long a call waits for a free slot before it is answered 503 with "
        "Retry-After, having done nothing [env CUSTODES_ADMIT_WAIT_MS; default 250].",
    ),
]
GraceOpt = Annotated[
    int | None,
    typer.Option(
        "--grace",
        min=0,
        max=3600,
        help="Seconds a stopping server (SIGTERM) gives the calls it holds before it "
        "exits; running jobs stop at their next chunk, resumable [env CUSTODES_GRACE; "
        "default 10].",
    ),
]
JobQuotaOpt = Annotated[
    int | None,
    typer.Option(
        "--job-quota",
        min=1,
        max=1000,
        help="Jobs each caller may have waiting or running at once; one more is answered "
        "429 job_quota with Retry-After. Staff jobs run before agencies' waiting ones "
        "[env CUSTODES_JOB_QUOTA; default 4].",
    ),
]
UdsOpt = Annotated[
    Path | None,
    typer.Option(
        "--uds",
        help="Serve on this Unix domain socket instead of TCP. Its folder must be yours and "
        "closed to others (0700). The way to serve on a shared host: a reverse proxy on a "
        "dedicated host name in front.",
    ),
]


@app.command()
def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8600,
    workers: WorkersOpt = 1,
    witness_key: WitnessKeyOpt = None,
    witness_logs: WitnessLogOpt = None,
    witness_state: WitnessStateOpt = None,
    trusted_proxy: TrustedProxyOpt = None,
    admit_reads: AdmitReadsOpt = None,
    admit_writes: AdmitWritesOpt = None,
    admit_wait_ms: AdmitWaitOpt = None,
    grace: GraceOpt = None,
    job_quota: JobQuotaOpt = None,
    uds: UdsOpt = None,
    home: HomeOpt = None,
) -> None:
    """Serve the web console at / and the HTTP API under /v1 (OpenAPI at /v1/openapi.json,
    docs at /v1/docs) for the workspace. Plain HTTP: put a TLS-terminating reverse proxy in
    front of anything but the loopback interface (docs/api.md). Under overload a call waits
    at most --admit-wait-ms, then gets 503 with Retry-After; on SIGTERM the server refuses new
    calls, finishes those it holds within --grace seconds, and exits. Jobs (an upload's
    intake, processing, training, a release) run in a worker process beside each server
    process, at a lower CPU priority, and end with it."""
    with guarded(False):
        workspace_home = _check(host, home)
        proxies = _proxies(trusted_proxy)
        socket = _socket(uds.absolute()) if uds is not None else None
        if witness_key is not None:
            _witness(witness_key, witness_logs or [], witness_state, workspace_home)
        grace_s = _admission(admit_reads, admit_writes, admit_wait_ms, grace)
        _job_quota(job_quota)
    _hand_over(home, proxies)
    if socket is None and host in LOOPBACK:
        _warn_shared_host(host, port)
    _run(host, port, socket, workers, proxies, grace_s)


def _job_quota(quota: int | None) -> None:
    """The per-caller job quota, handed to the server processes and checked now."""
    if quota is not None:
        settings.put("CUSTODES_JOB_QUOTA", str(quota))
    _setting("CUSTODES_JOB_QUOTA", 1, 1000)


def _hand_over(home: object, proxies: str) -> None:
    """What every server process reads from its environment beyond the checked settings."""
    # Jobs run in a worker process of each server process, at a lower CPU priority: a large
    # job cannot hold the server's interpreter or grow its memory (services/jobs.py).
    settings.put("CUSTODES_JOB_WORKER", "process")
    if home is not None:
        settings.put("CUSTODES_HOME", str(home))
    settings.put("CUSTODES_TRUSTED_PROXY", proxies)  # read by the core at every sign-in


def _run(
    host: str, port: int, socket: Path | None, workers: int, proxies: str, grace_s: int
) -> None:
    import uvicorn

    uvicorn.run(
        "custodes.app:create_app",
        factory=True,
        host=host,
        port=port,
        uds=str(socket) if socket else None,
        workers=workers,
        # The forwarded client address and scheme are taken only from the trusted proxies
        # (the same rule the core applies to sign-in throttling), never from any peer.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=grace_s,
    )
