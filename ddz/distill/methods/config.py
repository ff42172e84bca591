"""The typed settings of one distillation: `DistillConfig`, with MTT's own settings in
`MTTConfig` and the teacher-driven methods' in `RDEDConfig` and `SRe2LConfig`. `None` fields take
the method's defaults (ddz.distill.methods.registry, and the tables cited there) in
`resolved()`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from ddz.data.augment import DSAConfig
from ddz.devices import amp_dtype
from ddz.distill.methods.base import loops_for_ipc
from ddz.distill.methods.mtt_defaults import mtt_settings
from ddz.distill.methods.registry import METHODS, MethodSpec
from ddz.errors import ConfigError, unknown_name
from ddz.nets import check_arch

MEMORY = ("unrolled", "constant")
INITS = ("real", "noise")
DISTANCES = ("ours", "mse", "cos")


def _check_counts(record: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(record, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _check_rates(record: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(record, name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


@dataclass(frozen=True)
class MTTConfig:
    """Trajectory matching's own settings. `None`: its table by data set and IPC
    (ddz.distill.methods.mtt_defaults)."""

    syn_steps: int | None = None
    expert_epochs: int | None = None
    max_start_epoch: int | None = None
    lr_lr: float | None = None
    lr_teacher: float | None = None
    batch_syn: int | None = None  # None after resolving: every synthetic image per student step
    memory: str = "unrolled"  # "constant": the adjoint gradient, one student step's graph at a time

    TABLE_FIELDS = ("syn_steps", "expert_epochs", "max_start_epoch", "lr_lr", "lr_teacher", "batch_syn")

    def __post_init__(self) -> None:
        if self.memory not in MEMORY:
            raise ConfigError(unknown_name("--memory", self.memory, MEMORY))
        _check_counts(self, ("syn_steps", "expert_epochs", "max_start_epoch", "batch_syn"))
        _check_rates(self, ("lr_lr", "lr_teacher"))

    def explicit(self) -> list[str]:
        """The table's fields this config sets itself."""
        return [name for name in self.TABLE_FIELDS if getattr(self, name) is not None]

    def resolved(self, dataset: str | None, ipc: int) -> MTTConfig:
        table = mtt_settings(dataset, ipc)
        return replace(self, **{name: getattr(table, name) for name in self.TABLE_FIELDS
                                if getattr(self, name) is None})


LARGE_IMAGES = 64  # sides above this take the ImageNet scripts' defaults (RDED factor 2, SRe2L jitter 32)


@dataclass(frozen=True)
class RDEDConfig:
    """RDED's selection (LINs-lab/RDED): `candidates` real images per class (its --mipc), `crops`
    random square crops of each (--num-crop), `factor` x `factor` patches stitched per synthetic
    image (--factor). `None`: its scripts' values (docs/teachers.md)."""

    factor: int | None = None  # 1 up to 64px (scripts/cifar*, tinyimagenet*), 2 above (imagenet*)
    crops: int = 5  # every script: --num-crop 5
    candidates: int = 300  # every script: --mipc 300
    min_scale: float = 0.08  # argument.py --min-scale-crops (RandomResizedCrop's scale)

    def __post_init__(self) -> None:
        _check_counts(self, ("factor", "crops", "candidates"))
        if not 0.0 < self.min_scale <= 1.0:
            raise ConfigError(f"--min-scale must lie in (0, 1], got {self.min_scale}")

    def resolved(self, image_size: int | None) -> RDEDConfig:
        if self.factor is not None:
            return self
        return replace(self, factor=2 if (image_size or 0) > LARGE_IMAGES else 1)


@dataclass(frozen=True)
class SRe2LConfig:
    """SRe2L's recovery (VILA-Lab/SRe2L): cross-entropy of the target class plus `r_bn` x the
    BatchNorm-statistics loss, its first layer weighted `first_bn_multiplier`; `jitter` pixels of
    random roll and horizontal `flip` per step; `batch` classes per BatchNorm batch (--batch-size:
    one image per class of a block of classes). `None`: by image size (docs/teachers.md)."""

    r_bn: float = 0.01  # recover_cifar.sh and recover.sh: --r-bn 0.01
    first_bn_multiplier: float = 10.0  # recover_cifar.py and data_synthesis.py default
    jitter: int | None = None  # recover_cifar.py 4; data_synthesis.py (ImageNet) 32
    flip: bool | None = None  # recover_cifar.py none; data_synthesis.py RandomHorizontalFlip
    batch: int = 100  # --batch-size 100 in both scripts

    def __post_init__(self) -> None:
        _check_counts(self, ("batch",))
        for name in ("r_bn", "first_bn_multiplier"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if self.jitter is not None and self.jitter < 0:
            raise ConfigError(f"--jitter must be >= 0, got {self.jitter}")

    def resolved(self, image_size: int | None) -> SRe2LConfig:
        large = (image_size or 0) > LARGE_IMAGES
        return replace(self, jitter=self.jitter if self.jitter is not None else (32 if large else 4),
                       flip=self.flip if self.flip is not None else large)


# a method's own settings: DistillConfig field -> (its default record, the method it belongs to)
OWN_SETTINGS = {"mtt": (MTTConfig, "mtt", "MTT"), "rded": (RDEDConfig, "rded", "RDED"),
                "sre2l": (SRe2LConfig, "sre2l", "SRe2L")}


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run. `None` fields take the method's defaults in `resolved()`:
    iterations, lr_img and init from its MethodSpec; outer/inner loops from `loops_for_ipc`
    (DC/DSA); MTT's settings from its table."""

    method: str = "dm"
    ipc: int = 10
    iterations: int | None = None
    lr_img: float | None = None
    lr_net: float = 0.01
    momentum: float = 0.5
    batch_real: int = 256
    batch_train: int = 256
    init: str | None = None
    arch: str = "convnet3"
    net_options: tuple[tuple[str, Any], ...] = ()  # e.g. (("width", 32),): build_net overrides
    distance: str = "ours"
    outer_loop: int | None = None
    inner_loop: int | None = None
    compile: bool = False
    amp: str = "none"  # "bf16": the distillation net's forwards under torch.autocast(bfloat16)
    dsa: DSAConfig = field(default_factory=DSAConfig)
    mtt: MTTConfig = field(default_factory=MTTConfig)
    rded: RDEDConfig = field(default_factory=RDEDConfig)
    sre2l: SRe2LConfig = field(default_factory=SRe2LConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(unknown_name("method", self.method, METHODS))
        if self.init is not None and self.init not in INITS:
            raise ConfigError(unknown_name("init", self.init, INITS))
        if self.distance not in DISTANCES:
            raise ConfigError(unknown_name("distance", self.distance, DISTANCES))
        check_arch(self.arch)
        if self.ipc < 1:
            raise ConfigError(f"--ipc must be at least 1, got {self.ipc}")
        if self.iterations is not None and self.iterations < 0:
            raise ConfigError(f"--iterations must be >= 0, got {self.iterations}")
        _check_counts(self, ("batch_real", "batch_train", "outer_loop", "inner_loop"))
        _check_rates(self, ("lr_img", "lr_net"))
        amp_dtype(self.amp)
        for name, (default, owner, title) in OWN_SETTINGS.items():
            record = getattr(self, name)
            if self.method != owner and record != default():
                changed = [f.name for f in fields(record)
                           if getattr(record, f.name) != getattr(default(), f.name)]
                raise ConfigError(f"--{changed[0].replace('_', '-')} is an {title} setting: use "
                                  f"--method {owner}, or drop it for {self.method}")
        fixed = self.spec.iterations_fixed
        if fixed is not None and self.iterations not in (None, fixed):
            raise ConfigError(f"{self.method} selects its images once: drop --iterations (it takes "
                              f"{self.spec.iterations_fixed})")

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.method]

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of `amp` (None: float32)."""
        return amp_dtype(self.amp)

    @property
    def augment(self) -> bool:
        """DSA while distilling: on for DSA, DM and MTT (the protocol; MTT's --dsa True), off for DC."""
        return self.spec.augment

    def resolved(self, dataset: str | None = None, image_size: int | None = None) -> DistillConfig:
        """Every default filled in; `dataset` (its name) and `image_size` (its side) pick the
        per-data-set defaults."""
        spec = self.spec
        outer, inner = loops_for_ipc(self.ipc) if spec.loops else (None, None)
        return replace(
            self,
            iterations=self.iterations if self.iterations is not None else spec.iterations,
            lr_img=self.lr_img if self.lr_img is not None else spec.lr_img(dataset, self.ipc),
            init=self.init or spec.init,
            outer_loop=self.outer_loop if self.outer_loop is not None else outer,
            inner_loop=self.inner_loop if self.inner_loop is not None else inner,
            mtt=self.mtt.resolved(dataset, self.ipc) if spec.needs_experts else self.mtt,
            rded=self.rded.resolved(image_size) if self.method == "rded" else self.rded,
            sre2l=self.sre2l.resolved(image_size) if self.method == "sre2l" else self.sre2l,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DistillConfig:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown distillation setting {unknown[0]!r}; "
                              f"known: {', '.join(sorted(known))}")
        data["dsa"] = DSAConfig(**data.get("dsa", {}))
        data["mtt"] = MTTConfig(**data.get("mtt", {}))
        data["rded"] = RDEDConfig(**data.get("rded", {}))
        data["sre2l"] = SRe2LConfig(**data.get("sre2l", {}))
        data["net_options"] = tuple(tuple(item) for item in data.get("net_options", ()))
        return cls(**data)
