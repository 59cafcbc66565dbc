"""The job worker process of `custodes serve` (`CUSTODES_JOB_WORKER=process`): the server's
side (`Keeper`: starts the worker, hands it each job, learns when each ends, starts another
when one dies) and the worker's own loop (`_worker_main`). Why a process, spawned, and a pipe:
docs/decisions/2026-12-06-jobs-in-a-worker-process.md. The queue, the quotas and the services
are `custodes.services.jobs`', which hands the keeper the function that runs one job (a
private module: it declares no service of its own)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from custodes.store import jobs as rows
from custodes.workspace import Workspace

log = logging.getLogger("custodes.jobs")

# The worker's lanes: staff work before agencies' (lower goes first); the last, to stop.
STAFF, AGENCY, LAST = 0, 1, 2
# What runs one job: (workspace, stopping, caller, job id, kind, arguments, keywords).
Execute = Callable[..., None]

RESTARTED = {
    "code": "server_restarted",
    "title": "Server restarted",
    "detail": "The server stopped while this job was waiting or running; start it again (the "
    "work resumes where it stopped).",
}
WORKER_STOPPED = {
    "code": "worker_stopped",
    "title": "Job worker stopped",
    "detail": "The process running this job stopped (it was killed, or ran out of memory) "
    "before the job ended; start it again (the work resumes where it stopped).",
}
NICE = 10  # how much lower the job worker's CPU priority is than its server's (os.nice)


@dataclasses.dataclass
class _Held:
    """A job the server handed to its worker process and has not seen end."""

    job_id: str
    lane: int
    seq: int
    work: bytes  # pickled: the caller, the kind, the arguments, the cleanup
    cleanup: Callable[[], None] | None
    done: Future[None] = dataclasses.field(default_factory=Future)


class Keeper:
    """The server's side of its job worker process: starts it (and a new one when it dies),
    hands it the jobs, and learns from it when each has ended. One thread, the keeper, starts
    every worker and reads from it, so the worker's life is tied to a thread that lives as long
    as the server (`_die_with_server`)."""

    def __init__(self, ws: Workspace, stopping: threading.Event, execute: Execute) -> None:
        self.ws = ws
        self.stopping = stopping
        self.execute = execute  # what runs one job (`jobs._execute`), handed to each worker
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.held: dict[str, _Held] = {}
        self.conn: Connection | None = None  # to the live worker
        self.proc: BaseProcess | None = None
        self.wanted = True  # a worker now: the first job then finds it ready
        self.closing = False
        self.thread = threading.Thread(target=self._keep, name="custodes-job-keeper", daemon=True)
        self.thread.start()

    def _post(self, held: _Held) -> None:
        """Hand a job to the live worker (the lock held). A worker that has just died misses
        it: the keeper hands it to the next one."""
        if self.conn is None:
            self.wanted = True
            self.wake.notify()
            return
        with contextlib.suppress(OSError):
            self.conn.send(("job", held.lane, held.seq, held.job_id, held.work))

    def send(self, held: _Held) -> None:
        with self.lock:
            self.held[held.job_id] = held
            self._post(held)

    def stop(self) -> None:
        """The worker stops its running job at the next chunk; what it was handed and has not
        started fails in the store now (a job on its way through the pipe could otherwise
        start before the worker reads the word to stop), away from the caller's thread (the
        server's event loop)."""
        with self.lock:
            self._tell("stop")
            waiting = list(self.held)
        threading.Thread(target=self._fail_waiting, args=(waiting,), daemon=True).start()

    def _fail_waiting(self, waiting: list[str]) -> None:
        for job_id in waiting:
            try:
                rows.fail_queued(self.ws.engine, job_id, RESTARTED)  # a running one is left
            except Exception as exc:  # the worker fails it when it comes to it
                log.error("job %s left queued: %s", job_id, type(exc).__name__)

    def _tell(self, what: str) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send((what,))

    def wait(self, job_id: str, timeout: float | None) -> None:
        with self.lock:
            held = self.held.get(job_id)
        if held is not None:
            held.done.result(timeout)

    def close(self, timeout: float | None) -> None:
        """The worker finishes the job it runs (at most `timeout` seconds, then it is killed:
        the store rolls the job back, the next start fails it) and starts no other."""
        with self.lock:
            self.closing = True
            self._tell("close")
            self.wake.notify()
            proc = self.proc
        self.thread.join(timeout)  # the keeper ends once the worker has (only it reaps it)
        if self.thread.is_alive():
            if proc is not None:
                proc.kill()
            self.thread.join()

    def _keep(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork the threaded server
        while True:
            with self.lock:
                while not (self.wanted or self.closing):
                    self.wake.wait()
                if self.closing:
                    return
                self.wanted = False
                ours, theirs = context.Pipe()
                proc = context.Process(
                    target=_worker_main,
                    args=(theirs, str(self.ws.home), self.ws.store_url, os.getpid(), self.execute),
                    name="custodes-jobs",
                    daemon=True,  # ended with the server's interpreter, like the thread
                )
                try:
                    proc.start()
                except Exception as exc:  # no process to be had (limits, memory; a daemonic
                    # server): what it was to run fails, and the next job tries again
                    log.error("the job worker did not start: %s", type(exc).__name__)
                    ours.close()
                    theirs.close()
                    self._bury(False)
                    continue
                theirs.close()  # the worker's end is the worker's alone: its exit is our EOF
                self.conn, self.proc = ours, proc
                for held in sorted(self.held.values(), key=lambda h: h.seq):
                    self._post(held)
                if self.stopping.is_set():
                    self._tell("stop")
            ready = self._listen(ours)
            proc.join()
            with self.lock:
                self.conn = None
                ours.close()
                self._bury(ready)

    def _listen(self, conn: Connection) -> bool:
        """Read the worker until it is gone; whether it ever said it was ready."""
        ready = False
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return ready
            if message[0] == "ready":
                ready = True
            elif message[0] == "ended":
                with self.lock:
                    held = self.held.pop(message[1], None)
                if held is not None:
                    held.done.set_result(None)

    def _bury(self, ready: bool) -> None:
        """The worker is gone (the lock held). Closing: what it held is left to the next
        start, as a thread's would be. Otherwise the job it ran fails (`worker_stopped`; the
        server's own `server_restarted` when stopping) and its upload is removed; the jobs it
        had not started go to the next worker — unless this one never started (the next one
        would not either: they fail, and the next job starts another)."""
        stopping = self.stopping.is_set()
        problem = RESTARTED if stopping else WORKER_STOPPED
        for job_id, held in list(self.held.items()):
            if self.closing:
                held.done.cancel()
                del self.held[job_id]
                continue
            try:
                row = rows.get(self.ws.engine, job_id)
                state = None if row is None else row["state"]
                if state == "queued" and ready and not stopping:
                    continue  # never started: the next worker takes it
                # The upload goes before the row says `failed`: whoever sees the job ended
                # finds nothing of it left behind (a test caught the folder in between).
                try:
                    if held.cleanup is not None:
                        held.cleanup()
                finally:
                    if state == "running":
                        rows.finish(self.ws.engine, job_id, "failed", problem=problem)
                    elif state == "queued":
                        rows.fail_queued(self.ws.engine, job_id, problem)
            except Exception as exc:  # the keeper must outlive a store fault
                log.error("job %s left as it was: %s", job_id, type(exc).__name__)
            del self.held[job_id]
            held.done.set_result(None)
        self.wanted = bool(self.held) and not self.closing


def _die_with_server(server: int) -> None:
    """Linux: have the kernel kill this process when the server's thread that started it (its
    keeper) ends, the server killed included — even while a job holds this interpreter in a
    library's code. prctl(2) by ctypes: the standard library has no binding, and one call does
    not justify a dependency. Elsewhere the closed pipe (`_worker_main`) is the only tie."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != server:  # the server died before the tie was made
        os._exit(0)


def _worker_main(
    conn: Connection, home: str, store_url: str, server: int, execute: Execute
) -> None:
    """The job worker process: opens the workspace, says it is ready, then runs the jobs the
    server hands it one at a time, staff's before agencies', as the thread does."""
    _die_with_server(server)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    os.nice(NICE)
    from custodes.services import workspace as ws_svc

    try:
        ws = ws_svc.open_workspace(home, store_url)
    except Exception as exc:  # logged by type; the server fails what waits
        log.error("the job worker could not open the workspace: %s", type(exc).__name__)
        raise SystemExit(1) from None
    stopping = threading.Event()
    closing = threading.Event()
    todo: queue.PriorityQueue[tuple[int, int, tuple[str, bytes] | None]] = queue.PriorityQueue()

    def listen() -> None:
        try:
            while True:
                message = conn.recv()
                if message[0] == "job":
                    _, lane, seq, job_id, work = message
                    todo.put((lane, seq, (job_id, work)))
                elif message[0] == "stop":
                    stopping.set()
                else:  # close: finish the job that runs, start no other
                    closing.set()
                    todo.put((LAST, 0, None))
        except (EOFError, OSError):  # the server is gone: so is its worker, job and all (the
            os._exit(0)  # store rolls back what the job had not committed)

    threading.Thread(target=listen, name="custodes-job-listen", daemon=True).start()
    conn.send(("ready",))
    while (item := todo.get()[2]) is not None:
        if closing.is_set():
            continue  # left queued, as a thread leaves it: the next start fails it
        job_id, work = item
        who, kind, args, kwargs, cleanup = pickle.loads(work)
        try:
            execute(ws, stopping, who, job_id, kind, args, kwargs, cleanup)
        finally:
            if cleanup is not None:
                cleanup()
        conn.send(("ended", job_id))
    ws.close()
