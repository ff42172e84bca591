"""Publishing: the local snapshots a query selects, one commit and one tag per (dataset, arch)
repository (snapshot files, manifest.json, a model card), then recorded in the registry pinned to
the commit. The same steps run over git (folder hubs) and the Hugging Face commit API."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ddz.errors import ConfigError, NotFoundError
from ddz.progress import NullProgress, Progress
from ddz.zoo.hub_url import parse_hub, repo_name
from ddz.zoo.paths import ZooPaths
from ddz.zoo.query import natural_key, select
from ddz.zoo.records import MANIFEST_FORMAT, Manifest, ManifestRow, Resolved
from ddz.zoo.registry import Entry, load_registry, update_registry
from ddz.zoo.resolve import candidates
from ddz.zoo.sources.hub import open_session, verify_local
from ddz.zoo.sources.local import LocalZoo

_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def model_card(manifest: Manifest) -> str:
    """README.md: YAML front matter (datasets, archs, seeds, snapshots) and a metrics table."""
    rows = sorted(manifest.snapshots.values(), key=lambda r: (r.seed, r.epoch))
    metric_keys = sorted({k for r in rows for k in r.metrics})
    front = {
        "library_name": "ddz",
        "tags": ["ddz", "dataset-distillation", "pre-trained-models", "safetensors"],
        "datasets": [manifest.dataset],
        "archs": [manifest.arch],
        "seeds": sorted({r.seed for r in rows}),
        "snapshots": [f"epoch{e}" for e in sorted({r.epoch for r in rows})],
        "ddz_manifest": MANIFEST_FORMAT,
    }
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False, default_flow_style=None).strip(), "---", "",
        f"# {manifest.dataset} / {manifest.arch}: ddz PTM snapshots", "",
        f"{len(rows)} epoch snapshots of {manifest.arch} trained on {manifest.dataset}, one "
        "folder per seed (`seed<n>/epoch<e>.safetensors`). Each file carries its lineage (recipe hash, "
        "data fingerprint, normalisation, metrics) in its safetensors metadata; manifest.json lists "
        "their sha256, which ddz checks before every load.", "",
        "    ddz zoo pull " + f"'{manifest.dataset}/{manifest.arch}/*@last'", "",
        "| snapshot | " + " | ".join(metric_keys) + " | sha256 |",
        "|---|" + "---|" * len(metric_keys) + "---|",
    ]
    for r in rows:
        values = [f"{r.metrics[k]:.4f}" if k in r.metrics else "" for k in metric_keys]
        lines.append(f"| seed{r.seed}@epoch{r.epoch} | " + " | ".join(values) + f" | `{r.sha256[:12]}` |")
    return "\n".join(lines) + "\n"


def choose_tag(tags: dict[str, str], requested: str | None, commit: str, today: str) -> str:
    """`requested`, or v<date> (v<date>.2, ... when taken); a tag already on `commit` is reused."""
    if requested is not None:
        if not _TAG.fullmatch(requested) or requested.endswith((".lock", ".")) or ".." in requested:
            raise ConfigError(f"bad tag {requested!r}; use letters, digits, '.', '_', '-' (e.g. v1.0)")
        if requested in tags and tags[requested] != commit:
            taken = tags[requested][:12]
            raise ConfigError(f"tag {requested!r} already names commit {taken}; pick another --tag")
        return requested
    base = f"v{today}"
    ours = [t for t, c in tags.items() if c == commit and (t == base or t.startswith(base + "."))]
    if ours:
        return ours[0]
    tag, n = base, 1
    while tag in tags:
        n += 1
        tag = f"{base}.{n}"
    return tag


def repo_files(dataset: str, arch: str, existing: Manifest | None,
               uploads: dict[str, tuple[ManifestRow, Path]]) -> tuple[Manifest, dict[str, Path | bytes]]:
    """The merged manifest and every file the next commit writes (snapshots, README, manifest)."""
    manifest = existing or Manifest(dataset, arch)
    if (manifest.dataset, manifest.arch) != (dataset, arch):
        raise ConfigError(
            f"the hub repo for {dataset}/{arch} already holds {manifest.dataset}/{manifest.arch}; "
            "push to another hub folder/org"
        )
    files: dict[str, Path | bytes] = {}
    snapshots = dict(manifest.snapshots)
    for key, (row, file) in uploads.items():
        snapshots[key] = row
        files[key] = file
    manifest = Manifest(dataset, arch, dict(sorted(snapshots.items(), key=lambda kv: natural_key(kv[0]))))
    files["manifest.json"] = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
    files["README.md"] = model_card(manifest).encode()
    return manifest, files


@dataclass
class PushedRepo:
    repo: str
    revision: str
    tag: str
    snapshots: list[str] = field(default_factory=list)


@dataclass
class PushResult:
    hub: str
    hub_name: str
    repos: list[PushedRepo]
    rows: list[Resolved]
    registry: Path


def push(query: str, hub_url: str, paths: ZooPaths, *, tag: str | None = None, where: str | None = None,
         progress: Progress | None = None) -> PushResult:
    """Publish the local snapshots `query` selects: one commit and one tag per (dataset, arch)
    repo, then record them (pinned to the commit) in the registry, repo by repo."""
    hub = parse_hub(hub_url)
    progress = progress or NullProgress()
    store = LocalZoo(paths.zoo)
    local = candidates(paths, load_registry(paths.registry), sources=("local",))
    if not local:
        raise NotFoundError(f"the local zoo at {store.root} is empty; train snapshots with `ddz zoo train`",
                            query)
    chosen = select(query, local, where)
    groups: dict[tuple[str, str], list[Resolved]] = {}
    for candidate in chosen:
        groups.setdefault((candidate.dataset, candidate.arch), []).append(candidate.payload)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    pushed, rows = [], []
    hub_name, registry_file = "", paths.registry
    task = progress.task(f"push to {hub.url}", total=len(chosen))
    for (dataset, arch), members in groups.items():
        manifest = store.read_manifest(dataset, arch)
        uploads = {}
        for row in members:
            verify_local(row.local_path, row.sha256)  # never publish a file that fails its record
            key = Path(row.local_path).relative_to(store.root / dataset / arch).as_posix()
            uploads[key] = (manifest.snapshots[key], Path(row.local_path))
        with open_session(hub, repo_name(dataset, arch), paths) as session:
            head = session.head()
            existing = session.read("manifest.json", head) if head else None
            where = f"{session.repo_id}/manifest.json"
            old = Manifest.from_json(json.loads(existing), where) if existing else None
            _, files = repo_files(dataset, arch, old, uploads)
            commit = session.commit(files, f"ddz push: {len(uploads)} snapshot(s) of {dataset}/{arch}", head)
            tags = session.tags()
            chosen_tag = choose_tag(tags, tag, commit, today)
            if tags.get(chosen_tag) != commit:
                session.tag(chosen_tag, commit)
            repo_id = session.repo_id
        pushed.append(PushedRepo(repo_id, commit, chosen_tag, [r.name for r in members]))
        published = [replace(row, hub=hub.url, repo=repo_id, revision=commit, path=key)
                     for key, row in zip(uploads, members, strict=True)]
        hub_name, registry_file = register(paths.registry, hub.url, published)
        rows += published
        task.advance(len(members))
    task.close()
    return PushResult(hub.url, hub_name, pushed, rows, registry_file)


def register(registry_path: Path, hub_url: str, rows: Sequence[Resolved]) -> tuple[str, Path]:
    """Record published rows in the registry; (the hub's name there, the registry file)."""
    with update_registry(registry_path) as registry:
        hub_name = registry.add_hub(hub_url)
        for row in rows:
            registry.entries[row.name] = Entry(hub_name, row.repo, row.revision, row.path, row.sha256,
                                               row.summary)
    return hub_name, registry.path
