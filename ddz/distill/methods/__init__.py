"""DC, DSA, DM and MTT: each a small object with one `step(state, rng)`; ddz.distill.loop runs them."""

from __future__ import annotations

from ddz.data.base import ImageDataset
from ddz.distill.experts import ExpertBuffer
from ddz.distill.guidance import Guidance
from ddz.distill.methods.base import METHODS, DistillConfig, IterationRNG, Method, SynState, loops_for_ipc
from ddz.distill.methods.dc import GradientMatching
from ddz.distill.methods.dm import DistributionMatching
from ddz.distill.methods.mtt import TrajectoryMatching
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError


def build_method(
    config: DistillConfig,
    dataset: ImageDataset,
    guidance: Guidance | None = None,
    experts: ExpertBuffer | None = None,
    shard: ClassShard | None = None,
) -> Method:
    """The method of a resolved config (MTT needs its `experts`); with `shard`, for this rank's
    classes (DC, DSA, DM)."""
    if config.method == "dm":
        return DistributionMatching(config, dataset, guidance, shard)
    if config.method == "mtt":
        if experts is None:
            raise ConfigError("--method mtt needs expert trajectories: add --experts 'DATASET/ARCH/*'")
        if shard is not None and shard.sharded:
            raise ConfigError("--method mtt runs on one rank for now: drop --nproc / torchrun for MTT")
        return TrajectoryMatching(config, dataset, guidance, experts)
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
