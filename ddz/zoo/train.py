"""Zoo training: one (dataset, arch, seed) run by the PTM recipe, with epoch snapshots, a resumable
checkpoint, and a `done` marker that makes re-submitting a grid safe.

Seed n alone fixes the initial weights and the data order (ddz.seeding with seed n, not the
global --seed), so `digits/convnet3/seed3` is the same model in every grid that contains it, and
on CPU the same command gives bit-identical weights, whether or not it was killed and resumed.

A run is restore -> an epoch loop -> finish, its state one RunProgress record (saved in the
checkpoint sidecar every epoch and in done.json at the end).

Files of one run, next to its snapshots (<zoo>/<dataset>/<arch>/seed<n>/):
    epoch<e>.safetensors                 the snapshots (see ddz.zoo.sources.local)
    checkpoint.json                      sidecar: epoch, optimiser scalars, history, sha256 of ...
    checkpoint-epoch<e>.safetensors      ... the tensors: model, optimiser buffers, generator state
    done.json                            written last: recipe hash, data fingerprint, snapshots
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from filelock import FileLock, Timeout

from ddz import __version__
from ddz.data import check_dataset_name, load_dataset
from ddz.data.augment import DSA, DSAConfig
from ddz.data.base import ImageDataset
from ddz.data.zca import whitened
from ddz.devices import resolve_device
from ddz.errors import ConfigError, DataError, IntegrityError, unknown_name
from ddz.io import atomic_write_json, read_tensors, write_tensors
from ddz.nets import build_net, check_arch
from ddz.nets.stacked import StackedNets
from ddz.progress import Task
from ddz.seeding import derive_seed
from ddz.training import accuracies, accuracy, train_epoch
from ddz.zoo.records import RunState, SnapshotMeta, SnapshotName, dataset_slug, utc_now
from ddz.zoo.sources.local import LocalZoo, read_snapshot_meta

DEFAULT_SNAPSHOTS = (1, 4, 6, 10, 20, 35, 70, 120, 150)
Augment = Literal["none", "dsa"]
CHECKPOINT_FORMAT = "ddz.checkpoint/1"
DONE_FORMAT = "ddz.done/1"


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
# kept after every epoch and before the first (here: snapshots 0..50).
RECIPES: dict[str, TrainRecipe] = {
    "ptm": TrainRecipe(),
    "mtt-expert": TrainRecipe(
        name="mtt-expert", epochs=50, lr=0.01, momentum=0.0, weight_decay=0.0, milestones=(),
        snapshots=tuple(range(51)), augment="dsa",
    ),
}


def recipe_named(name: str) -> TrainRecipe:
    if name not in RECIPES:
        raise ConfigError(unknown_name("recipe", name, RECIPES))
    return RECIPES[name]


def parse_epochs(text: str, option: str) -> tuple[int, ...]:
    """`"1,4,6"` -> (1, 4, 6): sorted, without duplicates; one-line ConfigError on bad text."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts and option != "--milestones":
        raise ConfigError(f"{option} is empty; give comma-separated epochs like 1,4,6")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"bad {option} {text!r}; give comma-separated epochs like 1,4,6") from None
    lowest = 0 if option == "--snapshots" else 1  # snapshot 0: the initial weights
    if any(v < lowest for v in values):
        raise ConfigError(f"bad {option} {text!r}; epochs are counted from 1")
    return tuple(sorted(set(values)))


def snapshots_for(recipe: TrainRecipe, epochs: int, text: str | None) -> tuple[int, ...]:
    """`--snapshots`: "every" (0..epochs, 0 being the initial weights), a list of epochs, or by
    default the recipe's snapshot epochs that fit in `epochs`, plus the last epoch."""
    if text is None:
        return tuple(sorted({e for e in recipe.snapshots if e <= epochs} | {epochs}))
    if text.strip() == "every":
        return tuple(range(epochs + 1))
    return parse_epochs(text, "--snapshots")


def parse_net_options(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """`["width=16"]` -> (("width", 16),); values are JSON when they parse as JSON, else strings."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad --net-option {item!r}; use KEY=VALUE, e.g. width=16")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return tuple(sorted(options.items()))


def check_data_reachable(dataset: str, data_root: str | Path) -> None:
    """Fail early, in one line, when the data set cannot be where it is looked for."""
    check_dataset_name(dataset)
    kind, sep, rest = dataset.partition(":")
    if sep and kind in ("npz", "folder"):
        if not Path(rest).exists():
            raise DataError(f"{kind} data set {rest!r} does not exist; check the path after '{kind}:'")
    elif dataset != "digits" and not Path(data_root).is_dir():
        raise DataError(
            f"data root {str(data_root)!r} is not a folder, so {dataset} cannot be read from it; "
            "pass --data-root DIR (or set DDZ_DATA_ROOT)"
        )


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


# --- run state: done marker, checkpoint ----------------------------------------------------------


def _mismatch(job: TrainJob, what: str, old: str, new: str) -> ConfigError:
    return ConfigError(
        f"{job.run_name} in {job.store.root} was trained with a different {what} ({old[:12]} there, "
        f"{new[:12]} now); use another DDZ_HOME or delete {job.run_dir} to re-train it"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
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
        state = _read_json(job.run_dir / marker)
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
    done = _read_json(job.run_dir / "done.json")
    if done is None or done.get("recipe_hash") != job.recipe.hash():
        return None
    return RunResult.finished(job, RunProgress.from_json(done.get("progress", done)), status)


def _optimizer_split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser state dict as (tensors, JSON scalars), so that no pickle is needed."""
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], saved: dict[str, Any], device: str) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value.to(device)
    for name, value in saved["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": saved["param_groups"]}


def save_checkpoint(job: TrainJob, net: torch.nn.Module, optimizer_state: dict[str, Any],
                    order: torch.Generator, progress: RunProgress) -> None:
    """Tensors to a new file, then the sidecar that names it (atomic rename), then old files go.

    A kill at any point leaves either the previous or the new checkpoint complete."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    optim_tensors, optim_json = _optimizer_split(optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng.order"] = order.get_state()
    file_name = f"checkpoint-epoch{progress.epoch}.safetensors"
    sha = write_tensors(job.run_dir / file_name, tensors, CHECKPOINT_FORMAT, {"epoch": str(progress.epoch)})
    atomic_write_json(
        job.run_dir / "checkpoint.json",
        {
            "format": CHECKPOINT_FORMAT,
            "name": job.run_name,
            "epoch": progress.epoch,
            "tensors": file_name,
            "sha256": sha,
            "recipe_hash": job.recipe.hash(),
            "recipe": job.recipe.to_json(),
            "data_fingerprint": job.data_fingerprint,
            "optimizer": optim_json,
            "progress": progress.to_json(),
            "history": progress.history,  # read by the launchers' progress view
            "updated": utc_now(),
        },
    )
    for old in job.run_dir.glob("checkpoint-epoch*.safetensors"):
        if old.name != file_name:
            old.unlink(missing_ok=True)


def load_checkpoint(job: TrainJob, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    order: torch.Generator, device: str) -> RunProgress:
    """Restore net, optimiser and generator from the run's checkpoint, if it has one."""
    sidecar = _read_json(job.run_dir / "checkpoint.json")
    if sidecar is None:
        return RunProgress()
    if sidecar.get("format") != CHECKPOINT_FORMAT:
        raise IntegrityError(
            f"{job.run_dir / 'checkpoint.json'} has an unknown format; delete it to restart this seed"
        )
    try:
        tensors = read_tensors(job.run_dir / sidecar["tensors"], CHECKPOINT_FORMAT, sidecar["sha256"]).tensors
    except IntegrityError as error:
        raise IntegrityError(
            f"the checkpoint of {job.run_name} is damaged ({str(error).split(';')[0]}); "
            f"delete {job.run_dir / 'checkpoint.json'} to restart this seed from epoch 0"
        ) from error
    net.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True
    )
    optimizer.load_state_dict(_optimizer_join(tensors, sidecar["optimizer"], device))
    order.set_state(tensors["rng.order"])
    progress = RunProgress.from_json(sidecar.get("progress", sidecar))  # older sidecars kept it flat
    progress.resumed_from = progress.epoch
    return progress


def _clean_partial_files(run_dir: Path) -> None:
    """Temp files left by a kill during an atomic write (this run holds the run lock)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# --- training ------------------------------------------------------------------------------------


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


def stack_optimizer_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """SGD states of N copies as the state of their StackedNets (buffers concatenated)."""
    return {
        "state": {
            index: {key: torch.cat([s["state"][index][key] for s in states]) for key in entry}
            for index, entry in states[0]["state"].items()
        },
        "param_groups": states[0]["param_groups"],
    }


def unstack_optimizer_state(state: dict[str, Any], copies: int) -> list[dict[str, Any]]:
    return [
        {
            "state": {
                index: {key: value.chunk(copies)[n] for key, value in entry.items()}
                for index, entry in state["state"].items()
            },
            "param_groups": state["param_groups"],
        }
        for n in range(copies)
    ]


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
    if data is None:
        check_data_reachable(first.dataset, first.data_root)
        data = load_dataset(first.dataset, first.data_root, device, first.resolution)
    else:
        data = data.to(device)
    data = prepared(data, first.recipe)
    fingerprint = data.fingerprint()
    if first.data_fingerprint and fingerprint != first.data_fingerprint:
        raise DataError(
            f"{first.dataset} under {first.data_root} differs from the data the grid was planned with "
            f"(fingerprint {fingerprint[:12]} vs {first.data_fingerprint[:12]}); "
            "make every node see the same files"
        )
    jobs = [replace(job, data_fingerprint=fingerprint) for job in jobs]
    results: dict[str, RunResult] = {}
    with ExitStack() as locks:
        runs = []
        for job in jobs:
            locks.enter_context(_run_lock(job))
            if run_state(job) == "done":
                results[job.key] = result_from_done(job, "skipped")  # type: ignore[assignment]
                continue
            _clean_partial_files(job.run_dir)
            runs.append(_restore(job, data, device))
        resumed_at = min((run.progress.epoch for run in runs), default=0)
        if task is not None and resumed_at:
            task.advance(resumed_at, epoch=resumed_at)
        for start in sorted({run.progress.epoch for run in runs}):
            group = [run for run in runs if run.progress.epoch == start]
            for run in _train_together(group, data, device, task):
                results[run.job.key] = _finish(run, device)
    return [results[job.key] for job in jobs]


@contextmanager
def _run_lock(job: TrainJob):
    job.run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(job.run_dir / ".run.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{job.run_name} is being trained by another process right now; wait for it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _snapshot_meta(job: TrainJob, epoch: int, net: torch.nn.Module, data: ImageDataset, device: str,
                   metrics: dict[str, float]) -> SnapshotMeta:
    return SnapshotMeta(
        name=job.snapshot_name(epoch), data_source=job.dataset, net_config=dict(net.config),
        classes=tuple(data.classes), mean=tuple(data.mean), std=tuple(data.std), metrics=metrics,
        recipe=job.recipe.to_json(), recipe_hash=job.recipe.hash(), data_fingerprint=data.fingerprint(),
        ddz_version=__version__, created=utc_now(), train_device=device,
        torch_threads=torch.get_num_threads(),
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


def prepared(data: ImageDataset, recipe: TrainRecipe) -> ImageDataset:
    """The data the recipe trains on: ZCA-whitened by a fit on its training split when asked."""
    return whitened(data)[0] if recipe.zca else data


def _train_together(group: list[_Run], data: ImageDataset, device: str, task: Task | None) -> list[_Run]:
    """The epoch loop of one net, or of N nets stacked: train, snapshot, checkpoint each seed."""
    first = group[0].job
    recipe = first.recipe
    if len(group) == 1:
        model, optimizer, order = group[0].net, group[0].optimizer, group[0].order
    else:
        model = StackedNets([run.net for run in group])
        optimizer = _sgd(model.parameters(), recipe)
        optimizer.load_state_dict(stack_optimizer_states([run.optimizer.state_dict() for run in group]))
        order = [run.order for run in group]
    cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    if group[0].progress.epoch == 0 and 0 in recipe.snapshots:  # the initial weights
        nets = model.nets() if isinstance(model, StackedNets) else [model]
        for run, net in zip(group, nets, strict=True):
            metrics = {"test_acc": accuracy(net, data.test_images, data.test_labels)}
            meta = _snapshot_meta(run.job, 0, net, data, device, metrics)
            run.progress.snapshots[0] = run.job.store.save(meta, net.state_dict()).sha256
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
        nets = model.nets() if isinstance(model, StackedNets) else [model]
        optimizer_states = (
            unstack_optimizer_state(optimizer.state_dict(), len(group))
            if len(group) > 1 else [optimizer.state_dict()]
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
        if task is not None:
            task.advance(1, epoch=epoch, loss=round(float(losses.mean()), 4))
    if isinstance(model, StackedNets):
        for run, net in zip(group, model.nets(), strict=True):
            run.net = net
    return group


def _finish(run: _Run, device: str) -> RunResult:
    """Write the done marker and drop the checkpoint of a finished run."""
    job = run.job
    atomic_write_json(
        job.run_dir / "done.json",
        {
            "format": DONE_FORMAT,
            "name": job.run_name,
            "recipe_hash": job.recipe.hash(),
            "recipe": job.recipe.to_json(),
            "data_fingerprint": job.data_fingerprint,
            "progress": run.progress.to_json(),
            "device": device,
            "finished": utc_now(),
        },
    )
    (job.run_dir / "checkpoint.json").unlink(missing_ok=True)
    for old in job.run_dir.glob("checkpoint-epoch*.safetensors"):
        old.unlink(missing_ok=True)
    return RunResult.finished(job, run.progress, "trained")


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
    fingerprint = prepared(data, recipe).fingerprint()
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
