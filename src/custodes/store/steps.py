"""Named SQL steps, written once in DuckDB's spelling and run on DuckDB or on Spark.

A bulk job (linking, deciding) is a sequence of named steps, each one SQL query over the
tables the steps before it made, as Splink's own pipeline (`enqueue_sql(sql,
output_table_name)`). A step is written once, in DuckDB's dialect; on Spark it is transpiled
with sqlglot, with the few functions whose names differ renamed here (Splink's similarity jar
gives Spark `damerau_levenshtein`; `jaro_winkler` and `strip_accents` are DuckDB's own, run by
DuckDB on Spark's workers: `register_duckdb_function`). Each step can be run, and tested, on
its own: give it its input tables and read its output table.

On DuckDB a step is a temporary table. On Spark it is a temporary view over a DataFrame,
cached when it is read by more than one later step; nothing comes back to the driver but the
scalars a step asks for (`scalar`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from custodes.store.dialects import _date_spark, _full_match_spark
from custodes.store.sql import ident
from custodes.store.sql import path as sqlpath

# DuckDB function -> Spark function (the same meaning under another name).
SPARK_NAMES = {
    "jaro_winkler_similarity": "jaro_winkler",  # Splink's similarity jar
    "damerau_levenshtein": "damerau_levenshtein",  # Splink's similarity jar
}


class Steps(Protocol):
    dialect: str

    def source(self, name: str, path: Path) -> None: ...
    def arrow(self, name: str, table: pa.Table) -> None: ...
    def table(self, name: str, sql: str, *, reused: bool = False, native: bool = False) -> None: ...
    def columns(self, name: str) -> list[str]: ...
    def ident(self, name: str) -> str: ...
    def scalar(self, sql: str) -> Any: ...
    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...
    def write(self, sql: str, out: Path, order_by: str) -> None: ...


def _spark_map(node: exp.ToMap) -> exp.Expression:
    """DuckDB's ``MAP {'K': 'V', ...}[key]`` (sqlglot reads the subscript inside the MAP) as
    Spark's ``map('K', 'V', ...)[key]``."""
    inner = node.this
    bracket = inner if isinstance(inner, exp.Bracket) else None
    struct = bracket.this if bracket is not None else inner
    args: list[exp.Expression] = []
    for kv in struct.expressions:
        args += [kv.this, kv.expression]
    m = exp.Anonymous(this="map", expressions=args)
    return exp.Bracket(this=m, expressions=bracket.expressions) if bracket is not None else m


def _spark_node(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        if name in SPARK_NAMES:
            return exp.Anonymous(this=SPARK_NAMES[name], expressions=node.expressions)
        if name == "try_strptime":
            return _date_spark(list(node.expressions))
        if name == "list_intersect":
            return exp.Anonymous(this="array_intersect", expressions=node.expressions)
    if isinstance(node, exp.Length) and isinstance(node.this, exp.Anonymous):
        inner = node.this
        if str(inner.this).lower() == "list_intersect":
            inner = exp.Anonymous(this="array_intersect", expressions=inner.expressions)
        return exp.Anonymous(this="size", expressions=[inner])
    if isinstance(node, exp.JarowinklerSimilarity):
        return exp.Anonymous(this="jaro_winkler", expressions=[node.this, node.expression])
    if isinstance(node, exp.RegexpFullMatch):
        return _full_match_spark([node.this, node.expression])
    if isinstance(node, exp.ToMap):
        return _spark_map(node)
    return node


def to_spark(sql: str) -> str:
    """A step's DuckDB SQL as Spark SQL."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return tree.transform(_spark_node).sql(dialect="spark")


def duckdb_function_by_value(function: str, arity: int) -> Any:
    """DuckDB's own scalar `function` of `arity` arguments over one Arrow batch of them: what
    Spark's workers run for a function Spark lacks or defines otherwise
    (`register_duckdb_function`), so that Spark computes it by DuckDB's definition, by
    construction, not by a copy of it. Defined inside a function so that Spark pickles it by
    value with its query (written here, on the driver): the workers need Python with duckdb and
    pyarrow (the driver's Python, by default), not custodes. One single-threaded in-memory
    DuckDB per deserialized function, so per task, not per batch."""
    names = [f"a{i}" for i in range(arity)]
    sql = f"SELECT {ident(function)}({', '.join(ident(n) for n in names)}) FROM batch"
    held: dict[str, Any] = {}

    def call(*columns: pa.Array) -> pa.Array:
        import duckdb
        import pyarrow as pa

        con = held.get("con")
        if con is None:
            con = held["con"] = duckdb.connect(config={"threads": 1})
        con.register("batch", pa.table(dict(zip(names, columns, strict=True))))
        try:  # one thread, one projection: the rows come back in their order
            got = con.sql(sql).to_arrow_table()
        finally:
            con.unregister("batch")
        return got.column(0).combine_chunks()

    return call


def register_duckdb_function(
    spark: Any, name: str, function: str, arity: int, returns: str
) -> None:
    """Spark's SQL function `name` as DuckDB's `function` (`duckdb_function_by_value`), an
    Arrow UDF returning the Spark type `returns` (a DDL name: "double", "string")."""
    from pyspark.sql.pandas.functions import arrow_udf

    run = duckdb_function_by_value(function, arity)
    # the kind of UDF from `run`'s type hints (pa.Array in, pa.Array out), as pyspark 4.1 asks
    # (naming it warns); its stubs still know only the overloads that name it
    spark.udf.register(name, arrow_udf(run, returns))  # type: ignore[call-overload]


def register_strip_accents(spark: Any) -> None:
    """DuckDB's ``strip_accents`` for Spark, which has none."""
    register_duckdb_function(spark, "strip_accents", "strip_accents", 1, "string")


class DuckSteps:
    dialect = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def source(self, name: str, path: Path) -> None:
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(name)} AS SELECT * FROM read_parquet("
            f"{sqlpath(path)})"
        )

    def arrow(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def table(self, name: str, sql: str, *, reused: bool = False, native: bool = False) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(name)} AS {sql}")

    def columns(self, name: str) -> list[str]:
        return [d[0] for d in self.con.execute(f"SELECT * FROM {ident(name)} LIMIT 0").description]

    def ident(self, name: str) -> str:
        return ident(name)

    def scalar(self, sql: str) -> Any:
        return self.con.execute(sql).fetchall()[0][0]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def write(self, sql: str, out: Path, order_by: str) -> None:
        import os

        tmp = out.with_suffix(".tmp")
        self.con.execute(
            f"COPY (SELECT * FROM ({sql}) ORDER BY {order_by}) TO {sqlpath(tmp)} (FORMAT parquet)"
        )
        os.replace(tmp, out)


class SparkSteps:
    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.cached: list[Any] = []
        # DuckDB's semantics: a missing map key, a bad cast give NULL, not an error.
        spark.conf.set("spark.sql.ansi.enabled", "false")
        register_strip_accents(spark)

    def source(self, name: str, path: Path) -> None:
        self.spark.read.parquet(str(path)).createOrReplaceTempView(name)

    def arrow(self, name: str, table: pa.Table) -> None:
        """A small table of strings (nicknames, known names, the one-line addresses parsed on
        the driver), shipped with the plan; the schema is given, so a column of NULLs is a
        column of strings."""
        if not all(pa.types.is_string(f.type) for f in table.schema):
            raise TypeError(f"{name}: only string columns go to Spark from the driver")
        ddl = ", ".join(f"{self.ident(f.name)} STRING" for f in table.schema)
        rows = [tuple(r.values()) for r in table.to_pylist()]
        self.spark.createDataFrame(rows, ddl).createOrReplaceTempView(name)

    def table(self, name: str, sql: str, *, reused: bool = False, native: bool = False) -> None:
        """`native`: the SQL is Spark's already (compiled for it), not DuckDB's."""
        df = self.spark.sql(sql if native else to_spark(sql))
        if reused:
            df = df.cache()
            self.cached.append(df)
        df.createOrReplaceTempView(name)

    def columns(self, name: str) -> list[str]:
        return list(self.spark.table(name).columns)

    def ident(self, name: str) -> str:
        return exp.to_identifier(name, quoted=True).sql(dialect="spark")

    def scalar(self, sql: str) -> Any:
        return self.spark.sql(to_spark(sql)).collect()[0][0]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.spark.sql(to_spark(sql)).collect()]

    def write(self, sql: str, out: Path, order_by: str) -> None:
        """One Parquet file at `out`: Spark writes a folder with one part (on the shared
        filesystem the workers and the driver see), which is moved into place."""
        import os
        import shutil

        tmp = out.with_name(out.name + ".spark")
        shutil.rmtree(tmp, ignore_errors=True)
        df = self.spark.sql(to_spark(sql)).repartition(1).sortWithinPartitions(order_by)
        df.write.mode("overwrite").parquet(str(tmp))
        parts = sorted(tmp.glob("part-*.parquet"))
        if len(parts) != 1:
            raise RuntimeError(f"Spark wrote {len(parts)} parts for {out.name}")
        os.chmod(parts[0], 0o600)
        os.replace(parts[0], out)
        shutil.rmtree(tmp, ignore_errors=True)

    def close(self) -> None:
        for df in self.cached:
            df.unpersist()
        self.cached.clear()
