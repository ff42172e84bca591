"""Zoo training recipes: how a run trains (`TrainRecipe`), the shipped ones by name (`RECIPES`),
and the data a recipe trains on (`prepared`: ZCA-whitened when the recipe says so)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from ddz.data.base import ImageDataset
from ddz.data.zca import whitened
from ddz.errors import ConfigError, unknown_name

DEFAULT_SNAPSHOTS = (1, 4, 6, 10, 20, 35, 70, 120, 150)
Augment = Literal["none", "dsa"]


@dataclass(frozen=True)
class TrainRecipe:
    """How a zoo run trains. The defaults are the paper's PTM recipe: SGD, no augmentation, step
    decay, snapshots at DEFAULT_SNAPSHOTS. RECIPES names the shipped ones."""

    name: str = "ptm"
    epochs: int = 150
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-3
    milestones: tuple[int, ...] = (50, 100)
    gamma: float = 0.1
    snapshots: tuple[int, ...] = DEFAULT_SNAPSHOTS
    # Keyword overrides for the net factory, e.g. (("width", 16),) for a narrow ConvNet.
    net: tuple[tuple[str, Any], ...] = ()
    augment: Augment = "none"  # "dsa": the reference DSA on every real batch (MTT's experts)
    zca: bool = False  # ZCA-whiten the data set first (ddz.data.zca, the MTT reference's --zca)

    def __post_init__(self) -> None:
        if self.augment not in get_args(Augment):
            valid = ", ".join(get_args(Augment))
            raise ConfigError(f"recipe augment must be one of {valid}, got {self.augment!r}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0 or not self.gamma > 0:
            raise ConfigError("--lr and the decay factor must be > 0; --momentum and --weight-decay >= 0")
        if not self.snapshots:
            raise ConfigError("--snapshots is empty; give epochs like 1,4,6")
        late = [e for e in self.snapshots if e > self.epochs]
        if late:
            raise ConfigError(
                f"--snapshots {','.join(map(str, late))} come after the last epoch ({self.epochs}); "
                f"drop them or raise --epochs to {max(late)}"
            )
        if min(self.snapshots) < 0:
            raise ConfigError("--snapshots are epochs counted from 1 (0: the initial weights)")
        if any(m < 1 for m in self.milestones):
            raise ConfigError("--milestones are epochs counted from 1")

    def snapshots_up_to(self, epochs: int) -> tuple[int, ...]:
        """The recipe's snapshot epochs that fit in `epochs`, and `epochs` itself (the last)."""
        return tuple(sorted({e for e in self.snapshots if e <= epochs} | {epochs}))

    def lr_at(self, epoch: int) -> float:
        """Learning rate of `epoch` (counted from 1): x gamma after each milestone epoch."""
        return self.lr * self.gamma ** sum(1 for m in self.milestones if epoch > m)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        data["snapshots"] = list(self.snapshots)
        data["net"] = dict(self.net)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainRecipe:
        data = {"name": "ptm", **data}
        data["milestones"] = tuple(data["milestones"])
        data["snapshots"] = tuple(data["snapshots"])
        data["net"] = tuple(sorted(dict(data.get("net") or {}).items()))
        return cls(**data)

    def hash(self) -> str:
        """sha256 of what changes the weights: the name is a label, and the fields added for MTT
        count only when set, so zoos trained before them keep their hash."""
        data = self.to_json()
        del data["name"]
        for key, default in (("augment", "none"), ("zca", False)):
            if data[key] == default:
                del data[key]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


# The mtt-expert recipe is the reference buffer.py's defaults: 50 epochs of SGD lr 0.01, momentum
# 0, weight decay 0, no decay (--decay is off), batch 256, DSA on the real data, the parameters
# kept after every epoch and before the first (here: snapshots 0..50). mtt-expert-zca is the same
# on ZCA-whitened data (buffer.py --zca), as the reference trains its CIFAR experts.
_MTT_EXPERT = TrainRecipe(
    name="mtt-expert", epochs=50, lr=0.01, momentum=0.0, weight_decay=0.0, milestones=(),
    snapshots=tuple(range(51)), augment="dsa",
)
RECIPES: dict[str, TrainRecipe] = {
    "ptm": TrainRecipe(),
    "mtt-expert": _MTT_EXPERT,
    "mtt-expert-zca": replace(_MTT_EXPERT, name="mtt-expert-zca", zca=True),
}


def recipe_named(name: str) -> TrainRecipe:
    if name not in RECIPES:
        raise ConfigError(unknown_name("recipe", name, RECIPES))
    return RECIPES[name]


def prepared(data: ImageDataset, recipe: TrainRecipe) -> ImageDataset:
    """The data the recipe trains on: ZCA-whitened by a fit on its training split when asked."""
    return whitened(data)[0] if recipe.zca else data
