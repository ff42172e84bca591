"""The zoo's records, typed: snapshot names, the metadata a snapshot file carries, manifest rows,
and the resolved rows that queries, lockfiles and loading pass around.

Each record owns its encoding (safetensors header strings, manifest JSON, lockfile JSON), so no
other module reads them by string key.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ddz.errors import IntegrityError, QueryError
from ddz.zoo.external_spec import ExternalSpec

SourceKind = Literal["local", "hub", "external"]
SOURCES: tuple[SourceKind, ...] = ("local", "hub", "external")
HubKind = Literal["git", "http", "hf"]
RunState = Literal["new", "partial", "done"]

SNAPSHOT_FORMAT = "ddz.snapshot/1"
MANIFEST_FORMAT = "ddz.manifest/1"
HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
_NAME_RE = re.compile(
    rf"^(?P<dataset>{_SEGMENT})/(?P<arch>{_SEGMENT})/seed(?P<seed>\d+)@epoch(?P<epoch>\d+)$"
)
_SEGMENT_RE = re.compile(rf"^{_SEGMENT}$")


def utc_now() -> str:
    """UTC ISO time; SOURCE_DATE_EPOCH (the reproducible-builds convention) pins it."""
    pinned = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = int(pinned) if pinned and pinned.isdigit() else time.time()
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def dataset_slug(dataset: str) -> str:
    """The zoo name of a data set: the name itself, or a safe slug of a path form's file stem
    (`npz:/data/pathmnist.npz` -> `pathmnist`, `folder:/data/imagenette2/` -> `imagenette2`)."""
    kind, sep, rest = dataset.partition(":")
    if sep and kind in ("npz", "folder"):
        path = Path(rest.rstrip("/"))
        base = path.stem if kind == "npz" else path.name
    else:
        base = dataset
    slug = re.sub(r"[^a-z0-9_.+-]+", "-", base.lower()).strip("-.")
    return slug or "dataset"


@dataclass(frozen=True)
class SnapshotName:
    """`dataset/arch/seedN@epochE`: one epoch snapshot of one seed of one arch."""

    dataset: str
    arch: str
    seed: int
    epoch: int

    def __post_init__(self) -> None:
        for axis in ("dataset", "arch"):
            if not _SEGMENT_RE.match(getattr(self, axis)):
                raise QueryError(
                    f"bad {axis} {getattr(self, axis)!r} in a zoo name; use letters, digits, '_', '.', "
                    "'+', '-' (starting with a letter or digit)"
                )
        if self.seed < 0 or self.epoch < 0:
            raise QueryError(
                f"seed and epoch must be >= 0 in a zoo name, got seed {self.seed}, epoch {self.epoch}"
            )

    def __str__(self) -> str:
        return f"{self.dataset}/{self.arch}/seed{self.seed}@epoch{self.epoch}"

    @classmethod
    def parse(cls, text: str) -> SnapshotName:
        match = _NAME_RE.match(text.strip())
        if match is None:
            raise QueryError(
                f"bad snapshot name {text!r}; expected DATASET/ARCH/seedN@epochE, "
                "e.g. digits/convnet3/seed0@epoch4"
            )
        return cls(match["dataset"], match["arch"], int(match["seed"]), int(match["epoch"]))

    @property
    def key(self) -> str:
        """The file inside its (dataset, arch) folder or hub repo: seedN/epochE.safetensors."""
        return f"seed{self.seed}/epoch{self.epoch}.safetensors"

    @property
    def relpath(self) -> Path:
        """Path of the snapshot file under a zoo root: dataset/arch/seedN/epochE.safetensors."""
        return Path(self.dataset, self.arch, self.key)

    @property
    def run(self) -> str:
        """The seed this snapshot belongs to: dataset/arch/seedN."""
        return f"{self.dataset}/{self.arch}/seed{self.seed}"

    def sort_key(self) -> tuple[str, str, int, int]:
        return (self.dataset, self.arch, self.seed, self.epoch)


# --- what a snapshot file carries ----------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotMeta:
    """The lineage in a snapshot's safetensors header: enough to rebuild the net, normalise its
    input, name its classes and say how it was trained. Strings are stored as they are; every
    other field as JSON text."""

    name: SnapshotName
    data_source: str  # the data set as given: cifar10, npz:/abs/file.npz, ...
    net_config: dict[str, Any]  # ddz.nets.build_from_config rebuilds the net from it
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    metrics: dict[str, float]
    recipe: dict[str, Any]
    recipe_hash: str
    data_fingerprint: str
    ddz_version: str
    created: str
    # Lineage, not recipe: CPU reductions split work by thread, so bit-identical re-runs need
    # the same device and thread count.
    train_device: str = "cpu"
    torch_threads: int = 0
    extra: dict[str, str] = field(default_factory=dict)  # keys this version does not know, as stored

    @property
    def image_size(self) -> int:
        return int(self.net_config["image_size"])

    @property
    def in_channels(self) -> int:
        return int(self.net_config["in_channels"])

    def encode(self) -> dict[str, str]:
        """The header strings (ddz.io adds ddz.format and the content sha256)."""
        values: dict[str, Any] = {
            "name": str(self.name), "dataset": self.name.dataset, "arch": self.name.arch,
            "seed": self.name.seed, "epoch": self.name.epoch,
            "in_channels": self.in_channels, "num_classes": len(self.classes), "image_size": self.image_size,
            "classes": list(self.classes), "mean": list(self.mean), "std": list(self.std),
        }
        for f in fields(self):
            if f.name not in ("name", "extra", "classes", "mean", "std"):
                values[f.name] = getattr(self, f.name)
        encoded = dict(self.extra)
        for key, value in values.items():
            encoded[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                           separators=(",", ":"))
        return encoded

    @classmethod
    def decode(cls, header: Mapping[str, str], path: str | Path = "snapshot") -> SnapshotMeta:
        """The record from header strings; IntegrityError naming the key that is missing or bad."""
        raw = dict(header)
        derived = ("name", "dataset", "arch", "seed", "epoch", "in_channels", "num_classes", "image_size")
        try:
            name = SnapshotName(raw["dataset"], raw["arch"], int(raw["seed"]), int(raw["epoch"]))
            values: dict[str, Any] = {}
            for f in fields(cls):
                if f.name in ("name", "extra") or (f.name not in raw and f.default is not MISSING):
                    continue
                text = raw[f.name]
                values[f.name] = text if f.type == "str" else json.loads(text)
            values["classes"] = tuple(str(c) for c in values["classes"])
            values["mean"] = tuple(float(m) for m in values["mean"])
            values["std"] = tuple(float(s) for s in values["std"])
            for key, kind in (("net_config", dict), ("metrics", dict), ("recipe", dict)):
                if not isinstance(values[key], kind):
                    raise ValueError(f"{key} is not a JSON object")
            int(values["net_config"]["image_size"]), int(values["net_config"]["in_channels"])
        except (KeyError, ValueError, TypeError, RecursionError, QueryError) as error:
            raise IntegrityError(f"{path} lacks valid ddz snapshot metadata ({first_key(error)})") from None
        known = {f.name for f in fields(cls)} | set(derived)
        return cls(name=name, **values, extra={k: v for k, v in raw.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """Decoded values by key (what `ddz zoo show` prints)."""
        return {k: (v if k in _STRING_FIELDS or k in self.extra else json.loads(v))
                for k, v in sorted(self.encode().items())}


_STRING_FIELDS = {f.name for f in fields(SnapshotMeta) if f.type == "str"} | {"name", "dataset", "arch"}


def first_key(error: BaseException) -> str:
    return f"key {error.args[0]!r}" if isinstance(error, KeyError) else str(error).splitlines()[0]


# --- manifests: what a (dataset, arch) folder or hub repo holds -----------------------------------


@dataclass(frozen=True)
class SnapshotSummary:
    """What manifests, registry entries and lockfile rows record of a snapshot."""

    seed: int
    epoch: int
    size: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    recipe: str | None = None  # the recipe's name (--where recipe=mtt-expert)

    def to_json(self) -> dict[str, Any]:
        data = {"seed": self.seed, "epoch": self.epoch, "size": self.size, "metrics": dict(self.metrics)}
        return data | ({"recipe": self.recipe} if self.recipe else {})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotSummary:
        size, recipe = data.get("size"), data.get("recipe")
        return cls(int(data["seed"]), int(data["epoch"]), None if size is None else int(size),
                   {k: float(v) for k, v in (data.get("metrics") or {}).items()},
                   None if recipe is None else str(recipe))

    @property
    def tags(self) -> dict[str, str]:
        return {"recipe": self.recipe} if self.recipe else {}


@dataclass(frozen=True)
class ManifestRow:
    name: str
    sha256: str
    size: int
    seed: int
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    recipe_hash: str | None = None
    recipe: str | None = None  # the recipe's name

    @property
    def summary(self) -> SnapshotSummary:
        return SnapshotSummary(self.seed, self.epoch, self.size, dict(self.metrics), self.recipe)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["recipe"] is None:  # manifests written before recipes had names stay byte-identical
            del data["recipe"]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ManifestRow:
        return cls(str(data["name"]), str(data["sha256"]), int(data["size"]), int(data["seed"]),
                   int(data["epoch"]), dict(data.get("metrics") or {}), data.get("recipe_hash"),
                   data.get("recipe"))


@dataclass
class Manifest:
    """manifest.json of a (dataset, arch): its snapshots by file key (seedN/epochE.safetensors)."""

    dataset: str
    arch: str
    snapshots: dict[str, ManifestRow] = field(default_factory=dict)

    def add(self, key: str, row: ManifestRow) -> None:
        self.snapshots[key] = row
        self.snapshots = dict(sorted(self.snapshots.items(), key=lambda kv: (kv[1].seed, kv[1].epoch)))

    def to_json(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "dataset": self.dataset, "arch": self.arch,
                "snapshots": {key: row.to_json() for key, row in self.snapshots.items()}}

    @classmethod
    def from_json(cls, data: Any, source: str | Path) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise IntegrityError(f"{source} has format {found!r}, expected {MANIFEST_FORMAT!r}")
        try:
            rows = {key: ManifestRow.from_json(row) for key, row in (data.get("snapshots") or {}).items()}
            return cls(str(data["dataset"]), str(data["arch"]), rows)
        except (KeyError, TypeError, ValueError) as error:
            raise IntegrityError(f"{source} has a malformed snapshot row ({first_key(error)})") from None


# --- resolved rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """One PTM a query selected, and where its bytes are.

    source "local": a snapshot in the local zoo (`local_path`); when the same bytes are published
    too, hub/repo/revision/path say where, so that a lockfile of it works on other machines.
    source "hub": only on a hub (`path` inside `repo` at commit `revision`).
    source "external": built by torchvision / open_clip from `spec`.
    """

    name: str
    source: SourceKind
    hub: str | None = None
    repo: str | None = None
    revision: str | None = None
    path: str | None = None
    sha256: str | None = None
    summary: SnapshotSummary | None = field(default=None, compare=False, hash=False)
    spec: ExternalSpec | None = field(default=None, compare=False, hash=False)
    local_path: str | None = None

    @property
    def on_hub(self) -> bool:
        return self.hub is not None and self.repo is not None

    def to_json(self) -> dict[str, Any]:
        """The lockfile row (`metadata`: the snapshot summary, or an external row's spec)."""
        metadata = (self.summary.to_json() if self.summary else self.spec.to_json() if self.spec else {})
        return {"name": self.name, "source": self.source, "hub": self.hub, "repo": self.repo,
                "revision": self.revision, "path": self.path, "sha256": self.sha256,
                "metadata": metadata, "local_path": self.local_path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resolved:
        metadata = data.get("metadata") or {}
        summary = spec = None
        if data.get("source") == "external":
            spec = ExternalSpec.from_json(metadata)
        elif "seed" in metadata and "epoch" in metadata:
            summary = SnapshotSummary.from_json(metadata)
        keys = ("hub", "repo", "revision", "path", "sha256", "local_path")
        return cls(str(data["name"]), data.get("source"), **{k: data.get(k) for k in keys},  # type: ignore[arg-type]
                   summary=summary, spec=spec)
