"""The typed settings of one distillation: `DistillConfig`, with MTT's own settings in
`MTTConfig`. `None` fields take the method's defaults (ddz.distill.methods.registry) in
`resolved()`."""

from __future__ import annotations

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
        if not self.spec.needs_experts and self.mtt != MTTConfig():
            set_here = self.mtt.explicit() or ["memory"]
            raise ConfigError(f"--{set_here[0].replace('_', '-')} is an MTT setting: use --method mtt, "
                              f"or drop it for {self.method}")

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

    def resolved(self, dataset: str | None = None) -> DistillConfig:
        """Every default filled in; `dataset` (its name) picks the per-data-set defaults."""
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
        data["net_options"] = tuple(tuple(item) for item in data.get("net_options", ()))
        return cls(**data)
