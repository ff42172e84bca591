"""What a job is (`Work`), how a backend tracks a started one (`Handle`), how it ended (`Ended`),
and the interface every backend has (`Backend`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ddz.errors import ConfigError

LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class Work:
    """One job: `function(*args)` in a worker, which leaves the JSON file `status` when it ends.

    `function` is defined at a module's top level (a local worker imports it by name, SLURM
    pickles it by reference); `args` are JSON values. `key` names the job's files in its folder."""

    key: str
    function: Callable[..., Any]
    args: tuple[Any, ...]
    status: Path

    def __post_init__(self) -> None:
        if "<" in self.function.__qualname__ or self.function.__module__ == "__main__":
            raise ConfigError(
                f"{self.function.__qualname__} cannot run in a worker; define it at the top of an "
                "importable module"
            )

    @property
    def target(self) -> str:
        """`module:name`, how a local worker finds the function."""
        return f"{self.function.__module__}:{self.function.__qualname__}"


@dataclass
class Handle:
    """One started job, as its backend tracks it."""

    work: Work
    log: Path | None = None
    process: subprocess.Popen | None = None  # local workers
    slurm_job: Any = None  # a submitit Job
    error: str | None = None  # why the job could not be started
    missing_since: float | None = None  # when a SLURM job left the queue without a status


@dataclass(frozen=True)
class Ended:
    """A job that ended: the status it left (None when it left none or an unreadable one), else
    why it ended without one as its backend saw it, and its log."""

    work: Work
    status: dict[str, Any] | None
    reason: str
    log: Path | None = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str | None:
        return log_tail(self.log, lines)


class Backend(Protocol):
    """Starts jobs elsewhere (worker processes, SLURM) and reports how they ended."""

    def start(self, work: Work, slot: int) -> Handle: ...
    def finished(self, handle: Handle) -> bool: ...
    def ended(self, handle: Handle) -> Ended: ...
    def cancel(self, handle: Handle) -> None: ...


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last `lines` lines of a log (None when there is no log or it is empty)."""
    if path is None or not path.exists():
        return None
    text = path.read_text(errors="replace").rstrip().splitlines()
    return "\n".join(text[-lines:]) or None


def read_status(path: Path) -> dict[str, Any] | None:
    """The status JSON a worker left, or None when there is none (or it is not a JSON object)."""
    try:
        status = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) else None


def prepare_status(work: Work) -> None:
    """Before a start: the folder of the status file exists and no earlier attempt's file is there."""
    work.status.parent.mkdir(parents=True, exist_ok=True)
    work.status.unlink(missing_ok=True)
