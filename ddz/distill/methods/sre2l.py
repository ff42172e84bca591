"""SRe2L's recovery (Yin et al., NeurIPS 2023; VILA-Lab/SRe2L): images recovered from noise by a
BatchNorm teacher, then relabelled by it (soft labels at evaluation, docs/teachers.md).

loss = CE(teacher(jitter(flip(x))), y) + r_bn x sum_l m_l (||mu_l(x) - running_mean_l||_2
                                                           + ||var_l(x) - running_var_l||_2)
with mu_l, var_l (biased) the batch statistics of the input of the teacher's BatchNorm layer l, in
the teacher's eval mode; m_1 = first_bn_multiplier, m_l = 1 after (recover/utils.py BNFeatureHook,
recover_cifar.py get_images). Adam (betas 0.5, 0.9, eps 1e-8) with a cosine learning rate from
lr_img to 0 over the iterations, images clipped to the data set's [0, 1] range after each step.

A BatchNorm batch is one image of each class of a block of `batch` classes (the reference's
--batch-size of targets 0..99, then 100..199, ... for every IPC index): the statistics, and so
the loss, depend on which images share a batch. Batches are fixed by the classes, not the ranks:
over several ranks each rank recovers the blocks it owns whole, and a block split between ranks
is refused. Every batch's loss depends only on its images and Adam is elementwise, so one Adam
over every image with the batches' summed loss is each batch's own Adam.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ddz.data.base import ImageDataset
from ddz.distill.guidance import Guidance
from ddz.distill.labels import Teacher
from ddz.distill.methods.base import IterationRNG, SynState
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError
from ddz.nets.factory import ARCHS
from ddz.seeding import generator

if TYPE_CHECKING:
    from ddz.distill.methods.config import DistillConfig

BETAS = (0.5, 0.9)  # recover_cifar.py and data_synthesis.py: Adam betas [0.5, 0.9], eps 1e-8
EPS = 1e-8


def batchnorm_archs() -> list[str]:
    return [name for name, spec in ARCHS.items() if spec.kwargs.get("norm") == "batchnorm"]


def batchnorm_layers(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


def check_batchnorm_teacher(teacher: Teacher) -> None:
    for ptm in teacher.ptms:
        if not batchnorm_layers(ptm.net):
            raise ConfigError(
                f"SRe2L matches the teacher's BatchNorm statistics, but {ptm.name} has no BatchNorm layer; "
                f"use a teacher of a BatchNorm arch ({', '.join(batchnorm_archs())}), e.g. "
                f"`ddz zoo train --arch {batchnorm_archs()[0]}`")


@contextmanager
def bn_statistics_loss(net: nn.Module, first_multiplier: float) -> Iterator[list[torch.Tensor]]:
    """Within the block, each forward of `net` appends its BatchNorm loss (the weighted sum over
    layers of ||batch mean - running mean|| + ||batch var - running var||) to the list."""
    layers = batchnorm_layers(net)
    terms: list[torch.Tensor] = []
    handles = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        weight = first_multiplier if module is layers[0] else 1.0
        terms.append(weight * (torch.linalg.vector_norm(module.running_var - var)
                               + torch.linalg.vector_norm(module.running_mean - mean)))

    for layer in layers:
        handles.append(layer.register_forward_hook(hook))
    losses: list[torch.Tensor] = []
    try:
        yield losses
    finally:
        for handle in handles:
            handle.remove()
        if terms:
            losses.append(torch.stack(terms).sum())


def cosine_lr(base: float, iteration: int, iterations: int) -> float:
    """lr_cosine_policy(base, 0, iterations) of the reference, at `iteration`."""
    return 0.5 * (1 + math.cos(math.pi * iteration / iterations)) * base


def recovery_loss(teacher: Teacher, images: torch.Tensor, labels: torch.Tensor, r_bn: float,
                  first_multiplier: float) -> torch.Tensor:
    """The loss of one BatchNorm batch (images already jittered and flipped): cross-entropy of
    the teachers' averaged logits plus r_bn x each teacher's BatchNorm loss, averaged over teachers."""
    data = teacher.dataset
    logits, bn = [], []
    for ptm in teacher.ptms:
        with bn_statistics_loss(ptm.net, first_multiplier) as losses:
            logits.append(ptm.net(ptm.adapt(images, data.mean, data.std)))
        bn.append(losses[0])
    mean_logits = torch.stack(logits).mean(0)
    return F.cross_entropy(mean_logits, labels) + r_bn * torch.stack(bn).mean()


class SRe2L:
    """Recovery of the images of this rank's classes. Its own state: Adam's moments."""

    name = "sre2l"

    def __init__(self, config: DistillConfig, dataset: ImageDataset, teacher: Teacher,
                 guidance: Guidance | None = None, shard: ClassShard | None = None):
        check_batchnorm_teacher(teacher)
        self.config, self.dataset, self.teacher, self.guidance = config, dataset, teacher, guidance
        self.settings = config.sre2l
        self.shard = shard or ClassShard(dataset.num_classes, config.ipc)
        classes, block = self.shard.classes, self.settings.batch
        if self.shard.sharded and (classes.start % block or (classes.stop % block and
                                                             classes.stop != dataset.num_classes)):
            raise ConfigError(
                f"SRe2L's BatchNorm batches are blocks of {block} classes, and this rank's classes "
                f"{classes.start}..{classes.stop - 1} split one; use --sre2l-batch dividing each rank's "
                "share of the classes, or fewer ranks")
        mean = torch.tensor(dataset.mean, device=dataset.device).view(1, -1, 1, 1)
        std = torch.tensor(dataset.std, device=dataset.device).view(1, -1, 1, 1)
        self.low, self.high = -mean / std, (1 - mean) / std
        self.optimizer: torch.optim.Adam | None = None
        self.loaded: dict[str, torch.Tensor] = {}

    def blocks(self) -> list[range]:
        """The BatchNorm blocks of classes this rank owns."""
        classes, block = self.shard.classes, self.settings.batch
        return [range(s, min(s + block, classes.stop)) for s in range(classes.start, classes.stop, block)]

    def _adam(self, state: SynState) -> torch.optim.Adam:
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam([state.images], lr=self.config.lr_img, betas=BETAS, eps=EPS)
            if self.loaded:
                self.optimizer.state[state.images] = {
                    "step": torch.tensor(float(state.iteration)),
                    "exp_avg": self.shard.own(self.loaded["exp_avg"]).clone(),
                    "exp_avg_sq": self.shard.own(self.loaded["exp_avg_sq"]).clone(),
                }
        return self.optimizer

    def augment(self, batch: torch.Tensor, seed: int, iteration: int, index: int, first: int) -> torch.Tensor:
        """The reference's per-batch random roll by (0..jitter, 0..jitter) pixels, after a
        horizontal flip of the whole batch with probability 1/2 where `flip` is on; drawn per
        (iteration, IPC index, first class of the block), whatever the ranks."""
        gen = generator(seed, "sre2l-jitter", iteration, index, first)
        draws = torch.randint(0, self.settings.jitter + 1, (2,), generator=gen).tolist()
        if self.settings.flip and bool(torch.rand((), generator=gen) < 0.5):
            batch = batch.flip(-1)
        return torch.roll(batch, shifts=(draws[0], draws[1]), dims=(2, 3))

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        adam = self._adam(state)
        for group in adam.param_groups:
            group["lr"] = cosine_lr(self.config.lr_img, rng.iteration, self.config.iterations)
        grouped, first_class = state.grouped(), self.shard.classes.start
        settings = self.settings
        loss = torch.zeros((), device=state.images.device)
        for index in range(self.config.ipc):
            for block in self.blocks():
                rows = slice(block.start - first_class, block.stop - first_class)
                batch = self.augment(grouped[rows, index], rng.seed, rng.iteration, index, block.start)
                labels = torch.arange(block.start, block.stop, device=batch.device)
                loss = loss + recovery_loss(self.teacher, batch, labels, settings.r_bn,
                                            settings.first_bn_multiplier)
        if self.guidance is not None:
            loss = loss + self.guidance.loss(
                state.images, state.labels,
                rng.generator("guidance-pick", device="cpu"), rng.generator("guidance-data"), self.shard,
            )
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        with torch.no_grad():
            state.images.copy_(torch.maximum(torch.minimum(state.images, self.high), self.low))
        return loss.detach()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Adam's moments of the whole set (every rank calls this: the rows are gathered)."""
        if self.optimizer is None:
            return {name: self.shard.whole(self.shard.own(value)) for name, value in self.loaded.items()}
        moments = next(iter(self.optimizer.state.values()), {})
        return {name: self.shard.whole(moments[name].detach()) for name in ("exp_avg", "exp_avg_sq")
                if name in moments}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        unknown = sorted(set(state) - {"exp_avg", "exp_avg_sq"})
        if unknown:
            raise ConfigError(f"this checkpoint holds state ({', '.join(unknown)}) that SRe2L does not have; "
                              "pass another --out")
        self.loaded = dict(state)

    @property
    def learned_lr(self) -> float | None:
        return None
