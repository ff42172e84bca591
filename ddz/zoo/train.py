"""Zoo training: one (dataset, arch, seed) run by its recipe, or several seeds of one arch as one
batched model, with epoch snapshots, a resumable checkpoint and a done marker.

Seed n alone fixes the initial weights and the data order (ddz.seeding with seed n, not the
global --seed), so `digits/convnet3/seed3` is the same model in every grid that contains it, and
on CPU the same command gives bit-identical weights, whether or not it was killed and resumed.

A run is restore -> an epoch loop -> finish, its state one RunProgress record (saved in the
checkpoint sidecar every epoch, ddz.zoo.checkpoints, and in done.json at the end, ddz.zoo.runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import torch
from filelock import FileLock

from ddz import __version__
from ddz.data import check_data_reachable, load_dataset
from ddz.data.augment import DSA, DSAConfig
from ddz.data.base import ImageDataset
from ddz.devices import resolve_device
from ddz.errors import ConfigError, DataError
from ddz.nets import build_net
from ddz.nets.stacked import StackedNets
from ddz.progress import Task
from ddz.seeding import derive_seed
from ddz.training import accuracies, accuracy, train_epoch
from ddz.zoo.checkpoints import (
    clean_partial_files,
    drop_checkpoint,
    load_checkpoint,
    save_checkpoint,
    stack_optimizer_states,
    unstack_optimizer_state,
)
from ddz.zoo.recipes import TrainRecipe, prepared
from ddz.zoo.records import SnapshotMeta, utc_now
from ddz.zoo.runs import RunProgress, RunResult, TrainJob, result_from_done, run_state, write_done


def build_job_net(job: TrainJob, data: ImageDataset) -> torch.nn.Module:
    try:
        return build_net(
            job.arch,
            data.channels,
            data.num_classes,
            data.image_size,
            generator_seed=derive_seed(job.seed, "zoo", job.arch, "init"),
            **dict(job.recipe.net),
        )
    except TypeError as error:
        raise ConfigError(f"--net-option does not fit {job.arch}: {error}") from None


@dataclass
class _Run:
    """One job while it trains: its net, optimiser, order generator and progress."""

    job: TrainJob
    net: torch.nn.Module
    optimizer: torch.optim.SGD
    order: torch.Generator
    progress: RunProgress


def _sgd(params, recipe: TrainRecipe) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def _restore(job: TrainJob, data: ImageDataset, device: str) -> _Run:
    """Build the job's net and optimiser and load its checkpoint, if it has one."""
    net = build_job_net(job, data).to(device)
    optimizer = _sgd(net.parameters(), job.recipe)
    order = torch.Generator(device=device).manual_seed(derive_seed(job.seed, "zoo", job.arch, "order"))
    return _Run(job, net, optimizer, order, load_checkpoint(job, net, optimizer, order, device))


def train_run(job: TrainJob, task: Task | None = None, data: ImageDataset | None = None) -> RunResult:
    """Train one (arch, seed) by `job.recipe`, resuming from its checkpoint; skip it when done."""
    return train_runs([job], task, data)[0]


def train_runs(
    jobs: list[TrainJob], task: Task | None = None, data: ImageDataset | None = None
) -> list[RunResult]:
    """Train several seeds of one (dataset, arch, recipe) in one process, as one StackedNets.

    Each seed keeps its own run folder, lock, checkpoint, snapshots and done marker, in the
    format a single run writes, so a group resumes seed by seed, alone or batched. Seeds whose
    checkpoints stand at different epochs train in separate stacks. On CPU a batched seed is
    bit-identical to the same seed trained alone (ddz.nets.stacked)."""
    first = jobs[0]
    if any((j.dataset, j.arch, j.recipe, j.device) != (first.dataset, first.arch, first.recipe, first.device)
           for j in jobs):
        raise ConfigError("seeds trained together must share data set, arch, recipe and device")
    device = resolve_device(first.device)
    data, fingerprint = _training_data(first, data, device)
    jobs = [replace(job, data_fingerprint=fingerprint) for job in jobs]
    results: dict[str, RunResult] = {}
    with ExitStack() as locks:
        runs = []
        # Locks are taken in one global order (the run folders'), so two processes whose grids
        # overlap wait for each other's seeds instead of deadlocking.
        for job in sorted(jobs, key=lambda j: str(j.run_dir)):
            locks.enter_context(_run_lock(job))
        for job in jobs:
            if run_state(job) == "done":
                results[job.key] = result_from_done(job, "skipped")  # type: ignore[assignment]
                continue
            clean_partial_files(job.run_dir)
            runs.append(_restore(job, data, device))
        resumed_at = min((run.progress.epoch for run in runs), default=0)
        if task is not None and resumed_at:
            task.advance(resumed_at, epoch=resumed_at)
        for start in sorted({run.progress.epoch for run in runs}):
            group = [run for run in runs if run.progress.epoch == start]
            for run in _train_together(group, data, device, task):
                results[run.job.key] = _finish(run, device)
    return [results[job.key] for job in jobs]


def _training_data(job: TrainJob, data: ImageDataset | None, device: str) -> tuple[ImageDataset, str]:
    """The job's data set on `device` as its recipe prepares it, and the fingerprint of the data
    as loaded, checked against the grid's plan. (The fingerprint is taken before the recipe's
    ZCA whitening, which the recipe records: whitened bits vary with the thread count.)"""
    if data is None:
        check_data_reachable(job.dataset, job.data_root)
        data = load_dataset(job.dataset, job.data_root, device, job.resolution)
    else:
        data = data.to(device)
    fingerprint = data.fingerprint()
    if job.data_fingerprint and fingerprint != job.data_fingerprint:
        raise DataError(
            f"{job.dataset} under {job.data_root} differs from the data the grid was planned with "
            f"(fingerprint {fingerprint[:12]} vs {job.data_fingerprint[:12]}); "
            "make every node see the same files"
        )
    return prepared(data, job.recipe), fingerprint


@contextmanager
def _run_lock(job: TrainJob):
    """The run's lock (flock on .run.lock, released by the kernel if the process dies). A seed
    that another process is training is waited for; it is then found done and skipped."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(job.run_dir / ".run.lock")):
        yield


def _snapshot_meta(job: TrainJob, epoch: int, net: torch.nn.Module, data: ImageDataset, device: str,
                   metrics: dict[str, float]) -> SnapshotMeta:
    return SnapshotMeta(
        name=job.snapshot_name(epoch), data_source=job.dataset, net_config=dict(net.config),
        classes=tuple(data.classes), mean=tuple(data.mean), std=tuple(data.std), metrics=metrics,
        recipe=job.recipe.to_json(), recipe_hash=job.recipe.hash(),
        data_fingerprint=str(job.data_fingerprint), ddz_version=__version__, created=utc_now(),
        train_device=device, torch_threads=torch.get_num_threads(),
    )


def _augmentation(jobs: list[TrainJob], epoch: int, device: str
                  ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The recipe's per-batch augmentation for `epoch`: each seed draws its own DSA parameters
    from (seed, epoch), so a resumed or batched seed sees the draws it sees alone."""
    if jobs[0].recipe.augment == "none":
        return None
    dsas = [DSA(DSAConfig(), derive_seed(job.seed, "zoo", job.arch, "dsa", epoch), device) for job in jobs]
    if len(dsas) == 1:
        return lambda x: dsas[0](x, dsas[0].per_sample(len(x)))
    return lambda x: torch.stack([d(part, d.per_sample(len(part))) for d, part in zip(dsas, x, strict=True)])


Order = torch.Generator | list[torch.Generator]  # one net's generator, or one per stacked copy


def _stacked(group: list[_Run]) -> tuple[torch.nn.Module, torch.optim.SGD, Order]:
    """The model, optimiser and order generator(s) the group trains through: one net's own, or
    the nets stacked with their SGD states concatenated and one generator per copy."""
    if len(group) == 1:
        return group[0].net, group[0].optimizer, group[0].order
    model = StackedNets([run.net for run in group])
    optimizer = _sgd(model.parameters(), group[0].job.recipe)
    optimizer.load_state_dict(stack_optimizer_states([run.optimizer.state_dict() for run in group]))
    return model, optimizer, [run.order for run in group]


def _nets(model: torch.nn.Module) -> list[torch.nn.Module]:
    return model.nets() if isinstance(model, StackedNets) else [model]


def _snapshot_initial(group: list[_Run], model: torch.nn.Module, data: ImageDataset, device: str) -> None:
    """Snapshot 0, the initial weights, when the recipe keeps it."""
    for run, net in zip(group, _nets(model), strict=True):
        metrics = {"test_acc": accuracy(net, data.test_images, data.test_labels)}
        meta = _snapshot_meta(run.job, 0, net, data, device, metrics)
        run.progress.snapshots[0] = run.job.store.save(meta, net.state_dict()).sha256


def _train_together(group: list[_Run], data: ImageDataset, device: str, task: Task | None) -> list[_Run]:
    """The epoch loop of one net, or of N nets stacked: train, snapshot, checkpoint each seed."""
    first = group[0].job
    recipe = first.recipe
    model, optimizer, order = _stacked(group)
    cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    if group[0].progress.epoch == 0 and 0 in recipe.snapshots:
        _snapshot_initial(group, model, data, device)
    for epoch in range(group[0].progress.epoch + 1, recipe.epochs + 1):
        for param_group in optimizer.param_groups:
            param_group["lr"] = recipe.lr_at(epoch)
        # Anything in a net that draws from the global RNG (e.g. dropout) sees a stream fixed by
        # (seed, epoch), so a resumed run draws exactly what an uninterrupted one would.
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(derive_seed(first.seed, "zoo", first.arch, "epoch", epoch))
            began = time.perf_counter()
            augment = _augmentation([run.job for run in group], epoch, device)
            losses, accs = train_epoch(model, data.train_images, data.train_labels, optimizer,
                                       recipe.batch_size, order, augment)
            elapsed = time.perf_counter() - began
        _record_epoch(group, epoch, model, optimizer, data, device, (losses, accs, elapsed))
        if task is not None:
            task.advance(1, epoch=epoch, loss=round(float(losses.mean()), 4))
    if isinstance(model, StackedNets):
        for run, net in zip(group, model.nets(), strict=True):
            run.net = net
    return group


def _record_epoch(group: list[_Run], epoch: int, model: torch.nn.Module, optimizer: torch.optim.SGD,
                  data: ImageDataset, device: str, trained: tuple[torch.Tensor, torch.Tensor, float]) -> None:
    """After an epoch, for each seed: its progress, its snapshot when the recipe keeps this epoch,
    and its checkpoint."""
    losses, accs, elapsed = trained
    recipe, nets = group[0].job.recipe, _nets(model)
    optimizer_states = (
        unstack_optimizer_state(optimizer.state_dict(), len(group)) if len(group) > 1
        else [optimizer.state_dict()]
    )
    test_accs = None
    if epoch in recipe.snapshots:
        test_accs = (
            accuracies(model, data.test_images, data.test_labels) if isinstance(model, StackedNets)
            else [accuracy(model, data.test_images, data.test_labels)]
        )
    for n, run in enumerate(group):
        progress = run.progress
        progress.epoch = epoch
        progress.seconds_train += elapsed
        progress.images_trained += len(data.train_images)
        metrics = {"train_loss": float(losses.reshape(-1)[n]), "train_acc": float(accs.reshape(-1)[n])}
        if test_accs is not None:
            metrics["test_acc"] = test_accs[n]
            meta = _snapshot_meta(run.job, epoch, nets[n], data, device, metrics)
            progress.snapshots[epoch] = run.job.store.save(meta, nets[n].state_dict()).sha256
        progress.history.append({"epoch": epoch, "lr": recipe.lr_at(epoch), **metrics})
        save_checkpoint(run.job, nets[n], optimizer_states[n], run.order, progress)


def _finish(run: _Run, device: str) -> RunResult:
    """Write the done marker and drop the checkpoint of a finished run."""
    result = write_done(run.job, run.progress, device)
    drop_checkpoint(run.job.run_dir)
    return result
