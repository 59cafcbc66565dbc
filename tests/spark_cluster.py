"""A Spark standalone cluster on this machine, started with pyspark's own launcher
(`spark-class org.apache.spark.deploy.master.Master` / `...worker.Worker`): for the tests
(tests/test_spark_engine.py) and the benchmark (bench/spark.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """The cluster did not come up."""


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


def start(root: Path, workers: int = 2, memory: str = "1g", timeout: float = 120) -> Cluster:
    """A master and `workers` workers (1 core, `memory` each) on 127.0.0.1, on free ports;
    raises ClusterError (with the logs) when they have not all registered within `timeout`.
    A port taken between choosing it and binding it (a daemon exits at once) is chosen again,
    up to three times."""
    for attempt in range(3):
        run = root / f"attempt-{attempt}"
        run.mkdir(mode=0o700)
        try:
            return _start(run, workers, memory, timeout)
        except _PortTaken:
            continue
    raise ClusterError("the Spark standalone cluster's ports were taken three times")


class _PortTaken(ClusterError):
    pass


def _start(root: Path, workers: int, memory: str, timeout: float) -> Cluster:
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
    for i in range(1, workers + 1):
        work = root / f"worker-{i}"
        work.mkdir(mode=0o700)
        wlog = open(root / f"worker-{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", "--host",
                 "127.0.0.1", "--port", str(_free_port()), "--webui-port", str(_free_port()),
                 "--cores", "1", "--memory", memory, "--work-dir", str(work), url],
                env=env, stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
    cluster = Cluster(url, procs, root)
    deadline = time.monotonic() + timeout
    while _alive_workers(webui) < workers:
        exited = any(p.poll() is not None for p in procs)
        if time.monotonic() > deadline or exited:
            logs = "\n".join(
                f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:]
                for f in sorted(root.glob("*.log"))
            )
            stop(cluster)
            if exited and "BindException" in logs:
                raise _PortTaken(logs)
            raise ClusterError(f"the Spark standalone cluster did not come up:\n{logs}")
        time.sleep(1)
    return cluster


def stop(c: Cluster) -> None:
    """Stop the workers and the master (their process groups) and remove the work folders."""
    for p in reversed(c.procs):
        if p.poll() is None:
            os.killpg(p.pid, 15)  # the launcher's own process group (start_new_session)
    for p in c.procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
    for work in c.root.glob("worker-*"):  # the executors' work folders (jars, logs)
        shutil.rmtree(work, ignore_errors=True)
