"""The distillation methods as data: one `MethodSpec` per method, as `ddz.nets.ARCHS` is for
architectures. Everything that differs between methods (defaults, whether DSA is on, whether
the DC/DSA loops apply, whether experts are needed, whether classes shard over ranks, how the
method object is built) is a field here, so the loop, the config and the CLI ask the table
instead of comparing method names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ddz.data.base import ImageDataset
from ddz.distill.experts import ExpertBuffer
from ddz.distill.guidance import Guidance
from ddz.distill.labels import Teacher
from ddz.distill.methods.base import Method
from ddz.distill.methods.dc import GradientMatching
from ddz.distill.methods.dm import DistributionMatching
from ddz.distill.methods.mtt import TrajectoryMatching
from ddz.distill.methods.mtt_defaults import mtt_settings
from ddz.distill.methods.rded import RDED
from ddz.distill.methods.sre2l import SRe2L
from ddz.distributed.shard import ClassShard

if TYPE_CHECKING:
    from ddz.distill.methods.config import DistillConfig


@dataclass(frozen=True)
class MethodInputs:
    """What a method is built from."""

    config: DistillConfig
    dataset: ImageDataset
    guidance: Guidance | None
    shard: ClassShard | None
    experts: ExpertBuffer | None
    teacher: Teacher | None = None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[[MethodInputs], Method]
    iterations: int  # the reference's default number of iterations
    init: str  # "real" | "noise": the reference command's initialisation
    augment: bool  # DSA on the real and synthetic batches while distilling
    loops: bool  # DC/DSA's outer / inner loops by IPC (ddz.distill.methods.base.loops_for_ipc)
    needs_experts: bool  # trajectory matching: --experts required
    shards: bool  # classes can be sharded over ranks
    lr_img: Callable[[str | None, int], float]  # (data set name, IPC) -> the images' learning rate
    source: str  # where the defaults come from
    needs_teacher: bool = False  # a zoo teacher drives the method (--teacher): RDED, SRe2L
    guided: bool = True  # takes --ptm guidance (a loss on the images to add it to)
    iterations_fixed: int | None = None  # the only number of iterations it takes (RDED selects once)


def _dm_lr_img(dataset: str | None, ipc: int) -> float:
    """DM 1, except 10 on CIFAR-10 at IPC >= 100 (the DM README: lr_img 1 for CIFAR-10 IPC
    1/10/50 and every CIFAR-100 IPC up to 125, 10 for CIFAR-10 IPC >= 100)."""
    return 10.0 if dataset == "cifar10" and ipc >= 100 else 1.0


def _gradient_matching(inputs: MethodInputs) -> Method:
    return GradientMatching(inputs.config, inputs.dataset, inputs.guidance, inputs.shard)


def _distribution_matching(inputs: MethodInputs) -> Method:
    return DistributionMatching(inputs.config, inputs.dataset, inputs.guidance, inputs.shard)


def _rded(inputs: MethodInputs) -> Method:
    assert inputs.teacher is not None  # build_method checks needs_teacher first
    return RDED(inputs.config, inputs.dataset, inputs.teacher, inputs.shard)


def _sre2l(inputs: MethodInputs) -> Method:
    assert inputs.teacher is not None
    return SRe2L(inputs.config, inputs.dataset, inputs.teacher, inputs.guidance, inputs.shard)


def _trajectory_matching(inputs: MethodInputs) -> Method:
    assert inputs.experts is not None  # build_method checks needs_experts first
    return TrajectoryMatching(inputs.config, inputs.dataset, inputs.guidance, inputs.experts)


# The init of the reference commands: DC's README runs main.py with its default (noise), DSA's
# README adds --init real, DM's README (and main_DM.py's default) use real, MTT's distill.py
# --pix_init real.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec for spec in (
        MethodSpec("dc", _gradient_matching, 1000, "noise", augment=False, loops=True, needs_experts=False,
                   shards=True, lr_img=lambda dataset, ipc: 0.1,
                   source="VICO-UoE/DatasetCondensation main.py (DC)"),
        MethodSpec("dsa", _gradient_matching, 1000, "real", augment=True, loops=True, needs_experts=False,
                   shards=True, lr_img=lambda dataset, ipc: 0.1,
                   source="VICO-UoE/DatasetCondensation main.py --method DSA"),
        MethodSpec("dm", _distribution_matching, 20000, "real", augment=True, loops=False,
                   needs_experts=False, shards=True, lr_img=_dm_lr_img,
                   source="VICO-UoE/DatasetCondensation main_DM.py"),
        MethodSpec("mtt", _trajectory_matching, 5000, "real", augment=True, loops=False, needs_experts=True,
                   shards=False, lr_img=lambda dataset, ipc: mtt_settings(dataset, ipc).lr_img,
                   source="GeorgeCazenavette/mtt-distillation distill.py; per-setting table in mtt_defaults"),
        # RDED selects once (its lr_img is never used: the images are real patches); SRe2L recovers from
        # noise with Adam at lr 0.25 for 1000 iterations (recover_cifar.sh --lr 0.25 --iteration 1000).
        MethodSpec("rded", _rded, 1, "real", augment=False, loops=False, needs_experts=False, shards=True,
                   lr_img=lambda dataset, ipc: 1.0, needs_teacher=True, guided=False, iterations_fixed=1,
                   source="LINs-lab/RDED scripts/*.sh, argument.py, synthesize/"),
        MethodSpec("sre2l", _sre2l, 1000, "noise", augment=False, loops=False, needs_experts=False,
                   shards=True, lr_img=lambda dataset, ipc: 0.25, needs_teacher=True,
                   source="VILA-Lab/SRe2L SRe2L/*small_dataset/recover_cifar.{py,sh}, recover/"),
    )
}
