"""Matching: the person gate and every ambiguity flag on hand-built records, the address on
record in any year and its periods, and every reason and flag the gate writes explained."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from custodes.matching import model as mdl
from custodes.matching import runs
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_matching import ADDR, CASES, TWIN_ADDR, _item, _submit_items, link


@pytest.fixture
def ws(linked_ws: tuple[Workspace, Staff]) -> Workspace:
    return linked_ws[0]


@pytest.fixture
def officer(linked_ws: tuple[Workspace, Staff]) -> object:
    return linked_ws[1]["officer"]


def _tin_to_record(ws: Workspace) -> dict[str, str]:
    from custodes.records import master

    t = pq.read_table(master.current(ws).path("people"), columns=["tin", "record_id"])
    return dict(zip(t["tin"].to_pylist(), t["record_id"].to_pylist(), strict=True))


def _linked(ws: Workspace, request_id: str) -> dict[str, dict]:
    table = pq.read_table(runs.linked_path(ws.request_folder(request_id))).to_pylist()
    return {r["item_id"]: r for r in table}


def test_hand_built_cases_gate_and_flags(ws: Workspace, tmp_path: Path, officer: object) -> None:
    rid = _submit_items(ws, officer, tmp_path / "hand", [c[0] for c in CASES.values()])
    link(ws, rid, officer)
    rows = _linked(ws, rid)
    records = _tin_to_record(ws)
    for item_id, (_, status, tin, flags) in CASES.items():
        row = rows[item_id]
        if status == "identified":
            assert row["status"] == "identified", (item_id, row["reasons"], row["flags"])
            assert row["record_id"] == records[tin], item_id
        else:
            assert row["status"] in ("review", "not_identified"), (item_id, row["flags"])
        assert flags <= set(row["flags"]), (item_id, row["flags"])
        assert row["model_sha256"] == mdl.load(ws).sha256


def test_address_on_record_any_year_and_periods(
    ws: Workspace, tmp_path: Path, officer: object
) -> None:
    rid = _submit_items(
        ws,
        officer,
        tmp_path / "addr",
        [
            CASES["mover-old-address"][0],  # the 2021 address, written differently
            _item("current", "OSWALD", "PRENTISSIMO", "1975-10-20", addr=TWIN_ADDR),
            _item(
                "elsewhere-with-tin",
                "OSWALD",
                "PRENTISSIMO",
                "1975-10-20",
                tin="585471239",
                addr={**ADDR, "street": "98 OAK STREET"},
            ),
            _item(
                "elsewhere",
                "OSWALD",
                "PRENTISSIMO",
                "1975-10-20",
                addr={**ADDR, "street": "98 OAK STREET"},
            ),
        ],
    )
    link(ws, rid, officer)
    rows = _linked(ws, rid)
    assert rows["mover-old-address"]["address_on_record"] is True
    # The envelope asks about 2024; the 2021 address is on record but not in those periods.
    assert rows["mover-old-address"]["address_on_record_in_periods"] is False
    assert rows["current"]["address_on_record_in_periods"] is True
    # Another address, no TIN: the match rests on name and DOB alone. This name is rare
    # enough in this master file that a namesake born the same day is improbable...
    assert rows["elsewhere"]["status"] == "identified"
    assert rows["elsewhere"]["address_on_record"] is False
    assert rows["elsewhere-with-tin"]["status"] == "identified"
    # ...but asked for a margin no name can reach, it goes to review as a possible namesake,
    # while the same person with a TIN that agrees, or at an address on record, stays identified.
    strict = link(
        ws,
        rid,
        officer,
        overrides={"namesake_margin_bits": 59.0},
        out=tmp_path / "strict.parquet",
    )
    rows = {r["item_id"]: r for r in pq.read_table(strict.path).to_pylist()}
    assert rows["elsewhere"]["status"] == "review"
    assert "namesake_risk" in rows["elsewhere"]["reasons"]
    assert rows["elsewhere-with-tin"]["status"] == "identified"
    assert rows["current"]["status"] == "identified"


def test_every_reason_and_flag_the_gate_writes_is_explained() -> None:
    """`explain` and the review groups say in words what each code means: every code the
    gate can write has a sentence."""
    import re

    from custodes.matching import deciding as lk
    from custodes.matching.reasons import FLAGS, REASONS

    src = Path(lk.__file__).read_text()
    written = set(re.findall(r"(?:THEN|ELSE) '([a-z_]+)'", src)) - {
        "identified",
        "review",
        "not_identified",
    }
    assert len(written) > 15
    assert written <= set(REASONS) | set(FLAGS), written - set(REASONS) - set(FLAGS)
