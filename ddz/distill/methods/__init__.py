"""DC, DSA, DM and MTT: each a small object with one `step(state, rng)`, described by a row of
the METHODS table (ddz.distill.methods.registry); ddz.distill.loop runs them."""

from __future__ import annotations

from ddz.data.base import ImageDataset
from ddz.distill.experts import ExpertBuffer
from ddz.distill.guidance import Guidance
from ddz.distill.labels import Teacher
from ddz.distill.methods.base import IterationRNG, Method, SynState, loops_for_ipc
from ddz.distill.methods.config import DistillConfig, MTTConfig, RDEDConfig, SRe2LConfig
from ddz.distill.methods.registry import METHODS, MethodInputs, MethodSpec
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError


def build_method(
    config: DistillConfig,
    dataset: ImageDataset,
    guidance: Guidance | None = None,
    experts: ExpertBuffer | None = None,
    shard: ClassShard | None = None,
    teacher: Teacher | None = None,
) -> Method:
    """The method of a resolved config (with its `experts` or `teacher` where it needs them);
    with `shard`, for this rank's classes."""
    spec = config.spec
    if spec.needs_experts and experts is None:
        raise ConfigError(f"--method {spec.name} needs expert trajectories: add --experts 'DATASET/ARCH/*'")
    if not spec.needs_experts and experts is not None:
        raise ConfigError(f"--experts are MTT's: use --method mtt, or drop --experts for {spec.name}")
    if spec.needs_teacher and teacher is None:
        raise ConfigError(f"--method {spec.name} needs a teacher: add --teacher QUERY (a zoo query or "
                          "@lockfile, e.g. --teacher 'DATASET/convnet3bn/seed0@last')")
    if not spec.needs_teacher and teacher is not None:
        raise ConfigError(f"a distillation teacher drives rded and sre2l only; drop it for {spec.name}")
    if not spec.guided and guidance is not None:
        raise ConfigError(f"--method {spec.name} has no loss to add --ptm guidance to: drop --ptm")
    if not spec.shards and shard is not None and shard.sharded:
        raise ConfigError(f"--method {spec.name} runs on one rank for now: drop --nproc / torchrun for it")
    return spec.build(MethodInputs(config, dataset, guidance, shard, experts, teacher))


__all__ = [
    "METHODS",
    "DistillConfig",
    "IterationRNG",
    "MTTConfig",
    "RDEDConfig",
    "SRe2LConfig",
    "Method",
    "MethodSpec",
    "SynState",
    "build_method",
    "loops_for_ipc",
]
