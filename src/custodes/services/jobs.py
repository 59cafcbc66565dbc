"""Long work as durable jobs: processing a request, training the model, a release.

A face starts a job with `Jobs.start(caller, kind, request_id)` and answers at once (the API:
`202 Accepted` with the job's location); the work runs in the background as that caller,
through the same service (and so the same door) a direct call would use, which re-checks the
caller's session at every chunk: a suspension stops a running job at its next chunk. Progress,
the result or the problem (the registered error code) are kept in the store, so any face can
show them. A job runs at most once: a server that stops fails the jobs it held at its next
start, and the caller starts the work again (process, train and release resume where they
stopped). One job at a time: the work is CPU- and memory-bound, and a 2-core machine gains
nothing from running two at once.

Where the work runs (`CUSTODES_JOB_WORKER`; docs/decisions/2026-12-06-jobs-in-a-worker-process.md):
`custodes serve` runs it in **a job worker process** beside the server, started with the
"spawn" context (never a fork of the threaded server) at a lower CPU priority (`os.nice`), so
a million-item job neither holds the server's interpreter nor grows its memory, and the API's
reads keep a core. The server keeps the door, the quota and the job's row; it hands the worker
the job (its id, the caller, the arguments) over a pipe, and the worker claims the row
(`queued` -> `running`) and runs the service exactly as the thread did. The worker dies with
its server: the kernel kills it when the server's thread that started it ends (Linux), and it
exits when its pipe to the server closes. A worker that dies (killed, out of memory) fails the
job it was running (`worker_stopped`, resumable like `server_restarted`); the server starts a
new worker, which takes the jobs that were still waiting. Without the setting (the tests'
in-process apps, `Jobs(ws)`), the work runs in a thread of the server's own process.

Nobody monopolises the worker (docs/decisions/2026-12-06-job-quotas-and-lanes.md): each caller
has at most `CUSTODES_JOB_QUOTA` jobs waiting or running (4 by default); one more is refused
`429 job_quota` with `Retry-After`, before anything is recorded. And the worker takes staff
work first: a job a staff member starts goes ahead of every agency's waiting job (the running
one finishes), so an agency's uploads never hold up an officer's `train` or a release.

A stopping server calls `stop()`: a running job stops at its next chunk and a queued one does
not start; both end `failed` with `server_restarted` (start them again: the work resumes).
`close(timeout)` waits at most that long for a job that has no chunks (a release, an intake);
then the worker thread is left behind (a daemon) or the worker process killed, so a job still
running does not keep the server alive (the store's transaction rolls back; the next start
fails the job and the work resumes).

Why no job-queue library: Celery, RQ and arq need a broker (Redis) that the embedded default
does not have; Procrastinate and pgqueuer need PostgreSQL. A table and one worker do what is
needed on both stores (docs/decisions/2026-11-30-jobs-in-the-store.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import pickle
import queue
import shutil
import tempfile
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from custodes import settings
from custodes.access import Caller, CheckedCall, service
from custodes.access.door import enter
from custodes.access.roles import SEES_EVERY_JOB
from custodes.errors import (
    ConflictError,
    CustodesError,
    InputError,
    NotFound,
    Overloaded,
    RateLimited,
    from_fault,
)
from custodes.services import decisions, matching, requests
from custodes.services._worker import AGENCY, LAST, RESTARTED, STAFF, Keeper, _Held
from custodes.store import jobs as rows
from custodes.workspace import Workspace

log = logging.getLogger("custodes.jobs")
ENDED = rows.ENDED

# kind -> the service that does the work (its action is checked when the job is started and
# again, by the service itself, when it runs)
KINDS: dict[str, Callable[..., Any]] = {
    "process": decisions.process,
    "train": matching.train,
    "release": decisions.release,
    "submit": requests.submit,  # a large upload's intake, when the agency prefers to wait
}
# the kinds whose service reports progress per chunk (and so can be stopped between chunks)
CHUNKED = ("process", "train")
WORKERS = ("thread", "process")


def _quota() -> int:
    raw = settings.text("CUSTODES_JOB_QUOTA").strip()
    if not raw:
        return 4
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InputError(
            "CUSTODES_JOB_QUOTA must be a whole number from 1 to 1000.", code="bad_argument"
        )
    return int(raw)


def _where() -> str:
    """Where jobs run: "process" (what `custodes serve` sets) or "thread" (the default)."""
    raw = settings.text("CUSTODES_JOB_WORKER").strip() or "thread"
    if raw not in WORKERS:
        raise InputError("CUSTODES_JOB_WORKER must be 'process' or 'thread'.", code="bad_argument")
    return raw


STAGING = "staging"  # the workspace's folder of uploads on their way to a job
QUOTA_RETRY_AFTER = 30  # seconds: a job of the kind agencies start takes about that long


class Cancelled(Exception):
    """Raised inside a job's progress callback when its cancellation was requested."""


class Stopping(Exception):
    """Raised inside a job's progress callback when the server is stopping."""


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _problem_of(exc: CustodesError) -> dict[str, Any]:
    return {"code": exc.code, "title": exc.title, "status": exc.http_status, "detail": exc.message}


def _execute(
    ws: Workspace,
    stopping: threading.Event,
    who: Caller,
    job_id: str,
    kind: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cleanup: Callable[[], None] | None = None,
) -> None:
    """Run one job to its end and record how it ended (in the worker thread or process).
    `cleanup` (removing the job's upload) runs before the row says the job ended, so whoever
    sees it ended finds nothing of it left behind; the caller runs it again on its way out
    (it is idempotent), should this raise."""
    engine = ws.engine

    def tidy() -> None:
        if cleanup is not None:
            cleanup()

    if stopping.is_set():  # queued when the server began to stop: not started
        tidy()
        rows.fail_queued(engine, job_id, RESTARTED)
        return
    if not rows.claim(engine, job_id):
        tidy()
        return

    def progress(stage: str, done: int, total: int) -> None:
        if rows.progress(engine, job_id, {"stage": stage, "done": done, "total": total}):
            raise Cancelled
        if stopping.is_set():
            raise Stopping

    try:
        extra = {"progress": progress} if kind in CHUNKED else {}
        try:
            result = KINDS[kind](ws, who, *args, **kwargs, **extra)
        finally:
            tidy()
    except Cancelled:
        rows.finish(engine, job_id, "cancelled")
    except Stopping:
        rows.finish(engine, job_id, "failed", problem=RESTARTED)
    except CustodesError as exc:
        rows.finish(engine, job_id, "failed", problem=_problem_of(exc))
    except Exception as exc:  # a fault of the machine (coded), or unexpected: logged by
        # type and place (a library's message may quote data)
        fault = from_fault(exc)
        if fault is not None:
            rows.finish(engine, job_id, "failed", problem=_problem_of(fault))
            return
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        log.error(
            "job %s (%s) failed: %s at %s:%s",
            job_id,
            kind,
            type(exc).__name__,
            frame.filename,
            frame.lineno,
        )
        rows.finish(
            engine,
            job_id,
            "failed",
            problem={"code": "internal", "title": "Internal error", "status": 500},
        )
    else:
        rows.finish(engine, job_id, "succeeded", result=_jsonable(result))


class Jobs:
    """The jobs of one server process over one workspace. `worker`: "process" or "thread"
    (default: `CUSTODES_JOB_WORKER`, else "thread")."""

    def __init__(self, ws: Workspace, *, worker: str | None = None) -> None:
        where = worker or _where()
        self.ws = ws
        self.failed_at_start = rows.fail_unfinished(ws.engine, RESTARTED)
        self.cleaned_at_start = _clean_staging(ws)
        self.running: dict[str, Future[None]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.quota = _quota()
        # One daemon worker (not a ThreadPoolExecutor, whose threads the interpreter joins at
        # exit: a long job would keep a stopped server's process alive), taking the jobs by
        # lane, then in the order they came (`seq`). With a worker process, the lanes are
        # kept the same way in that process.
        self.queue: queue.PriorityQueue[
            tuple[int, int, tuple[Future[None], Callable[[], None]] | None]
        ] = queue.PriorityQueue()
        self.seq = itertools.count()
        self.keeper: Keeper | None = None
        self.worker: threading.Thread | None = None
        if where == "process":
            self.keeper = Keeper(ws, self.stopping, _execute)
        else:
            self.worker = threading.Thread(target=self._serve, name="custodes-job", daemon=True)
            self.worker.start()

    def _serve(self) -> None:
        while (item := self.queue.get()[2]) is not None:
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fn()
            except BaseException as exc:  # recorded by _work; kept for wait()
                fut.set_exception(exc)
            else:
                fut.set_result(None)

    def start(
        self,
        who: Caller,
        kind: str,
        request_id: str | None,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Queue `kind` on `request_id` as `who` (refused now if `who` may not do it). `args`
        and `kwargs` go to the service after the request id (or instead of it, for a
        submission, which has none yet); `cleanup()` runs when the job has ended (with a
        worker process, there: it must be picklable, e.g. a `functools.partial`)."""
        fn = KINDS.get(kind)
        if fn is None:
            raise InputError("Unknown job kind.", code="bad_argument")
        if self.stopping.is_set():
            raise Overloaded(
                "The server is stopping; nothing was started. Try again shortly.",
                code="shutting_down",
                retry_after=5,
            )
        call = enter(self.ws, who, fn.action, request_id=request_id)  # type: ignore[attr-defined]
        if rows.active(self.ws.engine, call.actor) >= self.quota:
            raise RateLimited(
                f"This account already has {self.quota} jobs waiting or running; nothing was "
                "started. Try again when one has ended (GET /v1/jobs).",
                code="job_quota",
                retry_after=QUOTA_RETRY_AFTER,
            )
        first = () if request_id is None else (request_id,)
        lane = STAFF if call.agency is None else AGENCY
        if self.keeper is not None:
            # what the worker process gets, pickled now: one that cannot be is a programming
            # error, raised before anything is recorded
            work = pickle.dumps((who, kind, first + args, kwargs or {}, cleanup))
            job_id = rows.create(self.ws.engine, kind, request_id, call.actor)
            self.keeper.send(_Held(job_id, lane, next(self.seq), work, cleanup))
            return self.get(who, job_id)
        job_id = rows.create(self.ws.engine, kind, request_id, call.actor)
        job = (first + args, kwargs or {}, cleanup)
        fut: Future[None] = Future()
        with self.lock:
            self.running[job_id] = fut
        self.queue.put((lane, next(self.seq), (fut, lambda: self._run(who, job_id, kind, job))))
        return self.get(who, job_id)

    def _run(
        self, who: Caller, job_id: str, kind: str, work: tuple[tuple[Any, ...], dict[str, Any], Any]
    ) -> None:
        args, kwargs, cleanup = work
        try:
            _execute(self.ws, self.stopping, who, job_id, kind, args, kwargs, cleanup)
        finally:
            with self.lock:
                self.running.pop(job_id, None)
            if cleanup is not None:  # again, should the job have failed before its own
                cleanup()

    def staging(self) -> Path:
        """A new private folder for an upload on its way to a job (or to a direct call), in
        the workspace's `staging/`, named for this process: the next start of a server
        removes what a killed one left there (`_clean_staging`). The caller removes it when
        done (a job's `cleanup`)."""
        root = self.ws.home / STAGING
        root.mkdir(mode=0o700, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))

    def get(self, who: Caller, job_id: str) -> dict[str, Any]:
        return job(self.ws, who, job_id)

    def cancel(self, who: Caller, job_id: str) -> dict[str, Any]:
        return cancel(self.ws, who, job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """For tests and the CLI: block until the job has ended."""
        if self.keeper is not None:
            self.keeper.wait(job_id, timeout)
            return
        with self.lock:
            fut = self.running.get(job_id)
        if fut is not None:
            fut.result(timeout)

    def stop(self) -> None:
        """The server is stopping: a running job stops at its next chunk, a queued one does not
        start, no new one is accepted (each ends `failed`, `server_restarted`: resumable)."""
        self.stopping.set()
        if self.keeper is not None:
            self.keeper.stop()

    def close(self, timeout: float | None = None) -> None:
        """Let the worker finish the job it runs (at most `timeout` seconds; then the job is
        left to the next start) and end it; jobs still queued do not start."""
        if self.keeper is not None:
            self.keeper.close(timeout)
            return
        with self.lock:
            for fut in self.running.values():
                fut.cancel()  # only a job not started yet can be cancelled
        self.queue.put((LAST, next(self.seq), None))
        assert self.worker is not None
        self.worker.join(timeout)


def _clean_staging(ws: Workspace) -> int:
    """Remove the staged uploads of server processes that are gone (killed with their jobs
    queued or running: `fail_unfinished` has failed those jobs); how many were removed."""
    root = ws.home / STAGING
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        pid = folder.name.split("-", 1)[0]
        if pid != str(os.getpid()) and not rows.alive(f"{rows.HOST}:{pid}"):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _visible(call: CheckedCall, job_id: str) -> dict[str, Any]:
    row = rows.get(call.ws.engine, job_id)
    # A job is its starter's; the roles that see every job see it (the door checked the
    # same, `roles.RESOURCES`). Anyone else: no such job.
    if row is None or (row["actor"] != call.actor and not call.caller.roles & set(SEES_EVERY_JOB)):
        raise NotFound(f"No job {job_id}.", code="unknown_job")
    return row


@service("jobs.read")
def job(call: CheckedCall, job_id: str) -> dict[str, Any]:
    """One job: kind, request, state, progress, result or problem."""
    return _visible(call, job_id)


@service("jobs.read")
def listing(call: CheckedCall) -> list[dict[str, Any]]:
    """The caller's jobs (every job for an auditor), newest first."""
    everyone = bool(call.caller.roles & set(SEES_EVERY_JOB))
    return rows.listing(call.ws.engine, None if everyone else call.actor)


@service("jobs.cancel")
def cancel(call: CheckedCall, job_id: str) -> dict[str, Any]:
    """Cancel a queued job, or stop a running one at its next chunk (its starter only)."""
    row = _visible(call, job_id)
    if row["actor"] != call.actor:
        raise NotFound(f"No job {job_id}.", code="unknown_job")
    if row["state"] in rows.ENDED:
        raise ConflictError(f"Job {job_id} has already {row['state']}.", code="job_ended")
    rows.cancel(call.ws.engine, job_id)
    return _visible(call, job_id)
