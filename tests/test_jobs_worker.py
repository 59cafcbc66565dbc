"""Jobs in a worker process (issue #26 item 5): `custodes serve` runs its jobs in a process of
their own at a lower CPU priority, so a large job cannot starve the API; the worker dies with
its server; a worker killed mid-job fails that job (`worker_stopped`) and a new worker takes
the jobs that were waiting. No fixed sleeps: every wait polls the store or the server with a
deadline."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from conftest import Template, copy_template
from custodes.errors import InputError
from custodes.services import _worker, rules, users
from custodes.services import jobs as jobs_svc
from custodes.services import requests as requests_svc
from custodes.store import jobs as job_rows
from custodes.store.tables import jobs as jobs_table
from custodes.workspace import Workspace
from test_api_serve import _serve

DEADLINE = 300.0  # seconds: generous for a loaded machine; a test fails past it


def _until(what: str, check: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """Poll `check` until it returns something true; fail the test past the deadline."""
    end = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"not within {deadline:.0f} s: {what}")
        time.sleep(0.05)


@dataclass
class Served:
    home: Path
    url: str
    req: Path
    key: str
    files: dict[str, tuple[str, bytes]]


@pytest.fixture
def served(tmp_path: Path, _master_template: Template) -> Served:
    """A workspace with an agency's key, and an upload of 30,000 items (its intake takes long
    enough to be caught running)."""
    ws, people = copy_template(_master_template, tmp_path)
    try:
        rules.register_parties(ws, people.admin, "irc-6103-i-2")
        requests_svc.generate(ws, people.admin, "irc-6103-i-2", 20, 2, tmp_path / "req")
        key = users.key(ws, people.admin, "requester")["key"]
        users.confirm(ws, people.second_admin, "requester")
        home, url = ws.home, ws.store_url
    finally:
        ws.close()
    with open(tmp_path / "req" / "items.csv", newline="") as fh:
        items = list(csv.DictReader(fh))
    big = tmp_path / "big.csv"
    with open(big, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(items[0]))
        w.writeheader()
        w.writerows({**items[n % len(items)], "item_id": f"item-k{n}"} for n in range(30_000))
    files = {
        "envelope": ("envelope.json", (tmp_path / "req" / "envelope.json").read_bytes()),
        "items": ("items.csv", big.read_bytes()),
    }
    return Served(home, url, tmp_path / "req", key, files)


def _rows(url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = sa.select(jobs_table).where(jobs_table.c.id.in_(ids))
            return {r.id: dict(r._mapping) for r in conn.execute(q)}
    finally:
        engine.dispose()


def _workers(server: psutil.Process) -> list[psutil.Process]:
    """The server's job worker processes (multiprocessing's spawned children; its resource
    tracker is another child, not a worker)."""
    out = []
    for child in server.children():
        try:
            line = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "spawn_main" in line:
            out.append(child)
    return out


def _gone(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)  # dead, not yet reaped by its new parent
    except psutil.NoSuchProcess:
        return True


def _submit_async(base: str, s: Served) -> str:
    headers = {"Authorization": f"Bearer {s.key}", "Prefer": "respond-async"}
    r = httpx.post(f"{base}/v1/requests", files=s.files, headers=headers, timeout=120)
    assert r.status_code == 202, r.text
    assert r.headers["Preference-Applied"] == "respond-async"
    return str(r.json()["id"])


def _caught_running(
    url: str, ids: list[str], worker: psutil.Process
) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """A job the worker holds mid-way, and every job's row at that moment: one job seen
    `running`, the worker then frozen (SIGSTOP), and the job still `running` — a frozen worker
    cannot end it, so a kill now lands inside the job. None (the worker let go again) when the
    job ended between the two looks."""
    running = [i for i, row in _rows(url, ids).items() if row["state"] == "running"]
    if not running:
        return None
    worker.suspend()
    now = _rows(url, ids)
    if now[running[0]]["state"] == "running":
        return running[0], now
    worker.resume()
    return None


def _caught_outside_a_write(
    url: str, ids: list[str], worker: psutil.Process
) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """As `_caught_running`, but on SQLite only where the frozen worker holds no write
    transaction: frozen inside one, it would hold the store's write lock for as long as the
    test keeps it frozen, and the test's own next call (its access-log row) would wait out
    the busy timeout and fail with `database is locked`, which no user ever meets (a worker is
    never frozen). The lock is probed with `BEGIN IMMEDIATE` and no wait."""
    caught = _caught_running(url, ids, worker)
    if caught is None or not url.startswith("sqlite"):
        return caught
    probe = sa.create_engine(url, connect_args={"timeout": 0})
    try:
        with probe.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("ROLLBACK")
        return caught
    except sa.exc.OperationalError:
        worker.resume()  # mid-write: let it go on and look again
        return None
    finally:
        probe.dispose()


@pytest.mark.slow
def test_serve_runs_jobs_in_a_worker_process_at_a_lower_priority(
    served: Served, tmp_path: Path
) -> None:
    server, base, _ = _serve(served.home, served.url, tmp_path / "serve.log")
    try:
        me = psutil.Process(server.pid)
        worker = _until("the job worker started", lambda: _workers(me))[0]
        lower = min(me.nice() + _worker.NICE, 19)  # it lowers its priority once started
        _until(f"the worker at nice {lower}", lambda: worker.nice() == lower)
        job = _submit_async(base, served)
        headers = {"Authorization": f"Bearer {served.key}"}

        def ended() -> dict[str, Any] | None:
            r = httpx.get(f"{base}/v1/jobs/{job}", headers=headers, timeout=60)
            assert r.status_code == 200, r.text
            return r.json() if r.json()["state"] in jobs_svc.ENDED else None

        done = _until("the intake job ended", ended)
        assert done["state"] == "succeeded", done
        assert done["request_id"] and done["result"]["request_id"] == done["request_id"]
        assert [w.pid for w in _workers(me)] == [worker.pid]  # the same worker, still there
        assert list((served.home / "staging").iterdir()) == []  # the job removed its upload
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode in (0, -signal.SIGTERM)
    _until("the worker ended with its server", lambda: _gone(worker))


@pytest.mark.slow
def test_a_worker_killed_mid_job_fails_that_job_and_a_new_worker_takes_the_rest(
    served: Served, tmp_path: Path
) -> None:
    server, base, _ = _serve(served.home, served.url, tmp_path / "serve.log", "--job-quota", "10")
    try:
        me = psutil.Process(server.pid)
        first = _until("the job worker started", lambda: _workers(me))[0]
        first.suspend()  # the three uploads reach the worker's queue together
        started = [_submit_async(base, served) for _ in range(3)]
        first.resume()
        killed, at_kill = _until(
            "a job caught running", lambda: _caught_running(served.url, started, first)
        )
        waiting = [j for j, row in at_kill.items() if row["state"] == "queued"]
        assert waiting, "no job waited behind the one killed: nothing was handed on"
        first.kill()  # SIGKILL, mid-job (frozen inside it)
        _until("the killed worker gone", lambda: _gone(first))

        def all_ended() -> dict[str, dict[str, Any]] | None:
            rows = _rows(served.url, started)
            return rows if all(r["state"] in jobs_svc.ENDED for r in rows.values()) else None

        ended = _until("every job ended", all_ended)
        problem = json.loads(str(ended[killed]["problem"]))
        assert ended[killed]["state"] == "failed" and problem["code"] == "worker_stopped"
        for job in waiting:  # what waited was taken by a new worker, and done
            assert ended[job]["state"] == "succeeded", ended[job]
        second = _workers(me)
        assert len(second) == 1 and second[0].pid != first.pid
        assert list((served.home / "staging").iterdir()) == []  # the killed job's upload too
        # the server itself lived on: it answers, with the job's reason
        headers = {"Authorization": f"Bearer {served.key}"}
        r = httpx.get(f"{base}/v1/jobs/{killed}", headers=headers, timeout=60)
        assert r.status_code == 200 and r.json()["problem"]["code"] == "worker_stopped"
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_the_worker_dies_with_its_killed_server_and_the_next_server_fails_its_job(
    served: Served, tmp_path: Path
) -> None:
    server, base, _ = _serve(served.home, served.url, tmp_path / "serve.log", "--job-quota", "10")
    try:
        me = psutil.Process(server.pid)
        worker = _until("the job worker started", lambda: _workers(me))[0]
        started = [_submit_async(base, served) for _ in range(2)]
        held, _ = _until(
            "a job caught running", lambda: _caught_running(served.url, started, worker)
        )
        server.kill()  # the worker is frozen mid-job: only the kernel can end it now
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
    _until("the orphaned worker killed", lambda: _gone(worker))
    assert _rows(served.url, [held])[held]["state"] == "running"  # its transaction rolled back
    again, _, _ = _serve(served.home, served.url, tmp_path / "serve2.log")
    try:
        row = _rows(served.url, [held])[held]
        assert row["state"] == "failed"
        assert json.loads(str(row["problem"]))["code"] == "server_restarted"
        assert list((served.home / "staging").iterdir()) == []
    finally:
        again.terminate()
        again.wait(timeout=60)


# --- the worker process driven directly (no HTTP) -------------------------------------------


@pytest.fixture
def ready(master: tuple[Workspace, Any], tmp_path: Path) -> Iterator[tuple[Workspace, Any, str]]:
    ws, people = master
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests_svc.generate(ws, people.admin, "irc-6103-i-2", 20, 2, tmp_path / "req")
    rid = requests_svc.submit(ws, people["requester"], tmp_path / "req").request_id
    yield ws, people, rid


def test_an_unknown_job_worker_setting_is_refused(
    ready: tuple[Workspace, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, _ = ready
    monkeypatch.setenv("CUSTODES_JOB_WORKER", "fork")
    with pytest.raises(InputError) as refused:
        jobs_svc.Jobs(ws)
    assert refused.value.code == "bad_argument"


def test_a_job_whose_work_cannot_reach_the_worker_is_refused_before_it_is_recorded(
    ready: tuple[Workspace, Any, str], tmp_path: Path
) -> None:
    ws, people, _ = ready
    jobs = jobs_svc.Jobs(ws, worker="process")
    try:
        before = len(job_rows.listing(ws.engine, "requester"))
        with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # a lambda
            jobs.start(
                people["requester"],
                "submit",
                None,
                args=(tmp_path / "req",),
                cleanup=lambda: None,
            )
        assert len(job_rows.listing(ws.engine, "requester")) == before
    finally:
        jobs.close()


def test_the_worker_process_runs_jobs_and_a_stopping_server_fails_what_waits(
    ready: tuple[Workspace, Any, str],
) -> None:
    ws, people, rid = ready
    jobs = jobs_svc.Jobs(ws, worker="process")
    try:
        job = jobs.start(people["officer"], "train", rid)
        jobs.wait(job["id"], timeout=DEADLINE)
        assert jobs.get(people["officer"], job["id"])["state"] == "succeeded"
        worker = jobs.keeper.proc if jobs.keeper else None
        assert worker is not None and worker.pid != os.getpid() and worker.is_alive()
        # the worker is frozen: what comes now waits in its queue when the server stops
        assert worker.pid is not None
        psutil.Process(worker.pid).suspend()
        waiting = jobs.start(people["officer"], "process", rid)
        jobs.stop()
        _until(
            "the waiting job failed by the stopping server",
            lambda: (job_rows.get(ws.engine, waiting["id"]) or {}).get("state") == "failed",
        )
        psutil.Process(worker.pid).resume()  # it comes to the job: not started
        jobs.wait(waiting["id"], timeout=DEADLINE)
        ended = jobs.get(people["officer"], waiting["id"])
        assert ended["state"] == "failed" and ended["problem"]["code"] == "server_restarted"
    finally:
        jobs.close(DEADLINE)
    assert not worker.is_alive()
    again = jobs_svc.Jobs(ws, worker="process")
    try:
        job = again.start(people["officer"], "process", rid)
        again.wait(job["id"], timeout=DEADLINE)
        assert again.get(people["officer"], job["id"])["state"] == "succeeded"
    finally:
        again.close(DEADLINE)


def test_a_worker_that_cannot_start_fails_the_job_and_the_next_job_starts_another(
    ready: tuple[Workspace, Any, str],
) -> None:
    """A worker that dies before it is ready (here: the workspace it opens is readable by
    others, which opening refuses) fails what it was given, `worker_stopped`, instead of
    being started again and again; the next job starts a new worker."""
    ws, people, rid = ready
    ws.home.chmod(0o755)
    jobs = jobs_svc.Jobs(ws, worker="process")
    try:
        job = jobs.start(people["officer"], "train", rid)
        jobs.wait(job["id"], timeout=DEADLINE)
        ended = jobs.get(people["officer"], job["id"])
        assert ended["state"] == "failed" and ended["problem"]["code"] == "worker_stopped"
        ws.home.chmod(0o700)
        job = jobs.start(people["officer"], "train", rid)
        jobs.wait(job["id"], timeout=DEADLINE)
        assert jobs.get(people["officer"], job["id"])["state"] == "succeeded"
    finally:
        ws.home.chmod(0o700)
        jobs.close(DEADLINE)


def test_a_worker_process_not_to_be_had_fails_the_job_and_the_next_job_tries_again(
    ready: tuple[Workspace, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system gives no new process (a process limit, no memory: `fork` fails with
    EAGAIN): the job fails, `worker_stopped`, instead of waiting forever; once processes can
    be had again, the next job starts a worker."""
    import errno
    import multiprocessing.context

    ws, people, rid = ready

    def no_process(self: object) -> None:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(multiprocessing.context.SpawnProcess, "start", no_process)
        jobs = jobs_svc.Jobs(ws, worker="process")
        try:
            job = jobs.start(people["officer"], "train", rid)
            jobs.wait(job["id"], timeout=DEADLINE)
            ended = jobs.get(people["officer"], job["id"])
            assert ended["state"] == "failed" and ended["problem"]["code"] == "worker_stopped"
        except BaseException:
            jobs.close(DEADLINE)
            raise
    try:
        job = jobs.start(people["officer"], "train", rid)
        jobs.wait(job["id"], timeout=DEADLINE)
        assert jobs.get(people["officer"], job["id"])["state"] == "succeeded"
    finally:
        jobs.close(DEADLINE)


def test_the_worker_process_takes_staff_jobs_before_agencies_waiting_ones(
    ready: tuple[Workspace, Any, str], tmp_path: Path
) -> None:
    """The lanes, kept in the worker process: while it runs an agency's large upload, two more
    uploads and then an officer's `train` wait; the training runs to its end before either
    upload starts."""
    import shutil

    ws, people, rid = ready
    big = tmp_path / "big"
    shutil.copytree(tmp_path / "req", big)
    with open(tmp_path / "req" / "items.csv", newline="") as fh:
        items = list(csv.DictReader(fh))
    with open(big / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(items[0]))
        w.writeheader()
        w.writerows({**items[n % len(items)], "item_id": f"item-k{n}"} for n in range(30_000))
    jobs = jobs_svc.Jobs(ws, worker="process")
    try:
        first = jobs.start(people["requester"], "submit", None, args=(big,))
        assert jobs.keeper is not None and jobs.keeper.proc is not None
        assert jobs.keeper.proc.pid is not None
        worker = psutil.Process(jobs.keeper.proc.pid)
        _until(
            "the large upload caught running outside a write",
            lambda: _caught_outside_a_write(ws.store_url, [first["id"]], worker),
        )
        agency = [
            jobs.start(people["requester"], "submit", None, args=(tmp_path / "req",))
            for _ in range(2)
        ]
        train = jobs.start(people["officer"], "train", rid)  # queued after the agency's
        worker.resume()
        for job in (first, *agency, train):
            jobs.wait(job["id"], timeout=DEADLINE)
        done = {j["id"]: job_rows.get(ws.engine, j["id"]) for j in (first, *agency, train)}
        assert {d["state"] for d in done.values() if d} == {"succeeded"}
        staff_job = done[train["id"]]
        assert staff_job is not None
        for job in agency:  # the officer's training ran to its end before any upload started
            row = done[job["id"]]
            assert row is not None and staff_job["finished_at"] <= row["started_at"]
    finally:
        jobs.close(DEADLINE)


@pytest.mark.slow
def test_each_server_process_has_its_own_worker_and_all_end_with_the_server(
    served: Served, tmp_path: Path
) -> None:
    """`serve --workers 2`: uvicorn's two server processes each start a job worker; a job
    started through either is done; on SIGTERM every one of them ends."""
    server, base, _ = _serve(served.home, served.url, tmp_path / "serve.log", "--workers", "2")
    try:
        top = psutil.Process(server.pid)

        def workers() -> list[psutil.Process] | None:
            found = [w for p in _workers(top) for w in _workers(p)]
            return found if len(found) == 2 else None

        pair = _until("a job worker under each server process", workers)
        assert {w.parent().pid for w in pair if w.parent()} != {top.pid}
        tree = top.children(recursive=True)
        job = _submit_async(base, served)
        _until("the intake job ended", lambda: _rows(served.url, [job])[job]["finished_at"])
        assert _rows(served.url, [job])[job]["state"] == "succeeded"
    finally:
        server.terminate()
        server.wait(timeout=60)
    _until("every process of the server ended", lambda: all(_gone(p) for p in tree))
