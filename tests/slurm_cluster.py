"""A real single-node SLURM cluster for tests: munged, slurmctld and slurmd started by hand.

Use it from a test module with `from slurm_cluster import slurm_cluster  # noqa: F401`. The
fixture needs slurm-wlm and munge installed (scripts/setup-system.sh, which `make test` runs), starts
munged as the munge user with its own key and socket, writes a slurm.conf on free ports with
NodeName = `hostname -s` (addressed on 127.0.0.1), points SLURM_CONF at it for the session, waits
until the node is idle, and at the end cancels every job and stops the three daemons.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ddz.jobs import stop_process

DAEMONS = ("munged", "slurmctld", "slurmd")


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    hostname: str
    cpus: int
    partition: str = "debug"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout)

    def queue_after_drain(self, timeout: float = 30) -> str:
        """squeue's lines once the queue empties, or what is still there after `timeout` s. ddz
        takes a job's result from its status file, which the job writes a moment before it exits
        and SLURM takes it off the queue."""
        deadline = time.monotonic() + timeout
        while (listed := self.run("squeue", "-h").stdout.strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return listed

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def ensure_installed() -> None:
    """slurm-wlm and munge must be there: scripts/setup-system.sh installs them (make test does)."""
    missing = [d for d in DAEMONS if not (shutil.which(d) or Path("/usr/sbin", d).exists())]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: run scripts/setup-system.sh (as root) first")


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def write_conf(root: Path, hostname: str, cpus: int, ctld_port: int, slurmd_port: int,
               extra: str = "") -> Path:
    socket_path = root / "munge" / "munge.socket.2"
    memory = max(512, int(_memory_mb() * 0.8))
    text = f"""\
ClusterName=ddztest
SlurmctldHost={hostname}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
{extra}NodeName={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
"""
    conf = root / "slurm.conf"
    conf.write_text(text)
    return conf


def start_munged(root: Path) -> subprocess.Popen:
    munge_dir = root / "munge"
    munge_dir.mkdir(mode=0o755)
    user = pwd.getpwnam("munge")
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))  # a fresh key for this throw-away cluster only
    for path in (munge_dir, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    key.chmod(0o400)
    proc = subprocess.Popen(
        [
            _daemon("munged"),
            "--foreground",
            f"--socket={munge_dir / 'munge.socket.2'}",
            f"--key-file={key}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--log-file={munge_dir / 'munged.log'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
        ],
        user=user.pw_uid,
        group=user.pw_gid,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not (munge_dir / "munge.socket.2").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"munged did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen) -> None:
    stop_process(proc)


def start_cluster(extra: str = "") -> SlurmCluster:
    """A cluster of this machine; `extra`: more slurm.conf lines (before the node and partition)."""
    ensure_installed()
    # Under /tmp (not pytest's 0700 tmp folders) so that the munge user can reach its socket.
    root = Path(tempfile.mkdtemp(prefix="ddz-slurm-"))
    root.chmod(0o755)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    hostname = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    ctld_port, slurmd_port = free_ports(2)
    conf = write_conf(root, hostname, cpus, ctld_port, slurmd_port, extra)
    cluster = SlurmCluster(root, conf, hostname, cpus)
    try:
        cluster.processes["munged"] = start_munged(root)
        env = cluster.env()
        for name in ("slurmctld", "slurmd"):
            args = [_daemon(name), "-D", "-f", str(conf)]
            if name == "slurmctld":
                args.append("-c")  # a clean start: no state from earlier clusters
            with open(root / "log" / f"{name}.stderr.log", "wb") as log:
                cluster.processes[name] = subprocess.Popen(
                    args, env=env, stdout=subprocess.DEVNULL, stderr=log
                )
        deadline = time.monotonic() + 60
        while True:
            state = cluster.run("sinfo", "-h", "-n", hostname, "-o", "%T").stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return cluster
            for name, proc in cluster.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{cluster.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SLURM node did not become idle (state {state!r})\n{cluster.logs()}")
            time.sleep(0.2)
    except BaseException:
        stop_cluster(cluster)
        raise


def stop_cluster(cluster: SlurmCluster) -> None:
    if cluster.processes.get("slurmctld") and cluster.processes["slurmctld"].poll() is None:
        cluster.run("scancel", "--full", "--user", pwd.getpwuid(os.geteuid()).pw_name)
        deadline = time.monotonic() + 15
        while cluster.run("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.2)
    for name in ("slurmd", "slurmctld", "munged"):
        if name in cluster.processes:
            stop(cluster.processes[name])
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node SLURM cluster; SLURM_CONF points at it while the session lasts."""
    cluster = start_cluster()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        stop_cluster(cluster)


# Memory enforced as most sites do: --mem is a consumable resource, and slurmd kills a step whose
# processes use more than it (read from /proc every second: no cgroup plugin needed). These lines
# come after write_conf's own SelectTypeParameters and JobAcctGatherType, and override them.
MEMORY_ENFORCED = """\
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
"""


@pytest.fixture(scope="session")
def slurm_memory_cluster() -> Iterator[SlurmCluster]:
    """A second cluster of this machine that kills jobs over their --mem (pass SLURM_CONF yourself:
    `cluster.env()`); every job on it must ask for --mem."""
    cluster = start_cluster(MEMORY_ENFORCED)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
