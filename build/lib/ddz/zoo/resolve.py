"""Queries to rows: every source's candidates, one row per PTM, selected by the query language,
optionally re-targeted at another hub or re-pinned at a revision. `@FILE` reads a lockfile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ddz.errors import NotFoundError, QueryError
from ddz.zoo.hub_url import parse_hub
from ddz.zoo.lockfile import read_lock
from ddz.zoo.paths import ZooPaths
from ddz.zoo.query import Candidate, select
from ddz.zoo.records import SOURCES, Resolved, SourceKind
from ddz.zoo.registry import Registry
from ddz.zoo.sources.external import ExternalSource
from ddz.zoo.sources.hub import HubSource
from ddz.zoo.sources.local import LocalZoo


def candidates(paths: ZooPaths, registry: Registry, sources: Sequence[SourceKind] = SOURCES
               ) -> list[Candidate]:
    """Every selectable row of `sources`. A local snapshot that is also published with the same
    bytes is one row carrying both (so a lockfile of it works on other machines)."""
    rows: dict[str, Candidate] = {}
    if "external" in sources:
        rows.update((c.name, c) for c in ExternalSource(registry).candidates())
    published = HubSource(registry, paths).candidates()
    if "hub" in sources:
        rows.update((c.name, c) for c in published)
    if "local" in sources:
        on_hub = {c.name: c.payload for c in published}
        for candidate in LocalZoo(paths.zoo).candidates():
            row, hub = candidate.payload, on_hub.get(candidate.name)
            if hub is not None and hub.sha256 == row.sha256:
                row = replace(row, hub=hub.hub, repo=hub.repo, revision=hub.revision, path=hub.path)
            rows[candidate.name] = replace(candidate, payload=row)
    return list(rows.values())


def resolve(query: str, paths: ZooPaths, registry: Registry, where: str | None = None, *,
            offline: bool = False, hub: str | None = None, revision: str | None = None,
            sources: Sequence[SourceKind] = SOURCES) -> list[Resolved]:
    """The PTMs `query` selects, naturally sorted; NotFoundError names the axis that emptied the set.

    `hub` re-targets published rows at another hub holding the same repos (e.g. an HTTP mirror
    of a git folder hub); `revision` (a tag, branch or sha) re-pins them, taking paths and
    sha256s from the manifest committed at that revision.
    """
    if query.startswith("@"):
        if where:
            raise QueryError("--where does not apply to a lockfile: it holds the rows it resolved")
        rows = read_lock(query[1:])
    else:
        rows = [c.payload for c in select(query, candidates(paths, registry, sources), where)]
    if hub is not None or revision is not None:
        rows = repin(rows, HubSource(registry, paths, offline), hub, revision)
    return rows


def resolve_all(queries: Sequence[str], paths: ZooPaths, registry: Registry, where: str | None = None,
                **options) -> list[Resolved]:
    """Rows for several queries, in order, each PTM once."""
    seen: dict[tuple, Resolved] = {}
    for query in queries:
        for row in resolve(query, paths, registry, where, **options):
            seen.setdefault((row.name, row.sha256), row)
    return list(seen.values())


def repin(rows: Sequence[Resolved], hubs: HubSource, hub: str | None = None, revision: str | None = None
          ) -> list[Resolved]:
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
                manifests[key] = hubs.manifest_at(row, revision)
            commit, manifest = manifests[key]
            found = [(k, v) for k, v in manifest.get("snapshots", {}).items() if v.get("name") == row.name]
            if not found:
                raise NotFoundError(f"{row.name} is not in {row.repo} at {revision} (commit {commit[:12]})",
                                    row.name, [v.get("name") for v in manifest.get("snapshots", {}).values()])
            path, info = found[0]
            local = row.local_path if info["sha256"] == row.sha256 else None
            row = replace(row, revision=commit, path=path, sha256=info["sha256"], local_path=local,
                          source="local" if local else "hub")
        out.append(row)
    return out
