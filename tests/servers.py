"""Servers for the tests: a port, and a start-up that fails loudly.

A port found free can be taken before the server binds it: `serve` starts again on another
port when the server says its address is in use, and fails the test (with the server's log)
when the server exits or does not answer in time, instead of carrying on against nothing. An
in-process server gets its socket already bound (`bound_socket`), so there is no race at all."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

START_TIMEOUT = 180.0  # seconds: generous for a loaded machine; the test fails past it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bound_socket() -> socket.socket:
    """A listening-ready socket on a free loopback port (for uvicorn's `sockets=`)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def serve(
    command: Callable[[int], list[str]],
    env: dict[str, str],
    log: Path,
    *,
    health: str = "/v1/health",
    timeout: float = START_TIMEOUT,
    attempts: int = 3,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `command(port)` with its output in `log` and wait until `health` answers."""
    for attempt in range(attempts):
        port = free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(command(port), env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2)
                return proc, port
            except OSError:
                pass
            if proc.poll() is not None:
                text = _tail(log)
                if "address already in use" in text.lower() and attempt + 1 < attempts:
                    break  # the port was taken between finding it and binding it: again
                pytest.fail(f"the server exited ({proc.returncode}) before answering:\n{text}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"the server did not answer within {timeout:.0f} s:\n{_tail(log)}")
            time.sleep(0.05)
    raise AssertionError("unreachable")


def wait_started(server: object, thread: threading.Thread, timeout: float = START_TIMEOUT) -> None:
    """Wait for an in-process uvicorn server to start; fail loudly if it dies or does not."""
    deadline = time.monotonic() + timeout
    while not getattr(server, "started", False):
        if not thread.is_alive():
            pytest.fail("the in-process server stopped before it started")
        if time.monotonic() > deadline:
            pytest.fail(f"the in-process server did not start within {timeout:.0f} s")
        time.sleep(0.02)
