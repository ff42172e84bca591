"""Lockfiles: a resolved query written down as rows (name, hub, repo, commit, path, sha256), so that
`--ptm @ptms.lock` loads exactly those bytes again, offline, without the registry.

JSON by default; YAML when the file name ends in .yaml or .yml.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ddz import __version__
from ddz.errors import ConfigError, first_line
from ddz.io import atomic_write_text
from ddz.yaml_nodes import load_yaml
from ddz.zoo.external_spec import check_external
from ddz.zoo.records import HEX40, HEX64, SOURCES, Resolved, utc_now

LOCK_FORMAT = "ddz.lock/1"
TEXT_FIELDS = ("hub", "repo", "revision", "path", "sha256", "local_path")


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def lock_document(rows: Sequence[Resolved], queries: Sequence[str],
                  where: str | None = None) -> dict[str, Any]:
    return {
        "format": LOCK_FORMAT,
        "queries": list(queries),
        "where": where,
        "created": utc_now(),
        "ddz_version": __version__,
        "ptms": [row.to_json() for row in rows],
    }


def write_lock(path: str | Path, rows: Sequence[Resolved], queries: Sequence[str],
               where: str | None = None) -> Path:
    """Write the rows atomically; every published row is pinned to a commit sha."""
    path = Path(path)
    for row in rows:
        if row.on_hub and not (row.revision and HEX40.fullmatch(row.revision)):
            raise ConfigError(f"{row.name} is pinned to {row.revision!r}, not a commit sha; cannot lock it")
    document = lock_document(rows, queries, where)
    if _is_yaml(path):
        text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    else:
        text = json.dumps(document, indent=2) + "\n"
    return atomic_write_text(path, text)


def read_lock(path: str | Path) -> list[Resolved]:
    """The rows of a lockfile, checked; ConfigError saying what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        hint = f"write one with `ddz zoo lock QUERY -o {path}`"
        raise ConfigError(f"lockfile {path} does not exist; {hint}") from None
    try:
        document = load_yaml(text, path) if _is_yaml(path) else json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"lockfile {path} is not valid JSON ({first_line(error)})") from None
    except RecursionError:
        raise ConfigError(f"lockfile {path} is nested too deeply to be a lockfile; write it with "
                          "`ddz zoo lock QUERY -o FILE`") from None
    if not isinstance(document, dict) or document.get("format") != LOCK_FORMAT:
        raise ConfigError(f"{path} is not a ddz lockfile (expected format {LOCK_FORMAT!r})")
    entries = document.get("ptms")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"lockfile {path} lists no PTMs under 'ptms'")
    rows = []
    for i, entry in enumerate(entries):
        where = f"lockfile {path}, ptms[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: each row needs a name")
        if entry.get("source") not in SOURCES:
            raise ConfigError(f"{where} ({entry['name']}): source must be one of {', '.join(SOURCES)}")
        bad = next((key for key in TEXT_FIELDS
                    if entry.get(key) is not None and not isinstance(entry[key], str)), None)
        if bad is not None:
            raise ConfigError(f"{where} ({entry['name']}): {bad} must be a string or null")
        metadata = entry.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigError(f"{where} ({entry['name']}): metadata must be a mapping")
        try:
            if entry["source"] == "external":
                check_external(entry["name"], metadata or {})
            row = Resolved.from_json(entry)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
            raise ConfigError(f"{where} ({entry['name']}): bad metadata ({first_line(error)})") from None
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        if row.source != "external" and not (row.sha256 and HEX64.fullmatch(row.sha256)):
            raise ConfigError(f"{where} ({row.name}): sha256 must be 64 hex digits")
        if row.on_hub and not (row.revision and HEX40.fullmatch(row.revision) and row.path):
            raise ConfigError(f"{where} ({row.name}): a hub row needs a commit-sha revision and a path")
        if row.source != "external" and not row.on_hub and not row.local_path:
            raise ConfigError(f"{where} ({row.name}): neither a hub location nor a local path")
        rows.append(row)
    return rows
