"""The ranks of a run and the few collectives ddz issues, each one counted in bytes.

`Ranks` wraps a torch.distributed process group (gloo on CPU, NCCL on GPUs). One rank (`SINGLE`)
issues no collective at all, so single-process runs are untouched. Every collective adds to
`tally`: per operation, the bytes this rank handed in (`sent`) and the bytes it got from the
other ranks (`received`), the payload the collective moved, not the transport's own traffic.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ddz.errors import ConfigError, DDZError

DEFAULT_TIMEOUT_S = 300.0
# How a collective that timed out is said: the launchers look for it to tell a rank that hung
# (it never answered) from the ranks that waited for it.
TIMED_OUT = "timed out waiting for the other ranks"


class RankFailure(DDZError):
    """A rank died, or a collective failed or timed out because of one."""


@dataclass
class Traffic:
    calls: int = 0
    sent: int = 0
    received: int = 0


@dataclass(eq=False)
class Ranks:
    """This process's place among `world` ranks."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    tally: dict[str, Traffic] = field(default_factory=lambda: defaultdict(Traffic))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run's files and prints."""
        return self.rank == 0

    def _count(self, op: str, sent: int, received: int) -> None:
        entry = self.tally[op]
        entry.calls += 1
        entry.sent += sent
        entry.received += received

    def _collective(self, op: str, call: Any, *args: Any) -> None:
        """Run one collective; a peer that died or a timeout becomes one line (RankFailure)."""
        try:
            call(*args)
        except (RuntimeError, dist.DistError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if "timed out" in str(error).lower():
                raise RankFailure(
                    f"rank {self.rank}: {op} {TIMED_OUT} (--dist-timeout {self.timeout_s:g}s); "
                    "one of them hangs or died"
                ) from error
            raise RankFailure(
                f"rank {self.rank}: {op} failed ({first}); another rank died or did not answer "
                "within --dist-timeout"
            ) from error

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of `tensor` over the ranks (a detached copy)."""
        total = tensor.detach().clone()
        if self.world > 1:
            self._collective("all_reduce", dist.all_reduce, total)
            nbytes = total.numel() * total.element_size()
            self._count("all_reduce", nbytes, nbytes)
        return total

    def gather_rows(self, tensor: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Every rank's `tensor` (rank r has rows[r] rows) concatenated in rank order, on every
        rank. Shorter parts are padded to the longest, as all-gather takes equal sizes."""
        if self.world == 1:
            return tensor.detach().clone()
        longest = max(rows)
        padded = tensor.detach().new_zeros((longest, *tensor.shape[1:]))
        padded[: len(tensor)] = tensor.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self._collective("all_gather", dist.all_gather, parts, padded)
        nbytes = padded.numel() * padded.element_size()
        self._count("all_gather", nbytes, nbytes * (self.world - 1))
        return torch.cat([part[:n] for part, n in zip(parts, rows, strict=True)])

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's picklable `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world
        self._collective("all_gather_object", dist.all_gather_object, gathered, obj)
        sizes = [len(pickle.dumps(item)) for item in gathered]
        self._count("all_gather_object", sizes[self.rank], sum(sizes) - sizes[self.rank])
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            self._collective("barrier", dist.barrier)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def traffic(self) -> dict[str, dict[str, int]]:
        return {op: vars(entry).copy() for op, entry in self.tally.items()}


SINGLE = Ranks()


def join(
    rank: int,
    world: int,
    master_addr: str,
    master_port: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    device: str = "cpu",
    local_rank: int | None = None,
) -> Ranks:
    """Join the process group of `world` ranks. Every collective fails after `timeout_s` seconds
    instead of waiting forever for a rank that died."""
    if timeout_s <= 0:
        raise ConfigError(f"--dist-timeout must be positive, got {timeout_s}")
    if world == 1:
        return Ranks()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    local_rank = rank if local_rank is None else local_rank
    if backend == "nccl":
        torch.cuda.set_device(local_rank if device == "cuda" else torch.device(device))
    dist.init_process_group(
        backend,
        init_method=f"tcp://{master_addr}:{master_port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    return Ranks(rank, world, local_rank, timeout_s)


def rank_device(device: str, ranks: Ranks) -> str:
    """One GPU per rank on a node: plain `cuda` becomes `cuda:<local rank>`."""
    return f"cuda:{ranks.local_rank}" if device == "cuda" and ranks.world > 1 else device
