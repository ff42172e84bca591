"""A bounded pool over one backend: at most `limit` jobs running, each reported as it ends;
leaving early (an error, Ctrl-C, the caller stopping) cancels the jobs still running."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ddz.jobs.work import Backend, Ended, Handle, Work


def run_pool(
    works: list[Work],
    backend: Backend,
    limit: int,
    poll_s: float = 0.5,
    on_start: Callable[[Work], None] | None = None,
    on_poll: Callable[[Work], None] | None = None,
) -> Iterator[Ended]:
    """Start the works in order, at most `limit` at a time; yield each one's `Ended` as it ends.
    `on_start(work)` runs after each start, `on_poll(work)` for every running job each poll."""
    waiting = list(works)
    running: dict[int, Handle] = {}
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                slot = min(set(range(limit)) - set(running))
                work = waiting.pop(0)
                running[slot] = backend.start(work, slot)
                if on_start is not None:
                    on_start(work)
            time.sleep(poll_s)
            for slot, handle in list(running.items()):
                if on_poll is not None:
                    on_poll(handle.work)
                if backend.finished(handle):
                    del running[slot]
                    yield backend.ended(handle)
    finally:
        for handle in running.values():
            backend.cancel(handle)
