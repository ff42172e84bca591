"""External PTMs as a source: the registry's `external` specs (and the built-in ones) as rows.

Their weights live in their library's cache or a `weights_file`; ddz.zoo.external_models builds
the models when they are loaded, so this module needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ddz.progress import Progress
from ddz.zoo.query import Candidate, split_name
from ddz.zoo.records import Resolved, SourceKind
from ddz.zoo.registry import Registry


class ExternalSource:
    kind: SourceKind = "external"

    def __init__(self, registry: Registry):
        self.registry = registry

    def candidates(self) -> list[Candidate]:
        rows = []
        for name, spec in self.registry.external_specs().items():
            dataset, arch, _, tag = split_name(name)
            row = Resolved(name, "external", path=spec.weights_file, sha256=spec.sha256, spec=spec)
            rows.append(Candidate(dataset, arch, None, tag, {}, row))
        return rows

    def fetch(self, rows: Sequence[Resolved], progress: Progress | None = None) -> dict[str, Path]:
        """Nothing to fetch: the library reads (and ddz verifies) the weights when it builds the model."""
        return {}
