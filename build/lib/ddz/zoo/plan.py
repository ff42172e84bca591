"""Planning a zoo grid: every (arch, seed) job with its state, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import torch

from ddz.data.base import ImageDataset
from ddz.errors import ConfigError
from ddz.nets import check_arch
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.records import RunState
from ddz.zoo.runs import TrainJob, run_state
from ddz.zoo.train import build_job_net


def plan_grid(
    dataset: str,
    archs: list[str],
    seeds: list[int],
    recipe: TrainRecipe,
    data: ImageDataset,
    zoo_root: Path,
    data_root: str | Path = "data",
    device: str = "auto",
    resolution: int | None = None,
) -> list[tuple[TrainJob, RunState]]:
    """Every (arch, seed) job with its state ('new', 'partial', 'done'), checked before anything
    runs: unknown archs, nets that do not fit the data, and recipe clashes fail here, in one line."""
    for arch in archs:
        check_arch(arch)
    if not seeds or min(seeds) < 0:
        raise ConfigError("--seeds must be at least 1 and --seed-start at least 0")
    root = str(Path(zoo_root).resolve())
    fingerprint = data.fingerprint()  # as loaded: the recipe records its ZCA
    jobs = []
    for arch in dict.fromkeys(archs):
        probe = TrainJob(dataset, arch, seeds[0], root, recipe)
        with torch.device("meta"):
            build_job_net(probe, data)
        for seed in seeds:
            job = TrainJob(dataset, arch, seed, root, recipe, str(Path(data_root).resolve()), device,
                           fingerprint, resolution)
            jobs.append((job, run_state(job)))
    return jobs
