"""A Spark standalone cluster on this machine, started with pyspark's own launcher
(`spark-class org.apache.spark.deploy.master.Master` / `...worker.Worker`): for the tests
(tests/test_spark_engine.py) and the benchmark (bench/spark.py).

Where this process may make network namespaces (root, `ip` from iproute2), the master and each
worker run on a host of their own: a namespace with its own address on a private bridge
(10.231.N.0/24) whose own address, in this namespace, is the driver's. The daemons then reach
each other and the driver over a network, as on a real cluster, not over one loopback; the
bridge is reachable from this machine only. Elsewhere they all listen on 127.0.0.1.
`CUSTODES_TEST_SPARK_NETNS=0` asks for 127.0.0.1 where namespaces would be possible."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """The cluster did not come up."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Hosts:
    """Network namespaces joined by a bridge: the i-th is the host at `address(i)`; this
    namespace is `driver` on the bridge."""

    bridge: str
    net: str  # "10.231.N"
    names: list[str]

    @property
    def driver(self) -> str:
        return f"{self.net}.1"

    def address(self, i: int) -> str:
        return f"{self.net}.{10 + i}"


@dataclass
class Cluster:
    url: str
    procs: list[subprocess.Popen[bytes]]
    root: Path
    driver_host: str = "127.0.0.1"  # the address the executors reach the driver at
    worker_hosts: tuple[str, ...] = ("127.0.0.1",)
    hosts: Hosts | None = None  # the namespaces, where the daemons run on hosts of their own


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def namespaces_possible() -> bool:
    """Whether this process can make network namespaces (and is not asked not to)."""
    if os.environ.get("CUSTODES_TEST_SPARK_NETNS", "1") == "0":
        return False
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"custodes-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError):
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return True


def _make_hosts(n: int) -> Hosts:
    """`n` namespaces on a new bridge, on a /24 no route of this machine uses yet."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(20):
        k = random.randrange(1, 255)
        if f"10.231.{k}." in routes:
            continue
        bridge = f"custodes-br{k}"
        try:
            _ip("link", "add", bridge, "type", "bridge")
        except subprocess.CalledProcessError:  # another cluster's, made since the look
            continue
        break
    else:
        raise ClusterError("no free 10.231.N.0/24 for the cluster's bridge")
    hosts = Hosts(bridge, f"10.231.{k}", [])
    try:
        _ip("addr", "add", f"{hosts.driver}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i in range(n):
            ns = f"custodes-{k}-{i}"
            _ip("netns", "add", ns)
            hosts.names.append(ns)
            # one end of the cable in the host, named eth0 there; the other on the bridge
            _ip("link", "add", f"custodes-{k}v{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)  # fmt: skip
            _ip("link", "set", f"custodes-{k}v{i}", "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{hosts.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except BaseException:
        _remove_hosts(hosts)
        raise
    return hosts


def _remove_hosts(hosts: Hosts) -> None:
    """The namespaces (their cable ends go with them) and the bridge."""
    for ns in hosts.names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "del", hosts.bridge], capture_output=True, timeout=30)


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


def _alive_workers(host: str, webui: int) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy, ever
    try:
        with opener.open(f"http://{host}:{webui}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return -1


def start(
    root: Path,
    workers: int = 2,
    memory: str = "1g",
    timeout: float = 120,
    namespaces: bool | None = None,
) -> Cluster:
    """A master and `workers` workers (1 core, `memory` each): each on a host of its own
    (a network namespace) where `namespaces` (default: where possible), else on 127.0.0.1 on
    free ports. Raises ClusterError (with the logs) when they have not all registered within
    `timeout`. On 127.0.0.1, a port taken between choosing it and binding it (a daemon exits at
    once) is chosen again, up to three times."""
    hosts = None
    if namespaces or (namespaces is None and namespaces_possible()):
        try:
            hosts = _make_hosts(workers + 1)
        except subprocess.CalledProcessError:
            # namespaces, but no bridge or cable (a restricted container): 127.0.0.1, unless
            # namespaces were asked for
            if namespaces:
                raise
    if hosts:
        run = root / "hosts"
        run.mkdir(mode=0o700)
        try:
            return _start(run, workers, memory, timeout, hosts)
        except ClusterError as e:
            _remove_hosts(hosts)
            if namespaces:
                raise
            # not asked for: a firewall between the bridge's ports, say. 127.0.0.1, said aloud
            warnings.warn(f"the cluster is on 127.0.0.1, not on its own hosts: {e}", stacklevel=2)
        except BaseException:
            _remove_hosts(hosts)
            raise
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


def _start(
    root: Path, workers: int, memory: str, timeout: float, hosts: Hosts | None = None
) -> Cluster:
    spark_class, env = _spark_class()

    def launch(i: int, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Daemon i (0: the master) on its host: its namespace and address, or 127.0.0.1."""
        host = hosts.address(i) if hosts else "127.0.0.1"
        netns = ["ip", "netns", "exec", hosts.names[i]] if hosts else []
        with open(log, "wb") as out:  # the daemon keeps its own copy of the descriptor
            return subprocess.Popen(
                [*netns, str(spark_class), *args, "--host", host],
                env=env | {"SPARK_LOCAL_IP": host}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    # on a host of its own, a daemon has every port to itself: Spark's usual ones
    port, webui = (7077, 8080) if hosts else (_free_port(), _free_port())
    master = hosts.address(0) if hosts else "127.0.0.1"
    url = f"spark://{master}:{port}"
    procs = [
        launch(0, ["org.apache.spark.deploy.master.Master", "--port", str(port),
                   "--webui-port", str(webui)], root / "master.log")
    ]  # fmt: skip
    for i in range(1, workers + 1):
        work = root / f"worker-{i}"
        work.mkdir(mode=0o700)
        wport, wui = (7078, 8081) if hosts else (_free_port(), _free_port())
        procs.append(
            launch(i, ["org.apache.spark.deploy.worker.Worker", "--port", str(wport),
                       "--webui-port", str(wui), "--cores", "1", "--memory", memory,
                       "--work-dir", str(work), url], root / f"worker-{i}.log")
        )  # fmt: skip
    if hosts:
        cluster = Cluster(
            url, procs, root, hosts.driver,
            tuple(hosts.address(i) for i in range(1, workers + 1)), hosts,
        )  # fmt: skip
    else:
        cluster = Cluster(url, procs, root)
    deadline = time.monotonic() + timeout
    while _alive_workers(master, webui) < workers:
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
    """Stop the workers and the master (their process groups), remove the work folders and
    the hosts' namespaces and bridge."""
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
    if c.hosts:
        _remove_hosts(c.hosts)
