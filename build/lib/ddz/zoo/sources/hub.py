"""Hubs as a source: one repository per (dataset, arch) holding `seed<n>/epoch<e>.safetensors`, a
model card and manifest.json. Folder hubs are bare git repos read and written with git plumbing;
HTTP hubs (olah, huggingface.co) are read through huggingface_hub and written through its commit
API (hf://ORG). Every file is verified against its recorded sha256 before use, and a cached file
that fails is removed. What to publish is ddz.zoo.publish's job; this module moves the bytes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from filelock import FileLock

from ddz.errors import (
    ConfigError,
    DDZError,
    HubError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    first_line,
)
from ddz.io import atomic_write, check_sha256, sha256_file
from ddz.progress import NullProgress, Progress
from ddz.zoo.hub_url import Hub, parse_hub
from ddz.zoo.paths import ZooPaths
from ddz.zoo.query import Candidate, split_name
from ddz.zoo.records import Resolved, SourceKind
from ddz.zoo.registry import Registry

BRANCH = "main"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "ddz", "GIT_AUTHOR_EMAIL": "ddz@localhost",
                "GIT_COMMITTER_NAME": "ddz", "GIT_COMMITTER_EMAIL": "ddz@localhost"}
Route = tuple[Literal["git", "http"], Any]  # ("git", repo folder) or ("http", endpoint)


@contextmanager
def quiet_hf() -> Iterator[None]:
    """The library never prints: no huggingface_hub progress bars or retry warnings while we call
    it (a failure becomes one HubError, raised from the client's error)."""
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


# ---------------------------------------------------------------------------------------------
# Writing a repository: one session per push, the same steps for git and the HF commit API


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


# The Hugging Face commit API (hf://ORG, or an HTTP hub that accepts uploads). Kept thin: what to
# commit and how to tag it is decided by ddz.zoo.publish, which the git path tests.


class HfSession:
    def __init__(self, hub: Hub, name: str, paths: ZooPaths):
        from huggingface_hub import HfApi

        self.repo_id = hub.repo_id(name)
        self.endpoint = hub.endpoint(paths.hf_endpoint)
        self.cache = paths.hf_cache
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
                                    cache_dir=self.cache)
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
def open_session(hub: Hub, name: str, paths: ZooPaths) -> Iterator[RepoSession]:
    """A write session on repository `name` of `hub`; HubError (from the client's) if it fails."""
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
        with quiet_hf():
            yield HfSession(hub, name, paths)
    except DDZError:
        raise
    except Exception as error:  # huggingface_hub raises HTTP and OS errors of many kinds
        raise HubError(f"pushing to {hub.url} failed ({first_line(error)})") from error


# ---------------------------------------------------------------------------------------------
# Reading: routes, manifests at a revision, caches, verified fetches


def _refuse(row: Resolved, actual: str, where: str) -> IntegrityError:
    return IntegrityError(
        f"{row.name} from {where} ({row.repo}@{row.revision[:12]}:{row.path}) has sha256 {actual[:16]}..., "
        f"the registry says {row.sha256[:16]}...; refused and removed from the cache",
        expected=row.sha256, actual=actual,
    )


def _remove_cached(path: Path) -> None:
    """Delete a cached file, and the blob a Hugging Face cache symlink points at."""
    target = path.resolve()
    if target != path:
        target.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def missing_message(rows: Sequence[Resolved]) -> str:
    names = ", ".join(f"{r.name} ({r.repo}@{r.revision[:12]})" for r in rows)
    return (f"offline (HF_HUB_OFFLINE=1) and {len(rows)} PTM file(s) are not in the cache: {names}; "
            "run `ddz zoo pull QUERY` online first")


class HubSource:
    """The registry's published entries, fetched into ddz's git cache or the Hugging Face cache."""

    kind: SourceKind = "hub"

    def __init__(self, registry: Registry, paths: ZooPaths, offline: bool = False):
        self.registry, self.paths, self.offline = registry, paths, offline

    def candidates(self) -> list[Candidate]:
        rows = []
        for name, entry in self.registry.entries.items():
            dataset, arch, seed, snapshot = split_name(name)
            row = Resolved(name, "hub", self.registry.hub_url(entry.hub), entry.repo, entry.revision,
                           entry.path, entry.sha256, summary=entry.summary)
            metrics = dict(entry.summary.metrics) if entry.summary else {}
            tags = entry.summary.tags if entry.summary else {}
            rows.append(Candidate(dataset, arch, seed, snapshot, metrics, row, tags))
        return rows

    def route(self, row: Resolved) -> Route:
        """How to reach a published row now: its git folder, or an HTTP endpoint."""
        hub = parse_hub(row.hub)
        if hub.kind == "git":
            folder = hub.folder / row.repo.rsplit("/", 1)[-1]
            if folder.exists():
                return "git", folder
            if self.paths.hf_endpoint:
                return "http", self.paths.hf_endpoint
            raise HubError(
                f"hub folder {folder} (for {row.name}) does not exist here; pass --hub URL of a hub that "
                "serves it, or set HF_ENDPOINT to one"
            )
        return "http", hub.endpoint(self.paths.hf_endpoint)

    def manifest_at(self, row: Resolved, revision: str) -> tuple[str, dict[str, Any]]:
        """(commit, manifest.json) of `row`'s repository at `revision` (a tag, branch or sha)."""
        how, where = self.route(row)
        if how == "git":
            folder = git_dir(where)
            result = _git(folder, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}", check=False)
            commit = result.stdout.decode().strip()
            if not commit:
                raise NotFoundError(f"revision {revision!r} is not in {where}; list its tags with `git tag`",
                                    revision)
            data = _git(folder, "cat-file", "blob", f"{commit}:manifest.json", check=False).stdout
        else:
            local = self._hf_manifest(row, revision, where)
            commit, data = Path(local).parent.name, Path(local).read_bytes()
        try:
            return commit, json.loads(data)
        except (json.JSONDecodeError, TypeError):
            raise IntegrityError(f"{row.repo}@{revision} has no readable manifest.json") from None

    def _hf_manifest(self, row: Resolved, revision: str, endpoint: str) -> str:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        try:
            with quiet_hf():
                if not self.offline:
                    return hf_hub_download(row.repo, "manifest.json", revision=revision, endpoint=endpoint,
                                           cache_dir=self.paths.hf_cache)
                local = try_to_load_from_cache(row.repo, "manifest.json", cache_dir=self.paths.hf_cache,
                                               revision=revision)
        except Exception as error:
            why = first_line(error)
            raise HubError(f"cannot read {row.repo}@{revision} from {endpoint} ({why})") from error
        if not isinstance(local, str):
            raise OfflineError(f"offline, and the manifest of {row.repo} at {revision} is not in the cache; "
                               "pull it once online", [row.name])
        return local

    def _git_cache_path(self, row: Resolved) -> Path:
        return self.paths.git_cache / row.repo / row.revision / row.path

    def cached(self, row: Resolved) -> Path | None:
        """A verified cached copy of a published row (the HF cache or ddz's git cache), or None;
        a cached file that fails its sha256 is removed."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(row.repo, row.path, cache_dir=self.paths.hf_cache,
                                       revision=row.revision)
        for path in (Path(found) if isinstance(found, str) else None, self._git_cache_path(row)):
            if path is not None and path.is_file():
                if sha256_file(path) == row.sha256:
                    return path
                _remove_cached(path)
        return None

    def fetch(self, rows: Sequence[Resolved], progress: Progress | None = None) -> dict[str, Path]:
        """Verified files for published rows: from the caches, else from their hubs. Offline,
        the rows only a remote hub has are named in one OfflineError."""
        files: dict[str, Path] = {}
        needed = []
        for row in rows:
            if cached := self.cached(row):
                files[row.name] = cached
            else:
                needed.append(row)
        routes = {row.name: self.route(row) for row in needed}
        if self.offline:
            remote = [r for r in needed if routes[r.name][0] == "http"]
            if remote:
                raise OfflineError(missing_message(remote), [r.name for r in remote])
        task = (progress or NullProgress()).task("pull", total=len(needed))
        groups: dict[tuple[str, str, str], list[Resolved]] = {}
        for row in needed:
            how, where = routes[row.name]
            if how == "git":
                files[row.name] = self._fetch_git(where, row)
                task.advance()
            else:
                groups.setdefault((where, row.repo, row.revision), []).append(row)
        for (endpoint, repo, revision), members in groups.items():
            files.update(self._fetch_http(endpoint, repo, revision, members))
            task.advance(len(members))
        task.close()
        return files

    def _fetch_git(self, folder: Path, row: Resolved) -> Path:
        target = self._git_cache_path(row)
        result = _git(git_dir(folder), "cat-file", "blob", f"{row.revision}:{row.path}", check=False)
        if result.returncode != 0:
            raise HubError(f"{row.path} at {row.revision[:12]} is not in {folder} (for {row.name})")
        atomic_write(target, lambda tmp: tmp.write_bytes(result.stdout))
        actual = sha256_file(target)
        if actual != row.sha256:
            target.unlink()
            raise _refuse(row, actual, str(folder))
        return target

    def _fetch_http(self, endpoint: str, repo: str, revision: str, rows: list[Resolved]) -> dict[str, Path]:
        from huggingface_hub import snapshot_download

        try:
            with quiet_hf():
                folder = snapshot_download(
                    repo, revision=revision, allow_patterns=[r.path for r in rows], endpoint=endpoint,
                    cache_dir=self.paths.hf_cache, max_workers=4,
                )
        except Exception as error:  # connection, HTTP and repository errors all end the pull
            raise HubError(
                f"cannot download {repo}@{revision[:12]} from {endpoint} ({first_line(error)})"
            ) from error
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


def verify_local(path: str | Path, expected: str) -> None:
    """Refuse to publish a file that fails its record."""
    check_sha256(path, sha256_file(path), expected)
