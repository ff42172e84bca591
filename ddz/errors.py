"""User-facing errors: the CLI prints the message as one line and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DDZError(Exception):
    """An error caused by the user's input or environment, with a message saying what to do."""


class DataError(DDZError):
    """A data set is missing, malformed or unknown."""


class ConfigError(DDZError):
    """An option or configuration value is invalid."""


class IntegrityError(DDZError):
    """A file does not match its recorded sha256 or metadata; `expected` and `actual` hold the two
    sha256s when that is the mismatch."""

    def __init__(self, message: str, expected: str | None = None, actual: str | None = None):
        super().__init__(message)
        self.expected, self.actual = expected, actual


class QueryError(DDZError):
    """A zoo query is malformed or matches nothing."""


class NotFoundError(QueryError):
    """Nothing matches what was asked: `asked` names it, `available` the closest things that exist."""

    def __init__(self, message: str, asked: str, available: Iterable[str] = ()):
        super().__init__(message)
        self.asked, self.available = asked, list(available)


class HubError(DDZError):
    """A hub could not be reached or refused a request; raised from the library's own error."""


class DiskFullError(DDZError):
    """A file could not be written for want of space (ENOSPC) or quota (EDQUOT): `path` is the
    file, `device` the mount point of its file system. Nothing was replaced: the previous file
    is intact and no temporary file is left."""

    def __init__(self, message: str, path: object, device: object):
        super().__init__(message)
        self.path, self.device = path, device


class OfflineError(DDZError):
    """Offline, and `missing` (PTM names) are only on a remote hub."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = list(missing)


def first_line(error: BaseException) -> str:
    """An error as one line: a DDZError's own message; otherwise its type and first line."""
    if isinstance(error, DDZError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The valid names, closest to `name` first."""
    choices = sorted(set(choices))
    near = difflib.get_close_matches(name, choices, n=len(choices), cutoff=0.0)
    return near[:n] if n else near


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> str:
    """One line: "unknown <kind> 'x'; valid: a, b, c"."""
    choices = list(choices)
    ordered = closest(name, choices, n=0)
    return f"unknown {kind} {name!r}; valid {kind}s (closest first): {', '.join(ordered)}"
