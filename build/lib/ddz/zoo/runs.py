"""One zoo run's record (`TrainJob`), where it stands (`RunProgress`), what it did (`RunResult`),
and its state on disk: `run_state` ('new', 'partial', 'done') and the done marker, written last,
that makes re-submitting a grid safe.

Files of one run, next to its snapshots (<zoo>/<dataset>/<arch>/seed<n>/):
    epoch<e>.safetensors                 the snapshots (see ddz.zoo.sources.local)
    checkpoint.json, checkpoint-*.safetensors   the resumable checkpoint (ddz.zoo.checkpoints)
    done.json                            written last: recipe hash, data fingerprint, snapshots
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ddz.errors import ConfigError, IntegrityError
from ddz.io import atomic_write_json
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.records import RunState, SnapshotName, dataset_slug, utc_now
from ddz.zoo.sources.local import LocalZoo, read_snapshot_meta

DONE_FORMAT = "ddz.done/1"


@dataclass(frozen=True)
class TrainJob:
    """One (dataset, arch, seed) run: everything a worker needs, JSON-serialisable."""

    dataset: str
    arch: str
    seed: int
    zoo_root: str
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    data_root: str = "data"
    device: str = "auto"
    data_fingerprint: str | None = None
    resolution: int | None = None  # image side the data set is loaded at (None: its default)

    @property
    def slug(self) -> str:
        return dataset_slug(self.dataset)

    @property
    def store(self) -> LocalZoo:
        return LocalZoo(Path(self.zoo_root))

    @property
    def run_name(self) -> str:
        return f"{self.slug}/{self.arch}/seed{self.seed}"

    @property
    def key(self) -> str:
        return f"{self.arch}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.store.root / self.slug / self.arch / f"seed{self.seed}"

    def snapshot_name(self, epoch: int) -> SnapshotName:
        return SnapshotName(self.slug, self.arch, self.seed, epoch)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": self.recipe.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainJob:
        return cls(**{**data, "recipe": TrainRecipe.from_json(data["recipe"])})


RunStatus = Literal["trained", "skipped", "failed"]


@dataclass
class RunProgress:
    """Where one run stands: what its checkpoint sidecar holds after every epoch, and done.json
    at the end."""

    epoch: int = 0  # epochs finished
    resumed_from: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: lr and metrics
    snapshots: dict[int, str] = field(default_factory=dict)  # epoch -> sha256 of its file
    seconds_train: float = 0.0
    images_trained: int = 0

    @property
    def metrics(self) -> dict[str, float]:
        """The last snapshot epoch's metrics (the last epoch's when none was kept)."""
        fallback = self.history[-1] if self.history else {}
        last = next((h for h in reversed(self.history) if "test_acc" in h), fallback)
        return {k: v for k, v in last.items() if k in ("train_loss", "train_acc", "test_acc")}

    @property
    def images_per_sec(self) -> float:
        return self.images_trained / self.seconds_train if self.seconds_train else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["snapshots"] = {str(e): s for e, s in sorted(self.snapshots.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunProgress:
        return cls(int(data.get("epoch", 0)), int(data.get("resumed_from", 0)), list(data.get("history", [])),
                   {int(e): s for e, s in data.get("snapshots", {}).items()},
                   float(data.get("seconds_train", 0.0)), int(data.get("images_trained", 0)))


@dataclass
class RunResult:
    """What one job did: trained, skipped (already done) or failed."""

    arch: str
    seed: int
    name: str
    status: RunStatus
    epochs_run: int = 0
    resumed_from: int = 0
    seconds_train: float = 0.0
    images_per_sec: float = 0.0
    snapshots: dict[int, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    log_tail: str | None = None

    @classmethod
    def finished(cls, job: TrainJob, progress: RunProgress, status: RunStatus) -> RunResult:
        epochs_run = job.recipe.epochs - progress.resumed_from
        return cls(job.arch, job.seed, job.run_name, status, epochs_run=epochs_run,
                   resumed_from=progress.resumed_from, seconds_train=progress.seconds_train,
                   images_per_sec=progress.images_per_sec, snapshots=dict(progress.snapshots),
                   metrics=progress.metrics)

    @classmethod
    def failure(cls, job: TrainJob, error: str, log_tail: str | None = None) -> RunResult:
        return cls(job.arch, job.seed, job.run_name, "failed", error=error, log_tail=log_tail)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _mismatch(job: TrainJob, what: str, old: str, new: str) -> ConfigError:
    return ConfigError(
        f"{job.run_name} in {job.store.root} was trained with a different {what} ({old[:12]} there, "
        f"{new[:12]} now); use another DDZ_HOME or delete {job.run_dir} to re-train it"
    )


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise IntegrityError(f"{path} is not valid JSON ({error}); delete it to restart this seed") from None


def run_state(job: TrainJob) -> RunState:
    """'done', 'partial' or 'new'; ConfigError when what is there was made by another recipe or data."""
    recipe_hash = job.recipe.hash()
    for marker in ("done.json", "checkpoint.json"):
        state = read_json(job.run_dir / marker)
        if state is None:
            continue
        if state.get("recipe_hash") != recipe_hash:
            raise _mismatch(job, "recipe", str(state.get("recipe_hash")), recipe_hash)
        if job.data_fingerprint and state.get("data_fingerprint") != job.data_fingerprint:
            raise _mismatch(job, "data set", str(state.get("data_fingerprint")), job.data_fingerprint)
        return "done" if marker == "done.json" else "partial"
    snapshots = sorted(job.run_dir.glob("epoch*.safetensors")) if job.run_dir.is_dir() else []
    for path in snapshots:
        old = read_snapshot_meta(path).recipe_hash
        if old != recipe_hash:
            raise _mismatch(job, "recipe", old, recipe_hash)
    return "partial" if snapshots else "new"


def result_from_done(job: TrainJob, status: RunStatus = "trained") -> RunResult | None:
    """The result recorded by a finished run (None when it has not finished)."""
    done = read_json(job.run_dir / "done.json")
    if done is None or done.get("recipe_hash") != job.recipe.hash():
        return None
    return RunResult.finished(job, RunProgress.from_json(done.get("progress", done)), status)



def write_done(job: TrainJob, progress: RunProgress, device: str) -> RunResult:
    """Mark a finished run done (the last file it writes) and return its result."""
    atomic_write_json(
        job.run_dir / "done.json",
        {
            "format": DONE_FORMAT,
            "name": job.run_name,
            "recipe_hash": job.recipe.hash(),
            "recipe": job.recipe.to_json(),
            "data_fingerprint": job.data_fingerprint,
            "progress": progress.to_json(),
            "device": device,
            "finished": utc_now(),
        },
    )
    return RunResult.finished(job, progress, "trained")
