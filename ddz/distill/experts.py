"""MTT's expert buffer, read from the zoo: the snapshots a query selects, grouped by seed into
trajectories (epoch -> file). Nothing is loaded up front: an iteration reads the two snapshots it
needs, each verified by its sha256, so a buffer of many experts never has to fit in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddz.data.base import ImageDataset
from ddz.devices import to_device
from ddz.errors import ConfigError
from ddz.zoo.records import Resolved, SnapshotMeta, dataset_slug
from ddz.zoo.sources.local import read_snapshot, read_snapshot_meta


@dataclass(frozen=True)
class Trajectory:
    run: str  # dataset/arch/seedN
    files: dict[int, tuple[Path, str]]  # epoch -> (verified file, its sha256)


class ExpertBuffer:
    def __init__(self, rows: Sequence[Resolved], files: Mapping[str, Path]):
        runs: dict[str, dict[int, tuple[Path, str]]] = {}
        for row in rows:
            if row.source == "external" or row.summary is None or row.sha256 is None:
                raise ConfigError(f"--experts: {row.name} is not a zoo snapshot; experts are epoch snapshots")
            run = row.name.split("@")[0]
            runs.setdefault(run, {})[row.summary.epoch] = (Path(files[row.name]), row.sha256)
        if not runs:
            raise ConfigError(
                "--experts selects no snapshots; train experts with `ddz zoo train --recipe mtt-expert`")
        self.trajectories = [Trajectory(run, dict(sorted(e.items()))) for run, e in sorted(runs.items())]
        first = self.trajectories[0]
        self.meta: SnapshotMeta = read_snapshot_meta(next(iter(first.files.values()))[0])

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def net_config(self) -> dict[str, Any]:
        return dict(self.meta.net_config)

    @property
    def zca(self) -> bool:
        return bool(self.meta.recipe.get("zca", False))

    def check(self, dataset: ImageDataset, dataset_name: str, expert_epochs: int,
              max_start_epoch: int) -> None:
        """One line when the experts cannot serve this distillation: another data set or image
        size, mixed nets, or a trajectory without the epochs the draws need (0 .. max_start_epoch
        - 1 + expert_epochs)."""
        meta = self.meta
        expected = dataset_slug(dataset_name)
        if meta.name.dataset != expected or meta.image_size != dataset.image_size \
                or meta.in_channels != dataset.channels or len(meta.classes) != dataset.num_classes:
            raise ConfigError(
                f"--experts were trained on {meta.name.dataset} ({meta.in_channels}x{meta.image_size}px, "
                f"{len(meta.classes)} classes) but this distils {expected} ({dataset.channels}x"
                f"{dataset.image_size}px, {dataset.num_classes} classes); train experts on this data set"
            )
        for trajectory in self.trajectories[1:]:
            other = read_snapshot_meta(next(iter(trajectory.files.values()))[0])
            if other.net_config != meta.net_config or other.recipe_hash != meta.recipe_hash:
                raise ConfigError(
                    f"--experts mixes nets or recipes: {trajectory.run} differs from "
                    f"{self.trajectories[0].run}; select one arch and recipe"
                )
        needed = range(max_start_epoch + expert_epochs)
        for trajectory in self.trajectories:
            missing = [e for e in needed if e not in trajectory.files]
            if missing:
                shown = ", ".join(f"epoch{e}" for e in missing[:8]) + (" ..." if len(missing) > 8 else "")
                raise ConfigError(
                    f"expert {trajectory.run} lacks {shown}, which --max-start-epoch {max_start_epoch} and "
                    f"--expert-epochs {expert_epochs} need; train with --snapshots every, or lower them"
                )

    def parameters(self, index: int, epoch: int, names: Sequence[str], device: torch.device) -> torch.Tensor:
        """The flat parameter vector (in `names` order) of expert `index` after `epoch` epochs."""
        path, sha256 = self.trajectories[index].files[epoch]
        tensors, _, _ = read_snapshot(path, sha256)
        return to_device(torch.cat([tensors[name].reshape(-1) for name in names]), device)

    def describe(self) -> list[dict[str, str]]:
        return [{"name": f"{t.run}@epoch{e}", "sha256": sha} for t in self.trajectories
                for e, (_, sha) in t.files.items()]
