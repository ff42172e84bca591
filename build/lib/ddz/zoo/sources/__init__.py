"""Where PTMs come from: the local zoo, hubs, and external libraries; one module each, one interface.

A source lists the rows a query can select from (`candidates`) and, for the rows it holds, gives
verified local files (`fetch`). Loading files into PTMs is ddz.zoo.loading's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ddz.progress import Progress
from ddz.zoo.query import Candidate
from ddz.zoo.records import Resolved, SourceKind


class Source(Protocol):
    kind: SourceKind

    def candidates(self) -> list[Candidate]:
        """Every row of this source, its `payload` a Resolved."""
        ...

    def fetch(self, rows: Sequence[Resolved], progress: Progress) -> dict[str, Path]:
        """A verified local file for each of `rows` this source can serve, by name."""
        ...
