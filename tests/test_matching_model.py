"""Matching's model: thresholds overridden and validated, the refusals, the model file
tamper-evident, training recorded in the ledger, and the weights EM never saw."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custodes.errors import ConflictError, CustodesError, InputError, NotFound
from custodes.matching import evaluate as ev
from custodes.matching import model as mdl
from custodes.matching import runs
from custodes.services import matching as matching_svc
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_matching import CASES, _submit_items, _write, link


@pytest.fixture
def ws(linked_ws: tuple[Workspace, Staff]) -> Workspace:
    return linked_ws[0]


@pytest.fixture
def officer(linked_ws: tuple[Workspace, Staff]) -> object:
    return linked_ws[1]["officer"]


def test_thresholds_override_and_validation(ws: Workspace, tmp_path: Path, officer: object) -> None:
    rid = _submit_items(ws, officer, tmp_path / "t", [CASES["spouse"][0]])
    strict = link(ws, rid, officer, overrides={"min_probability": 0.999999999})
    assert strict.identified == 0 and strict.review == 1
    for bad in (
        {"min_probability": 1.5},
        {"min_margin_bits": -1.0},
        {"review_probability": 0.999, "min_probability": 0.9},
    ):
        with pytest.raises(InputError) as exc:
            link(ws, rid, officer, overrides=bad)
        assert exc.value.code == "bad_threshold"


def test_refusals(
    workspace: Workspace, staff: Staff, ws: Workspace, officer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConflictError) as exc:
        mdl.load(workspace)
    assert exc.value.code == "no_model"
    with pytest.raises(CustodesError) as exc:
        matching_svc.train(workspace, staff["officer"])
    assert exc.value.code in ("no_master_file", "no_request")
    with pytest.raises(NotFound) as exc:
        matching_svc.link(ws, officer, "req-nope")
    assert exc.value.code == "unknown_request"
    rid = _submit_items(ws, officer, tmp_path / "r", [CASES["spouse"][0], CASES["twin"][0]])
    with pytest.raises(ConflictError) as exc:
        runs.linked_path(ws.request_folder(rid))
    assert exc.value.code == "not_linked"
    with pytest.raises(InputError) as exc:
        link(ws, rid, officer, backend="oracle")
    assert exc.value.code == "bad_argument"
    res = link(ws, rid, officer)
    truth = _write(tmp_path / "truth.csv", [{"item_id": "spouse", "record_id": ""}])
    with pytest.raises(InputError) as exc:
        ev.evaluate(res.path, truth)
    assert exc.value.code == "truth_mismatch"


def test_model_file_is_tamper_evident(ws: Workspace) -> None:
    model = mdl.load(ws)
    path = mdl.models_dir(ws) / f"{model.sha256}.json"
    doc = json.loads(path.read_text())
    doc["thresholds"]["min_probability"] = 0.5
    path.write_text(json.dumps(doc))
    with pytest.raises(ConflictError) as exc:
        mdl.load(ws)
    assert exc.value.code == "model_tampered"


def test_training_is_recorded_in_the_ledger(ws: Workspace) -> None:
    import sqlalchemy as sa

    from custodes.store.tables import ledger_events

    with ws.engine.connect() as conn:
        types = conn.execute(sa.select(ledger_events.c.type)).scalars().all()
    assert "model.trained" in types


def _chain(weights: list[float], m_of: dict[int, float]) -> dict:
    """A Splink-shaped model with one comparison: a null level, an 'other field' level, then
    levels from most to least similar with the given weights (u fixed; m where given)."""
    levels = [{"is_null_level": True, "label_for_charts": "null"}]
    levels.append(
        {
            "label_for_charts": "in the last name's field",
            "m_probability": 1e-12,
            "u_probability": 0.01,
        }
    )
    for i, w in enumerate(weights):
        u = 0.01
        levels.append(
            {
                "label_for_charts": f"level {i}",
                "u_probability": u,
                "m_probability": m_of.get(i, u * 2**w),
            }
        )
    return {"comparisons": [{"output_column_name": "first", "comparison_levels": levels}]}


@given(st.lists(st.floats(-60, 20), min_size=2, max_size=6), st.data())
@settings(max_examples=60, deadline=None)
def test_levels_em_never_saw_are_raised_and_no_others(weights: list[float], data) -> None:  # type: ignore[no-untyped-def]
    """A level whose m is degenerate never weighs less than the next less similar level
    after training; a level EM saw keeps its weight; null and 'other field' levels stay."""
    doc = _chain(weights, {})
    out, raised = mdl.monotone_weights(doc)
    before = doc["comparisons"][0]["comparison_levels"]
    after = out["comparisons"][0]["comparison_levels"]
    assert after[:2] == before[:2]

    def w(lv: dict) -> float:
        return math.log2(lv["m_probability"] / lv["u_probability"])

    chain = after[2:]
    for i, lv in enumerate(chain[:-1]):
        if before[2 + i]["m_probability"] < mdl.DEGENERATE_M:
            assert w(lv) >= w(chain[i + 1]) - 1e-9
        else:
            assert lv == before[2 + i]
    assert chain[-1] == before[-1]  # the least similar level is the floor, never changed
    assert all(r["to_bits"] > r["from_bits"] for r in raised)
    assert doc == _chain(weights, {})  # the input is not changed in place


def test_model_records_which_weights_were_raised(ws: Workspace) -> None:
    """Training writes what it raised into the model's provenance (it is hashed with it), and
    the model it saves is the raised one: raising it again changes nothing, and each recorded
    level carries the weight the record says."""
    model = mdl.load(ws)
    training = model.document()["training"]
    assert isinstance(training["weights_raised"], list)
    again, more = mdl.monotone_weights(model.splink)
    assert more == [] and again == model.splink
    levels = {
        (c.get("output_column_name"), lv.get("label_for_charts")): lv
        for c in model.splink["comparisons"]
        for lv in c["comparison_levels"]
    }
    for r in training["weights_raised"]:
        assert set(r) == {"comparison", "level", "from_bits", "to_bits"}
        lv = levels[(r["comparison"], r["level"])]
        bits = math.log2(lv["m_probability"] / lv["u_probability"])
        assert bits == pytest.approx(r["to_bits"], abs=0.01)


def test_the_swapped_names_level_needs_both_names_swapped() -> None:
    """The level "names in each other's fields" is a swap of both names, not one name shared
    across the fields: at 25M people two strangers (JOSEPH CARLOS JAMES against JAMES CARLOS
    BURRELL SR, the same birth date) were identified on it, one coincidence counted in both
    the first- and the last-name comparison (2026-12-07, mix `typical`)."""
    import duckdb

    swapped = {
        comparison: next(
            lv["sql_condition"]
            for lv in c["comparison_levels"]
            if "field" in str(lv.get("label_for_charts", ""))
        )
        for comparison, c in zip(
            ("first", "last"),
            mdl.settings().create_settings_dict(sql_dialect_str="duckdb")["comparisons"][:2],
            strict=True,
        )
    }
    pairs = [  # first_l, last_l, first_r, last_r
        ("JOSEPH", "JAMES", "JAMES", "BURRELL"),  # one name shared across: not a swap
        ("MARQUETTA", "MARTIN", "MARTIN", "DWAILEEBE"),
        ("ANA", "LOPEZ", "MARIA", "ANA"),
        ("ANA", "LOPEZ", "LOPEZ", "ANA"),  # both swapped
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE p (first_l TEXT, last_l TEXT, first_r TEXT, last_r TEXT)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?, ?)", pairs)
    for comparison, cond in swapped.items():
        got = [r[0] for r in con.execute(f"SELECT {cond} FROM p").fetchall()]
        assert got == [False, False, False, True], (comparison, cond)
