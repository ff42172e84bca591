"""How many CPU threads torch uses: the cores this process may actually run on.

torch's own default is the machine's core count as OpenMP sees it, which ignores a container's
CPU quota (cgroup `cpu.max`, or `cpu.cfs_quota_us` under cgroup v1): a job given 2 CPUs of a
64-core node would start 64 threads and be throttled. ddz's default is the smallest of the
affinity mask (`os.sched_getaffinity`: taskset, SLURM's binding), the cgroup quota (rounded
down, at least 1), unless OMP_NUM_THREADS is set (what launchers give each rank or worker, or
the user's own choice).
The global `--threads N` overrides it. The choice depends on the machine's configuration, never
on its load, so a re-run (or a resumed run) gets the same count and, on CPU, the same bits.
"""

from __future__ import annotations

import math
import os
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


def default_threads() -> int:
    """OMP_NUM_THREADS when a launcher (or the user) set it, else `available_cores()`."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return available_cores()


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
