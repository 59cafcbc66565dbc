"""DuckDB and Spark choose the same candidate (issue #25; matching/exact.py): two candidates of
equal score, a score on the floor's edge, a probability on the identification threshold's edge
and a Jaro–Winkler similarity on the first-name threshold's edge, each computed by the two
engines a last bit apart (as Splink's log2 and pow and the two similarity functions do), give
the same candidate, runner-up, status, flags and reasons on both."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custodes.matching import deciding, exact
from custodes.matching import link as lk
from custodes.matching.model import Thresholds, for_dialect, settings
from custodes.matching.tables import known_first_names

# ---------------------------------------------------------------------------------------------
# The grid and the literals (DuckDB only)


def test_the_grid_is_the_same_bits_in_sql_and_python() -> None:
    rng = random.Random(7)
    xs = [rng.uniform(-60, 60) for _ in range(2000)] + [0.92, 0.88, 0.9, 0.7, -6.6293566200796]
    xs += [math.nextafter(x, math.inf) for x in xs[-5:]] + [math.nextafter(0.92, 0.0)]
    con = duckdb.connect()
    con.register("t", pa.table({"x": xs}))
    got = [r[0] for r in con.execute(f"SELECT {exact.grid('x')} FROM t").fetchall()]
    assert got == [exact.on_grid(x) for x in xs]
    # a last-bit difference does not survive the grid
    assert exact.on_grid(math.nextafter(0.92, 0.0)) == exact.on_grid(0.92) == 0.92


def test_thresholds_are_double_literals_both_engines_read_alike() -> None:
    from custodes.store.steps import to_spark

    values = [0.99, 0.5, 3.0, 15.0, exact.floor_weight(0.01), 27.931568569, 1e-05]
    con = duckdb.connect()
    for v in values:
        lit = exact.double(v)
        assert con.execute(f"SELECT {lit}, typeof({lit})").fetchall() == [(v, "DOUBLE")]
        assert lit in to_spark(f"SELECT x >= {lit} FROM t")
    with pytest.raises(ValueError):
        exact.double(math.inf)


def test_what_sparks_workers_run_is_duckdbs_own_function_row_for_row() -> None:
    """The function Spark's workers run for `jaro_winkler` and `strip_accents` (DuckDB's own,
    over an Arrow batch) gives DuckDB's values in the batch's order, NULLs and empty strings
    included, on names and on short random strings of a few letters (many transpositions)."""
    from custodes.store.steps import duckdb_function_by_value

    rng = random.Random(11)
    names = known_first_names()["name"].to_pylist()
    pairs: list[tuple[str | None, str | None]] = [
        (rng.choice(names), rng.choice(names)) for _ in range(5000)
    ]
    pairs += [
        ("".join(rng.choice("ABCD") for _ in range(rng.randint(0, 8))),
         "".join(rng.choice("ABCD") for _ in range(rng.randint(0, 8))))
        for _ in range(5000)
    ]  # fmt: skip
    pairs += [("PILAR", "PEARLE"), ("ALESSANDRA", "ASLESSANDRSA"), ("A", "A"), ("", "")]
    pairs += [(None, "A"), ("MARTHA", None), ("ÉLODIE", "Ñúñez")]
    a = pa.array([x for x, _ in pairs], pa.string())
    b = pa.array([y for _, y in pairs], pa.string())
    con = duckdb.connect()
    con.register("t", pa.table({"a": a, "b": b}))
    duck = con.execute("SELECT jaro_winkler_similarity(a, b), strip_accents(a) FROM t").fetchall()
    jw = duckdb_function_by_value("jaro_winkler_similarity", 2)
    strip = duckdb_function_by_value("strip_accents", 1)
    assert jw(a, b).to_pylist() == [r[0] for r in duck]
    assert strip(a).to_pylist() == [r[1] for r in duck]
    assert jw(a[-3:], b[-3:]).to_pylist()[:2] == [None, None]
    assert strip(a[-1:]).to_pylist() == ["ELODIE"]


def test_splinks_similarity_levels_compare_on_the_grid() -> None:
    for dialect in ("duckdb", "spark"):
        plain = settings().create_settings_dict(sql_dialect_str=dialect)
        gridded = exact.grid_similarity_levels(plain)
        before = [
            lv["sql_condition"] for c in plain["comparisons"] for lv in c["comparison_levels"]
        ]
        after = [
            lv["sql_condition"] for c in gridded["comparisons"] for lv in c["comparison_levels"]
        ]
        changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        # the three Jaro-Winkler levels of first and last name; nothing else
        assert len(changed) == 6, changed
        assert all("jaro_winkler" in b.lower() and "floor((jaro_winkler" in a for b, a in changed)
        # the model is not changed, and a second pass changes nothing
        assert before == [
            lv["sql_condition"] for c in plain["comparisons"] for lv in c["comparison_levels"]
        ]
        assert exact.grid_similarity_levels(gridded) == gridded


def test_the_floor_is_kept_on_the_grid() -> None:
    """Splink keeps pairs a little below the floor; the floor is applied on the grid, so a pair
    on its edge is kept whichever side of it an engine's last bit puts it."""
    floor_w = exact.floor_weight(0.01)
    assert lk._predict_threshold(0.01) < floor_w
    con = duckdb.connect()
    con.register("predicted", _predicted([("i", "r", math.nextafter(floor_w, -math.inf))]))
    rows = con.execute(lk.pairs_sql("predicted", 0.01)).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("i", "r", floor_w)]
    con.register("predicted", _predicted([("i", "r", floor_w - 1e-8)]))
    assert con.execute(lk.pairs_sql("predicted", 0.01)).fetchall() == []


# ---------------------------------------------------------------------------------------------
# Both engines on one small case


PRED_COLUMNS = (
    "match_weight",
    "match_probability",
    "mw_first",
    "mw_tf_adj_first",
    "mw_last",
    "mw_tf_adj_last",
    "mw_middle",
    "mw_tf_adj_middle",
    "mw_dob",
    "mw_tin",
    "mw_address",
)


def _predicted(rows: list[tuple[Any, ...]]) -> pa.Table:
    """Splink's predictions as `pairs_sql` reads them: (item, record, weight[, probability,
    the six field weights])."""
    out: dict[str, list[Any]] = {
        "source_dataset_l": [],
        "uid_l": [],
        "uid_r": [],
        **{c: [] for c in PRED_COLUMNS},
    }
    for row in rows:
        item, record, w = row[:3]
        p = row[3] if len(row) > 3 else 1 / (1 + 2**-w)
        fields = row[4] if len(row) > 4 else (w / 6,) * 6
        out["source_dataset_l"].append("request")
        out["uid_l"].append(item)
        out["uid_r"].append(record)
        vals = [w, p, fields[0], 0.0, fields[1], 0.0, fields[2], 0.0, *fields[3:]]
        for c, v in zip(PRED_COLUMNS, vals, strict=True):
            out[c].append(float(v))
    return pa.table(out)


STD = ("uid", "first", "last", "dob", "tin", "house", "street", "zip5", "city", "state")
STD += ("middle", "suffix", "unit", "po_box", "hh_key")


def _std(rows: list[dict[str, str | None]]) -> pa.Table:
    return pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in STD})


MASTER = [
    # two namesakes born the same day: equal scores for an item with neither TIN nor address
    {"uid": "R1", "first": "JOHN", "last": "SMITH", "dob": "1980-01-01", "tin": "111223333",
     "house": "1", "street": "MAIN", "zip5": "12345", "city": "AVON", "state": "NY",
     "hh_key": "12345|1|MAIN||"},
    {"uid": "R2", "first": "JOHN", "last": "SMITH", "dob": "1980-01-01", "tin": "222334444",
     "house": "9", "street": "OAK", "zip5": "54321", "city": "ELM", "state": "OH",
     "hh_key": "54321|9|OAK||"},
    {"uid": "R3", "first": "MARY", "last": "JONES", "dob": "1975-05-05", "tin": "333445555",
     "house": "2", "street": "PINE", "zip5": "11111", "city": "ROME", "state": "NY",
     "hh_key": "11111|2|PINE||"},
    {"uid": "R4", "first": "ASLESSANDRSA", "last": "ROSSI", "dob": "1990-03-03",
     "tin": "444556666", "house": "3", "street": "ELM", "zip5": "22222", "city": "ERIE",
     "state": "PA", "hh_key": "22222|3|ELM||"},
    {"uid": "R5", "first": "PAUL", "last": "WEST", "dob": "1960-06-06", "tin": "555667777",
     "house": "4", "street": "BAY", "zip5": "33333", "city": "TROY", "state": "NY",
     "hh_key": "33333|4|BAY||"},
]  # fmt: skip
ITEMS = [
    {"uid": "I1", "first": "JOHN", "last": "SMITH", "dob": "1980-01-01"},
    {"uid": "I2", "first": "MARY", "last": "JONES", "dob": "1975-05-05"},
    # the similarity of ALESSANDRA and ASLESSANDRSA is 0.92 on DuckDB, 0.9199999999999999 by
    # another computation of the same definition: on the first-name threshold's edge
    {"uid": "I3", "first": "ALESSANDRA", "last": "ROSSI", "dob": "1990-03-03",
     "tin": "444556666"},
    {"uid": "I4", "first": "PAUL", "last": "WEST", "dob": "1960-06-06", "tin": "555667777"},
]  # fmt: skip


def _case(engine: str) -> list[tuple[Any, ...]]:
    """Splink's predictions as `engine` would compute them: the same scores, the last bit
    apart (the other way round on the other engine)."""
    up = engine == "duckdb"

    def bit(x: float, up_: bool) -> float:
        return math.nextafter(x, math.inf if up_ else -math.inf)

    floor_w = exact.floor_weight(0.01)
    p99_w = math.log2(0.99 / 0.01)
    return [
        # equal scores: the higher by a last bit is R2 on one engine, R1 on the other
        ("I1", "R1", bit(20.0, not up)),
        ("I1", "R2", bit(20.0, up)),
        # on the floor's edge
        ("I2", "R3", bit(floor_w, up)),
        ("I3", "R4", 25.0),
        # a probability on the identification threshold's edge
        ("I4", "R5", p99_w, bit(0.99, up), (4.0, 4.0, 0.0, 5.0, 8.0, p99_w - 21.0)),
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("alike")
    paths = {n: root / f"{n}.parquet" for n in ("m", "r", "addresses", "items")}
    pq.write_table(_std(MASTER), paths["m"])
    pq.write_table(_std(ITEMS), paths["r"])
    addresses = pa.table(
        {
            "record_id": [r["uid"] for r in MASTER],
            "street": [f"{r['house']} {r['street']} ST" for r in MASTER],
            "unit": pa.array([None] * len(MASTER), pa.string()),
            "city": [r["city"] for r in MASTER],
            "state": [r["state"] for r in MASTER],
            "zip": [r["zip5"] for r in MASTER],
            "tax_year": pa.array([2023] * len(MASTER), pa.int64()),
        }
    )
    pq.write_table(addresses, paths["addresses"])
    pq.write_table(pa.table({"item_id": [r["uid"] for r in ITEMS]}), paths["items"])
    return paths


class _MF:
    def __init__(self, addresses: Path) -> None:
        self.addresses = addresses

    def path(self, kind: str) -> Path:
        assert kind == "addresses"
        return self.addresses


def _linked(st: Any, inputs: dict[str, Path], predicted: pa.Table) -> list[dict[str, Any]]:
    lk.inputs(st, inputs["m"], inputs["r"], _MF(inputs["addresses"]), inputs["items"])  # type: ignore[arg-type]
    if st.dialect == "spark":
        df = st.spark.createDataFrame(predicted.to_pandas())
        df.createOrReplaceTempView("predicted")
    else:
        st.con.register("predicted", predicted)
    st.table("pairs", lk.pairs_sql("predicted", 0.01), reused=True)
    deciding.decide_steps(st, Thresholds(), [2023], own_periods=False)
    cols = (
        "item_id, status, record_id, runner_up_record_id, flags, reasons, gate, blocked, "
        "probability, weight, margin_bits, name_dob_bits, namesake_bits_required"
    )
    names = [c.strip() for c in cols.split(",")]
    rows = st.rows(f"SELECT {cols} FROM linked ORDER BY item_id")
    return [
        dict(zip(names, (list(v) if isinstance(v, list | tuple) else v for v in r), strict=True))
        for r in rows
    ]


def test_both_engines_choose_the_same_candidate_on_ties_and_edges(
    inputs: dict[str, Path],
) -> None:
    pytest.importorskip("pyspark")
    from custodes.matching.backends import SparkBackend
    from custodes.store.steps import DuckSteps, SparkSteps

    duck = _linked(DuckSteps(duckdb.connect()), inputs, _predicted(_case("duckdb")))
    spark_st = SparkSteps(SparkBackend().spark)  # with Splink's jar functions, as a link has
    try:
        spark = _linked(spark_st, inputs, _predicted(_case("spark")))
    finally:
        spark_st.close()
    assert duck == spark  # every column, floats to the bit
    by = {r["item_id"]: r for r in duck}
    # equal scores: the master record's key decides, on both
    assert (by["I1"]["record_id"], by["I1"]["runner_up_record_id"]) == ("R1", "R2")
    assert by["I1"]["margin_bits"] == 0.0 and "near_tie" in by["I1"]["reasons"]
    # the pair on the floor's edge is kept by both
    assert by["I2"]["record_id"] == "R3"
    # the first name on the similarity threshold's edge counts as close on both
    assert by["I3"]["record_id"] == "R4"
    # the probability on the edge is the threshold's on both: identified
    assert by["I4"]["probability"] == 0.99 and by["I4"]["status"] == "identified"


def test_sparks_jaro_winkler_is_duckdbs() -> None:
    """On Spark `jaro_winkler` is DuckDB's definition, not Splink's jar's (PILAR and PEARLE:
    0.765 on DuckDB, 0.697 by the jar), and on the grid the two agree to the bit, the 0.92
    threshold's edge included."""
    pytest.importorskip("pyspark")
    from custodes.matching.backends import SparkBackend
    from custodes.store.steps import SparkSteps

    names = known_first_names()["name"].to_pylist()
    rng = random.Random(3)
    pairs = [("PILAR", "PEARLE"), ("ALESSANDRA", "ASLESSANDRSA"), ("FLORENTINO", "FALEORENTINO")]
    pairs += [("MARTHA", None), (None, None), ("", "")]
    pairs += [(rng.choice(names), rng.choice(names)) for _ in range(3000)]
    table = pa.table(
        {"a": pa.array([p[0] for p in pairs], pa.string()),
         "b": pa.array([p[1] for p in pairs], pa.string())}
    )  # fmt: skip
    sql = f"SELECT a, b, {exact.grid('jaro_winkler_similarity(a, b)')} AS jw FROM t"
    con = duckdb.connect()
    con.register("t", table)
    duck = con.execute(sql).fetchall()
    be = SparkBackend()  # registers Splink's jar functions, then DuckDB's Jaro-Winkler
    st = SparkSteps(be.spark)
    st.arrow("t", table)
    spark = {(a, b): jw for a, b, jw in st.rows(sql)}
    st.close()
    assert [spark[(a, b)] for a, b, _ in duck] == [jw for _, _, jw in duck]
    assert spark[("PILAR", "PEARLE")] == 0.765
    assert spark[("ALESSANDRA", "ASLESSANDRSA")] == 0.92
    assert spark[("MARTHA", None)] is None


def test_the_link_uses_the_gridded_levels_on_both_engines() -> None:
    """The settings a link gives Splink are the model's with the similarity on the grid, for
    the model's own dialect as for the other."""
    trained = settings().create_settings_dict(sql_dialect_str="duckdb")
    for dialect in ("duckdb", "spark"):
        conds = [
            lv["sql_condition"]
            for c in exact.grid_similarity_levels(for_dialect(trained, dialect))["comparisons"]
            for lv in c["comparison_levels"]
            if "jaro" in lv["sql_condition"].lower()
        ]
        assert len(conds) == 6 and all(c.startswith("(floor((jaro_winkler") for c in conds)


def test_the_spark_jaro_winkler_travels_by_value(tmp_path: Path) -> None:
    """Spark pickles the UDF for its workers, which cannot import custodes: a Python without
    custodes on its path runs the pickled function (the standalone-cluster test runs it there
    too)."""
    import subprocess
    import sys

    pytest.importorskip("pyspark")
    from pyspark import cloudpickle

    from custodes.store.steps import duckdb_function_by_value

    blob = tmp_path / "jw.pickle"
    blob.write_bytes(cloudpickle.dumps(duckdb_function_by_value("jaro_winkler_similarity", 2)))
    code = (
        "import pickle, sys, pyarrow as pa; f = pickle.load(open(sys.argv[1], 'rb')); "
        "assert 'custodes' not in sys.modules; "
        "print(f(pa.array(['PILAR']), pa.array(['PEARLE'])).to_pylist())"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(blob)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.strip() == "[0.765]"
