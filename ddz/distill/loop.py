"""The loop every method shares: initialise, step, report progress, checkpoint, resume, save.

A run writes into its folder: checkpoint.safetensors every `checkpoint_every` iterations and at
the end, then synset.safetensors and synset.png. Calling `distill` again with the same folder
and settings resumes from the checkpoint and ends with the same images as an uninterrupted run
(every random stream is derived from (seed, purpose, iteration); the checkpoint holds the images
and the momentum buffer); a finished run is loaded, not recomputed. A larger `iterations`
continues a finished run.

With `ranks` (several processes, ddz.distributed) each rank learns the images of its classes;
rank 0 writes the checkpoint, the synthetic set and the grid, which hold the whole set, so a run
resumes with any number of ranks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddz.data.base import ImageDataset
from ddz.distill.evaluate import check_ipc
from ddz.distill.experts import ExpertBuffer
from ddz.distill.grid import write_grid
from ddz.distill.guidance import Guidance
from ddz.distill.labels import Teacher
from ddz.distill.methods import DistillConfig, IterationRNG, Method, SynState, build_method
from ddz.distill.methods.base import initial_images, new_state
from ddz.distill.synset import (
    CHECKPOINT_FILE,
    GRID_FILE,
    SYNSET_FILE,
    Checkpoint,
    SynSet,
    load_checkpoint,
    load_synset,
    save_checkpoint,
    save_synset,
)
from ddz.distributed.ranks import SINGLE, Ranks
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError, IntegrityError
from ddz.progress import NullProgress, Progress
from ddz.zoo.ptm import file_problem

LOG_EVERY = 10  # iterations between loss read-backs (each one waits for the device)

# Sees the whole synthetic set at an iteration: (iteration, images, labels, learnt step size).
Watch = Callable[[int, torch.Tensor, torch.Tensor, "float | None"], None]


def viewable(images: torch.Tensor, dataset: ImageDataset):
    """(images, ipc..., mean, std) arguments of write_grid showing what the images depict: ZCA-whitened
    images are mapped back to [0, 1] first, as the reference does for its grids."""
    if dataset.zca is None:
        return images, len(images) // dataset.num_classes, dataset.mean, dataset.std
    channels = dataset.channels
    return (dataset.zca.unwhiten(images.to(dataset.device)).cpu(), len(images) // dataset.num_classes,
            (0.0,) * channels, (1.0,) * channels)


def run_identity(
    dataset: ImageDataset, dataset_name: str, config: DistillConfig, seed: int, guidance: Guidance | None,
    experts: ExpertBuffer | None = None, teacher: Teacher | None = None,
) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: everything that changes the images except
    the number of iterations (so a finished run can be continued), --compile and --memory (both
    give the same images)."""
    settings = config.to_json()
    for key in ("iterations", "compile"):
        settings.pop(key)
    if settings["amp"] == "none":
        settings.pop("amp")  # the identity runs had before --amp, so that they resume
    if config.spec.needs_experts:
        settings["mtt"].pop("memory")
    else:
        settings.pop("mtt")
    for own in ("rded", "sre2l"):
        if config.method != own:
            settings.pop(own)
    identity = {
        "dataset": dataset_name,
        "train_images": len(dataset.train_images),
        "classes": list(dataset.classes),
        "seed": seed,
        "config": settings,
        "guidance": None if guidance is None else {
            "kinds": guidance.kinds, "alpha": guidance.alpha,
            "cclom_batch": guidance.config.cclom_batch,
            "ptms": [p["sha256"] for p in guidance.describe()],
        },
    }
    if experts is not None:
        identity["experts"] = [e["sha256"] for e in experts.describe()]
    if teacher is not None:
        identity["teacher"] = [t["sha256"] for t in teacher.describe()]
    return json.loads(json.dumps(identity))  # the form it takes after a round trip through a file


def _first_difference(ours: Any, theirs: Any, prefix: str = "") -> str:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                return _first_difference(ours.get(key), theirs.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')} is {ours!r} here but {theirs!r} there"


def distill(
    dataset: ImageDataset,
    config: DistillConfig,
    seed: int = 0,
    guidance: Guidance | None = None,
    out_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    progress: Progress | None = None,
    dataset_name: str | None = None,
    ptm_query: Sequence[str] = (),
    experts: ExpertBuffer | None = None,
    ranks: Ranks = SINGLE,
    watch: Watch | None = None,
    watch_every: int = 0,
    teacher: Teacher | None = None,
) -> SynSet:
    """Distil `dataset` into IPC images per class; with `out_dir`, checkpoint, resume and save.
    MTT takes its expert trajectories from `experts`, RDED and SRe2L their `teacher`. Every rank
    of `ranks` calls this alike and gets the whole synthetic set back. `watch(iteration, images,
    labels, learned_lr)` sees the whole set before every `watch_every`-th iteration (0, N, 2N,
    ... below `iterations`)."""
    config = config.resolved(dataset.name, dataset.image_size)
    check_ipc(dataset, config.ipc)
    shard = ClassShard(dataset.num_classes, config.ipc, ranks)
    dataset_name = dataset_name or dataset.name
    if experts is not None:
        experts.check(dataset, dataset_name, config.mtt.expert_epochs, config.mtt.max_start_epoch)
    files = RunFiles(Path(out_dir) if out_dir is not None else None, shard,
                     run_identity(dataset, dataset_name, config, seed, guidance, experts, teacher))
    start = files.start(dataset, config, seed)
    if isinstance(start, SynSet):
        return start  # finished before
    state = start.state
    method = build_method(config, dataset, guidance, experts, shard, teacher)
    if start.method_state:
        method.load_state_tensors(start.method_state)

    task = (progress or NullProgress()).task(f"distill {config.method}", config.iterations)
    task.advance(state.iteration)
    started = time.perf_counter()
    shown = float("nan")
    for iteration in range(state.iteration, config.iterations):
        if watch is not None and watch_every > 0 and iteration % watch_every == 0:
            watch(iteration, shard.whole(state.images).detach(), shard.labels(state.images.device),
                  method.learned_lr)
        loss = method.step(state, IterationRNG(seed, iteration, dataset.device))
        state.iteration = iteration + 1
        if iteration % LOG_EVERY == 0 or state.iteration == config.iterations:
            shown = float(ranks.sum(loss))
        task.advance(1, loss=shown)
        if checkpoint_every > 0 and state.iteration % checkpoint_every == 0:
            files.checkpoint(state, method, start.seconds + time.perf_counter() - started)
            check_ptm_files(guidance, teacher, ranks, state.iteration)
    task.close()
    seconds = start.seconds + time.perf_counter() - started
    images = shard.whole(state.images)
    synset = SynSet(
        images=images.cpu(), labels=shard.labels(images.device).cpu(),
        dataset=dataset_name, method=config.method, ipc=config.ipc, seed=seed,
        config=config.to_json(), classes=list(dataset.classes),
        mean=tuple(dataset.mean), std=tuple(dataset.std), ptm_query=list(ptm_query),
        iterations=config.iterations, seconds_distill=seconds, lr=method.learned_lr,
        experts=experts.describe() if experts is not None else [], zca=dataset.zca is not None,
        teacher=teacher.describe() if teacher is not None else [], **guidance_record(guidance),
    )
    files.checkpoint(state, method, seconds, images)
    files.finish(synset, dataset)
    return synset


def check_ptm_files(guidance: Guidance | None, teacher: Teacher | None, ranks: Ranks, iteration: int) -> None:
    """Stop, after a checkpoint, when the file of a guidance PTM or of the teacher went bad under
    the run: the rerun continues from that checkpoint once the file is re-pulled (its sha256 is
    checked at load). Every rank asks its own file system, and all stop together."""
    ptms = [*(guidance.ptms if guidance is not None else ()), *(teacher.ptms if teacher is not None else ())]
    if not any(ptm.file is not None for ptm in ptms):
        return
    problem = file_problem(ptms)
    said = None if problem is None else (str(problem), problem.expected, problem.actual)
    for line, expected, actual in (f for f in ranks.gather_objects(said) if f is not None):
        raise IntegrityError(f"{line}; the run stopped at its checkpoint (iteration {iteration}) and "
                             "continues from there when run again", expected=expected, actual=actual)


def guidance_record(guidance: Guidance | None) -> dict[str, Any]:
    """What a synthetic set records of the guidance that shaped it."""
    if guidance is None:
        return {"ptms": [], "guidance": None, "alpha": 0.0, "alpha_source": None}
    return {"ptms": guidance.describe(), "guidance": guidance.kind, "alpha": guidance.alpha,
            "alpha_source": guidance.alpha_source}


@dataclass
class Start:
    """Where a run starts: fresh, or from its checkpoint."""

    state: SynState
    method_state: dict[str, torch.Tensor]
    seconds: float  # distillation time already spent


@dataclass
class RunFiles:
    """A run's folder (None: nothing written): its checkpoint, synthetic set and grid. Every
    rank calls its methods alike (the images are gathered); rank 0 writes."""

    out: Path | None
    shard: ClassShard
    identity: dict[str, Any]

    def start(self, dataset: ImageDataset, config: DistillConfig, seed: int) -> Start | SynSet:
        """The finished set, the checkpoint's state, or the initial images."""
        shard, out = self.shard, self.out
        first_class = shard.classes.start
        if out is None or not (out / CHECKPOINT_FILE).is_file():
            images = shard.own(initial_images(dataset, config, seed))
            return Start(new_state(images, config.ipc, config.lr_img, config.momentum, first_class), {}, 0.0)
        checkpoint = load_checkpoint(out / CHECKPOINT_FILE)
        if checkpoint.run != self.identity:
            raise ConfigError(
                f"{out} holds a different run ({_first_difference(self.identity, checkpoint.run)}); "
                "pass another --out or delete that folder"
            )
        if checkpoint.iteration > config.iterations:
            raise ConfigError(
                f"{out} has {checkpoint.iteration} iterations done, more than the {config.iterations} "
                "asked for; ask for at least that many or pass another --out"
            )
        if checkpoint.iteration == config.iterations and (out / SYNSET_FILE).is_file():
            return load_synset(out / SYNSET_FILE)
        images = shard.own(checkpoint.images.to(dataset.device))
        state = new_state(images, config.ipc, config.lr_img, config.momentum, first_class)
        if checkpoint.momentum is not None:
            state.set_momentum_buffer(shard.own(checkpoint.momentum))
        state.iteration = checkpoint.iteration
        method_state = {k: v.to(dataset.device) for k, v in checkpoint.extra.items()}
        return Start(state, method_state, checkpoint.seconds)

    def checkpoint(self, state: SynState, method: Method, seconds: float,
                   images: torch.Tensor | None = None) -> None:
        if self.out is None:
            return
        images = self.shard.whole(state.images) if images is None else images
        momentum = state.momentum_buffer()
        momentum = self.shard.whole(momentum) if momentum is not None else None
        extra = method.state_tensors()  # every rank: a sharded method gathers its rows
        if self.shard.ranks.is_main:
            record = Checkpoint(images, momentum, state.iteration, seconds, self.identity, extra)
            save_checkpoint(self.out / CHECKPOINT_FILE, record)

    def finish(self, synset: SynSet, dataset: ImageDataset) -> None:
        if self.out is not None and self.shard.ranks.is_main:
            save_synset(self.out / SYNSET_FILE, synset)
            write_grid(self.out / GRID_FILE, *viewable(synset.images, dataset))
        self.shard.ranks.barrier()  # the files are there when any rank returns
