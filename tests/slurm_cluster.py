"""Real Slurm clusters for tests: munged + slurmctld + slurmd (+ MariaDB + slurmdbd), all under a scratch dir.

Four session-scoped fixtures, each started on first use and torn down (daemons killed by the pids they recorded,
network namespaces and bridge deleted) at the end of the session:

- ``slurm_cluster``: one node, accounting disabled (``sacct`` says "Slurm accounting storage is disabled").
- ``slurm_cluster_2nodes``: two nodes ``n1``/``n2``, each slurmd in its own network + UTS namespace on a bridge.
- ``slurm_cluster_acct``: one node with real accounting (a private MariaDB + slurmdbd).

A test selects a cluster by ``cluster.activate(monkeypatch)`` (sets ``SLURM_CONF`` for this test); ``cluster.env``
is the environment for subprocesses. Without Slurm binaries the fixtures skip, except under ``CI`` where they fail.
The starters take ``extra_conf`` (more slurm.conf lines) and ``slurmd_path`` (PATH entries slurmd needs first):
``pyxis_cluster.py`` builds its clusters on them. The sshd for SSH submission is in ``ssh_server.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemons import ClusterStartError, free_port_block, tcp_open, terminate_all, wait_until
from system_tools import require_tools

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scontrol")
ACCOUNTING_BINARIES = ("mariadbd", "mariadb-install-db", "slurmdbd", "sacctmgr")
NODE_CPUS = 2
# cred_expire: how long a job step credential lives, and so how long a requeued job waits before it may start again
# (Slurm's default is 120 s). Starting it sooner (scontrol update StartTime=now) gets it killed: "Job credential
# revoked". 15 s still leaves a loaded 2-core machine time to launch a step.
REQUEUE_DELAY_S = 15


@dataclass
class SlurmCluster:
    """A running test cluster; ``stop()`` ends every daemon it started and removes its network namespaces."""

    base: Path
    name: str
    nodes: list[str]
    accounting: bool = False
    netns: list[str] = field(default_factory=list)
    bridge: str | None = None
    pid_files: list[Path] = field(default_factory=list)
    slurmdbd_port: int | None = None
    slurmd_path: str | None = None  # PATH entries slurmd needs first (pyxis execs `enroot` with slurmstepd's PATH)

    @property
    def conf(self) -> Path:
        return self.base / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def slurmd_env(self) -> dict[str, str]:
        if self.slurmd_path is None:
            return self.env
        return {**self.env, "PATH": f"{self.slurmd_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def activate(self, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
        monkeypatch.setenv("SLURM_CONF", str(self.conf))
        return self

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def idle_nodes(self) -> int:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout  # a node shows once per partition
        return len({line.split()[0] for line in out.splitlines() if line.split()[-1:] == ["idle"]})

    def wait_idle(self, timeout: float = 30) -> None:
        wait_until(
            lambda: self.idle_nodes() == len(self.nodes),
            timeout,
            f"cluster {self.name}",
            self.base / "log" / "slurmctld.log",
        )

    def queue(self) -> list[str]:
        """Job ids squeue still knows (any state: finished ones stay for MinJobAge)."""
        return self.run("squeue", "-h", "--states=all", "-o", "%i").stdout.split()

    def queue_active(self) -> list[str]:
        """Job ids pending or running."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def stop(self) -> None:
        terminate_all(self.pid_files)
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


# ------------------------------------------------------------------------------------------------ config
def _slurm_conf(
    base: Path, name: str, ctl_addr: str, ctl_port: int, accounting_port: int | None, cred_expire: int = REQUEUE_DELAY_S
) -> str:
    auth = f"AuthInfo=socket={base}/munge/munge.socket,cred_expire={cred_expire}"
    lines = [
        f"ClusterName={name}",
        f"SlurmctldHost={socket.gethostname()}({ctl_addr})",
        f"SlurmctldPort={ctl_port}",
        f"SlurmdPort={ctl_port + 1}",
        "AuthType=auth/munge",
        auth,
        "CryptoType=crypto/munge",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={base}/state",
        f"SlurmdSpoolDir={base}/spool/%n",
        f"SlurmctldPidFile={base}/run/slurmctld.pid",
        f"SlurmdPidFile={base}/run/slurmd.%n.pid",
        f"SlurmctldLogFile={base}/log/slurmctld.log",
        f"SlurmdLogFile={base}/log/slurmd.%n.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "ReturnToService=2",
        "MinJobAge=600",
    ]
    if accounting_port is not None:
        lines += [
            "JobAcctGatherType=jobacct_gather/linux",
            "JobAcctGatherFrequency=5",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={accounting_port}",
            # the munge socket of the slurmctld<->slurmdbd link: without it slurmctld uses the default one and dies
            f"AccountingStoragePass={base}/munge/munge.socket",
            # what a site may turn on: every job's environment in the database (the secrets tests read it back)
            "AccountingStoreFlags=job_env",
            "JobCompType=jobcomp/none",
        ]
    else:
        lines += [
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={base}/log/jobcomp.txt",
        ]
    return "\n".join(lines) + "\n"


def _prepare_dirs(base: Path) -> None:
    for sub in ("munge", "state", "spool", "log", "run"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "munge").chmod(0o700)


def _start_munge(cluster: SlurmCluster) -> None:
    munge = cluster.base / "munge"
    key = munge / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    subprocess.run(
        [
            "munged", "--force", f"--key-file={key}", f"--socket={munge}/munge.socket",
            f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    cluster.pid_files.append(munge / "munged.pid")


def _start_slurmctld(cluster: SlurmCluster) -> None:
    subprocess.run(["slurmctld", "-f", str(cluster.conf)], env=cluster.env, check=True, capture_output=True)
    cluster.pid_files.append(cluster.base / "run" / "slurmctld.pid")


def _node_line(name: str, addr: str, hostname: str | None = None) -> str:
    host = f" NodeHostname={hostname}" if hostname else ""
    return f"NodeName={name}{host} NodeAddr={addr} CPUs={NODE_CPUS} RealMemory=4000 State=UNKNOWN\n"


# ``short`` has a small MaxTime: a job asking for more must be refused before anything of its run is queued.
PARTITION_LINE = (
    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    "PartitionName=short Nodes=ALL MaxTime=00:10:00 State=UP\n"
)


# ------------------------------------------------------------------------------------------------ starters
def start_single_node(
    base: Path, name: str = "nemotest", accounting: bool = False, extra_conf: str = "", slurmd_path: str | None = None
) -> SlurmCluster:
    """One node named after this host on 127.0.0.1; with ``accounting``, MariaDB + slurmdbd first.

    ``extra_conf``: more slurm.conf lines (e.g. ``PlugStackConfig``); ``slurmd_path``: PATH entries for slurmd."""
    _prepare_dirs(base)
    node = socket.gethostname()
    cluster = SlurmCluster(base=base, name=name, nodes=[node], accounting=accounting, slurmd_path=slurmd_path)
    try:
        ports = free_port_block(4)
        _start_munge(cluster)
        if accounting:
            cluster.slurmdbd_port = ports + 2
            _start_accounting(cluster, db_port=free_port_block(1))
        conf = _slurm_conf(base, name, "127.0.0.1", ports, cluster.slurmdbd_port)
        cluster.conf.write_text(conf + extra_conf + _node_line(node, "127.0.0.1") + PARTITION_LINE)
        _start_slurmctld(cluster)
        (base / "spool" / node).mkdir(exist_ok=True)
        subprocess.run(["slurmd", "-f", str(cluster.conf)], env=cluster.slurmd_env, check=True, capture_output=True)
        cluster.pid_files.append(base / "run" / f"slurmd.{node}.pid")
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_multi_node(
    base: Path,
    nnodes: int = 2,
    name: str = "nemotestmn",
    extra_conf: str = "",
    slurmd_path: str | None = None,
    netns_prefix: str = "nt",
    cred_expire: int = REQUEUE_DELAY_S,
) -> SlurmCluster:
    """``nnodes`` nodes n1..nN, each slurmd in its own network + UTS namespace behind a bridge in the root one.

    ``netns_prefix`` (two letters) keeps the namespaces and links of two such clusters in one session apart;
    ``cred_expire`` (seconds): see ``REQUEUE_DELAY_S``."""
    _prepare_dirs(base)
    tag = f"{netns_prefix}{os.getpid() % 100000:05d}"
    net = _free_subnet()
    nodes = [f"n{i}" for i in range(1, nnodes + 1)]
    cluster = SlurmCluster(base=base, name=name, nodes=nodes, slurmd_path=slurmd_path)
    try:
        cluster.bridge = f"br{tag}"
        _ip("link", "add", cluster.bridge, "type", "bridge")
        _ip("addr", "add", f"{net}.1/24", "dev", cluster.bridge)
        _ip("link", "set", cluster.bridge, "up")
        hosts = f"127.0.0.1 localhost\n{net}.1 ctl {socket.gethostname()}\n"
        hosts += "".join(f"{net}.{10 + i} n{i}\n" for i in range(1, nnodes + 1))
        for i in range(1, nnodes + 1):
            ns = f"{tag}n{i}"
            _ip("netns", "add", ns)
            cluster.netns.append(ns)
            _ip("link", "add", f"v{tag}n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", f"v{tag}n{i}", "master", cluster.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{net}.{10 + i}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            (base / f"hosts.n{i}").write_text(hosts)
        ports = free_port_block(2)
        _start_munge(cluster)
        conf = _slurm_conf(base, name, f"{net}.1", ports, None, cred_expire)
        node_lines = "".join(_node_line(f"n{i}", f"{net}.{10 + i}", f"n{i}") for i in range(1, nnodes + 1))
        cluster.conf.write_text(conf + extra_conf + node_lines + PARTITION_LINE)
        _start_slurmctld(cluster)
        for i, ns in enumerate(cluster.netns, start=1):
            _start_slurmd_in_namespace(cluster, ns, f"n{i}")
        cluster.wait_idle(timeout=60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_slurmd_in_namespace(cluster: SlurmCluster, ns: str, node: str) -> None:
    # Not `ip netns exec`: it remounts /sys (hiding /sys/fs/cgroup) and slurmd 22.05 then fails to start.
    (cluster.base / "spool" / node).mkdir(exist_ok=True)
    hosts = cluster.base / f"hosts.{node}"
    inner = f"mount --bind {hosts} /etc/hosts && hostname {node} && exec slurmd -f {cluster.conf} -N {node}"
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--uts", "--mount", "sh", "-c", inner],
        env=cluster.slurmd_env, check=True, capture_output=True,
    )  # fmt: skip
    cluster.pid_files.append(cluster.base / "run" / f"slurmd.{node}.pid")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterStartError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _free_subnet() -> str:
    """A 10.123.X.0/24 no interface of this machine uses (several sessions may run at once)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for third in range(os.getpid() % 200, os.getpid() % 200 + 250):
        net = f"10.123.{third % 250}"
        if f" {net}." not in used:
            return net
    raise ClusterStartError("no free 10.123.X.0/24 subnet for the test cluster's bridge")


def _start_accounting(cluster: SlurmCluster, db_port: int) -> None:
    """A private MariaDB (own datadir, socket, port) and slurmdbd on it; slurmdbd.conf beside slurm.conf."""
    base = cluster.base
    db, dbrun = base / "db", base / "dbrun"
    dbrun.mkdir(exist_ok=True)
    shutil.chown(dbrun, "mysql", "mysql")
    if not (db / "mysql").exists():
        subprocess.run(
            ["mariadb-install-db", "--user=mysql", f"--datadir={db}", "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip
    subprocess.run(["chown", "-R", "mysql:mysql", str(db)], check=True)
    socket_path = dbrun / "mysql.sock"
    subprocess.Popen(
        ["mariadbd", "--user=mysql", f"--datadir={db}", f"--socket={socket_path}", f"--port={db_port}",
         "--bind-address=127.0.0.1", f"--pid-file={dbrun}/mariadb.pid", f"--log-error={dbrun}/mariadb.err",
         "--skip-name-resolve", "--innodb-fast-shutdown=2", "--innodb-buffer-pool-size=64M",
         "--innodb-log-file-size=16M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    cluster.pid_files.insert(0, dbrun / "mariadb.pid")  # stopped last

    def db_up() -> bool:
        ping = ["mariadb-admin", f"--socket={socket_path}", "ping"]
        return subprocess.run(ping, capture_output=True).returncode == 0

    wait_until(db_up, 60, "mariadb", dbrun / "mariadb.err")
    password = os.urandom(8).hex()
    grant = (
        f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
        f"ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    )
    subprocess.run(["mariadb", f"--socket={socket_path}", "-uroot", "-e", grant], check=True, capture_output=True)
    dbd_conf = base / "slurmdbd.conf"
    dbd_conf.write_text(
        "AuthType=auth/munge\n"
        f"AuthInfo=socket={base}/munge/munge.socket\n"
        f"DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={cluster.slurmdbd_port}\n"
        f"SlurmUser=root\nPidFile={base}/run/slurmdbd.pid\nLogFile={base}/log/slurmdbd.log\n"
        f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={db_port}\n"
        f"StorageUser=slurm\nStoragePass={password}\nStorageLoc=slurm_acct_db\n"
    )
    dbd_conf.chmod(0o600)
    # slurmdbd has no -f: it reads slurmdbd.conf from the directory of $SLURM_CONF
    subprocess.run(["slurmdbd"], env=cluster.env, check=True, capture_output=True)
    cluster.pid_files.insert(1, base / "run" / "slurmdbd.pid")
    wait_until(lambda: tcp_open("127.0.0.1", cluster.slurmdbd_port), 30, "slurmdbd", base / "log" / "slurmdbd.log")


# ------------------------------------------------------------------------------------------------ fixtures
def _session_cluster(tmp_path_factory, binaries: tuple[str, ...], start, *args, **kwargs):
    require_tools(binaries, "Slurm test cluster", "apt-get install slurmctld slurmd slurmdbd mariadb-server munge")
    if os.geteuid() != 0:
        message = "the Slurm test clusters run their daemons as root"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    # Not under pytest's 0700 basetemp: mariadbd runs as `mysql` and must reach its datadir.
    base = Path(tempfile.mkdtemp(prefix=f"nemotron-{start.__name__.removeprefix('start_')}-"))
    base.chmod(0o755)
    try:
        cluster = start(base, *args, **kwargs)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node cluster with accounting disabled."""
    yield from _session_cluster(tmp_path_factory, SLURM_BINARIES, start_single_node)


@pytest.fixture(scope="session")
def slurm_cluster_2nodes(tmp_path_factory):
    """Two nodes n1, n2 in their own network namespaces."""
    yield from _session_cluster(tmp_path_factory, (*SLURM_BINARIES, "nsenter", "unshare", "ip"), start_multi_node)


@pytest.fixture(scope="session")
def slurm_cluster_3nodes(tmp_path_factory):
    """Three nodes n1..n3: a 2-node job still finds two after losing one."""
    binaries = (*SLURM_BINARIES, "nsenter", "unshare", "ip")
    yield from _session_cluster(tmp_path_factory, binaries, start_multi_node, nnodes=3, name="nemotestft",
                                netns_prefix="ft")  # fmt: skip


def lose_node(cluster: SlurmCluster, node: str) -> None:
    """What a dead node looks like to Slurm: every process in its namespace (slurmd, slurmstepd, the ranks) killed,
    and the node marked down, as slurmctld does once it stops answering (without waiting SlurmdTimeout)."""
    namespace = cluster.netns[cluster.nodes.index(node)]
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-KILL", pid], capture_output=True)
    cluster.run("scontrol", "update", f"nodename={node}", "state=down", "reason=lost in a test")


def revive_node(cluster: SlurmCluster, node: str) -> None:
    """A lost node back in service: its slurmd started again in its namespace, the node resumed."""
    _start_slurmd_in_namespace(cluster, cluster.netns[cluster.nodes.index(node)], node)
    cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
    cluster.wait_idle(timeout=60)


@pytest.fixture(scope="session")
def slurm_cluster_acct(tmp_path_factory):
    """A single-node cluster with real accounting (MariaDB + slurmdbd)."""
    binaries = (*SLURM_BINARIES, *ACCOUNTING_BINARIES)
    yield from _session_cluster(tmp_path_factory, binaries, start_single_node, name="nemotestacct", accounting=True)
