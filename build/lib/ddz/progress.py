"""A small progress interface: the library reports, the CLI renders (with rich)."""

from __future__ import annotations

from typing import Any, Protocol


class Task(Protocol):
    def advance(self, steps: int = 1, **fields: Any) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None) -> Task: ...


class _NullTask:
    def advance(self, steps: int = 1, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class NullProgress:
    """Reports nowhere: the default for library calls."""

    def task(self, description: str, total: int | None) -> Task:
        return _NullTask()
