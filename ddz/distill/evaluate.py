"""The evaluation protocol: train fresh nets on a synthetic set, test on the real test split.

To the letter of the reference (DatasetCondensation utils.py `evaluate_synset`): SGD(lr 0.01,
momentum 0.9, weight decay 5e-4), batch 256, augmentation on every batch, `for ep in
range(E + 1)` (E + 1 epochs), and after epoch E // 2 + 1 the learning rate x0.1 with a NEW
optimiser (momentum buffers reset); accuracy at the END (not the best epoch), over N models per
architecture: mean +- std (population std, as np.std).

Augmentation: "dsa" (per-image DSA, the DSA/DM papers and the CLoM paper's validate.py), "dc"
(the DC reference's get_daparam: crop_scale_rotate on MNIST, crop_noise for a BatchNorm ConvNet,
none otherwise) or "none". E defaults to the reference main.py's rule: 1000 with augmentation,
300 without.

The N models of one architecture train as one StackedNets (ddz.nets.stacked) by default: each
keeps the initial weights, batch order and augmentation draws of its own seed, so on CPU the
batched models end bit-identical to the sequential ones; on a GPU they share every kernel launch.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddz.data.augment import DSA, DSAConfig, DSAParams, augment
from ddz.data.base import ImageDataset
from ddz.data.dc_augment import DCAugConfig, dc_augment, strategy_for
from ddz.data.mix import MixConfig
from ddz.data.region_crop import RegionCropConfig, region_crop
from ddz.devices import amp_dtype
from ddz.distill.labels import LabelConfig, Objective, Teacher
from ddz.distributed.ranks import SINGLE, Ranks
from ddz.errors import ConfigError, unknown_name
from ddz.io import atomic_write_json, content_sha256
from ddz.nets import build_net, check_arch
from ddz.nets.stacked import StackedNets, stackable
from ddz.progress import NullProgress, Progress
from ddz.seeding import derive_seed, generator
from ddz.training import GraphedStep, TrainStep, accuracies, accuracy, train_epoch

AUGMENTS = ("dsa", "dc", "rded", "none")
EPOCHS_AUGMENTED, EPOCHS_PLAIN = 1000, 300  # reference main.py: with / without augmentation
EPOCHS_SOFT = 300  # DD-Ranking 0.2.0's soft protocol (LabelRobustScoreSoft num_epochs=300)


@dataclass(frozen=True)
class EvalConfig:
    """`epochs` None: 1000 when the nets train with augmentation, 300 without (per arch, since
    the DC rule depends on it)."""

    archs: tuple[str, ...] = ("convnet3",)
    models: int = 5
    epochs: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augment: str = "dsa"
    dsa_config: DSAConfig = field(default_factory=DSAConfig)
    batched: bool = True  # the N models of an arch as one StackedNets (same results, faster)
    compile: bool = False  # torch.compile the nets (pays on a GPU for long runs; seconds to compile)
    cuda_graph: bool = False  # each training step replayed from a CUDA graph on a GPU (same nets)
    amp: str = "none"  # "bf16": the nets' forwards under torch.autocast(bfloat16)
    labels: LabelConfig = field(default_factory=LabelConfig)  # hard, or soft from a teacher
    mix: MixConfig | None = None  # None: CutMix with soft labels (DD-Ranking's default), none with hard
    # augment "rded": RDED's patch shuffle and crops over crop_factor x crop_factor regions (None:
    # the RDED run's own factor when an RDED run evaluates its sets, else 1)
    crop_factor: int | None = None

    def __post_init__(self) -> None:
        for arch in self.archs:
            check_arch(arch)
        if self.augment not in AUGMENTS:
            raise ConfigError(unknown_name("evaluation augmentation", self.augment, AUGMENTS))
        if self.models < 1 or (self.epochs is not None and self.epochs < 1):
            raise ConfigError("--models and --epochs must be at least 1")
        if self.crop_factor is not None:
            if self.augment != "rded":
                raise ConfigError("--crop-factor sets the rded augmentation: add --augment rded")
            self.region_crop()
        amp_dtype(self.amp)

    def region_crop(self) -> RegionCropConfig:
        return RegionCropConfig(1 if self.crop_factor is None else self.crop_factor)

    def dc_strategy(self, dataset: ImageDataset, arch: str) -> str:
        return strategy_for(dataset.name, arch) if self.augment == "dc" else "none"

    @property
    def mixing(self) -> MixConfig:
        if self.mix is not None:
            return self.mix
        return MixConfig("cutmix") if self.labels.soft else MixConfig()

    def epochs_for(self, dataset: ImageDataset, arch: str) -> int:
        if self.epochs is not None:
            return self.epochs
        if self.labels.soft:
            return EPOCHS_SOFT
        augmented = self.augment in ("dsa", "rded") or self.dc_strategy(dataset, arch) != "none"
        return EPOCHS_AUGMENTED if augmented else EPOCHS_PLAIN


@dataclass
class ArchResult:
    """The accuracies of one architecture: `models` nets per synthetic set, `runs` sets (accs is
    run-major). mean and std are over all of them, as the reference reports (np.mean, np.std)."""

    accs: list[float]
    epochs: int
    models: int
    runs: int = 1

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accs) if len(self.accs) > 1 else 0.0

    @property
    def run_means(self) -> list[float]:
        per_run = self.models
        return [statistics.fmean(self.accs[i : i + per_run]) for i in range(0, len(self.accs), per_run)]

    def to_json(self) -> dict:
        return {**asdict(self), "mean": self.mean, "std": self.std, "run_means": self.run_means}

    @classmethod
    def from_json(cls, data: dict) -> ArchResult:
        return cls(list(data["accs"]), int(data["epochs"]), int(data["models"]), int(data.get("runs", 1)))


def combine_runs(results: list[dict[str, ArchResult]]) -> dict[str, ArchResult]:
    """One summary per architecture over several synthetic sets (each evaluated alike)."""
    if not results:
        return {}
    return {
        arch: ArchResult(
            [acc for result in results for acc in result[arch].accs],
            first.epochs, first.models, sum(result[arch].runs for result in results),
        )
        for arch, first in results[0].items()
    }


def fresh_net(arch: str, dataset: ImageDataset, seed: int, device: torch.device) -> nn.Module:
    return build_net(
        arch, dataset.channels, dataset.num_classes, dataset.image_size,
        generator_seed=derive_seed(seed, "init"),
    ).to(device)


def train_net(
    arch: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: ImageDataset,
    config: EvalConfig,
    seed: int,
    progress_task=None,
    targets: Targets | None = None,
) -> nn.Module:
    """One fresh `arch` trained on (images, labels) by the protocol, every draw from `seed`."""
    net = fresh_net(arch, dataset, seed, images.device)
    if config.compile:
        net.compile()
    augment = training_augmentation(config, dataset, arch, seed, images.device)
    order = generator(seed, "order", device=images.device)
    objective = objective_for(config, dataset, [seed], targets)
    return fit(net, images, labels, config, config.epochs_for(dataset, arch), order, augment, progress_task,
               objective)


def train_stacked(
    arch: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: ImageDataset,
    config: EvalConfig,
    seeds: list[int],
    progress_task=None,
    targets: Targets | None = None,
) -> StackedNets:
    """len(seeds) fresh `arch` nets trained as one StackedNets; copy n is `train_net(seeds[n])`."""
    device = images.device
    net = StackedNets([fresh_net(arch, dataset, seed, device) for seed in seeds])
    if config.compile:
        net.compile()  # in place: state dict keys stay those of one net
    augment = stacked_augmentation(config, dataset, arch, seeds, device)
    orders = [generator(seed, "order", device=device) for seed in seeds]
    objective = objective_for(config, dataset, seeds, targets)
    return fit(net, images, labels, config, config.epochs_for(dataset, arch), orders, augment, progress_task,
               objective)


@dataclass(frozen=True)
class Targets:
    """Where soft labels come from: the teacher, and (soft_mode stored) its logits per image."""

    teacher: Teacher
    stored: torch.Tensor | None = None


def objective_for(config: EvalConfig, dataset: ImageDataset, seeds: list[int],
                  targets: Targets | None) -> Objective | None:
    """The batch objective of the label regime and mixing; None for the reference protocol's
    hard labels without mixing (plain cross-entropy)."""
    if not config.labels.soft and config.mixing.kind == "none":
        return None
    if config.labels.soft and targets is None:
        raise ConfigError("soft labels need a teacher: pass one to the evaluation")
    mix_seeds = [derive_seed(seed, "mix") for seed in seeds]
    return Objective(config.labels, config.mixing, mix_seeds, dataset.num_classes,
                     targets.teacher if targets else None, targets.stored if targets else None)


def fit(net, images, labels, config: EvalConfig, epochs: int, order, augment, progress_task=None,
        objective: Objective | None = None):
    """The protocol's schedule: E + 1 epochs, lr x0.1 with a new optimiser after E // 2 + 1."""

    def sgd(lr: float) -> torch.optim.SGD:
        return torch.optim.SGD(
            net.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
        )

    def step_of(optimizer: torch.optim.SGD) -> TrainStep:
        kind = GraphedStep if config.cuda_graph else TrainStep
        copies = len(order) if isinstance(order, list) else 1
        return kind(net, optimizer, images, copies, objective, amp_dtype(config.amp))

    decay_after = epochs // 2 + 1
    optimizer = sgd(config.lr)
    images, labels = images.detach(), labels.detach()
    step = step_of(optimizer)
    for epoch in range(epochs + 1):
        loss, _ = train_epoch(net, images, labels, optimizer, config.batch_size, order, augment, objective,
                              step)
        if epoch == decay_after:
            optimizer = sgd(config.lr * 0.1)
            step = step_of(optimizer)  # a new optimiser: a new step (and new graphs)
        if progress_task is not None:
            # Reading the loss waits for the device: only every 50 epochs and at the end.
            due = epoch % 50 == 0 or epoch == epochs
            shown = {"epoch": epoch, "loss": round(float(loss.mean()), 4)} if due else {}
            progress_task.advance(1, **shown)
    return net


def training_augmentation(
    config: EvalConfig, dataset: ImageDataset, arch: str, seed: int, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The per-batch augmentation of one evaluation net, drawn from `seed` alone."""
    if config.augment == "dsa":
        dsa = DSA(config.dsa_config, derive_seed(seed, "dsa"), device)
        return lambda x: dsa(x, dsa.per_sample(len(x)))
    if config.augment == "rded":
        crop, crop_generator = config.region_crop(), generator(seed, "region-crop", device=device)
        return lambda x: region_crop(x, crop, crop_generator)
    strategy = config.dc_strategy(dataset, arch)
    if strategy == "none":
        return None
    dc_config, gen = DCAugConfig(strategy), generator(seed, "dc-augment", device=device)
    return lambda x: dc_augment(x, dc_config, gen)


def stacked_augmentation(
    config: EvalConfig, dataset: ImageDataset, arch: str, seeds: list[int], device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The augmentation of stacked copies, on their batches (N, b, C, H, W): each copy's draws
    from its own seed, exactly as `training_augmentation`. DSA runs as one call for all copies."""
    if config.augment == "dsa":
        dsas = [DSA(config.dsa_config, derive_seed(seed, "dsa"), device) for seed in seeds]

        def dsa_all(x: torch.Tensor) -> torch.Tensor:
            drawn = [dsa.per_sample(x.shape[1]) for dsa in dsas]
            params = DSAParams(
                tuple(t for p in drawn for t in p.tokens), torch.cat([p.uniforms for p in drawn])
            )
            return augment(x.flatten(0, 1), params, config.dsa_config).view_as(x)

        return dsa_all
    per_copy = [training_augmentation(config, dataset, arch, seed, device) for seed in seeds]
    if per_copy[0] is None:
        return None
    return lambda x: torch.stack([aug(part) for aug, part in zip(per_copy, x, strict=True)])  # type: ignore[misc]


def evaluate_synset(
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: ImageDataset,
    config: EvalConfig,
    seed: int = 0,
    progress: Progress | None = None,
    notes: list[str] | None = None,
    ranks: Ranks = SINGLE,
    teacher: Teacher | None = None,
) -> dict[str, ArchResult]:
    """Evaluate a synthetic set on every arch in `config.archs`, `config.models` nets each;
    with soft labels (`config.labels`), from `teacher`.

    An arch that cannot be stacked trains its nets one after another; `notes` gets one line
    saying so. Over several `ranks` the (arch, model) pairs are dealt out in turn, each rank
    trains its own, and every rank gets all accuracies (model i is the same net on any rank)."""
    progress = progress or NullProgress()
    images = images.to(dataset.device)
    labels = labels.to(dataset.device)
    targets = soft_targets(config, images, teacher)
    mine = [(arch, i) for arch in config.archs for i in range(config.models)][ranks.rank :: ranks.world]
    found: dict[tuple[str, int], float] = {}
    for arch in config.archs:
        indices = [i for a, i in mine if a == arch]
        if not indices:
            continue
        epochs = config.epochs_for(dataset, arch)
        seeds = [derive_seed(seed, "eval", arch, i) for i in indices]
        why_not = stackable(fresh_net(arch, dataset, seeds[0], torch.device("meta")))
        if config.batched and why_not is None:
            task = progress.task(f"eval {arch} x{len(seeds)}", epochs + 1)
            net = train_stacked(arch, images, labels, dataset, config, seeds, task, targets)
            accs = accuracies(net, dataset.test_images, dataset.test_labels)
        else:
            if config.batched and notes is not None:
                notes.append(
                    f"{arch}: its {config.models} models train one by one ({why_not} cannot be batched)"
                )
            task = progress.task(f"eval {arch}", len(seeds) * (epochs + 1))
            nets = [train_net(arch, images, labels, dataset, config, s, task, targets) for s in seeds]
            accs = [accuracy(net, dataset.test_images, dataset.test_labels) for net in nets]
        task.close()
        found.update(zip([(arch, i) for i in indices], accs, strict=True))
    for part in ranks.gather_objects(found):
        found.update(part)
    return {
        arch: ArchResult([found[arch, i] for i in range(config.models)], config.epochs_for(dataset, arch),
                         config.models)
        for arch in config.archs
    }


def soft_targets(config: EvalConfig, images: torch.Tensor, teacher: Teacher | None) -> Targets | None:
    if not config.labels.soft:
        return None
    if teacher is None:
        raise ConfigError("--labels soft needs a teacher: add --teacher QUERY")
    stored = teacher.logits(images) if config.labels.soft_mode == "stored" else None
    return Targets(teacher, stored)


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


# A run folder's evaluations, one cache file per label regime (evaluate_cached keeps one key per
# file): eval.json the set under the hard-label protocol (a hard run's result, and what a soft run's
# HLR compares), eval-soft.json under soft labels. So a folder evaluated in both regimes (a `ddz
# repro` cell) keeps both, and its soft run reuses the hard run's eval.json for HLR.
EVAL_CACHE_FILE = "eval.json"
SOFT_EVAL_CACHE_FILE = "eval-soft.json"


def evaluate_cached(
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: ImageDataset,
    config: EvalConfig,
    seed: int,
    cache: Path | None = None,
    progress: Progress | None = None,
    notes: list[str] | None = None,
    ranks: Ranks = SINGLE,
    teacher: Teacher | None = None,
    overwrite: bool = True,
) -> dict[str, ArchResult]:
    """`evaluate_synset`, kept in `cache` (a JSON file) keyed by the synthetic set's content, the
    evaluation settings and the seed, so that a re-run (e.g. a resumed `--runs N`) reuses it.
    `overwrite` False: a cache file holding another evaluation is left as it is."""
    # batched and cuda_graph train the same nets; amp "none" is the key evaluations had before --amp
    settings = {k: v for k, v in settings_key(config).items()
                if k != "cuda_graph" and not (k == "amp" and v == "none")}
    key = {
        "synset_sha256": content_sha256({"images": images, "labels": labels}),
        "config": settings,
        "seed": seed,
        "test_images": len(dataset.test_images),
        **({"teacher": [p["sha256"] for p in teacher.describe()]} if teacher is not None else {}),
    }
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return {arch: ArchResult.from_json(result) for arch, result in saved["eval"].items()}
    results = evaluate_synset(images, labels, dataset, config, seed, progress, notes, ranks, teacher)
    if cache is not None and ranks.is_main and (overwrite or not cache.exists()):
        atomic_write_json(cache, {"key": key, "eval": {a: r.to_json() for a, r in results.items()}})
    return results


def settings_key(config: EvalConfig) -> dict[str, Any]:
    """The settings that make an evaluation's result, as cache keys hold them: `batched` trains the
    same nets, and a setting added later is left out at its default, so that earlier keys match."""
    later_defaults = {"crop_factor": None}
    return {k: v for k, v in json.loads(json.dumps(asdict(config))).items()
            if k != "batched" and not (k in later_defaults and v == later_defaults[k])}
