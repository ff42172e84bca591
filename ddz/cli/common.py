"""What every command shares: global settings, the rich console, progress, JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from ddz.io import atomic_write_json

if TYPE_CHECKING:
    from ddz.zoo.api import Zoo

console = Console(stderr=True)
out = Console()


def follow_terminal() -> None:
    """Let both consoles measure the terminal (and COLUMNS) again: a rich Console fixes its
    width when COLUMNS is set at its creation, and main() may run many times in one process."""
    console.width = out.width = None  # type: ignore[assignment]


@dataclass
class Settings:
    data_root: Path = Path("data")
    device: str = "auto"
    seed: int = 0
    seed_given: bool = False  # --seed was on the command line (it then overrides a --config file's)
    debug: bool = False
    argv: tuple[str, ...] = ()  # the command line as given (launchers re-run it in every rank)
    threads: int | None = None  # --threads: torch CPU threads of a computing process (None: ddz.threads')

    def use_threads(self) -> int:
        """Set torch's CPU threads (--threads, else the cores this process may use); the count.
        A count chosen by default that exceeds the cores other processes leave idle is warned of."""
        from ddz.threads import crowding_warning, launcher_threads, use_threads  # imports torch when called

        count = use_threads(self.threads)
        if self.threads is None and launcher_threads() is None:
            warning = crowding_warning(count)
            if warning:
                console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        return count

    @property
    def torch_device(self) -> str:
        from ddz.devices import resolve_device  # imports torch: `ddz --help` and `zoo list` need none

        return resolve_device(self.device)

    def zoo(self) -> Zoo:
        """The zoo the environment names (DDZ_HOME, DDZ_REGISTRY, HF_*): read here, once per command."""
        from ddz.zoo.api import Zoo  # here, not at the top: `ddz --help` needs no zoo

        return Zoo.from_env()


settings = Settings()


def format_fields(fields: dict[str, Any]) -> str:
    """Progress fields as `key=value`, floats to 3 significant digits."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


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
        # At 80 columns the counts, times and a short bar keep their width; the description
        # (name and rounded fields) takes the rest and is cut with an ellipsis when it must be.
        fixed = {"no_wrap": True, "overflow": "crop"}
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=10, table_column=Column(width=10, no_wrap=True)),
            MofNCompleteColumn(table_column=Column(width=11, justify="right", **fixed)),
            TimeElapsedColumn(table_column=Column(width=7, **fixed)),
            TimeRemainingColumn(table_column=Column(width=7, **fixed)),
            console=console,
            expand=True,
        )

        self.started = False

    def __enter__(self) -> RichProgress:
        return self  # the bars start with the first task: a command that fails before prints none

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.__exit__(*exc)

    def task(self, description: str, total: int | None) -> _RichTask:
        if not self.started:
            self.progress.__enter__()
            self.started = True
        return _RichTask(self.progress, self.progress.add_task(description, total=total), description)


def write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        atomic_write_json(path, payload)
        console.print(f"wrote {path}")


def print_json(payload: object) -> None:
    out.print_json(json.dumps(payload))
