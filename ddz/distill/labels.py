"""Label regimes of the evaluation: hard labels (the reference protocol) or soft labels from a
teacher by knowledge distillation, with MixUp / CutMix on top of either.

Soft labels are the teacher's logits: regenerated on every augmented (and mixed) batch
(`regenerate`, DD-Ranking's mode 'M', RDED's and SRe2L's relabelling), or computed once per
synthetic image and stored with the set (`stored`, DD-Ranking's mode 'S'; mixing then mixes the
stored logits with the images' lambda). The losses are DD-Ranking's (ddranking 0.2.0 loss/):
  kl      KL(softmax(t/T) || softmax(s/T)), batch mean, no T^2 factor (loss/kl.py)
  sce     -sum softmax(t/T) log softmax(s/T), batch mean (loss/sce.py)
  mse_gt  mse_weight * MSE(s, t) (mean over batch x classes) + ce_weight * soft CE(s, softmax(t))
          (loss/mse_gt.py; its CE term takes the teacher's output as the target)
Every loss here returns per-image values summed over the batch (per copy for stacked copies'
(B, K, N) logits); the training step divides by the batch size, as for cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddz.data.base import ImageDataset
from ddz.data.mix import MixConfig, Mixer, mix_targets
from ddz.errors import ConfigError, unknown_name
from ddz.nets.batching import summed_cross_entropy
from ddz.zoo.ptm import PTM
from ddz.zoo.records import dataset_slug

LABELS = ("hard", "soft")
LOSSES = ("kl", "sce", "mse_gt")
SOFT_MODES = ("regenerate", "stored")


@dataclass(frozen=True)
class LabelConfig:
    """`labels` hard | soft; with soft, `teacher` (zoo queries; several PTMs: their logits
    averaged), `loss`, `temperature` and `soft_mode`. Defaults are DD-Ranking 0.2.0's soft
    protocol (LabelRobustScoreSoft: loss kl, temperature 1.2)."""

    labels: str = "hard"
    teacher: tuple[str, ...] = ()
    loss: str = "kl"
    temperature: float = 1.2
    soft_mode: str = "regenerate"
    mse_weight: float = 1.0
    ce_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise ConfigError(unknown_name("--labels", self.labels, LABELS))
        if self.loss not in LOSSES:
            raise ConfigError(unknown_name("--kd-loss", self.loss, LOSSES))
        if self.soft_mode not in SOFT_MODES:
            raise ConfigError(unknown_name("--soft-labels", self.soft_mode, SOFT_MODES))
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature must be a positive finite number, got {self.temperature}")
        if self.labels == "soft" and not self.teacher:
            raise ConfigError("--labels soft needs a teacher: add --teacher QUERY (a zoo query or @lockfile)")
        if self.labels == "hard" and self.teacher:
            raise ConfigError("--teacher gives soft labels: add --labels soft, or drop --teacher")

    @property
    def soft(self) -> bool:
        return self.labels == "soft"


def kd_rows(student: torch.Tensor, teacher: torch.Tensor, config: LabelConfig) -> torch.Tensor:
    """The loss of each image (dim 1 is the class axis): (B,) or (B, N)."""
    t = config.temperature
    log_student = F.log_softmax(student / t, dim=1)
    if config.loss == "kl":
        log_teacher = F.log_softmax(teacher / t, dim=1)
        return (log_teacher.exp() * (log_teacher - log_student)).sum(1)
    if config.loss == "sce":
        return -(F.softmax(teacher / t, dim=1) * log_student).sum(1)
    squared = (student - teacher).pow(2).mean(1) * config.mse_weight
    if config.ce_weight:
        squared = squared + config.ce_weight * soft_cross_entropy_rows(student, F.softmax(teacher, dim=1))
    return squared


def soft_cross_entropy_rows(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """-sum p log softmax(logits) per image: cross-entropy against a distribution (mixed hard
    labels); equal to the ordinary cross-entropy when p is one-hot."""
    return -(probabilities * F.log_softmax(logits, dim=1)).sum(1)


class Teacher:
    """Frozen PTMs that label images of `dataset`: their logits, averaged (an ensemble in logit
    space), in eval mode, each PTM fed in its own normalisation and resolution."""

    def __init__(self, ptms: Sequence[PTM], dataset: ImageDataset):
        if not ptms:
            raise ConfigError("--teacher selects no PTM; check the query with `ddz zoo list QUERY`")
        for ptm in ptms:
            trained_on = ptm.name.split("/")[0] if ptm.arch is not None else None  # zoo names: DATASET/...
            if trained_on is not None and trained_on != dataset_slug(dataset.name):
                raise ConfigError(
                    f"teacher {ptm.name} was trained on {trained_on}, not {dataset.name}; use a teacher of "
                    f"this data set (e.g. --teacher '{dataset_slug(dataset.name)}/convnet3/*@last')")
            if list(ptm.classes) != list(dataset.classes):
                raise ConfigError(
                    f"teacher {ptm.name} knows {ptm.num_classes} classes ({', '.join(ptm.classes[:4])}...) "
                    f"but {dataset.name} has {dataset.num_classes}; use a teacher trained on {dataset.name}")
            if ptm.in_channels != dataset.channels or ptm.image_size != dataset.image_size:
                raise ConfigError(
                    f"teacher {ptm.name} takes {ptm.in_channels}x{ptm.image_size}px images but "
                    f"{dataset.name} has {dataset.channels}x{dataset.image_size}px; use a teacher trained "
                    "at that size")
        self.ptms = [ptm.freeze(dataset.device) for ptm in ptms]
        self.dataset = dataset

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) -> (..., K)."""
        flat = images.reshape(-1, *images.shape[-3:])
        data = self.dataset
        total = sum(ptm.net(ptm.adapt(flat, data.mean, data.std)) for ptm in self.ptms)
        return (total / len(self.ptms)).reshape(*images.shape[:-3], -1)

    def describe(self) -> list[dict[str, str]]:
        return [{"name": p.name, "sha256": p.sha256} for p in self.ptms]

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for p in self.ptms for t in p.net.state_dict().values())


class Objective:
    """What one training batch is scored against: mixing, then the targets (hard labels, their
    mixture, or the teacher's logits), and the summed loss. Copy n of a stacked model draws its
    mixing from its own seed, as it would alone."""

    def __init__(self, labels: LabelConfig, mix: MixConfig, seeds: Sequence[int], num_classes: int,
                 teacher: Teacher | None = None, stored: torch.Tensor | None = None):
        if labels.soft and teacher is None and stored is None:
            raise ConfigError("soft labels need a teacher")
        self.labels, self.mix, self.num_classes = labels, mix, num_classes
        self.teacher, self.stored = teacher, stored
        self.mixers = [Mixer(mix, seed) for seed in seeds] if mix.kind != "none" else []

    @property
    def summed_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.labels.soft:
            return lambda logits, target: kd_rows(logits, target, self.labels).sum(0)
        if self.mixers:
            return lambda logits, target: soft_cross_entropy_rows(logits, target).sum(0)
        return summed_cross_entropy

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, targets) of a batch: x (b, C, H, W) or copy-major (N, b, C, H, W), y and idx
        (b,) or (N, b); targets come back copy-major too."""
        copies = x.dim() == 5
        xs, ys, idxs = (x, y, idx) if copies else (x[None], y[None], idx[None])
        images, targets = [], []
        for n in range(len(xs)):
            part, target = xs[n], self._plain_targets(ys[n], idxs[n])
            if self.mixers:
                mixed = self.mixers[n](part)
                part = mixed.images
                target = mix_targets(target, mixed) if target.is_floating_point() else target
            images.append(part)
            targets.append(target)
        x_out, t_out = torch.stack(images), torch.stack(targets)
        if self.labels.soft and self.labels.soft_mode == "regenerate":
            t_out = self.teacher.logits(x_out)  # the teacher sees what the student sees
        return (x_out, t_out) if copies else (x_out[0], t_out[0])

    def _plain_targets(self, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.labels.soft and self.labels.soft_mode == "stored":
            return self.stored[idx]
        if self.labels.soft:
            return y  # replaced by the teacher's logits after mixing
        if self.mixers:
            return F.one_hot(y, self.num_classes).to(torch.float32)
        return y
