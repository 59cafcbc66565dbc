"""Matching: the person gate and every ambiguity flag on hand-built records, the measured
accuracy on generated data with ground truth, the refusals, and Spark giving the same answers."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Template, copy_template
from custodes.errors import ConflictError, CustodesError, InputError, NotFound
from custodes.matching import evaluate as ev
from custodes.matching import model as mdl
from custodes.matching import runs
from custodes.requests.format import ITEM_COLUMNS
from custodes.services import matching as matching_svc
from custodes.services import users as users_svc
from custodes.services.records import import_ as import_master
from custodes.services.requests import generate
from custodes.services.requests import submit as _submit
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

ADDR = {"street": "12 OAK STREET", "unit": "", "city": "SPRINGFIELD", "state": "IL", "zip": "62704"}
OLD_ADDR = {
    "street": "400 ELM AVE",
    "unit": "APT 3",
    "city": "PEORIA",
    "state": "IL",
    "zip": "61602",
}
TWIN_ADDR = {"street": "77 BIRCH RD", "unit": "", "city": "DAYTON", "state": "OH", "zip": "45402"}

# Hand-built filers: a household with a Sr/Jr pair and a spouse, twins, and a mover.
PEOPLE = [
    # tin, first, last, suffix, dob, address, earlier address
    ("585471234", "JOHN", "VELTRASKI", "SR", "1950-01-02", ADDR, None),
    ("585471235", "JOHN", "VELTRASKI", "JR", "1980-05-06", ADDR, None),
    ("585471236", "MARTHA", "VELTRASKI", "", "1952-08-09", ADDR, None),
    ("585471237", "AMY", "KORVENDAHL", "", "1999-04-11", TWIN_ADDR, None),
    ("585471238", "BETH", "KORVENDAHL", "", "1999-04-11", TWIN_ADDR, None),
    ("585471239", "OSWALD", "PRENTISSIMO", "", "1975-10-20", TWIN_ADDR, OLD_ADDR),
]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _import_hand_built(ws: Workspace, people_: Staff, folder: Path) -> None:
    people = [
        {
            "tin": tin,
            "tin_type": "SSN",
            "first_name": first,
            "middle_name": "",
            "last_name": last,
            "suffix": suffix,
            "dob": dob,
        }
        for tin, first, last, suffix, dob, _, _ in PEOPLE
    ]
    addresses = []
    for tin, *_, addr, old in PEOPLE:
        addresses.append({"tin": tin, "tax_year": "2024", **addr})
        if old:
            addresses.append({"tin": tin, "tax_year": "2021", **old})
    imported = import_master(
        ws, people_.admin, _write(folder / "p.csv", people), _write(folder / "a.csv", addresses)
    )
    users_svc.confirm_change(ws, people_.second_admin, imported["change"])  # a second one


def _item(
    item_id: str,
    first: str,
    last: str,
    dob: str,
    *,
    tin: str = "",
    suffix: str = "",
    addr: dict[str, str] | None = None,
) -> dict[str, str]:
    row = dict.fromkeys(ITEM_COLUMNS, "")
    row.update(
        item_id=item_id,
        first_name=first,
        last_name=last,
        dob=dob,
        tin=tin,
        suffix=suffix,
        case_number="C-1",
        official_id="OFF-001",
        **(addr or {}),
    )
    return row


# corruption mix -> the recall floor its test holds (measured at 1,200 items; the floors leave
# room for the sample, not for a regression)
MIXES = {"typical": 0.9, "heavy": 0.74}

# item id -> (item, expected status, expected record tin or None, flags that must be present)
CASES = {
    "spouse": (
        _item("spouse", "Martha", "Veltraski", "1952-08-09", addr=ADDR),
        "identified",
        "585471236",
        {"household"},
    ),
    "junior-no-suffix": (
        _item("junior-no-suffix", "JOHN", "VELTRASKI", "1980-05-06", addr=ADDR),
        "identified",
        "585471235",
        {"generational", "household"},
    ),
    "junior-with-senior-dob": (
        _item("junior-with-senior-dob", "JOHN", "VELTRASKI", "1950-01-02", suffix="JR", addr=ADDR),
        "not_identified_or_review",
        None,
        {"suffix_conflict"},
    ),
    "absent-relative": (
        _item("absent-relative", "PETRA", "VELTRASKI", "2006-03-14", addr=ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
    "twin": (
        _item("twin", "AMY", "KORVENDAHL", "1999-04-11", addr=TWIN_ADDR),
        "identified",
        "585471237",
        {"twin", "household"},
    ),
    "absent-twin": (
        _item("absent-twin", "CLARA", "KORVENDAHL", "1999-04-11", addr=TWIN_ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
    # The TIN is Martha's, the name too, but the date of birth is someone else's.
    "tin-dob-conflict": (
        _item("tin-dob-conflict", "MARTHA", "VELTRASKI", "1990-11-30", tin="585471236"),
        "not_identified_or_review",
        None,
        {"tin_name_conflict"},
    ),
    "tin-typo": (
        _item("tin-typo", "BETH", "KORVENDAHL", "1999-04-11", tin="585471239", addr=TWIN_ADDR),
        "identified",
        "585471238",
        {"tin_typo"},
    ),
    "tin-conflict": (
        _item(
            "tin-conflict", "BETH", "KORVENDAHL", "1999-04-11", tin="123-45-6780", addr=TWIN_ADDR
        ),
        "not_identified_or_review",
        None,
        {"tin_conflict"},
    ),
    # A nickname (or a first name with a typo) needs corroboration: a middle name or a TIN.
    "nickname": (
        _item("nickname", "OZZY", "PRENTISSIMO", "1975-10-20", tin="585471239", addr=TWIN_ADDR),
        "identified",
        "585471239",
        set(),
    ),
    "nickname-alone": (
        _item("nickname-alone", "OZZY", "PRENTISSIMO", "1975-10-20", addr=TWIN_ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
    "mover-old-address": (
        _item(
            "mover-old-address",
            "OSWALD",
            "PRENTISSIMO",
            "1975-10-20",
            addr={**OLD_ADDR, "street": "400 Elm Avenue", "unit": "#3"},
        ),
        "identified",
        "585471239",
        set(),
    ),
    "dob-missing": (
        _item("dob-missing", "OSWALD", "PRENTISSIMO", ""),
        "not_identified_or_review",
        None,
        {"dob_missing"},
    ),
    "dob-missing-tin": (
        _item("dob-missing-tin", "OSWALD", "PRENTISSIMO", "", tin="585-47-1239"),
        "identified",
        "585471239",
        {"dob_missing"},
    ),
    # An ITIN that no filer holds, for a record with an SSN (the number used before the SSN):
    # neither agreement nor contradiction — name and date of birth decide, as without a TIN.
    "itin-for-ssn": (
        _item(
            "itin-for-ssn", "OSWALD", "PRENTISSIMO", "1975-10-20", tin="912-70-4321", addr=TWIN_ADDR
        ),
        "identified",
        "585471239",
        {"itin_for_ssn"},
    ),
    "absent-twin-itin": (
        _item(
            "absent-twin-itin",
            "CLARA",
            "KORVENDAHL",
            "1999-04-11",
            tin="912-70-4322",
            addr=TWIN_ADDR,
        ),
        "not_identified_or_review",
        None,
        set(),
    ),
    # Year digits transposed (1952 -> 1925) and a TIN with two digits transposed: one person's
    # typos, not a relative's (no relative holds a TIN one keystroke from hers).
    "tin-typo-dob-typo": (
        _item("tin-typo-dob-typo", "MARTHA", "VELTRASKI", "1925-08-09", tin="585471263", addr=ADDR),
        "identified",
        "585471236",
        {"tin_typo"},
    ),
    # ... but not for another first name: a twin's SSN is one digit from her sibling's.
    "twin-tin-typo-dob-typo": (
        _item(
            "twin-tin-typo-dob-typo",
            "CLARA",
            "KORVENDAHL",
            "1999-04-12",
            tin="585471239",
            addr=TWIN_ADDR,
        ),
        "not_identified_or_review",
        None,
        set(),
    ),
    # One letter wrong, and the result is nobody's name: a slip of the pen for JOHN (the Jr:
    # the date of birth is his) ...
    "first-name-slip": (
        _item("first-name-slip", "JOHX", "VELTRASKI", "1980-05-06", addr=ADDR),
        "identified",
        "585471235",
        {"generational"},
    ),
    # ... but AMI is somebody's name (an absent twin's, perhaps): not taken for AMY.
    "first-name-one-letter-a-name": (
        _item("first-name-one-letter-a-name", "AMI", "KORVENDAHL", "1999-04-11", addr=TWIN_ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Template:
    """A workspace: the 3,000-person synthetic master plus the hand-built filers, a generated
    request (with truth) and a model trained on it. Built once; tests copy it."""
    root = tmp_path_factory.mktemp("matching")
    ws, people = copy_template(_master_template, root)
    generate_request(ws, people, 1500, 4, root / "gen")
    generate_request(ws, people, 1200, 9, root / "gen-1200")  # drawn before any import
    generate_request(ws, people, 300, 21, root / "gen-300")
    for mix in MIXES:
        generate_request(ws, people, 1200, 9, root / f"gen-1200-{mix}", corruption=mix)
    _import_hand_built(ws, people, root)  # imported people: no synthetic request after this
    matching_svc.train(
        ws, people["officer"], submit(ws, people["officer"], root / "gen").request_id
    )
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


@pytest.fixture
def linked_ws(trained: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff]]:
    w, people = copy_template(trained, tmp_path)
    yield w, people
    w.close()


@pytest.fixture
def trained_root(trained: Template) -> Path:
    return trained.home.parent


@pytest.fixture
def ws(linked_ws: tuple[Workspace, Staff]) -> Workspace:
    return linked_ws[0]


@pytest.fixture
def officer(linked_ws: tuple[Workspace, Staff]) -> object:
    return linked_ws[1]["officer"]


def submit(ws: Workspace, officer, folder: Path):  # type: ignore[no-untyped-def]
    """Staff key in a request received on paper (with its scan's hash): matching reads it
    without the second staff member's confirmation that processing needs."""
    scan = hashlib.sha256(f"scan of {folder}".encode()).hexdigest()
    return _submit(ws, officer, folder, paper_sha256=scan)


def generate_request(
    ws: Workspace, people: Staff, items: int, seed: int, out: Path, corruption: str = "none"
) -> None:
    generate(ws, people.admin, "irc-6103-i-2", items, seed, out, corruption=corruption)


def link(ws: Workspace, rid: str, officer, **kw):  # type: ignore[no-untyped-def]
    from custodes.access import enter

    folder = ws.request_folder(rid)
    periods = json.loads((folder / "envelope.json").read_text())["taxable_periods"]
    return runs.link(enter(ws, officer, "match.link"), folder, periods, request_id=rid, **kw)


def _tin_to_record(ws: Workspace) -> dict[str, str]:
    from custodes.records import master

    t = pq.read_table(master.current(ws).path("people"), columns=["tin", "record_id"])
    return dict(zip(t["tin"].to_pylist(), t["record_id"].to_pylist(), strict=True))


def _submit_items(ws: Workspace, officer, folder: Path, rows: list[dict[str, str]]) -> str:  # type: ignore[no-untyped-def]
    folder.mkdir()
    _write(folder / "items.csv", rows)
    env = {
        "provision": "irc-6103-i-2",
        "agency": "A",
        "signer": {"name": "S", "title": "T", "role": "head_of_agency"},
        "statutory_authority": "8 U.S.C. 1253(c)",
        "reason": "r",
        "taxable_periods": [2024],
        "fields_requested": ["last_known_address"],
        "officials": [{"id": "OFF-001", "name": "O", "title": "Agent"}],
        "items": "items.csv",
    }
    (folder / "envelope.json").write_text(json.dumps(env))
    return submit(ws, officer, folder).request_id


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


def test_generated_request_has_no_wrong_person(
    ws: Workspace, tmp_path: Path, officer: object, trained_root: Path
) -> None:
    req = trained_root / "gen-1200"
    rid = submit(ws, officer, req).request_id
    res = link(ws, rid, officer)
    assert res.items == 1200 and res.identified + res.review + res.not_identified == 1200
    report = ev.evaluate(res.path, req / "truth.csv", tmp_path / "out")
    at = report["at_thresholds"]
    assert at["wrong"] == 0
    assert at["recall"] >= 0.97
    assert report["status_by_kind"]["absent_relative"].get("identified", 0) == 0
    # The gate is what protects the absent relatives: without it some are accepted.
    loose = [g for g in report["grid"] if not g["gate"] and g["min_probability"] == 0.5]
    assert any(g["wrong_absent_relative"] > 0 for g in loose)
    assert (tmp_path / "out" / "evaluation.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["grid"]


@pytest.mark.parametrize("mix", MIXES)
def test_corrupted_request_has_no_wrong_person(
    ws: Workspace, officer: object, trained_root: Path, mix: str
) -> None:
    """Lists corrupted the way real ones are (OCR, keyboard, phonetic, swapped names, DOB
    digits, old ITINs...): still no wrong person; recall and review measured per mix
    (docs/performance.md has the figures at 1M x 100k)."""
    req = trained_root / f"gen-1200-{mix}"
    rid = submit(ws, officer, req).request_id
    res = link(ws, rid, officer)
    standardized = runs.standardized_paths(ws, ws.request_folder(rid))
    report = ev.evaluate(res.path, req / "truth.csv", standardized=standardized)
    at = report["at_thresholds"]
    assert at["wrong"] == 0, report["by_corruption"]
    assert at["recall"] >= MIXES[mix], at
    assert set(report["by_corruption"]) > {"none"}
    # Two of first name, date of birth and TIN contradicting is another person: never review;
    # nor is an item giving fewer than two of them (a name and an address only).
    rows = pq.read_table(res.path).to_pylist()
    assert all(r["status"] == "not_identified" for r in rows if "another_person" in r["reasons"])
    short = [r for r in rows if "insufficient_identifiers" in r["reasons"]]
    assert short and all(r["status"] == "not_identified" for r in short)
    # The evidence the list still carries bounds what the gate may identify: every correct
    # identification is counted once, within the ceiling or on less (a swapped name, say).
    e = report["evidence"]
    assert e["in_file"] == at["in_file"] and e["carrying_two_of_three"] < e["in_file"]
    assert e["identified_of_those"] + e["identified_on_less"] == at["correct"]
    assert e["recall_within_ceiling"] > at["recall"]


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


@pytest.mark.slow
def test_spark_gives_the_same_identifications(
    ws: Workspace, tmp_path: Path, officer: object, trained_root: Path
) -> None:
    pytest.importorskip("pyspark")
    rid = submit(ws, officer, trained_root / "gen-300").request_id
    duck = link(ws, rid, officer, out=tmp_path / "duck.parquet")
    spark = link(ws, rid, officer, backend="spark", out=tmp_path / "spark.parquet")
    # Standardizing, scoring and deciding all ran as Spark SQL: the same answers, item by item.
    cols = [
        "item_id",
        "status",
        "record_id",
        "runner_up_record_id",
        "reasons",
        "flags",
        "gate",
        "address_on_record",
        "address_on_record_in_periods",
        "person_agree",
        "person_conflict",
    ]
    a = pq.read_table(duck.path, columns=cols).to_pylist()
    b = pq.read_table(spark.path, columns=cols).to_pylist()
    assert a == b
    pa_ = pq.read_table(duck.path, columns=["probability"])["probability"].to_pylist()
    pb = pq.read_table(spark.path, columns=["probability"])["probability"].to_pylist()
    assert all((x is None and y is None) or abs(x - y) < 1e-6 for x, y in zip(pa_, pb, strict=True))


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
