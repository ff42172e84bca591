"""DC, DSA and DM: each a small object with one `step(state, rng)`; ddz.distill.loop runs them."""

from __future__ import annotations

from ddz.data.base import ImageDataset
from ddz.distill.guidance import Guidance
from ddz.distill.methods.base import METHODS, DistillConfig, IterationRNG, Method, SynState, loops_for_ipc
from ddz.distill.methods.dc import GradientMatching
from ddz.distill.methods.dm import DistributionMatching
from ddz.distributed.shard import ClassShard


def build_method(
    config: DistillConfig,
    dataset: ImageDataset,
    guidance: Guidance | None = None,
    shard: ClassShard | None = None,
) -> Method:
    """The method of a resolved config; with `shard`, for this rank's classes."""
    if config.method == "dm":
        return DistributionMatching(config, dataset, guidance, shard)
    return GradientMatching(config, dataset, guidance, shard)


__all__ = [
    "METHODS",
    "DistillConfig",
    "IterationRNG",
    "Method",
    "SynState",
    "build_method",
    "loops_for_ipc",
]
