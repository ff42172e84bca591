"""Shared fixtures: the embedded data set, and the real `ddz` console script run as a subprocess."""

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
