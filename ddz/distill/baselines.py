"""The two accuracies a set's scores stand beside (DD-Ranking): a same-size random subset of the
real training set under the very same protocol (label regime, teacher, augmentation, mixing,
epochs, seeds), and the full real training set under the hard-label protocol. Both are
computed once and kept in a cache folder keyed by everything that changes them, so the next
report of the same setting reads them back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ddz.data.base import ImageDataset
from ddz.distill.evaluate import (
    ArchResult,
    EvalConfig,
    combine_runs,
    evaluate_synset,
    random_real,
    settings_key,
)
from ddz.distill.labels import LabelConfig, Teacher
from ddz.distributed.ranks import SINGLE, Ranks
from ddz.io import atomic_write_json
from ddz.progress import NullProgress, Progress

BASELINES_FOLDER = "baselines"
EvalResult = dict[str, ArchResult]  # per arch


def hard_protocol(config: EvalConfig) -> EvalConfig:
    """The same evaluation with hard labels and without mixing (what HLR compares): the very
    config a hard-label evaluation of the same settings has (mix None is no mixing with hard
    labels), so that its cached result is shared with the hard regime's (eval.json)."""
    return replace(config, labels=LabelConfig(), mix=None)


class Baselines:
    """Random-subset and full-data accuracies, cached under `folder` (None: only in memory, for
    the life of this object). Results are kept per seed, so that `ddz eval --random-real` (whose
    sets are these very subsets) reads them instead of evaluating the same subsets again."""

    def __init__(self, folder: Path | None, progress: Progress | None = None, ranks: Ranks = SINGLE,
                 notes: list[str] | None = None):
        self.folder, self.progress, self.ranks, self.notes = folder, progress or NullProgress(), ranks, notes
        self.computed: list[str] = []  # which were computed (not read from the cache) in this process
        self._memo: dict[str, list[EvalResult]] = {}

    def _key(self, what: str, data: ImageDataset, config: EvalConfig, seeds: list[int],
             teacher: Teacher | None, ipc: int | None = None) -> dict[str, Any]:
        settings = settings_key(config)
        return {"what": what, "dataset": data.name, "data": data.fingerprint(), "zca": data.zca is not None,
                "config": settings, "seeds": seeds, "ipc": ipc,
                "teacher": [p["sha256"] for p in teacher.describe()] if teacher is not None else None}

    def _cached(self, key: dict[str, Any], compute: Callable[[], list[EvalResult]]) -> list[EvalResult]:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        if digest in self._memo:
            return self._memo[digest]
        path = self.folder / f"{key['what']}-{digest}.json" if self.folder is not None else None
        runs = _read(path, key) if path is not None else None
        if runs is None:
            runs = compute()
            self.computed.append(key["what"])
            if path is not None and self.ranks.is_main:
                atomic_write_json(path, {"key": key, "runs": [{a: r.to_json() for a, r in run.items()}
                                                              for run in runs]})
        self._memo[digest] = runs
        return runs

    def random_runs(self, data: ImageDataset, ipc: int, config: EvalConfig, seeds: list[int],
                    teacher: Teacher | None = None) -> list[EvalResult]:
        """IPC random real images per class, drawn and evaluated with seed s for each of `seeds`
        (the synthetic sets' seeds), under `config`: one result per seed."""
        def compute() -> list[EvalResult]:
            return [evaluate_synset(*random_real(data, ipc, seed), data, config, seed, self.progress,
                                    self.notes, self.ranks, teacher) for seed in seeds]

        return self._cached(self._key("random", data, config, seeds, teacher, ipc), compute)

    def random_subset(self, data: ImageDataset, ipc: int, config: EvalConfig, seeds: list[int],
                      teacher: Teacher | None = None) -> EvalResult:
        """`random_runs` summed up over the seeds."""
        return combine_runs(self.random_runs(data, ipc, config, seeds, teacher))

    def full_data(self, data: ImageDataset, config: EvalConfig, seed: int) -> EvalResult:
        """The whole training split under the hard-label protocol of `config`."""
        hard = hard_protocol(config)

        def compute() -> list[EvalResult]:
            return [evaluate_synset(data.train_images, data.train_labels, data, hard, seed, self.progress,
                                    self.notes, self.ranks)]

        return self._cached(self._key("full", data, hard, [seed], None), compute)[0]


def _read(path: Path, key: dict[str, Any]) -> list[EvalResult] | None:
    """The per-seed results a cache file holds for `key`; None when it holds no such thing. A
    file of ddz before 2026-12-07 holds one summary ("eval"): still the full data's result, but
    a random subset's summary cannot be split into its seeds, so that one is computed again."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("key") != key:
        return None
    runs = saved.get("runs")
    if runs is None and key["what"] == "full" and "eval" in saved:
        runs = [saved["eval"]]
    if runs is None:
        return None
    return [{arch: ArchResult.from_json(result) for arch, result in run.items()} for run in runs]
