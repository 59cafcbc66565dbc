"""Admission control (`custodes.http.admission`) and a stopping server's jobs, without a server:
the gate's decisions in order (no clock is asserted), and `Jobs.stop()` on a real workspace."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from custodes.errors import InputError, Overloaded
from custodes.http.admission import Gate, Limits
from custodes.services import jobs as jobs_svc
from custodes.services import requests as requests_svc
from custodes.services import rules
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

A, B = b"agency-a", b"agency-b"


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_full_class_without_waiting_refuses_at_once() -> None:
    async def go() -> list[str | None]:
        gate = Gate(limit=2, capacity=2, wait=0)
        return [await gate.enter(A) for _ in range(3)]

    assert _run(go()) == [None, None, "overloaded"]


def test_past_one_place_per_slot_a_queue_too_slow_to_clear_refuses_at_once() -> None:
    """Calls have been taking a second each (the running average); with one call already
    waiting for the one slot, the next would wait far beyond the target: refused now, not
    after the wait."""

    async def go() -> list[str | None]:
        gate = Gate(limit=1, capacity=10, wait=60, target=0.5)
        assert await gate.enter(A) is None
        gate.leave(A, took=1.0)
        assert await gate.enter(A) is None  # holds the slot
        first = asyncio.ensure_future(gate.enter(B))  # one place per slot: it waits
        await asyncio.sleep(0)
        second = await gate.enter(B)
        gate.leave(A, took=1.0)
        return [await first, second]

    assert _run(go()) == [None, "overloaded"]


def test_a_call_not_admitted_within_the_wait_is_refused_and_leaves_no_trace() -> None:
    async def go() -> tuple[str | None, int, int]:
        gate = Gate(limit=1, capacity=4, wait=0.01)
        assert await gate.enter(A) is None  # holds the only slot and never leaves
        code = await gate.enter(B)
        return code, gate.waiting, gate.busy

    assert _run(go()) == ("overloaded", 0, 1)


def test_a_full_queue_refuses_the_newcomer_when_its_caller_already_waits_as_much() -> None:
    async def go() -> list[str | None]:
        gate = Gate(limit=1, capacity=2, wait=60)
        await gate.enter(A)
        waiting = [asyncio.ensure_future(gate.enter(A)) for _ in range(2)]
        await asyncio.sleep(0)
        third = await gate.enter(A)  # A alone fills the queue: refused, nobody evicted
        for _ in range(3):
            gate.leave(A)
        return [third, *[await w for w in waiting]]

    assert _run(go()) == ["overloaded", None, None]


def test_one_caller_cannot_crowd_out_another() -> None:
    """A's burst fills the queue; B still gets in (A's newest waiter gives up its place), and
    freed slots go to the callers in turn, not in the order the calls came."""

    async def go() -> tuple[list[tuple[bytes, str | None]], list[bytes]]:
        gate = Gate(limit=1, capacity=3, wait=60)
        await gate.enter(A)
        running, order = [A], []

        async def call(key: bytes) -> tuple[bytes, str | None]:
            code = await gate.enter(key)
            if code is None:
                running.append(key)
                order.append(key)
            return key, code

        tasks = [asyncio.ensure_future(call(A)) for _ in range(3)]
        await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(call(B)))
        await asyncio.sleep(0)
        while running:
            gate.leave(running.pop(0))
            await asyncio.sleep(0)
        return [await t for t in tasks], order

    results, order = _run(go())
    assert results == [(A, None), (A, None), (A, "overloaded"), (B, None)]
    assert order == [A, B, A]


def test_a_freed_slot_goes_to_the_caller_holding_fewer_even_if_it_came_later() -> None:
    async def go() -> list[bytes]:
        gate = Gate(limit=2, capacity=4, wait=60)
        await gate.enter(A)
        await gate.enter(A)  # A holds both slots
        order: list[bytes] = []

        async def call(key: bytes) -> None:
            if await gate.enter(key) is None:
                order.append(key)

        first = asyncio.ensure_future(call(A))  # A waits first...
        await asyncio.sleep(0)
        second = asyncio.ensure_future(call(B))  # ...B after it
        await asyncio.sleep(0)
        gate.leave(A)  # A still holds one: the slot is B's
        await second
        gate.leave(A)
        await first
        return order

    assert _run(go()) == [B, A]


def test_draining_refuses_the_waiting_and_the_new_and_lets_the_running_finish() -> None:
    async def go() -> tuple[str | None, str | None, int]:
        gate = Gate(limit=1, capacity=4, wait=60)
        await gate.enter(A)
        waiting = asyncio.ensure_future(gate.enter(B))
        await asyncio.sleep(0)
        gate.drain()
        refused = await waiting
        new = await gate.enter(B)
        running = gate.busy  # the admitted call is not interrupted
        gate.leave(A)
        return refused, new, running

    assert _run(go()) == ("shutting_down", "shutting_down", 1)


def test_a_cancelled_waiter_gives_back_what_it_held() -> None:
    async def go() -> tuple[int, int, str | None]:
        gate = Gate(limit=1, capacity=4, wait=60)
        await gate.enter(A)
        waiting = asyncio.ensure_future(gate.enter(B))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.leave(A)
        return gate.busy, gate.waiting, await gate.enter(B)

    assert _run(go()) == (0, 0, None)


def test_limits_from_the_environment_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODES_ADMIT_READS", "3")
    monkeypatch.setenv("CUSTODES_ADMIT_WAIT_MS", "0")
    limits = Limits.from_env()
    assert (limits.reads, limits.writes, limits.wait_ms) == (3, Limits().writes, 0)
    assert limits.connections > limits.reads + limits.writes  # the job worker's, and a spare
    monkeypatch.setenv("CUSTODES_ADMIT_READS", "many")
    with pytest.raises(InputError) as caught:
        Limits.from_env()
    assert caught.value.code == "bad_argument"


def test_a_stopping_server_fails_a_queued_job_resumably_and_starts_no_new_one(
    master: tuple[Workspace, Staff], tmp_path: Path
) -> None:
    ws, people = master
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests_svc.generate(ws, people.admin, "irc-6103-i-2", 20, 2, tmp_path / "req")
    rid = requests_svc.submit(ws, people["requester"], tmp_path / "req").request_id
    jobs = jobs_svc.Jobs(ws)
    try:
        # hold the worker so that the training job waits in the queue
        release = threading.Event()
        jobs.queue.put((jobs_svc.STAFF, -1, (Future(), release.wait)))
        job = jobs.start(people["officer"], "train", rid)
        jobs.stop()
        with pytest.raises(Overloaded) as refused:
            jobs.start(people["officer"], "train", rid)
        assert refused.value.code == "shutting_down"
        release.set()
        jobs.wait(job["id"], timeout=300)
        ended = jobs.get(people["officer"], job["id"])
        assert ended["state"] == "failed" and ended["problem"]["code"] == "server_restarted"
    finally:
        release.set()
        jobs.close()
    # started again by a server that runs, the work is done
    again = jobs_svc.Jobs(ws)
    try:
        job = again.start(people["officer"], "train", rid)
        again.wait(job["id"], timeout=300)
        assert again.get(people["officer"], job["id"])["state"] == "succeeded"
    finally:
        again.close()


def test_a_stopping_server_stops_a_running_job_at_its_next_chunk_resumably(
    master: tuple[Workspace, Staff], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, people = master
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests_svc.generate(ws, people.admin, "irc-6103-i-2", 20, 2, tmp_path / "req")
    rid = requests_svc.submit(ws, people["requester"], tmp_path / "req").request_id
    jobs = jobs_svc.Jobs(ws)
    recorded = jobs_svc.rows.progress

    def stop_at_first_chunk(*args, **kwargs):  # type: ignore[no-untyped-def]
        jobs.stop()  # SIGTERM arrives while the job runs
        return recorded(*args, **kwargs)

    monkeypatch.setattr(jobs_svc.rows, "progress", stop_at_first_chunk)
    try:
        job = jobs.start(people["officer"], "train", rid)
        jobs.wait(job["id"], timeout=300)
        ended = jobs.get(people["officer"], job["id"])
        assert ended["state"] == "failed" and ended["problem"]["code"] == "server_restarted"
    finally:
        jobs.close()
    monkeypatch.setattr(jobs_svc.rows, "progress", recorded)
    again = jobs_svc.Jobs(ws)
    try:
        job = again.start(people["officer"], "train", rid)
        again.wait(job["id"], timeout=300)
        assert again.get(people["officer"], job["id"])["state"] == "succeeded"
    finally:
        again.close()


def test_a_pool_timeout_is_a_coded_503_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from custodes.store import engine as store_engine

    monkeypatch.setattr(store_engine, "SERVER_POOL_TIMEOUT", 0.01)
    engine = store_engine.make_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1)
    try:
        held = [engine.connect(), engine.connect()]  # the pool's one and its one overflow
        with pytest.raises(Overloaded) as caught:
            engine.connect()
        assert caught.value.code == "store_busy" and caught.value.http_status == 503
        assert caught.value.retry_after >= 1
        for conn in held:
            conn.close()
    finally:
        engine.dispose()
