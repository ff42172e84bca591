"""The local zoo: epoch snapshots as safetensors files with lineage metadata, and a manifest per
(dataset, arch) folder.

Layout under the root (DDZ_HOME/zoo by default):

    <dataset>/<arch>/manifest.json
    <dataset>/<arch>/seed<n>/epoch<e>.safetensors

Every load checks the file's sha256 before a single weight is read; nothing is ever pickled.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from ddz.errors import IntegrityError, QueryError
from ddz.io import atomic_write, atomic_write_json, ddz_home, sha256_bytes

if TYPE_CHECKING:  # listing and querying the zoo import no torch; loading and saving do
    import torch
    from torch import nn

SNAPSHOT_FORMAT = "ddz.snapshot/1"
MANIFEST_FORMAT = "ddz.manifest/1"

# Metadata values that are always strings; every other value is stored as JSON text.
STRING_KEYS = frozenset(
    {
        "ddz.format",
        "name",
        "dataset",
        "data_source",
        "arch",
        "recipe_hash",
        "data_fingerprint",
        "ddz_version",
        "created",
        "weights_sha256",
    }
)

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
_NAME_RE = re.compile(
    rf"^(?P<dataset>{_SEGMENT})/(?P<arch>{_SEGMENT})/seed(?P<seed>\d+)@epoch(?P<epoch>\d+)$"
)
_SEGMENT_RE = re.compile(rf"^{_SEGMENT}$")


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
    def relpath(self) -> Path:
        """Path of the snapshot file under a zoo root: dataset/arch/seedN/epochE.safetensors."""
        return Path(self.dataset, self.arch, f"seed{self.seed}", f"epoch{self.epoch}.safetensors")

    @property
    def run(self) -> str:
        """The seed this snapshot belongs to: dataset/arch/seedN."""
        return f"{self.dataset}/{self.arch}/seed{self.seed}"

    def sort_key(self) -> tuple[str, str, int, int]:
        return (self.dataset, self.arch, self.seed, self.epoch)


@dataclass
class SnapshotRecord:
    name: SnapshotName
    path: Path
    sha256: str
    size: int
    metrics: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": str(self.name),
            "dataset": self.name.dataset,
            "arch": self.name.arch,
            "seed": self.name.seed,
            "epoch": self.name.epoch,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "metrics": self.metrics,
        }


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


def utc_now() -> str:
    """UTC ISO time; SOURCE_DATE_EPOCH (the reproducible-builds convention) pins it."""
    pinned = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = int(pinned) if pinned and pinned.isdigit() else time.time()
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- safetensors files ---------------------------------------------------------------------------


def encode_metadata(metadata: dict[str, object]) -> dict[str, str]:
    """safetensors metadata is str -> str: strings stay as they are, anything else becomes JSON."""
    encoded = {}
    for key, value in metadata.items():
        if isinstance(value, str):
            encoded[key] = value
        else:
            encoded[key] = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return encoded


def decode_metadata(raw: dict[str, str]) -> dict[str, object]:
    decoded: dict[str, object] = {}
    for key, value in raw.items():
        if key in STRING_KEYS:
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors that own their memory (safetensors refuses views)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) in name order: identifies the weights alone, so two
    runs can be compared whatever their metadata (e.g. creation time)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _header(data: bytes | None, path: Path) -> tuple[dict, int]:
    """The parsed JSON header of a safetensors file and its byte length (8-byte prefix excluded)."""
    try:
        if data is None:
            with open(path, "rb") as handle:
                prefix = handle.read(8)
                (length,) = struct.unpack("<Q", prefix)
                if length > 100_000_000:
                    raise ValueError("header too large")
                text = handle.read(length)
        else:
            (length,) = struct.unpack("<Q", data[:8])
            text = data[8 : 8 + length]
        if len(text) != length:
            raise ValueError("truncated header")
        return json.loads(text), length
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing; re-train or re-pull it") from None
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        raise IntegrityError(
            f"{path} is not a readable safetensors file ({error}); delete it and re-train or re-pull it"
        ) from None


def _canonical_header(path: Path) -> None:
    """Rewrite the header with metadata keys in sorted order, padded to the same length.

    safetensors writes metadata in hash-map order, which differs between processes; sorting it
    makes the same weights and metadata give the same file bytes (and sha256) on every run."""
    header, length = _header(None, path)
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:
        return  # cannot happen for serde_json output; leave the file as written
    with open(path, "r+b") as handle:
        handle.seek(8)
        handle.write(text + b" " * (length - len(text)))


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> str:
    """Atomically write `tensors` with `metadata` to a safetensors file; return its sha256."""
    from safetensors.torch import save_file

    from ddz.io import sha256_file

    digest: list[str] = []

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=encode_metadata(metadata))
        _canonical_header(tmp)
        digest.append(sha256_file(tmp))

    atomic_write(path, write)
    return digest[0]


def write_snapshot(path: str | Path, net: nn.Module, metadata: dict[str, object]) -> str:
    """Atomically write `net`'s weights and `metadata` (temp file, fsync, rename); return sha256."""
    tensors = state_tensors(net)
    metadata = {"ddz.format": SNAPSHOT_FORMAT, **metadata, "weights_sha256": weights_sha256(tensors)}
    return write_tensors(path, tensors, metadata)


def read_metadata(path: str | Path) -> dict[str, object]:
    """The decoded metadata of a safetensors file, from its header alone (no weights are read)."""
    header, _ = _header(None, Path(path))
    return decode_metadata(header.get("__metadata__") or {})


def read_verified(path: str | Path, expected_sha256: str | None) -> tuple[bytes, str]:
    """The file's bytes and sha256, after checking it against `expected_sha256` (when given)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing; re-train or re-pull it") from None
    actual = sha256_bytes(data)
    if expected_sha256 is not None and actual != expected_sha256:
        raise IntegrityError(
            f"{path} fails its integrity check: sha256 {actual} but the record says {expected_sha256}; "
            "the file was changed or corrupted, delete it and re-train or re-pull it",
            expected=expected_sha256, actual=actual,
        )
    return data, actual


def load_tensors(
    path: str | Path, expected_sha256: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, object], str]:
    """Verify, then load (tensors, decoded metadata, sha256) from the same bytes that were hashed."""
    from safetensors.torch import load

    data, actual = read_verified(path, expected_sha256)
    header, _ = _header(data, Path(path))
    try:
        tensors = load(data)
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise IntegrityError(
            f"{path} is not a readable safetensors file ({error}); delete it and re-train or re-pull it"
        ) from None
    return tensors, decode_metadata(header.get("__metadata__") or {}), actual


def load_snapshot_file(path: str | Path, expected_sha256: str | None, device: str | torch.device = "cpu"):
    """Verify the file's sha256, rebuild its net from the recorded config and return a PTM."""
    from ddz.nets import build_from_config
    from ddz.zoo.ptm import PTM

    path = Path(path)
    tensors, metadata, actual = load_tensors(path, expected_sha256)
    if metadata.get("ddz.format") != SNAPSHOT_FORMAT:
        raise IntegrityError(
            f"{path} is not a ddz snapshot (format {metadata.get('ddz.format')!r}, "
            f"expected {SNAPSHOT_FORMAT!r})"
        )
    net = build_from_config(dict(metadata["net_config"]))
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise IntegrityError(f"{path}: weights do not fit the recorded net_config ({first})") from None
    net.to(device).eval()
    return PTM(
        name=str(metadata.get("name", path.stem)),
        sha256=actual,
        net=net,
        classes=[str(c) for c in metadata["classes"]],
        mean=tuple(float(m) for m in metadata["mean"]),
        std=tuple(float(s) for s in metadata["std"]),
        image_size=int(metadata["image_size"]),
        in_channels=int(metadata["in_channels"]),
        metadata=metadata,
    )


# --- the store -----------------------------------------------------------------------------------


class ZooStore:
    """Snapshots under `root` (DDZ_HOME/zoo), with one manifest per (dataset, arch) folder."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else ddz_home() / "zoo"

    def path_for(self, name: SnapshotName) -> Path:
        return self.root / name.relpath

    def manifest_path(self, dataset: str, arch: str) -> Path:
        return self.root / dataset / arch / "manifest.json"

    def lock(self, dataset: str, arch: str) -> FileLock:
        folder = self.root / dataset / arch
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / ".manifest.lock"))

    def read_manifest(self, dataset: str, arch: str) -> dict[str, Any]:
        path = self.manifest_path(dataset, arch)
        if not path.exists():
            return {"format": MANIFEST_FORMAT, "dataset": dataset, "arch": arch, "snapshots": {}}
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise IntegrityError(
                f"{path} is not valid JSON ({error}); delete it and re-train the runs under it"
            ) from None
        if manifest.get("format") != MANIFEST_FORMAT:
            raise IntegrityError(
                f"{path} has format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}"
            )
        return manifest

    def save(self, name: SnapshotName, net: nn.Module, metadata: dict[str, object]) -> SnapshotRecord:
        """Write the snapshot file and record it in the manifest, both atomically, under a lock."""
        config = dict(getattr(net, "config", {}))
        full: dict[str, object] = {
            "name": str(name),
            "dataset": name.dataset,
            "arch": name.arch,
            "seed": name.seed,
            "epoch": name.epoch,
            "net_config": config,
        }
        for key in ("in_channels", "num_classes", "image_size"):
            if key in config:
                full[key] = config[key]
        from ddz import __version__

        full.update({"ddz_version": __version__, "created": utc_now()})
        full.update(metadata)
        full.update(
            {
                "name": str(name),
                "dataset": name.dataset,
                "arch": name.arch,
                "seed": name.seed,
                "epoch": name.epoch,
            }
        )
        metrics = dict(full.get("metrics") or {})  # type: ignore[arg-type]
        path = self.path_for(name)
        with self.lock(name.dataset, name.arch):
            sha = write_snapshot(path, net, full)
            size = path.stat().st_size
            manifest = self.read_manifest(name.dataset, name.arch)
            key = name.relpath.relative_to(Path(name.dataset, name.arch)).as_posix()
            manifest["snapshots"][key] = {
                "name": str(name),
                "sha256": sha,
                "size": size,
                "seed": name.seed,
                "epoch": name.epoch,
                "metrics": metrics,
                "recipe_hash": full.get("recipe_hash"),
            }
            manifest["snapshots"] = dict(
                sorted(manifest["snapshots"].items(), key=lambda kv: (kv[1]["seed"], kv[1]["epoch"]))
            )
            atomic_write_json(self.manifest_path(name.dataset, name.arch), manifest)
        return SnapshotRecord(name, path, sha, size, metrics, read_metadata(path))

    def manifests(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("*/*/manifest.json"))

    def records(self, pattern: str = "*", with_metadata: bool = True) -> list[SnapshotRecord]:
        """Snapshots whose name matches the fnmatch `pattern`, sorted by dataset, arch, seed, epoch.

        A pattern without '@' also matches everything below it (`digits/convnet3` = all its seeds)."""
        patterns = [pattern] if "@" in pattern else [pattern, pattern.rstrip("/") + "/*", pattern + "@*"]
        found = []
        for manifest_path in self.manifests():
            dataset, arch = manifest_path.parent.parent.name, manifest_path.parent.name
            manifest = self.read_manifest(dataset, arch)
            for key, entry in manifest["snapshots"].items():
                name = SnapshotName(dataset, arch, int(entry["seed"]), int(entry["epoch"]))
                if not any(fnmatch.fnmatchcase(str(name), p) for p in patterns):
                    continue
                path = self.root / dataset / arch / key
                metadata = read_metadata(path) if with_metadata and path.exists() else {}
                found.append(
                    SnapshotRecord(
                        name,
                        path,
                        entry["sha256"],
                        int(entry["size"]),
                        dict(entry.get("metrics") or {}),
                        metadata,
                    )
                )
        return sorted(found, key=lambda r: r.name.sort_key())

    def record(self, name: SnapshotName | str) -> SnapshotRecord:
        """The record of one snapshot, or a QueryError naming what is there instead."""
        name = SnapshotName.parse(name) if isinstance(name, str) else name
        manifest = self.read_manifest(name.dataset, name.arch)
        key = name.relpath.relative_to(Path(name.dataset, name.arch)).as_posix()
        entry = manifest["snapshots"].get(key)
        if entry is None:
            have = [
                str(r.name)
                for r in self.records(f"{name.dataset}/{name.arch}/seed{name.seed}@*", with_metadata=False)
            ]
            hint = (
                f"snapshots of {name.run}: {', '.join(have)}"
                if have
                else "run `ddz zoo list` to see what is there"
            )
            raise QueryError(f"no snapshot {name} in the zoo at {self.root}; {hint}")
        path = self.path_for(name)
        return SnapshotRecord(
            name, path, entry["sha256"], int(entry["size"]), dict(entry.get("metrics") or {}), {}
        )

    def load(self, name: SnapshotName | str, device: str | torch.device = "cpu"):
        """Load a snapshot as a PTM, its sha256 checked against the manifest first."""
        record = self.record(name)
        return load_snapshot_file(record.path, record.sha256, device)
