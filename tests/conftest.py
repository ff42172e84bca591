"""Shared fixtures: the embedded data set, and the real `ddz` console script run as a subprocess.

The suite runs on pytest-xdist workers (`make test`: `-n 2`). Each worker computes with one torch
thread, and so do the `ddz` processes it starts (OMP_NUM_THREADS is inherited): two workers with two
threads each on two cores would slow every test several-fold. Tests that use one of the session's
SLURM clusters run on one worker (xdist groups "slurm" and "slurm-memory"), so each cluster starts
once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ddz.data import ImageDataset, load_dataset

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def skip_unless_ci(reason: str) -> None:
    """Skip a test whose kernel feature (a tmpfs mount, a cgroup) this machine refuses; under CI
    (CI set, root on a fresh machine) the feature must be there, so the test fails instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    if XDIST_WORKER:
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, group in (("slurm_cluster", "slurm"), ("slurm_memory_cluster", "slurm-memory")):
            if fixture in names:
                item.add_marker(pytest.mark.xdist_group(group))


def ddz_executable() -> list[str]:
    """The installed console script next to this interpreter, else `python -m ddz`."""
    script = Path(sys.executable).with_name("ddz")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ddz"]


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    """The embedded 16x16 digits set on the CPU (loaded once; do not modify it in place)."""
    return load_dataset("digits")


@pytest.fixture
def run_ddz(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run_ddz(*args) runs `ddz args...` in tmp_path with DDZ_HOME and --data-root inside it."""
    home = tmp_path / "ddz-home"

    def run(
        *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        environment = {
            **os.environ,
            "DDZ_HOME": str(home),
            "DDZ_DATA_ROOT": str(tmp_path / "data"),
            "COLUMNS": "200",
            **(env or {}),
        }
        return subprocess.run(
            [*ddz_executable(), *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def start_and_kill_when(command: list[str], cwd: Path, env: dict[str, str], marker: Path,
                        timeout: float = 240) -> None:
    """Start `command`, wait until `marker` exists (the process must still run), then SIGKILL it."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"{command[1:3]} ended before {marker.name} appeared"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
