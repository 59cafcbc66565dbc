"""The whole job on Spark (issue #25, items 2 and 3): `process --engine spark` standardizes,
scores, decides and writes the outcomes as Spark SQL from the definitions the DuckDB path uses,
and gives the same answers item by item — in local mode, and on a real standalone cluster (a
master and two workers started here with pyspark's own launcher on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Template, copy_template, one_for_review
from custodes.errors import CustodesError
from custodes.services import decisions, matching, requests, rules

pytest.importorskip("pyspark")

# Columns compared exactly; the floats (scored by two engines) within a rounding.
FLOATS = ("probability", "margin_bits", "weight", "runner_up_probability", "runner_up_weight")
FLOAT_PREFIX = ("w_",)


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
        }
    finally:
        ws.close()


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert a.num_rows == b.num_rows
    for col in a.column_names:
        x, y = a[col].to_pylist(), b[col].to_pylist()
        if col in FLOATS or col.startswith(FLOAT_PREFIX) or col == "namesake_bits_required":
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
    """Stop this process's Spark session (the next one is made on the current master)."""
    from pyspark.sql import SparkSession

    s = SparkSession.getActiveSession()
    if s is not None:
        s.stop()


def test_spark_gives_the_same_outcomes_item_by_item(
    prepared: Prepared, by_duckdb: dict[str, Any], tmp_path: Path
) -> None:
    """Local mode: every stage on Spark, the same outcome, record, checks, reasons and flags
    for every item, and the same match evidence."""
    spark = _process(prepared, tmp_path / "w", "spark")
    assert spark["counts"] == by_duckdb["counts"]
    assert {"DISCLOSE", "WITHHOLD"} <= set(by_duckdb["counts"])
    _same(by_duckdb["outcomes"], spark["outcomes"])
    _same(by_duckdb["linked"], spark["linked"])


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
# A real standalone cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    url: str
    procs: list[subprocess.Popen[bytes]]
    root: Path


def _spark_class() -> tuple[Path, dict[str, str]]:
    import pyspark

    home = Path(pyspark.__file__).parent
    env = dict(os.environ) | {
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return home / "bin" / "spark-class", env


def _alive_workers(webui: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{webui}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return -1


def _start(root: Path) -> Cluster:
    """A master and two workers (1 core, 1g each); fails loudly if they do not register."""
    spark_class, env = _spark_class()
    port, webui = _free_port(), _free_port()
    procs = []
    log = open(root / "master.log", "wb")  # noqa: SIM115 - closed with the process
    procs.append(
        subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(webui)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    )  # fmt: skip
    url = f"spark://127.0.0.1:{port}"
    for i in (1, 2):
        work = root / f"worker-{i}"
        work.mkdir(mode=0o700)
        wlog = open(root / f"worker-{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", "--host",
                 "127.0.0.1", "--port", str(_free_port()), "--webui-port", str(_free_port()),
                 "--cores", "1", "--memory", "1g", "--work-dir", str(work), url],
                env=env, stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
    cluster = Cluster(url, procs, root)
    deadline = time.monotonic() + 120
    while _alive_workers(webui) < 2:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            logs = "\n".join(
                f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:]
                for f in sorted(root.glob("*.log"))
            )
            _stop(cluster)
            pytest.fail(f"the Spark standalone cluster did not come up with two workers:\n{logs}")
        time.sleep(1)
    return cluster


def _stop(c: Cluster) -> None:
    for p in reversed(c.procs):
        if p.poll() is None:
            os.killpg(p.pid, 15)  # the launcher's own process group (start_new_session)
    for p in c.procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
    for work in c.root.glob("worker-*"):
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("spark-cluster")
    c = _start(root)
    saved = {k: os.environ.get(k) for k in ("CUSTODES_SPARK_MASTER", "CUSTODES_SPARK_DRIVER_HOST")}
    _stop_spark()
    os.environ["CUSTODES_SPARK_MASTER"] = c.url
    os.environ["CUSTODES_SPARK_DRIVER_HOST"] = "127.0.0.1"
    try:
        yield c
    finally:
        _stop_spark()  # later tests get a local session again
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _stop(c)
    assert not list(root.glob("worker-*"))  # the work dirs are gone


def test_a_standalone_cluster_gives_the_same_outcomes(
    cluster: Cluster, prepared: Prepared, by_duckdb: dict[str, Any], tmp_path: Path
) -> None:
    """`process --engine spark` with CUSTODES_SPARK_MASTER=spark://… runs on the two workers
    and gives DuckDB's outcomes, item by item."""
    from custodes.matching.link import spark_session

    spark = spark_session()
    assert spark.sparkContext.master == cluster.url
    result = _process(prepared, tmp_path / "w", "spark")
    # the executors that did the work were the cluster's workers
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()
    assert executors >= 2  # the driver's block manager and at least one worker's executor
    assert result["counts"] == by_duckdb["counts"]
    _same(by_duckdb["outcomes"], result["outcomes"])
    _same(by_duckdb["linked"], result["linked"])
