"""Run a function on N ranks of this machine (new processes, one gloo group on 127.0.0.1) and
collect what each rank returns: how the tests and the benchmark drive real ranks from Python.
The function must be importable (defined at a module's top level).

Ranks start from a fork server that has imported torch and ddz once (multiprocessing's
"forkserver" method): each rank is a fork of that clean process, so it neither pays the seconds
of a fresh interpreter importing torch (as "spawn" does) nor inherits the caller's threads and
state (as "fork" would)."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from ddz.distributed.local import free_port
from ddz.distributed.ranks import join


def _rank_main(rank: int, world: int, port: int, fn: Callable, args: tuple, out: str, threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the group meets on 127.0.0.1
    ranks = join(rank, world, "127.0.0.1", port, timeout_s=120)
    try:
        torch.save(fn(ranks, *args), Path(out) / f"rank{rank}.pt")
    finally:
        ranks.close()


def run_ranks(world: int, fn: Callable, *args: Any, threads: int = 1) -> list[Any]:
    """fn(ranks, *args) on `world` ranks, `threads` CPU threads each; the return values in rank
    order (passed back through files, so anything torch.save takes)."""
    multiprocessing.set_forkserver_preload([__name__, fn.__module__])
    with tempfile.TemporaryDirectory() as out:
        arguments = (world, free_port(), fn, args, out, threads)
        mp.start_processes(_rank_main, args=arguments, nprocs=world, start_method="forkserver")
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world)]
