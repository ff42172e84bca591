"""Shared fixtures: the embedded data set, and the `ddz` command run in this process (`run_ddz`)
or as the real console script in a subprocess (`run_ddz_process`).

The suite runs on pytest-xdist workers (`make test`: `-n 2`). Each worker computes with one torch
thread, and so do the `ddz` processes it starts (OMP_NUM_THREADS is inherited): two workers with two
threads each on two cores would slow every test several-fold. Tests that use one of the session's
SLURM clusters run on one worker (xdist groups "slurm" and "slurm-memory"), so each cluster starts
once.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

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


def _environment(tmp_path: Path, env: dict[str, str] | None) -> dict[str, str]:
    """What every `ddz` the tests run sees: DDZ_HOME and the data root inside tmp_path."""
    return {
        "DDZ_HOME": str(tmp_path / "ddz-home"),
        "DDZ_DATA_ROOT": str(tmp_path / "data"),
        "COLUMNS": "200",
        **(env or {}),
    }


@pytest.fixture
def run_ddz_process(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run_ddz_process(*args) runs the `ddz` console script as a process in tmp_path: for what only
    a process shows (its own start-up and imports, exit codes of crashes, ranks writing to the
    terminal, signals)."""

    def run(
        *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*ddz_executable(), *args],
            cwd=tmp_path,
            env={**os.environ, **_environment(tmp_path, env)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def ddz_in_process(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`ddz args...` run in this process as the console script would run in `cwd` with `env` added
    to the environment: the same exit status, stdout and stderr captured, without the 3-5 s a new
    process spends importing torch. An exception the CLI lets escape fails the test with its
    traceback, where a process would have exited 1. The environment, working directory and torch
    thread count (`--threads` sets it) are restored afterwards."""
    from ddz.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, threads = dict(os.environ), Path.cwd(), torch.get_num_threads()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(args))
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["ddz", *args], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def run_ddz(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run_ddz(*args) runs `ddz args...` in this process (`ddz_in_process`) in tmp_path with
    DDZ_HOME and the data root inside it; `timeout` is pytest-timeout's job here."""

    def run(
        *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        del timeout
        return ddz_in_process(list(args), tmp_path, _environment(tmp_path, env))

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
