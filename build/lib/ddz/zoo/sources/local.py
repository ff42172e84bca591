"""The local zoo: epoch snapshots as tensor files with their lineage (SnapshotMeta), and a
manifest per (dataset, arch) folder.

Layout under the root (ZooPaths.zoo, i.e. DDZ_HOME/zoo):

    <dataset>/<arch>/manifest.json
    <dataset>/<arch>/seed<n>/epoch<e>.safetensors

Every load checks the file's sha256 against the manifest before a single weight is read.
Listing imports no torch.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from ddz.errors import IntegrityError, NotFoundError
from ddz.io import (
    CONTENT_KEY,
    FORMAT_KEY,
    atomic_write_json,
    read_header,
    read_tensors,
    sha256_file,
    write_tensors,
)
from ddz.progress import Progress
from ddz.zoo.query import Candidate
from ddz.zoo.records import (
    SNAPSHOT_FORMAT,
    Manifest,
    ManifestRow,
    Resolved,
    SnapshotMeta,
    SnapshotName,
    SnapshotSummary,
    SourceKind,
)

if TYPE_CHECKING:
    import torch


@dataclass
class SnapshotRecord:
    """A snapshot as the manifest lists it."""

    name: SnapshotName
    path: Path
    sha256: str
    size: int
    metrics: dict[str, float]
    recipe: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": str(self.name), "dataset": self.name.dataset, "arch": self.name.arch,
            "seed": self.name.seed, "epoch": self.name.epoch, "path": str(self.path),
            "sha256": self.sha256, "size": self.size, "metrics": self.metrics,
        }


def read_snapshot_meta(path: str | Path) -> SnapshotMeta:
    """A snapshot's lineage from its header alone (no weights are read, nothing is verified)."""
    header = read_header(path)
    if header.pop(FORMAT_KEY, None) != SNAPSHOT_FORMAT:
        raise IntegrityError(f"{path} is not a ddz snapshot (expected format {SNAPSHOT_FORMAT!r})")
    header.pop(CONTENT_KEY, None)
    return SnapshotMeta.decode(header, path)


def read_snapshot(path: str | Path, expected_sha256: str | None
                  ) -> tuple[dict[str, torch.Tensor], SnapshotMeta, str]:
    """(tensors, metadata, sha256) of a snapshot file, its bytes verified first."""
    read = read_tensors(path, SNAPSHOT_FORMAT, expected_sha256)
    return read.tensors, SnapshotMeta.decode(read.metadata, path), read.sha256


class LocalZoo:
    """Snapshots under `root`, with one manifest per (dataset, arch) folder."""

    kind: SourceKind = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, name: SnapshotName) -> Path:
        return self.root / name.relpath

    def manifest_path(self, dataset: str, arch: str) -> Path:
        return self.root / dataset / arch / "manifest.json"

    def lock(self, dataset: str, arch: str) -> FileLock:
        folder = self.root / dataset / arch
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / ".manifest.lock"))

    def read_manifest(self, dataset: str, arch: str) -> Manifest:
        path = self.manifest_path(dataset, arch)
        if not path.exists():
            return Manifest(dataset, arch)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise IntegrityError(
                f"{path} is not valid JSON ({error}); delete it and re-train the runs under it"
            ) from None
        return Manifest.from_json(data, path)

    def save(self, meta: SnapshotMeta, tensors: Mapping[str, torch.Tensor]) -> SnapshotRecord:
        """Write the snapshot file and record it in the manifest, both atomically, under a lock."""
        name = meta.name
        path = self.path_for(name)
        with self.lock(name.dataset, name.arch):
            sha = write_tensors(path, tensors, SNAPSHOT_FORMAT, meta.encode())
            size = path.stat().st_size
            manifest = self.read_manifest(name.dataset, name.arch)
            manifest.add(name.key, ManifestRow(str(name), sha, size, name.seed, name.epoch,
                                               dict(meta.metrics), meta.recipe_hash, meta.recipe.get("name")))
            atomic_write_json(self.manifest_path(name.dataset, name.arch), manifest.to_json())
        return SnapshotRecord(name, path, sha, size, dict(meta.metrics))

    def manifests(self) -> list[Manifest]:
        if not self.root.is_dir():
            return []
        found = sorted(self.root.glob("*/*/manifest.json"))
        return [self.read_manifest(path.parent.parent.name, path.parent.name) for path in found]

    def records(self, pattern: str = "*") -> list[SnapshotRecord]:
        """Snapshots whose name matches the fnmatch `pattern`, sorted by dataset, arch, seed, epoch.

        A pattern without '@' also matches everything below it (`digits/convnet3` = all its seeds)."""
        patterns = [pattern] if "@" in pattern else [pattern, pattern.rstrip("/") + "/*", pattern + "@*"]
        found = []
        for manifest in self.manifests():
            for key, row in manifest.snapshots.items():
                name = SnapshotName(manifest.dataset, manifest.arch, row.seed, row.epoch)
                if any(fnmatch.fnmatchcase(str(name), p) for p in patterns):
                    path = self.root / manifest.dataset / manifest.arch / key
                    found.append(SnapshotRecord(name, path, row.sha256, row.size, dict(row.metrics),
                                                row.recipe))
        return sorted(found, key=lambda r: r.name.sort_key())

    def record(self, name: SnapshotName | str) -> SnapshotRecord:
        """The record of one snapshot, or a NotFoundError naming what is there instead."""
        name = SnapshotName.parse(name) if isinstance(name, str) else name
        row = self.read_manifest(name.dataset, name.arch).snapshots.get(name.key)
        if row is None:
            have = [str(r.name) for r in self.records(f"{name.run}@*")]
            hint = (f"snapshots of {name.run}: {', '.join(have)}" if have
                    else "run `ddz zoo list` to see what is there")
            raise NotFoundError(f"no snapshot {name} in the zoo at {self.root}; {hint}", str(name), have)
        return SnapshotRecord(name, self.path_for(name), row.sha256, row.size, dict(row.metrics))

    # --- the Source interface ---

    def candidates(self) -> list[Candidate]:
        rows = []
        for record in self.records("*"):
            name, metrics = record.name, dict(record.metrics)
            summary = SnapshotSummary(name.seed, name.epoch, record.size, metrics, record.recipe)
            row = Resolved(str(name), "local", path=str(record.path), sha256=record.sha256, summary=summary,
                           local_path=str(record.path))
            rows.append(Candidate(name.dataset, name.arch, name.seed, f"epoch{name.epoch}", metrics, row,
                                  summary.tags))
        return rows

    def fetch(self, rows: Sequence[Resolved], progress: Progress | None = None) -> dict[str, Path]:
        """The zoo's file for each row that has one holding the row's bytes. A row that is not
        published must be here (its file is checked at load); a published row whose zoo file
        was re-trained or removed is left for the hub."""
        files = {}
        for row in rows:
            local = Path(row.local_path) if row.local_path else None
            if local is None:
                continue
            if not row.on_hub:
                if not local.is_file():
                    raise IntegrityError(f"{local} ({row.name}) is missing and it was never pushed to a hub")
                files[row.name] = local
            elif local.is_file() and sha256_file(local) == row.sha256:
                files[row.name] = local
        return files
