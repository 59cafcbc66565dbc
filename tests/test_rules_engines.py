"""The rule engine's SQL: every item check compiles for DuckDB and for Spark, parameters are
bound as literals, and the two engines give the same verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from custodes.requests.format import read_envelope
from custodes.rules.evaluate import item_sql
from custodes.rules.provisions import overlay
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_rules import RS, _ice, envelope, load_items


def test_every_item_check_compiles_for_duckdb_and_spark() -> None:
    for prov in RS.provisions.values():
        eff = overlay(RS, prov, None)
        cols = {"identified", "address_on_record"}
        duck = item_sql(eff, RS, envelope(), cols, "duckdb")
        spark = item_sql(eff, RS, envelope(), cols, "spark")
        assert set(duck) == set(spark)
        for cid in duck:
            sqlglot.parse_one(spark[cid], read="spark")  # valid Spark SQL
            assert "REGEXP_FULL_MATCH" not in spark[cid] and "TRY_STRPTIME" not in spark[cid]


def test_parameters_are_bound_as_literals_not_pasted() -> None:
    """An official id (chosen by the agency) holding quotes, a statement or a comment stays one
    literal in the compiled SQL, on both engines."""
    evil = "OFF-1'); COPY (SELECT 1) TO '/tmp/x'; --\n"
    eff = overlay(RS, RS.provisions["irc-6103-i-2"], None)
    env = envelope(officials=[{"id": evil, "name": "A", "title": "B"}])
    for dialect in ("duckdb", "spark"):
        sql = item_sql(eff, RS, env, set(), dialect)["official-engaged"]
        tree = sqlglot.parse_one(sql, read=dialect)
        literals = [lit.this for lit in tree.find_all(sqlglot.exp.Literal)]
        assert evil in literals and "COPY" not in sql.split("IN")[0]


@pytest.mark.slow
def test_duckdb_and_spark_give_the_same_verdicts(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    """One definition, two engines: every item check compiled for DuckDB and for Spark (local
    mode) gives the same verdict on every item of a generated request."""
    pytest.importorskip("pyspark")
    import duckdb
    from pyspark.sql.types import StringType, StructField, StructType

    from custodes.matching.backends import spark_session
    from custodes.services.requests import generate as generate_request

    generate_request(master_ws, people.admin, "irc-6103-i-2", 400, 7, tmp_path / "req")
    table = load_items(tmp_path / "req")
    env = read_envelope(tmp_path / "req")
    eff = overlay(RS, RS.provisions["irc-6103-i-2"], _ice())
    duck_sql = item_sql(eff, RS, env, set(table.column_names), "duckdb")
    spark_sql = item_sql(eff, RS, env, set(table.column_names), "spark")
    assert set(duck_sql) == set(spark_sql) and len(duck_sql) >= 8
    con = duckdb.connect()
    con.register("items", table)
    spark = spark_session()
    schema = StructType([StructField(c, StringType()) for c in table.column_names])
    spark.createDataFrame(table.to_pylist(), schema).createOrReplaceTempView("items")
    differing, failing = {}, 0
    for cid in duck_sql:
        q = "SELECT item_id, coalesce(({}), FALSE) AS ok FROM items ORDER BY item_id"
        a = con.execute(q.format(duck_sql[cid])).fetchall()
        b = [(r["item_id"], r["ok"]) for r in spark.sql(q.format(spark_sql[cid])).collect()]
        if a != b:
            differing[cid] = sum(x != y for x, y in zip(a, b, strict=True))
        failing += any(not ok for _, ok in a)
    assert not differing, differing
    assert failing >= 4  # the request exercises both verdicts of most checks
