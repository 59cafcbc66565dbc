"""The tamper campaign's small run (bench/tamper.py, issue #23): single random edits of the
store and of the files of a workspace that lived a full cycle, each on a fresh copy; every edit
that changes what custodes does or shows must be detected (by `ledger verify`, or refused at use
with a coded error)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "tamper.py"


def _tamper():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("custodes_bench_tamper", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(("store", "n"), [("sqlite", 16), ("postgresql", 8)])
def test_a_small_campaign_misses_nothing(store: str, n: int, tmp_path: Path) -> None:
    """A handful of mutations on each store, each run in a child forked from this process
    (the campaign's way); any MISSED fails, and so does a child that dies or hangs."""
    tamper = _tamper()
    base = tamper.build(tmp_path, store, people=200, items=16)
    try:
        tally = tamper.campaign(base, n, seed=7, work=tmp_path, log=print)
    finally:
        if store == "postgresql":
            tamper._pg_drop(tamper.sa.engine.make_url(base.url).database)
    print(tally.table(f"small run, {store}"))
    print(tally.costs())
    assert tally.tried() == n
    assert not tally.missed, tally.missed
