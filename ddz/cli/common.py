"""What every command shares: global settings, the rich console, progress, JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ddz.errors import ConfigError
from ddz.io import atomic_write_json

console = Console(stderr=True)
out = Console()


@dataclass
class Settings:
    data_root: Path = Path("data")
    device: str = "auto"
    seed: int = 0
    debug: bool = False
    argv: tuple[str, ...] = ()  # the command line as given (launchers re-run it in every rank)

    @property
    def torch_device(self) -> str:
        import torch  # here, not at the top: `ddz --help` and the zoo listing commands need no torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown --device {self.device!r}; valid: auto, cpu, cuda")
        return self.device


settings = Settings()


def format_fields(fields: dict[str, Any]) -> str:
    """Progress fields as `key=value`, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class _RichTask:
    def __init__(self, progress: Progress, task_id: int, description: str):
        self.progress, self.task_id, self.description = progress, task_id, description

    def advance(self, steps: int = 1, **fields: Any) -> None:
        description = self.description
        if fields:
            description = f"{self.description} [dim]{format_fields(fields)}[/dim]"
        self.progress.update(self.task_id, advance=steps, description=description)

    def close(self) -> None:
        self.progress.update(self.task_id, visible=True)


class RichProgress:
    """The ddz.progress.Progress interface rendered as rich bars on stderr."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def task(self, description: str, total: int | None) -> _RichTask:
        return _RichTask(self.progress, self.progress.add_task(description, total=total), description)


def write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        atomic_write_json(path, payload)
        console.print(f"wrote {path}")


def print_json(payload: object) -> None:
    out.print_json(json.dumps(payload))
