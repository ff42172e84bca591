"""Synthetic sets and distillation checkpoints on disk: safetensors with JSON metadata.

synset.safetensors      images (N, C, H, W) float32, normalised as the data set; labels (N,)
                        int64; metadata: method, config, dataset, ipc, seed, PTMs (sha256),
                        iterations done, seconds, classes, mean/std
checkpoint.safetensors  images + the SGD momentum buffer; metadata: iteration, seconds and the
                        run's identity (what must match to resume). The random state is the
                        iteration counter: every stream is derived from (seed, purpose, iteration).

Both are ddz.io tensor files: the sha256 of their tensors is in the header and checked on every
load; writes are atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddz.errors import DataError, IntegrityError
from ddz.io import read_tensors, write_tensors
from ddz.zoo.records import first_key

SYNSET_FORMAT = "ddz.synset/1"
CHECKPOINT_FORMAT = "ddz.distill-checkpoint/1"
METADATA_KEY = "ddz.metadata"  # the record as one JSON text
SYNSET_FILE = "synset.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
GRID_FILE = "synset.png"


@dataclass
class SynSet:
    images: torch.Tensor
    labels: torch.Tensor
    dataset: str  # as given to load_dataset
    method: str
    ipc: int
    seed: int
    config: dict[str, Any]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ptm_query: list[str] = field(default_factory=list)
    ptms: list[dict[str, str]] = field(default_factory=list)
    guidance: str | None = None
    alpha: float | dict[str, float] = 0.0  # one number, or {arch: alpha} for a mixed pool
    alpha_source: str | None = None
    iterations: int = 0
    seconds_distill: float = 0.0
    lr: float | None = None  # MTT's learned step size: evaluation trains with it
    zca: bool = False  # the images live in the ZCA-whitened space of the data set's training split
    experts: list[dict[str, str]] = field(default_factory=list)  # MTT: the expert snapshots used
    teacher: list[dict[str, str]] = field(default_factory=list)  # RDED, SRe2L: the teacher's PTMs

    def metadata(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "method": self.method, "ipc": self.ipc, "seed": self.seed,
            "config": self.config, "classes": list(self.classes),
            "mean": list(self.mean), "std": list(self.std),
            "ptm_query": list(self.ptm_query), "ptms": list(self.ptms),
            "guidance": self.guidance, "alpha": self.alpha, "alpha_source": self.alpha_source,
            "iterations": self.iterations, "seconds_distill": self.seconds_distill,
            "lr": self.lr, "experts": list(self.experts), "zca": self.zca, "teacher": list(self.teacher),
        }


@dataclass
class Checkpoint:
    images: torch.Tensor
    momentum: torch.Tensor | None
    iteration: int
    seconds: float
    run: dict[str, Any]  # the identity of the run; a resume must match it
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # a method's own state (MTT: syn_lr)


def _write(path: Path, tensors: dict[str, torch.Tensor], fmt: str, metadata: dict[str, Any]) -> Path:
    write_tensors(path, tensors, fmt, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return path


def _read(path: Path, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    read = read_tensors(path, fmt, remedy="delete it")
    try:
        meta = json.loads(read.metadata[METADATA_KEY])
    except (KeyError, ValueError, RecursionError) as error:
        raise _malformed(path, error) from None
    if not isinstance(meta, dict):
        raise _malformed(path, ValueError(f"{METADATA_KEY} is not a JSON object"))
    return read.tensors, meta


def _malformed(path: Path, error: BaseException) -> IntegrityError:
    return IntegrityError(f"{path} lacks valid ddz metadata ({first_key(error)}); delete it")


def save_synset(path: str | Path, synset: SynSet) -> Path:
    return _write(
        Path(path), {"images": synset.images, "labels": synset.labels}, SYNSET_FORMAT, synset.metadata()
    )


def load_synset(path: str | Path) -> SynSet:
    """A synthetic set from its .safetensors file or the run folder holding it (sha256 verified)."""
    path = Path(path)
    if path.is_dir():
        path = path / SYNSET_FILE
    if not path.is_file():
        raise DataError(
            f"no synthetic set at {path}; give the {SYNSET_FILE} written by `ddz distill` or its run folder"
        )
    tensors, meta = _read(path, SYNSET_FORMAT)
    try:
        return _synset(tensors, meta)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise _malformed(path, error) from None


def _synset(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> SynSet:
    return SynSet(
        images=tensors["images"], labels=tensors["labels"],
        dataset=meta["dataset"], method=meta["method"], ipc=int(meta["ipc"]), seed=int(meta["seed"]),
        config=meta["config"], classes=list(meta["classes"]),
        mean=tuple(meta["mean"]), std=tuple(meta["std"]),
        ptm_query=list(meta["ptm_query"]), ptms=list(meta["ptms"]),
        guidance=meta["guidance"], alpha=_alpha(meta["alpha"]), alpha_source=meta.get("alpha_source"),
        iterations=int(meta["iterations"]), seconds_distill=float(meta["seconds_distill"]),
        lr=meta.get("lr"), experts=list(meta.get("experts", [])), zca=bool(meta.get("zca", False)),
        teacher=list(meta.get("teacher", [])),
    )


def _alpha(value: Any) -> float | dict[str, float]:
    return {k: float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    tensors = {"images": checkpoint.images}
    if checkpoint.momentum is not None:
        tensors["momentum"] = checkpoint.momentum
    tensors.update({f"extra.{name}": value for name, value in checkpoint.extra.items()})
    meta = {
        "iteration": checkpoint.iteration, "seconds": checkpoint.seconds, "run": checkpoint.run,
        "rng": "every stream derived from (seed, purpose, iteration); the iteration is the state",
    }
    return _write(Path(path), tensors, CHECKPOINT_FORMAT, meta)


def load_checkpoint(path: str | Path) -> Checkpoint:
    tensors, meta = _read(Path(path), CHECKPOINT_FORMAT)
    try:
        return Checkpoint(
            images=tensors["images"], momentum=tensors.get("momentum"),
            iteration=int(meta["iteration"]), seconds=float(meta["seconds"]), run=meta["run"],
            extra={name[len("extra."):]: value for name, value in tensors.items()
                   if name.startswith("extra.")},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise _malformed(Path(path), error) from None
