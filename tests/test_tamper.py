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
def test_a_small_campaign_misses_nothing(tmp_path: Path) -> None:
    tamper = _tamper()
    base = tamper.build(tmp_path, "sqlite", people=200, items=16)
    tally = tamper.campaign(base, 30, seed=7, work=tmp_path, log=print)
    print(tally.table("small run, SQLite"))
    tried = sum(sum(c[k] for k in tamper.CLASSES) for c in tally.rows.values())
    assert tried == 30
    assert {t.split()[0] for t in tally.rows} == {"table", "file"}
    assert not tally.missed, tally.missed
