"""Group commit (store/group.py): every caller returns only after its write is committed, all
writes land exactly once, concurrent writes share transactions, and one bad write fails only
its own caller."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from custodes.store.group import GroupCommit


@pytest.fixture
def engine(tmp_path):  # type: ignore[no-untyped-def]
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
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
