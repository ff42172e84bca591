"""The evaluation protocol: train fresh nets on a synthetic set, test on the real test split.

SGD(lr 0.01, momentum 0.9, weight decay 5e-4), batch 256, per-image DSA on every batch, E epochs
with the learning rate x0.1 at E/2, accuracy at the END (not the best epoch), over N models per
architecture: mean +- std.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

import torch

from ddz.data.augment import DSA, DSAConfig
from ddz.data.base import ImageDataset
from ddz.errors import ConfigError
from ddz.nets import build_net, check_arch
from ddz.progress import NullProgress, Progress
from ddz.seeding import derive_seed, generator
from ddz.training import accuracy, train_epoch


@dataclass(frozen=True)
class EvalConfig:
    archs: tuple[str, ...] = ("convnet3",)
    models: int = 5
    epochs: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    dsa: bool = True
    dsa_config: DSAConfig = field(default_factory=DSAConfig)

    def validate(self) -> None:
        for arch in self.archs:
            check_arch(arch)
        if self.models < 1 or self.epochs < 1:
            raise ConfigError("--models and --epochs must be at least 1")


@dataclass
class ArchResult:
    accs: list[float]
    epochs: int
    models: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accs) if len(self.accs) > 1 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "mean": self.mean, "std": self.std}


def train_and_test(
    arch: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: ImageDataset,
    config: EvalConfig,
    seed: int,
    progress_task=None,
) -> float:
    """Train one fresh `arch` on (images, labels) by the protocol; return real test accuracy."""
    net = build_net(
        arch, dataset.channels, dataset.num_classes, dataset.image_size,
        generator_seed=derive_seed(seed, "init"),
    ).to(images.device)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    decay_at = config.epochs // 2
    order = generator(seed, "order", device=images.device)
    augment = None
    if config.dsa:
        dsa = DSA(config.dsa_config, derive_seed(seed, "dsa"), images.device)
        augment = lambda x: dsa(x, dsa.per_sample(len(x)))  # noqa: E731
    images, labels = images.detach(), labels.detach()
    for epoch in range(config.epochs):
        if epoch == decay_at:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        train_epoch(net, images, labels, optimizer, config.batch_size, order, augment)
        if progress_task is not None:
            progress_task.advance(1)
    return accuracy(net, dataset.test_images, dataset.test_labels)


def evaluate_synset(
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: ImageDataset,
    config: EvalConfig,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, ArchResult]:
    """Evaluate a synthetic set on every arch in `config.archs`, `config.models` nets each."""
    config.validate()
    progress = progress or NullProgress()
    results: dict[str, ArchResult] = {}
    images = images.to(dataset.device)
    labels = labels.to(dataset.device)
    for arch in config.archs:
        task = progress.task(f"eval {arch}", config.models * config.epochs)
        accs = [
            train_and_test(
                arch, images, labels, dataset, config, derive_seed(seed, "eval", arch, i), task
            )
            for i in range(config.models)
        ]
        task.close()
        results[arch] = ArchResult(accs, config.epochs, config.models)
    return results


def random_real(dataset: ImageDataset, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The classic baseline: `ipc` random real training images of every class."""
    check_ipc(dataset, ipc)
    gen = generator(seed, "random-real", device=dataset.device)
    images = dataset.sample_all_classes(ipc, gen)
    labels = torch.arange(dataset.num_classes, device=dataset.device).repeat_interleave(ipc)
    return images.flatten(0, 1), labels


def check_ipc(dataset: ImageDataset, ipc: int) -> None:
    smallest = min(dataset.class_counts())
    if ipc < 1 or ipc > smallest:
        raise ConfigError(
            f"--ipc {ipc} is out of range for {dataset.name}: its smallest class has "
            f"{smallest} training images; choose 1..{smallest}"
        )
