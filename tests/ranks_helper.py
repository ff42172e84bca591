"""Run a function on N real ranks (spawned processes, one gloo group on 127.0.0.1) and collect
what each rank returns. The function must be importable (defined at a module's top level)."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from ddz.distributed.ranks import join


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, fn: Callable, args: tuple, out: str) -> None:
    torch.set_num_threads(1)
    ranks = join(rank, world, "127.0.0.1", port, timeout_s=120)
    try:
        torch.save(fn(ranks, *args), Path(out) / f"rank{rank}.pt")
    finally:
        ranks.close()


def run_ranks(world: int, fn: Callable, *args: Any) -> list[Any]:
    """fn(ranks, *args) on `world` ranks, one CPU thread each; the return values in rank order."""
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _rank_main, args=(world, free_port(), fn, args, out), nprocs=world, start_method="spawn"
        )
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world)]
