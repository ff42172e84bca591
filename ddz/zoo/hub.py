"""The hub: one repository per (dataset, arch) holding `seed<n>/epoch<e>.safetensors`, a model card
and manifest.json; push by git (a folder of repos, e.g. served by olah) or by the Hugging Face
commit API (hf://ORG); pull through huggingface_hub (HTTP hubs) or git (folder hubs), every file
verified against its recorded sha256 before use.

Hub URLs:
    /path/to/models/ORG, file:///path/...   git repos in a folder: ORG/<dataset>-<arch> is
                                            FOLDER/<dataset>-<arch> (bare repos, branch main)
    http://host:port                         a server speaking the Hugging Face API (pull only)
    hf://ORG                                 huggingface.co, or HF_ENDPOINT when it is set
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from filelock import FileLock

from ddz.errors import ConfigError, DDZError, HubError, IntegrityError, OfflineError, QueryError
from ddz.io import atomic_write, ddz_home, sha256_file
from ddz.progress import NullProgress, Progress
from ddz.zoo.query import natural_key
from ddz.zoo.registry import Entry, Resolved, candidates, load_registry, update_registry

BRANCH = "main"
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "ddz", "GIT_AUTHOR_EMAIL": "ddz@localhost",
                "GIT_COMMITTER_NAME": "ddz", "GIT_COMMITTER_EMAIL": "ddz@localhost"}


# ---------------------------------------------------------------------------------------------
# Hub URLs


@dataclass(frozen=True)
class Hub:
    kind: str  # "git" | "http" | "hf"
    url: str  # normalised: an absolute folder, an http(s) endpoint, or hf://ORG
    org: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.url)

    @property
    def endpoint(self) -> str:
        if self.kind == "http":
            return self.url
        if self.kind == "hf":
            return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        raise ConfigError(f"{self.url} is a folder of git repos, not an HTTP hub")

    def repo_id(self, repo: str) -> str:
        """The id of `repo` (ORG/NAME, as recorded) on this hub: folder and hf hubs bring their org."""
        return f"{self.org}/{repo.rsplit('/', 1)[-1]}" if self.org else repo


def normalise_url(url: str, base: Path | None = None) -> str:
    return parse_hub(url, base).url


def parse_hub(url: str, base: Path | None = None) -> Hub:
    """Read a hub URL (a folder path, file://, http(s)://, hf://ORG); ConfigError if malformed."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("empty hub URL; give a folder, file://..., http://host:port or hf://ORG")
    url = url.strip()
    scheme = urlparse(url).scheme if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url) else ""
    if scheme == "hf":
        org = url[len("hf://"):].strip("/")
        if not _ORG.fullmatch(org):
            raise ConfigError(f"hub {url!r}: write hf://ORG (one organisation or user name)")
        return Hub("hf", f"hf://{org}", org)
    if scheme in ("http", "https"):
        parsed = urlparse(url)
        if not parsed.netloc or parsed.path.strip("/"):
            raise ConfigError(f"hub {url!r}: an HTTP hub is an endpoint, e.g. http://127.0.0.1:8090")
        return Hub("http", f"{parsed.scheme}://{parsed.netloc}")
    if scheme == "file":
        path = Path(unquote(urlparse(url).path))
    elif scheme:
        raise ConfigError(f"hub {url!r}: unknown scheme {scheme!r}; use a folder, file://, http(s):// or hf://")
    else:
        path = Path(url).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = Path(os.path.normpath(path.absolute()))
    org = path.name
    if not _ORG.fullmatch(org):
        raise ConfigError(f"hub folder {path}: its name is the org of its repos and must be a plain name")
    return Hub("git", str(path), org)


def repo_name(dataset: str, arch: str) -> str:
    """The hub repository of a (dataset, arch): `<dataset>-<arch>` in Hugging Face's name rules."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{dataset}-{arch}")
    return re.sub(r"([-.])\1+", r"\1", name).strip("-.")[:96]


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (the library reads it at import)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def git_cache_dir() -> Path:
    return ddz_home() / "cache" / "git"


@contextmanager
def _quiet_hf() -> Iterator[None]:
    """The library never prints: no huggingface_hub progress bars or retry warnings while we call
    it (a failure becomes one HubError, raised from the client's error)."""
    import logging

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    disable_progress_bars()
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if not was:
            enable_progress_bars()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Repository content, shared by the git and the HTTP commit paths


def model_card(manifest: dict[str, Any]) -> str:
    """README.md: YAML front matter (datasets, archs, seeds, snapshots) and a metrics table."""
    import yaml

    from ddz.zoo.store import MANIFEST_FORMAT

    rows = sorted(manifest["snapshots"].values(), key=lambda r: (r["seed"], r["epoch"]))
    metric_keys = sorted({k for r in rows for k in r.get("metrics") or {}})
    front = {
        "library_name": "ddz",
        "tags": ["ddz", "dataset-distillation", "pre-trained-models", "safetensors"],
        "datasets": [manifest["dataset"]],
        "archs": [manifest["arch"]],
        "seeds": sorted({r["seed"] for r in rows}),
        "snapshots": [f"epoch{e}" for e in sorted({r["epoch"] for r in rows})],
        "ddz_manifest": MANIFEST_FORMAT,
    }
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False, default_flow_style=None).strip(), "---", "",
        f"# {manifest['dataset']} / {manifest['arch']}: ddz PTM snapshots", "",
        f"{len(rows)} epoch snapshots of {manifest['arch']} trained on {manifest['dataset']}, one "
        "folder per seed (`seed<n>/epoch<e>.safetensors`). Each file carries its lineage (recipe hash, "
        "data fingerprint, normalisation, metrics) in its safetensors metadata; manifest.json lists "
        "their sha256, which ddz checks before every load.", "",
        "    ddz zoo pull " + f"'{manifest['dataset']}/{manifest['arch']}/*@last'", "",
        "| snapshot | " + " | ".join(metric_keys) + " | sha256 |",
        "|---|" + "---|" * len(metric_keys) + "---|",
    ]
    for r in rows:
        values = [f"{r['metrics'][k]:.4f}" if k in (r.get("metrics") or {}) else "" for k in metric_keys]
        name = f"seed{r['seed']}@epoch{r['epoch']}"
        lines.append(f"| {name} | " + " | ".join(values) + f" | `{r['sha256'][:12]}` |")
    return "\n".join(lines) + "\n"


@dataclass
class Upload:
    """One local snapshot to publish: its manifest row and its verified file."""

    key: str  # seed<n>/epoch<e>.safetensors
    row: dict[str, Any]
    file: Path


def repo_files(dataset: str, arch: str, existing: dict | None, uploads: Sequence[Upload]
               ) -> tuple[dict[str, Any], dict[str, Path | bytes]]:
    """The merged manifest and every file the next commit writes (snapshots, README, manifest)."""
    from ddz.zoo.store import MANIFEST_FORMAT

    manifest = existing or {"format": MANIFEST_FORMAT, "dataset": dataset, "arch": arch, "snapshots": {}}
    if (manifest.get("dataset"), manifest.get("arch")) != (dataset, arch):
        raise ConfigError(
            f"the hub repo for {dataset}/{arch} already holds "
            f"{manifest.get('dataset')}/{manifest.get('arch')}; push to another hub folder/org"
        )
    snapshots = dict(manifest.get("snapshots") or {})
    files: dict[str, Path | bytes] = {}
    for upload in uploads:
        snapshots[upload.key] = upload.row
        files[upload.key] = upload.file
    manifest = {**manifest, "snapshots": dict(sorted(snapshots.items(), key=lambda kv: natural_key(kv[0])))}
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    files["README.md"] = model_card(manifest).encode()
    return manifest, files


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


class RepoSession(Protocol):
    repo_id: str

    def head(self) -> str | None: ...
    def read(self, path: str, revision: str) -> bytes | None: ...
    def tags(self) -> dict[str, str]: ...
    def commit(self, files: dict[str, Path | bytes], message: str, parent: str | None) -> str: ...
    def tag(self, name: str, commit: str) -> None: ...


# ---------------------------------------------------------------------------------------------
# Git (folder hubs)


def _git(git_dir: Path, *args: str, input: bytes | None = None, env: dict | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    environment = {**os.environ, **GIT_IDENTITY, **(env or {})}
    for key in GIT_IDENTITY:  # the user's own identity wins when set
        if key in os.environ:
            environment[key] = os.environ[key]
    try:
        result = subprocess.run(["git", f"--git-dir={git_dir}", *args], input=input, env=environment,
                                capture_output=True)
    except FileNotFoundError:
        raise HubError("git is not installed; folder hubs need it (apt-get install git)") from None
    if check and result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise HubError(f"git {args[0]} failed in {git_dir}: {message[-1] if message else result.returncode}")
    return result


def git_dir(folder: Path) -> Path:
    return folder / ".git" if (folder / ".git").is_dir() else folder


class GitSession:
    """A bare repository in a hub folder, written with git plumbing (no working tree), under a lock."""

    def __init__(self, hub: Hub, name: str):
        self.repo_id = hub.repo_id(name)
        self.folder = hub.folder / name

    def open(self) -> None:
        if not self.folder.exists():
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "--bare", "-b", BRANCH, str(self.folder)],
                           check=True, capture_output=True)
        elif _git(git_dir(self.folder), "rev-parse", "--git-dir", check=False).returncode != 0:
            raise ConfigError(f"{self.folder} exists but is not a git repository; move it out of the hub")
        self.dir = git_dir(self.folder)

    def head(self) -> str | None:
        result = _git(self.dir, "rev-parse", "--verify", "-q", f"refs/heads/{BRANCH}", check=False)
        return result.stdout.decode().strip() or None

    def read(self, path: str, revision: str) -> bytes | None:
        result = _git(self.dir, "cat-file", "blob", f"{revision}:{path}", check=False)
        return result.stdout if result.returncode == 0 else None

    def tags(self) -> dict[str, str]:
        out = _git(self.dir, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/tags").stdout
        return dict(line.split(" ", 1) for line in out.decode().splitlines() if line)

    def commit(self, files: dict[str, Path | bytes], message: str, parent: str | None) -> str:
        with tempfile.TemporaryDirectory(prefix="ddz-push-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                _git(self.dir, "read-tree", parent, env=env)
            sources = []
            for i, content in enumerate(files.values()):
                if isinstance(content, bytes):
                    staged = Path(tmp) / f"blob{i}"
                    staged.write_bytes(content)
                    content = staged
                sources.append(str(content))
            blobs = _git(self.dir, "hash-object", "-w", "--stdin-paths",
                         input="\n".join(sources).encode() + b"\n").stdout.decode().split()
            index = "".join(f"100644 {blob}\t{path}\n" for blob, path in zip(blobs, files, strict=True))
            _git(self.dir, "update-index", "--add", "--index-info", input=index.encode(), env=env)
            tree = _git(self.dir, "write-tree", env=env).stdout.decode().strip()
            if parent and tree == _git(self.dir, "rev-parse", f"{parent}^{{tree}}").stdout.decode().strip():
                return parent  # nothing new to publish
            commit = _git(self.dir, "commit-tree", "--no-gpg-sign", tree, *(["-p", parent] if parent else []),
                          "-m", message).stdout.decode().strip()
        _git(self.dir, "update-ref", f"refs/heads/{BRANCH}", commit, parent or "")
        return commit

    def tag(self, name: str, commit: str) -> None:
        _git(self.dir, "update-ref", f"refs/tags/{name}", commit, "")


@contextmanager
def _git_session(hub: Hub, name: str) -> Iterator[GitSession]:
    session = GitSession(hub, name)
    hub.folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(hub.folder / f".{name}.push.lock")):
        session.open()
        yield session


# ---------------------------------------------------------------------------------------------
# The Hugging Face commit API (hf://ORG, or an HTTP hub that accepts uploads). Kept thin: what to
# commit and how to tag it is decided by the shared code above, which the git path tests.


class HfSession:
    def __init__(self, hub: Hub, name: str):
        from huggingface_hub import HfApi

        self.repo_id = hub.repo_id(name)
        self.endpoint = hub.endpoint
        self.api = HfApi(endpoint=self.endpoint)

    def head(self) -> str | None:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        self.api.create_repo(self.repo_id, exist_ok=True)
        try:
            return self.api.model_info(self.repo_id, revision=BRANCH).sha
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return None

    def read(self, path: str, revision: str) -> bytes | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        try:
            local = hf_hub_download(self.repo_id, path, revision=revision, endpoint=self.endpoint,
                                    cache_dir=hf_cache_dir())
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None
        return Path(local).read_bytes()

    def tags(self) -> dict[str, str]:
        return {t.name: t.target_commit for t in self.api.list_repo_refs(self.repo_id).tags}

    def commit(self, files: dict[str, Path | bytes], message: str, parent: str | None) -> str:
        from huggingface_hub import CommitOperationAdd

        operations = [
            CommitOperationAdd(path_in_repo=p, path_or_fileobj=c if isinstance(c, bytes) else str(c))
            for p, c in files.items()
        ]
        info = self.api.create_commit(self.repo_id, operations, commit_message=message, parent_commit=parent)
        return info.oid

    def tag(self, name: str, commit: str) -> None:
        self.api.create_tag(self.repo_id, tag=name, revision=commit)


@contextmanager
def _session(hub: Hub, name: str) -> Iterator[RepoSession]:
    if hub.kind == "git":
        with _git_session(hub, name) as session:
            yield session
        return
    if hub.kind == "http":
        raise ConfigError(
            f"{hub.url} is read-only here: push to the git folder it serves, or to hf://ORG "
            "(HF_ENDPOINT picks the server)"
        )
    try:
        with _quiet_hf():
            yield HfSession(hub, name)
    except DDZError:
        raise
    except Exception as error:  # huggingface_hub raises HTTP and OS errors of many kinds
        raise HubError(f"pushing to {hub.url} failed ({_first_line(error)})") from error


# ---------------------------------------------------------------------------------------------
# Push


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


def push(
    query: str,
    hub_url: str,
    tag: str | None = None,
    where: str | None = None,
    registry_path: Path | None = None,
    zoo_root: Path | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Publish the local snapshots `query` selects: one commit and one tag per (dataset, arch)
    repo, then record them (pinned to the commit) in the registry."""
    from ddz.zoo.query import select
    from ddz.zoo.store import ZooStore, read_verified

    hub = parse_hub(hub_url)
    progress = progress or NullProgress()
    store = ZooStore(zoo_root)
    local = candidates(load_registry(registry_path), zoo_root, sources=("local",))
    if not local:
        raise QueryError(f"the local zoo at {store.root} is empty; train snapshots with `ddz zoo train`")
    chosen = select(query, local, where)
    groups: dict[tuple[str, str], list[Resolved]] = {}
    for candidate in chosen:
        groups.setdefault((candidate.dataset, candidate.arch), []).append(candidate.payload)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    pushed, rows = [], []
    task = progress.task(f"push to {hub.url}", total=len(chosen))
    for (dataset, arch), members in groups.items():
        local_manifest = store.read_manifest(dataset, arch)["snapshots"]
        uploads = []
        for row in members:
            read_verified(row.local_path, row.sha256)  # never publish a file that fails its record
            key = Path(row.local_path).relative_to(store.root / dataset / arch).as_posix()
            uploads.append(Upload(key, dict(local_manifest[key]), Path(row.local_path)))
        name = repo_name(dataset, arch)
        with _session(hub, name) as session:
            head = session.head()
            existing = session.read("manifest.json", head) if head else None
            _, files = repo_files(dataset, arch, json.loads(existing) if existing else None, uploads)
            message = f"ddz push: {len(uploads)} snapshot(s) of {dataset}/{arch}"
            commit = session.commit(files, message, head)
            tags = session.tags()
            chosen_tag = choose_tag(tags, tag, commit, today)
            if tags.get(chosen_tag) != commit:
                session.tag(chosen_tag, commit)
            repo_id = session.repo_id
        pushed.append(PushedRepo(repo_id, commit, chosen_tag, [r.name for r in members]))
        published = [replace(row, hub=hub.url, repo=repo_id, revision=commit, path=upload.key)
                     for upload, row in zip(uploads, members, strict=True)]
        hub_name, where_written = _register(registry_path, hub.url, published)  # repo by repo: no loss
        rows += published
        task.advance(len(members))
    task.close()
    return PushResult(hub.url, hub_name, pushed, rows, where_written)


def _register(registry_path: Path | None, hub_url: str, rows: Sequence[Resolved]) -> tuple[str, Path]:
    with update_registry(registry_path) as registry:
        hub_name = registry.add_hub(hub_url)
        for row in rows:
            meta = row.metadata
            registry.entries[row.name] = Entry(hub_name, row.repo, row.revision, row.path, row.sha256, {
                "seed": meta.get("seed"), "epoch": meta.get("epoch"), "size": meta.get("size"),
                "metrics": dict(meta.get("metrics") or {}),
            })
    return hub_name, registry.path


# ---------------------------------------------------------------------------------------------
# Revisions: re-target rows at another hub, re-pin them at a tag


def _route(row: Resolved) -> tuple[str, Any]:
    """How to reach a published row now: ("git", folder) or ("http", endpoint)."""
    hub = parse_hub(row.hub)
    if hub.kind == "git":
        folder = hub.folder / row.repo.rsplit("/", 1)[-1]
        if folder.exists():
            return "git", folder
        if endpoint := os.environ.get("HF_ENDPOINT"):
            return "http", endpoint.rstrip("/")
        raise DDZError(
            f"hub folder {folder} (for {row.name}) does not exist here; pass --hub URL of a hub that "
            "serves it, or set HF_ENDPOINT to one"
        )
    return "http", hub.endpoint


def _commit_and_manifest(row: Resolved, revision: str, offline: bool) -> tuple[str, dict]:
    how, where = _route(row)
    if how == "git":
        folder = git_dir(where)
        result = _git(folder, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}", check=False)
        commit = result.stdout.decode().strip()
        if not commit:
            raise QueryError(f"revision {revision!r} is not in {where}; list its tags with `git tag`")
        data = _git(folder, "cat-file", "blob", f"{commit}:manifest.json", check=False).stdout
    else:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        try:
            with _quiet_hf():
                if offline:
                    local = try_to_load_from_cache(row.repo, "manifest.json", cache_dir=hf_cache_dir(),
                                                   revision=revision)
                    if not isinstance(local, str):
                        raise OfflineError(
                            f"offline, and the manifest of {row.repo} at {revision} is not in the cache; "
                            "pull it once online", [row.name],
                        )
                else:
                    local = hf_hub_download(row.repo, "manifest.json", revision=revision, endpoint=where,
                                            cache_dir=hf_cache_dir())
        except DDZError:
            raise
        except Exception as error:
            why = _first_line(error)
            raise HubError(f"cannot read {row.repo}@{revision} from {where} ({why})") from error
        commit = Path(local).parent.name
        data = Path(local).read_bytes()
    try:
        return commit, json.loads(data)
    except (json.JSONDecodeError, TypeError):
        raise IntegrityError(f"{row.repo}@{revision} has no readable manifest.json") from None


def repin(rows: Sequence[Resolved], hub: str | None = None, revision: str | None = None,
          offline: bool = False) -> list[Resolved]:
    """Published rows moved to `hub` (same repos) and/or pinned at `revision`, whose manifest then
    supplies each file's path and sha256. Rows that are not published are kept as they are."""
    target = parse_hub(hub) if hub is not None else None
    out: list[Resolved] = []
    manifests: dict[tuple[str, str], tuple[str, dict]] = {}
    for row in rows:
        if not row.on_hub:
            out.append(row)
            continue
        if target is not None:
            row = replace(row, hub=target.url, repo=target.repo_id(row.repo))
        if revision is not None:
            key = (row.hub, row.repo)
            if key not in manifests:
                manifests[key] = _commit_and_manifest(row, revision, offline)
            commit, manifest = manifests[key]
            found = [(k, v) for k, v in manifest.get("snapshots", {}).items() if v.get("name") == row.name]
            if not found:
                raise QueryError(f"{row.name} is not in {row.repo} at {revision} (commit {commit[:12]})")
            path, info = found[0]
            local = row.local_path if info["sha256"] == row.sha256 else None
            row = replace(row, revision=commit, path=path, sha256=info["sha256"], local_path=local,
                          source="local" if local else "hub")
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Fetching: caches, verification, offline


def _remove_cached(path: Path) -> None:
    """Delete a cached file, and the blob a Hugging Face cache symlink points at."""
    target = path.resolve()
    if target != path:
        target.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _verify_cached(path: Path, row: Resolved) -> bool:
    """True if `path` holds `row`'s bytes; a mismatching cached file is removed."""
    if sha256_file(path) == row.sha256:
        return True
    _remove_cached(path)
    return False


def _git_cache_path(row: Resolved) -> Path:
    return git_cache_dir() / row.repo / row.revision / row.path


def cached_file(row: Resolved) -> Path | None:
    """A verified cached copy of a published row (the HF cache or ddz's git cache), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(row.repo, row.path, cache_dir=hf_cache_dir(), revision=row.revision)
    for path in (Path(found) if isinstance(found, str) else None, _git_cache_path(row)):
        if path is not None and path.is_file() and _verify_cached(path, row):
            return path
    return None


def _refuse(row: Resolved, actual: str, where: str) -> IntegrityError:
    return IntegrityError(
        f"{row.name} from {where} ({row.repo}@{row.revision[:12]}:{row.path}) has sha256 {actual[:16]}..., "
        f"the registry says {row.sha256[:16]}...; refused and removed from the cache"
    )


def _fetch_git(folder: Path, row: Resolved) -> Path:
    target = _git_cache_path(row)
    result = _git(git_dir(folder), "cat-file", "blob", f"{row.revision}:{row.path}", check=False)
    if result.returncode != 0:
        raise HubError(f"{row.path} at {row.revision[:12]} is not in {folder} (for {row.name})")
    atomic_write(target, lambda tmp: tmp.write_bytes(result.stdout))
    actual = sha256_file(target)
    if actual != row.sha256:
        target.unlink()
        raise _refuse(row, actual, str(folder))
    return target


def _fetch_http(endpoint: str, repo: str, revision: str, rows: list[Resolved]) -> dict[str, Path]:
    from huggingface_hub import snapshot_download

    try:
        with _quiet_hf():
            folder = snapshot_download(
                repo, revision=revision, allow_patterns=[r.path for r in rows], endpoint=endpoint,
                cache_dir=hf_cache_dir(), max_workers=4,
            )
    except Exception as error:  # connection, HTTP and repository errors all end the pull
        why = _first_line(error)
        raise HubError(f"cannot download {repo}@{revision[:12]} from {endpoint} ({why})") from error
    files, bad = {}, []
    for row in rows:
        path = Path(folder) / row.path
        if not path.is_file():
            raise HubError(f"{endpoint} served no {row.path} in {repo}@{revision[:12]} (for {row.name})")
        actual = sha256_file(path)
        if actual != row.sha256:
            _remove_cached(path)
            bad.append(_refuse(row, actual, endpoint))
            continue
        files[row.name] = path
    if bad:
        raise bad[0]
    return files


def missing_message(rows: Sequence[Resolved]) -> str:
    names = ", ".join(f"{r.name} ({r.repo}@{r.revision[:12]})" for r in rows)
    return (f"offline (HF_HUB_OFFLINE=1) and {len(rows)} PTM file(s) are not in the cache: {names}; "
            "run `ddz zoo pull QUERY` online first")


def materialize(rows: Sequence[Resolved], offline: bool = False, progress: Progress | None = None
                ) -> dict[str, Path]:
    """A verified local file for every zoo row (external rows are skipped): the local zoo (when it
    holds the row's bytes; a zoo snapshot re-trained since is skipped for the published one), then
    the caches, then the hub. Offline, rows that only a remote hub has are named in one OfflineError."""
    files: dict[str, Path] = {}
    needed: list[Resolved] = []
    for row in rows:
        if row.source == "external":
            continue
        local = Path(row.local_path) if row.local_path else None
        if local is not None and (not row.on_hub or (local.is_file() and sha256_file(local) == row.sha256)):
            files[row.name] = local  # a zoo file is never deleted: a mismatch fails at load
        elif not row.on_hub:
            raise IntegrityError(f"{row.local_path} ({row.name}) is missing and it was never pushed to a hub")
        elif cached := cached_file(row):
            files[row.name] = cached
        else:
            needed.append(row)
    routes = {row.name: _route(row) for row in needed}
    if offline:
        remote = [r for r in needed if routes[r.name][0] == "http"]
        if remote:
            raise OfflineError(missing_message(remote), [r.name for r in remote])
    task = (progress or NullProgress()).task("pull", total=len(needed))
    groups: dict[tuple[str, str, str], list[Resolved]] = {}
    for row in needed:
        how, where = routes[row.name]
        if how == "git":
            files[row.name] = _fetch_git(where, row)
            task.advance()
        else:
            groups.setdefault((where, row.repo, row.revision), []).append(row)
    for (endpoint, repo, revision), members in groups.items():
        files.update(_fetch_http(endpoint, repo, revision, members))
        task.advance(len(members))
    task.close()
    return files


def pull(query: str, hub: str | None = None, revision: str | None = None, where: str | None = None,
         offline: bool | None = None, progress: Progress | None = None) -> list[tuple[Resolved, Path]]:
    """Fill the caches with the published PTMs `query` selects (verified); (row, file) pairs."""
    from ddz.zoo.registry import is_offline, resolve

    offline = is_offline(offline)
    rows = resolve(query, where, offline, hub=hub, revision=revision, sources=("hub",))
    published = [r for r in rows if r.on_hub]
    if not published:
        raise QueryError(f"'{query}' selects nothing published on a hub; nothing to pull")
    remote = [replace(r, local_path=None) for r in published]  # a pull fills the cache even if the zoo has it
    files = materialize(remote, offline=offline, progress=progress)
    return [(row, files[row.name]) for row in remote]
