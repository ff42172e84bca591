"""How many CPU threads torch uses: the cores this process may actually run on.

torch's own default is the machine's core count as OpenMP sees it, which ignores a container's
CPU quota (cgroup `cpu.max`, or `cpu.cfs_quota_us` under cgroup v1): a job given 2 CPUs of a
64-core node would start 64 threads and be throttled. ddz's default is the smallest of the
affinity mask (`os.sched_getaffinity`: taskset, SLURM's binding), the cgroup quota (rounded
down, at least 1), unless OMP_NUM_THREADS is set (what launchers give each rank or worker, or
the user's own choice).
The global `--threads N` overrides it. The choice depends on the machine's configuration, never
on its load, so a re-run (or a resumed run) gets the same count and, on CPU, the same bits.

The load is only looked at to warn: when other processes keep some of those cores busy, a run
of more threads than idle cores waits at every parallel step for a descheduled thread (many
times slower than one thread on this project's 2-core machine, bench/threads_load.py), and
`crowding_warning` says which `--threads` would run at full speed.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ddz.errors import ConfigError


def affinity_cores() -> int:
    """CPUs this process may be scheduled on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup folders for the cpu controller, from the leaf up to the mount
    (v2: the unified hierarchy; v1: the `cpu` controller's)."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            mounts = [root / "sys/fs/cgroup", root / "sys/fs/cgroup/unified"]
        elif "cpu" in controllers.split(","):
            mounts = [root / "sys/fs/cgroup" / controllers, root / "sys/fs/cgroup/cpu"]
        else:
            continue
        for mount in mounts:
            leaf = mount / path.lstrip("/")
            for folder in [leaf, *leaf.parents]:
                if folder == mount.parent:
                    break
                found.append(folder)
    return found


def _quota_in(folder: Path) -> float | None:
    """The CPUs a cgroup folder's quota allows (None: no quota, or no such file)."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def cgroup_cpus(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota on this process's cgroup and its ancestors (None: none set)."""
    quotas = [q for q in (_quota_in(folder) for folder in _cgroup_dirs(root)) if q is not None]
    return min(quotas) if quotas else None


def available_cores(root: Path = Path("/")) -> int:
    """The cores this process can use: its affinity, capped by its cgroup CPU quota."""
    cores = affinity_cores()
    quota = cgroup_cpus(root)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def _own_cpus() -> set[int]:
    """The CPUs this process may be scheduled on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _busy_ticks(root: Path, cpus: set[int]) -> int | None:
    """Clock ticks `cpus` spent busy since boot, from /proc/stat (None: unreadable)."""
    try:
        lines = (root / "proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy


class CoreWatch:
    """How many of this process's CPUs other processes kept busy since the previous `busy()`
    call: the kernel's per-CPU busy time on those CPUs, less this process's own CPU time (all its
    threads), over the wall time between the calls. Cheap (two small reads), so a loop can ask
    every iteration; 0.0 where /proc/stat cannot be read."""

    def __init__(self, root: Path = Path("/")):
        self.root, self.cpus = root, _own_cpus()
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        ticks = _busy_ticks(self.root, self.cpus)
        if ticks is None:
            return None
        own = os.times()
        return ticks / self.tick, own.user + own.system, time.monotonic()

    def busy(self) -> float:
        now, last = self._sample(), self.last
        self.last = now
        if now is None or last is None or now[2] - last[2] <= 0:
            return 0.0
        others = (now[0] - last[0]) - (now[1] - last[1])
        return max(0.0, others / (now[2] - last[2]))


def busy_cores(window_s: float = 0.2, root: Path = Path("/")) -> float:
    """How many of this process's CPUs other work keeps busy, watched for `window_s` seconds."""
    watch = CoreWatch(root)
    time.sleep(window_s)
    return watch.busy()


def crowding_warning(threads: int, window_s: float = 0.2) -> str | None:
    """A line for a run about to use `threads` threads by default while other processes keep some
    of its cores busy (None: they are idle enough, or there is one thread anyway)."""
    if threads < 2:
        return None
    busy = busy_cores(window_s)
    idle = max(1, available_cores() - round(busy))
    if idle >= threads:
        return None
    return (f"other processes keep {busy:.1f} of this process's {available_cores()} cores busy; at "
            f"{threads} threads every step waits for a descheduled thread and runs several times slower: "
            f"pass --threads {idle} to run at full speed on the idle cores (docs/distill.md, CPU threads)")


def launcher_threads() -> int | None:
    """OMP_NUM_THREADS when a launcher (or the user) set it to a count, else None."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(given) if given.isdigit() and int(given) > 0 else None


def default_threads() -> int:
    """OMP_NUM_THREADS when a launcher (or the user) set it, else `available_cores()`."""
    return launcher_threads() or available_cores()


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to `threads` (None: `default_threads()`); the count set."""
    import torch

    check_threads(threads)
    count = threads or default_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
