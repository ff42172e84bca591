"""registry.yaml: named hubs, pinned hub entries and external PTM sources.

The file is validated on load (errors name the line); writers take a file lock and replace the
file atomically, so several zoo jobs registering at once lose nothing. Which file is the
registry is the caller's choice (ddz.zoo.paths.ZooPaths.registry).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from ddz.errors import DDZError, QueryError
from ddz.io import atomic_write_text
from ddz.yaml_nodes import NodeChecker, parse_nodes
from ddz.zoo.external_spec import ExternalSpec, SpecError, check_external, external_specs
from ddz.zoo.hub_url import parse_hub
from ddz.zoo.query import natural_key, split_name
from ddz.zoo.records import HEX40, HEX64, SnapshotSummary

REGISTRY_VERSION = 1

DEFAULT_HEADER = """\
# ddz registry: where PTMs live, so that a query such as `digits/*@epoch4` can find them.
#
# version: 1
# hubs:      NAME: URL                 a folder of git repos (a path or file://...), an HTTP hub
#                                      served through the Hugging Face API (http://host:port, e.g.
#                                      olah), or hf://ORG on huggingface.co (HF_ENDPOINT applies)
# entries:   DATASET/ARCH/seedN@epochE:
#              hub: NAME                 one of `hubs`
#              repo: ORG/DATASET-ARCH    the hub repository
#              revision: <commit sha>    40 hex digits: entries are pinned, never a branch
#              path: seedN/epochE.safetensors
#              sha256: <64 hex>          checked before every use
#              metadata: {seed, epoch, size, metrics: {train_loss, train_acc, test_acc}}
# external:  DATASET/ARCH@TAG:         a PTM built by another library (these two are built in)
#              library: torchvision | open_clip
#              model: resnet18 | RN50
#              weights: ResNet18_Weights.IMAGENET1K_V1 | openai | null (null: random init, tests)
#              weights_file: null        a local file instead of the library's cache, which is
#                                        $TORCH_HOME/hub/checkpoints (torchvision) or the Hugging
#                                        Face cache, $HF_HOME/hub (open_clip)
#              sha256: null              when set, the weights file must match it
#              image_size: 224           the input size; mean/std: its normalisation
#
# Which file: $DDZ_REGISTRY, else ./registry.yaml, else $DDZ_HOME/registry.yaml. `ddz zoo push`
# adds hubs and entries under a file lock; this leading comment is kept, other comments are not.
"""


# ---------------------------------------------------------------------------------------------
# The file


@dataclass
class Entry:
    """A snapshot published on a hub, pinned to a commit."""

    hub: str
    repo: str
    revision: str
    path: str
    sha256: str
    summary: SnapshotSummary | None = None


@dataclass
class Registry:
    path: Path
    hubs: dict[str, str] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    external: dict[str, dict[str, Any]] = field(default_factory=dict)
    header: str = DEFAULT_HEADER

    def hub_url(self, name: str) -> str:
        """The hub's URL, a relative folder read against the registry file's folder."""
        return parse_hub(self.hubs[name], base=self.path.parent).url

    def resolve_hub(self, value: str) -> str:
        """A hub URL, or the URL of the hub listed under that name."""
        return self.hub_url(value) if value in self.hubs else value

    def add_hub(self, url: str) -> str:
        """The name under which `url` is listed, adding it (named after its org) if new."""
        hub = parse_hub(url)
        for name in self.hubs:
            if self.hub_url(name) == hub.url:
                return name
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", hub.org or "hub").strip("-") or "hub"
        name, n = base, 1
        while name in self.hubs:
            n += 1
            name = f"{base}-{n}"
        self.hubs[name] = hub.url
        return name

    def external_specs(self) -> dict[str, ExternalSpec]:
        return external_specs(self.external, base=self.path.parent)

    def to_text(self) -> str:
        data: dict[str, Any] = {"version": REGISTRY_VERSION, "hubs": dict(self.hubs), "entries": {}}
        for name in sorted(self.entries, key=natural_key):
            entry = asdict(self.entries[name])
            summary = entry.pop("summary")
            if summary:
                entry["metadata"] = self.entries[name].summary.to_json()  # type: ignore[union-attr]
            data["entries"][name] = entry
        data["external"] = dict(self.external)
        body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
        return self.header.rstrip("\n") + "\n\n" + body


ENTRY_KEYS = ("hub", "repo", "revision", "path", "sha256", "metadata")
ENTRY_REQUIRED = ENTRY_KEYS[:5]
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_REPO_PATH = re.compile(r"(?!/)(?!.*(?:^|/)\.\.(?:/|$))[^\\\s]+")


def _validate(root: yaml.Node, data: Any, source: Path) -> Registry:
    check = NodeChecker(source)
    registry = Registry(path=source)
    top = check.mapping(root, "the registry")
    check.keys(top, ("version", "hubs", "entries", "external"), (), root, "the registry")
    nodes = {key: value_node for key, _, value_node in top}
    if "version" in nodes and data.get("version") != REGISTRY_VERSION:
        raise check.fail(nodes["version"], f"version must be {REGISTRY_VERSION}")
    if "hubs" in nodes:
        for name, _, value_node in check.mapping(nodes["hubs"], "hubs"):
            url = data["hubs"][name]
            check.text(value_node, url, f"hub {name!r}")
            try:
                parse_hub(url, base=source.parent)
            except DDZError as error:
                raise check.fail(value_node, str(error)) from None
            registry.hubs[str(name)] = url
    if "entries" in nodes:
        for name, key_node, value_node in check.mapping(nodes["entries"], "entries"):
            try:
                _, _, seed, snapshot = split_name(name)
            except QueryError as error:
                raise check.fail(key_node, str(error)) from None
            if seed is None or not re.fullmatch(r"epoch\d+", snapshot):
                raise check.fail(key_node, f"entry {name!r}: write DATASET/ARCH/seedN@epochE")
            what = f"entry {name!r}"
            items = check.mapping(value_node, what)
            check.keys(items, ENTRY_KEYS, ENTRY_REQUIRED, value_node, what)
            raw = data["entries"][name]
            fields = {key: node for key, _, node in items}
            check.text(fields["hub"], raw["hub"], f"{what}: hub")
            if raw["hub"] not in registry.hubs:
                listed = ", ".join(registry.hubs) or "none"
                raise check.fail(fields["hub"], f"{what}: hub {raw['hub']!r} is not under hubs ({listed})")
            check.text(fields["repo"], raw["repo"], f"{what}: repo", _REPO, " (expected ORG/NAME)")
            check.text(fields["revision"], raw["revision"], f"{what}: revision", HEX40,
                       " (expected a 40-hex commit sha: entries are pinned)")
            check.text(fields["path"], raw["path"], f"{what}: path", _REPO_PATH,
                       " (expected a relative path inside the repo)")
            check.text(fields["sha256"], raw["sha256"], f"{what}: sha256", HEX64, " (expected 64 hex digits)")
            metadata = raw.get("metadata") or {}
            if "metadata" in fields and not isinstance(metadata, dict):
                raise check.fail(fields["metadata"], f"{what}: metadata must be a mapping")
            try:
                summary = SnapshotSummary.from_json({**metadata, "seed": seed, "epoch": int(snapshot[5:])})
            except (TypeError, ValueError, AttributeError) as error:
                bad = fields.get("metadata", value_node)
                raise check.fail(bad, f"{what}: metadata has a bad value ({error})") from None
            registry.entries[name] = Entry(
                raw["hub"], raw["repo"], raw["revision"], raw["path"], raw["sha256"], summary
            )
    if "external" in nodes:
        for name, key_node, value_node in check.mapping(nodes["external"], "external"):
            try:
                split = split_name(name)
            except QueryError as error:
                raise check.fail(key_node, str(error)) from None
            if split[2] is not None:
                raise check.fail(key_node, f"external {name!r}: write DATASET/ARCH@TAG (no seed)")
            items = check.mapping(value_node, f"external {name!r}")
            raw = data["external"][name] or {}
            try:
                check_external(name, raw, base=source.parent)
            except SpecError as error:
                bad = next((node for key, _, node in items if key == error.key), value_node)
                raise check.fail(bad, str(error)) from None
            registry.external[name] = raw
    return registry


def parse_registry(text: str, source: Path) -> Registry:
    root, data = parse_nodes(text, source)
    header = _leading_comments(text) or DEFAULT_HEADER
    if root is None:
        return Registry(path=source, header=header)
    registry = _validate(root, data, source)
    registry.header = header
    return registry


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or (not line.strip() and lines):
            lines.append(line)
        else:
            break
    return "\n".join(lines).rstrip() + "\n" if lines else ""


def load_registry(path: str | Path) -> Registry:
    """The registry at `path`; a missing file is an empty registry."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        return Registry(path=path)
    return parse_registry(path.read_text(), path)


@contextmanager
def update_registry(path: str | Path) -> Iterator[Registry]:
    """Read, let the caller change, and atomically rewrite the registry, all under a file lock."""
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        registry = load_registry(path)
        yield registry
        atomic_write_text(path, registry.to_text())
