"""The rows behind durable jobs and idempotency keys.

Bookkeeping that must be written even when the caller can no longer act (a job whose caller was
suspended mid-way still ends as `failed`; a server that restarts fails the jobs it held; a
submission that failed frees its idempotency key), so it opens its own transactions here, where
the store lives, instead of going through the caller's door. It decides nothing: who may start,
read or cancel a job is the services' and the door's business.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update

from custodes.store.tables import idempotency_keys, jobs

ENDED = ("succeeded", "failed", "cancelled")


HOST = socket.gethostname()
RUNNER = f"{HOST}:{os.getpid()}"


def alive(runner: str) -> bool:
    """Whether the server process named `runner` still runs (on this host; another host's
    processes are presumed alive: that host fails its own jobs when it restarts)."""
    host, _, pid = runner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    for k in ("progress", "result", "problem"):
        out[k] = json.loads(out[k]) if out[k] else None
    return out


def create(engine: Engine, kind: str, request_id: str | None, actor: str) -> str:
    job_id = "job-" + secrets.token_hex(8)
    with engine.begin() as conn:
        conn.execute(
            insert(jobs).values(
                id=job_id,
                kind=kind,
                request_id=request_id,
                actor=actor,
                runner=RUNNER,
                state="queued",
                cancel_requested=False,
                created_at=_now(),
            )
        )
    return job_id


def active(engine: Engine, actor: str) -> int:
    """How many of `actor`'s jobs wait or run (what a job quota counts)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.actor == actor, jobs.c.state.in_(("queued", "running")))
            ).scalar_one()
        )


def get(engine: Engine, job_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        r = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    return _row(r) if r else None


def listing(engine: Engine, actor: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    q = select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
    if actor is not None:
        q = q.where(jobs.c.actor == actor)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def claim(engine: Engine, job_id: str) -> bool:
    """queued -> running, once: False when the job was cancelled or already taken."""
    with engine.begin() as conn:
        n = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == "queued")
            .values(state="running", started_at=_now())
        ).rowcount
    return n == 1


def progress(engine: Engine, job_id: str, value: dict[str, Any]) -> bool:
    """Record progress; True when cancellation was requested meanwhile."""
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(progress=json.dumps(value)))
        return bool(
            conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
        )


def finish(
    engine: Engine,
    job_id: str,
    state: str,
    *,
    result: Any = None,
    problem: dict[str, Any] | None = None,
) -> None:
    made = result.get("request_id") if isinstance(result, dict) else None
    with engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                state=state,
                finished_at=_now(),
                result=json.dumps(result, default=str) if result is not None else None,
                problem=json.dumps(problem) if problem else None,
                # a job that made a request (an intake) names it once it has succeeded
                request_id=func.coalesce(
                    jobs.c.request_id, made if isinstance(made, str) else None
                ),
            )
        )


def fail_queued(engine: Engine, job_id: str, problem: dict[str, Any]) -> None:
    """A job that was still waiting when its server began to stop ends failed, not started."""
    with engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == "queued")
            .values(state="failed", finished_at=_now(), problem=json.dumps(problem))
        )


def cancel(engine: Engine, job_id: str) -> str:
    """Cancel a queued job now, ask a running one to stop; returns the state after."""
    with engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == "queued")
            .values(state="cancelled", finished_at=_now(), cancel_requested=True)
        )
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == "running")
            .values(cancel_requested=True)
        )
        return str(conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar())


def fail_unfinished(engine: Engine, problem: dict[str, Any]) -> int:
    """At server start: every job still queued or running whose server process is gone ends
    as failed — none is ever run twice; the caller starts the work again."""
    with engine.begin() as conn:
        stale = [
            r.id
            for r in conn.execute(
                select(jobs.c.id, jobs.c.runner).where(jobs.c.state.in_(("queued", "running")))
            )
            if r.runner != RUNNER and not alive(r.runner)
        ]
        if stale:
            conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(stale))
                .values(state="failed", finished_at=_now(), problem=json.dumps(problem))
            )
    return len(stale)


def idempotency_begin(
    engine: Engine, owner: str, key: str, payload_sha256: str
) -> dict[str, Any] | None:
    """Reserve (owner, key) for this payload; the existing row when there is one."""
    with engine.begin() as conn:
        row = conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.owner == owner, idempotency_keys.c.key == key
            )
        ).first()
        if row is not None:
            return dict(row._mapping)
        conn.execute(
            insert(idempotency_keys).values(
                owner=owner,
                key=key,
                payload_sha256=payload_sha256,
                state="running",
                created_at=_now(),
            )
        )
    return None


def idempotency_end(engine: Engine, owner: str, key: str, response: Any | None) -> None:
    """Store the answer (done), or free the key when the work failed (response None)."""
    where = (idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)
    with engine.begin() as conn:
        if response is None:
            conn.execute(delete(idempotency_keys).where(*where))
        else:
            conn.execute(
                update(idempotency_keys)
                .where(*where)
                .values(state="done", response=json.dumps(response, default=str))
            )
