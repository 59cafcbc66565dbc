"""Where Splink scores: on DuckDB (embedded, default) or on Spark (a session per process, a
cluster by configuration), behind one small interface (register an input, keep the pairs)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from custodes import settings
from custodes.errors import InputError
from custodes.matching.exact import register_jaro_winkler
from custodes.matching.model import MODEL_COLUMNS
from custodes.records import master
from custodes.store import duck
from custodes.store.sql import parquet


class DuckDBBackend:
    name = dialect = "duckdb"

    def __init__(
        self, threads: int | None = None, *, con: duckdb.DuckDBPyConnection | None = None
    ) -> None:
        from splink import DuckDBAPI

        # Splink scores in the caller's bulk connection when given one (one memory limit for
        # the whole link, and the scored pairs never leave DuckDB), else in its own.
        self.own = con is None
        self.con = con if con is not None else master.connect(threads)
        self.db_api = DuckDBAPI(connection=self.con)

    def register(self, path: Path, name: str) -> Any:
        cols = ", ".join(MODEL_COLUMNS)
        self.con.execute(
            f"CREATE OR REPLACE TABLE {name}_input AS SELECT {cols} FROM {parquet(path)}"
        )
        return self.db_api.register(f"{name}_input", dataset_display_name=name)

    def keep(self, sql: str, con: duckdb.DuckDBPyConnection, first: bool) -> None:
        """Append a chunk's pairs (`sql`, a query over Splink's table) to the temp table
        `pairs` of `con` (the same connection: nothing crosses into Python)."""
        assert con is self.con
        verb = "CREATE OR REPLACE TEMP TABLE pairs AS" if first else "INSERT INTO pairs"
        self.con.execute(f"{verb} {sql}")

    def close(self) -> None:
        if self.own:
            master.close(self.con)


class SparkBackend:
    """Splink on Spark: the same model and settings; a cluster is a matter of configuration
    (``CUSTODES_SPARK_MASTER``, default ``local[2]``)."""

    name = dialect = "spark"

    def __init__(self, spark: Any | None = None, *, home: Path | None = None) -> None:
        from splink import SparkAPI

        self.spark = spark or spark_session()
        # Splink's checkpoints for this job, where it writes every table it keeps as Parquet
        # (the scored pairs: both sides' names): a private folder in the workspace `home` (on
        # the filesystem the workers share with the driver, as the workspace is), removed by
        # `close`, when the backend is collected or at exit, and after a crash by the next
        # process's sweep (store.duck)
        self.checkpoints = duck.scratch(home, duck.SPARK_CHECKPOINTS_PREFIX)
        self._remove = weakref.finalize(self, shutil.rmtree, self.checkpoints, True)
        self.spark.sparkContext.setCheckpointDir(str(self.checkpoints))
        self.db_api = SparkAPI(spark_session=self.spark)  # type: ignore[no-untyped-call]
        # DuckDB's Jaro-Winkler, not the jar's that SparkAPI has just registered (exact.py)
        register_jaro_winkler(self.spark)

    def register(self, path: Path, name: str) -> Any:
        # the session outlives a link: the last link's input of that name goes first
        self.spark.catalog.dropTempView(name)
        df = self.spark.read.parquet(str(path)).select(*MODEL_COLUMNS)
        return self.db_api.register(df, dataset_display_name=name)

    def fetch(self, sql: str) -> pa.Table:
        return self.spark.sql(sql).toArrow()

    def keep(self, sql: str, con: duckdb.DuckDBPyConnection, first: bool) -> None:
        """Append a chunk's pairs (`sql`, a query over Splink's table) to the temp table
        `pairs` of `con`: one chunk at a time crosses from Spark (a chunk is at most
        ITEMS_PER_CHUNK items' pairs)."""
        chunk = self.fetch(sql)
        con.register("pairs_chunk", chunk)
        verb = "CREATE OR REPLACE TEMP TABLE pairs AS" if first else "INSERT INTO pairs"
        con.execute(f"{verb} SELECT * FROM pairs_chunk")
        con.unregister("pairs_chunk")

    def close(self) -> None:
        """Remove this job's checkpoints (the session is shared and stopped at exit)."""
        self._remove()


_scratch: str | None = None


def spark_session() -> Any:
    """The process's Spark session, with Splink's similarity functions, on
    ``CUSTODES_SPARK_MASTER`` (default ``local[2]``; ``spark://host:7077`` for a standalone
    cluster). The executors run this Python (``PYSPARK_PYTHON``, where it is not set) and get
    Splink's jar (``spark.jars``); memory is modest by default (driver 2g, executors 1g).
    Splink's checkpoints are a job's (`SparkBackend`), not the session's."""
    import sys

    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    # The executors' Python. pyspark's driver takes it from PYSPARK_PYTHON alone, else from
    # `python3` on the PATH, whatever that is (`spark.pyspark.python` is read by spark-submit,
    # not by a session made in a running Python): name this interpreter unless told otherwise,
    # so that the workers run the driver's Python and its packages.
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # One owner-only folder (mkdtemp: 0700) per process, removed at exit, for Spark's own
    # files: the SQL warehouse, which Spark would otherwise make as `spark-warehouse/` in the
    # current folder, readable by all (custodes keeps only temporary views in it), and the
    # driver's local folder (`spark.local.dir`: shuffle and spill blocks, the rows of the
    # master file and the items in flight), which Spark makes 0755 in /tmp, its files 0644.
    # A cluster's executors use their workers' SPARK_LOCAL_DIRS (docs/scale.md).
    global _scratch
    if _scratch is None or not os.path.isdir(_scratch):
        _scratch = tempfile.mkdtemp(prefix="custodes-spark-")
        atexit.register(shutil.rmtree, _scratch, True)
    scratch = _scratch
    builder = (
        SparkSession.builder.master(settings.text("CUSTODES_SPARK_MASTER", "local[2]"))
        .appName("custodes")
        .config("spark.jars", similarity_jar_location())
        .config("spark.sql.shuffle.partitions", settings.text("CUSTODES_SPARK_PARTITIONS", "8"))
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", settings.text("CUSTODES_SPARK_MEMORY", "2g"))
        .config("spark.executor.memory", settings.text("CUSTODES_SPARK_EXECUTOR_MEMORY", "1g"))
        .config("spark.pyspark.python", python)
        .config("spark.sql.warehouse.dir", os.path.join(scratch, "warehouse"))
        .config("spark.local.dir", os.path.join(scratch, "local"))
        # DuckDB's semantics for the shared SQL: a bad cast or a missing map key is NULL
        .config("spark.sql.ansi.enabled", "false")
    )
    host = settings.text("CUSTODES_SPARK_DRIVER_HOST")
    if host:  # the address the executors reach this driver at
        builder = builder.config("spark.driver.host", host).config("spark.driver.bindAddress", host)
    spark = builder.getOrCreate()
    # a session made earlier in this process keeps its settings: the runtime ones follow the
    # environment of this call
    spark.conf.set("spark.sql.shuffle.partitions", settings.text("CUSTODES_SPARK_PARTITIONS", "8"))
    spark.conf.set("spark.sql.ansi.enabled", "false")
    spark.sparkContext.setLogLevel("ERROR")
    register_jaro_winkler(spark)
    return spark


def make_backend(
    name: str, con: duckdb.DuckDBPyConnection | None = None, *, home: Path | None = None
) -> DuckDBBackend | SparkBackend:
    """Splink's backend; `con`, a bulk connection, is the one DuckDB scores in; `home`, the
    workspace folder, where Spark keeps a job's checkpoints."""
    if name == "duckdb":
        return DuckDBBackend(con=con)
    if name == "spark":
        return SparkBackend(home=home)
    raise InputError("Unknown backend (use duckdb or spark).", code="bad_argument")
