"""Which classes of the synthetic set a rank owns, and the whole set put back together.

The classes are cut into `world` contiguous blocks of sizes differing by at most one; rank r
owns block r, i.e. the rows [start * ipc, stop * ipc) of the class-major synthetic set. With one
rank the block is every class and nothing is communicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddz.distributed.ranks import SINGLE, Ranks
from ddz.errors import ConfigError


def class_blocks(num_classes: int, world: int) -> list[range]:
    """`world` contiguous blocks of classes, the first num_classes % world one class longer."""
    if world > num_classes:
        raise ConfigError(
            f"{world} ranks for {num_classes} classes: every rank needs at least one class; "
            f"use at most {num_classes} ranks"
        )
    base, extra = divmod(num_classes, world)
    starts = [r * base + min(r, extra) for r in range(world + 1)]
    return [range(starts[r], starts[r + 1]) for r in range(world)]


@dataclass(frozen=True)
class ClassShard:
    """Rank `ranks.rank`'s classes of a synthetic set of `num_classes` x `ipc` images."""

    num_classes: int
    ipc: int
    ranks: Ranks = SINGLE

    @property
    def blocks(self) -> list[range]:
        return class_blocks(self.num_classes, self.ranks.world)

    @property
    def classes(self) -> range:
        return self.blocks[self.ranks.rank]

    @property
    def sharded(self) -> bool:
        return self.ranks.world > 1

    @property
    def total_images(self) -> int:
        return self.num_classes * self.ipc

    def own(self, whole: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a class-major tensor of the whole set (images, momentum, labels)."""
        return whole[self.classes.start * self.ipc : self.classes.stop * self.ipc]

    def whole(self, own: torch.Tensor) -> torch.Tensor:
        """The whole set from every rank's rows (the same bits on every rank)."""
        return self.ranks.gather_rows(own, [len(block) * self.ipc for block in self.blocks])

    def labels(self, device: torch.device) -> torch.Tensor:
        """Labels of the whole set, class-major."""
        return torch.arange(self.num_classes, device=device).repeat_interleave(self.ipc)
