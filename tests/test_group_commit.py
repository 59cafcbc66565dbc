"""Group commit (store/group.py): every caller returns only after its write is committed, all
writes land exactly once, concurrent writes share transactions, and one bad write fails only
its own caller."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from custodes.store.engine import make_engine
from custodes.store.group import GroupCommit


@pytest.fixture
def engine(tmp_path):  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'g.db'}")  # WAL, as a workspace's store
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    yield eng
    eng.dispose()


def _insert(n: int):  # type: ignore[no-untyped-def]
    return lambda conn: conn.execute(sa.text("INSERT INTO t VALUES (:n)"), {"n": n})


def _count(eng, n: int | None = None) -> int:  # type: ignore[no-untyped-def]
    with eng.connect() as conn:
        q = "SELECT count(*) FROM t" + ("" if n is None else f" WHERE n = {int(n)}")
        return conn.execute(sa.text(q)).scalar_one()


def test_one_caller_is_one_transaction(engine) -> None:  # type: ignore[no-untyped-def]
    group = GroupCommit(engine)
    for n in range(5):
        group.write(_insert(n))
        assert _count(engine, n) == 1  # committed before write() returned
    assert group.commits == 5 and group.writes == 5


def test_concurrent_callers_share_commits_and_each_sees_its_own(engine) -> None:  # type: ignore[no-untyped-def]
    group = GroupCommit(engine)
    seen: dict[int, int] = {}
    start = threading.Barrier(16)

    def caller(k: int) -> None:
        start.wait()
        for i in range(25):
            n = k * 1000 + i
            group.write(_insert(n))
            seen[n] = _count(engine, n)  # durable the moment the call returns

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _count(engine) == 400 and set(seen.values()) == {1}
    assert group.writes == 400 and group.commits <= 400


def test_a_bad_write_fails_only_its_caller(engine) -> None:  # type: ignore[no-untyped-def]
    group = GroupCommit(engine)
    group.write(_insert(1))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def caller(n: int) -> None:
        start.wait()
        try:
            group.write(_insert(n))  # n == 1 breaks the primary key
        except sa.exc.IntegrityError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in (1, 2, 3, 4, 5, 6, 7, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    assert _count(engine) == 8  # 1 (first), 2..8 once each


# --- the door records through it ----------------------------------------------------------


def _access_rows(ws, action: str) -> int:  # type: ignore[no-untyped-def]
    from custodes.store.tables import access_log

    with ws.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(access_log).where(access_log.c.action == action)
        ).scalar_one()


def test_concurrent_calls_are_each_recorded_in_the_ledger_before_they_go_on(staff) -> None:  # type: ignore[no-untyped-def]
    """Sixteen callers at once: every call is in the access log and the ledger the moment the
    door lets it through, and the ledger still verifies."""
    from custodes.access import enter
    from custodes.ledger import audit, log

    ws, people = staff.ws, staff
    who = people["officer"]
    before = _access_rows(ws, "requests.read")
    with ws.engine.connect() as conn:
        size = log.state(conn).size
    start = threading.Barrier(16)
    sizes: list[int] = []

    def caller() -> None:
        start.wait()
        for _ in range(10):
            enter(ws, who, "requests.read")
            with ws.engine.connect() as conn:
                sizes.append(log.state(conn).size)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _access_rows(ws, "requests.read") == before + 160
    with ws.engine.connect() as conn:
        assert log.state(conn).size == size + 160
    assert min(sizes) > size
    assert audit.audit_store(ws).ok


def test_a_polled_job_and_whoami_are_recorded_first_and_when_they_change(staff) -> None:  # type: ignore[no-untyped-def]
    from custodes.services import workspace as ws_svc

    ws, admin = staff.ws, staff.admin
    before = _access_rows(ws, "session")
    for _ in range(5):
        ws_svc.whoami(ws, admin)
    assert _access_rows(ws, "session") == before + 1  # a page asks on every load
    other = staff.login(staff_name(staff))  # another credential is another first time
    ws_svc.whoami(ws, other)
    assert _access_rows(ws, "session") == before + 2


def staff_name(staff) -> str:  # type: ignore[no-untyped-def]
    return next(n for n in staff.callers if n not in ("admin",))


def test_a_polled_job_is_recorded_when_first_read_and_when_its_state_changes(staff) -> None:  # type: ignore[no-untyped-def]
    """The job's rows are made and moved by the store's own job functions (what the server's
    worker does), the reads go through the service a job page polls."""
    from custodes.services import jobs as jobs_svc
    from custodes.store import jobs as rows

    ws, officer = staff.ws, staff["officer"]
    job_id = rows.create(ws.engine, "process", None, officer.name)
    before = _access_rows(ws, "jobs.read")

    def poll(times: int) -> None:
        for _ in range(times):
            jobs_svc.job(ws, officer, job_id)

    poll(4)  # queued
    assert _access_rows(ws, "jobs.read") == before + 1
    rows.claim(ws.engine, job_id)
    poll(4)  # running
    assert _access_rows(ws, "jobs.read") == before + 2
    rows.finish(ws.engine, job_id, "succeeded", result={"ok": True})
    poll(4)  # ended
    assert _access_rows(ws, "jobs.read") == before + 3
