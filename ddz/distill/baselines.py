"""The two accuracies a set's scores stand beside (DD-Ranking): a same-size random subset of the
real training set under the very same protocol (label regime, teacher, augmentation, mixing,
epochs, seeds), and the full real training set under the hard-label protocol. Both are
computed once and kept in a cache folder keyed by everything that changes them, so the next
report of the same setting reads them back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ddz.data.base import ImageDataset
from ddz.distill.evaluate import ArchResult, EvalConfig, combine_runs, evaluate_synset, random_real
from ddz.distill.labels import LabelConfig, Teacher
from ddz.distributed.ranks import SINGLE, Ranks
from ddz.io import atomic_write_json
from ddz.progress import NullProgress, Progress

BASELINES_FOLDER = "baselines"


def hard_protocol(config: EvalConfig) -> EvalConfig:
    """The same evaluation with hard labels and without mixing (what HLR compares): the very
    config a hard-label evaluation of the same settings has (mix None is no mixing with hard
    labels), so that its cached result is shared with the hard regime's (eval.json)."""
    return replace(config, labels=LabelConfig(), mix=None)


class Baselines:
    """Random-subset and full-data accuracies, cached under `folder` (None: never cached)."""

    def __init__(self, folder: Path | None, progress: Progress | None = None, ranks: Ranks = SINGLE):
        self.folder, self.progress, self.ranks = folder, progress or NullProgress(), ranks
        self.computed: list[str] = []  # which were computed (not read from the cache) in this process

    def _key(self, what: str, data: ImageDataset, config: EvalConfig, seeds: list[int],
             teacher: Teacher | None, ipc: int | None = None) -> dict[str, Any]:
        settings = {k: v for k, v in json.loads(json.dumps(asdict(config))).items() if k != "batched"}
        return {"what": what, "dataset": data.name, "data": data.fingerprint(), "zca": data.zca is not None,
                "config": settings, "seeds": seeds, "ipc": ipc,
                "teacher": [p["sha256"] for p in teacher.describe()] if teacher is not None else None}

    def _cached(self, key: dict[str, Any], compute) -> dict[str, ArchResult]:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = self.folder / f"{key['what']}-{digest}.json" if self.folder is not None else None
        if path is not None and path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return {arch: ArchResult.from_json(r) for arch, r in saved["eval"].items()}
        result = compute()
        self.computed.append(key["what"])
        if path is not None and self.ranks.is_main:
            atomic_write_json(path, {"key": key, "eval": {a: r.to_json() for a, r in result.items()}})
        return result

    def random_subset(self, data: ImageDataset, ipc: int, config: EvalConfig, seeds: list[int],
                      teacher: Teacher | None = None) -> dict[str, ArchResult]:
        """IPC random real images per class, drawn and evaluated with seed s for each of `seeds`
        (the synthetic sets' seeds), under `config`."""
        def compute() -> dict[str, ArchResult]:
            runs = []
            for seed in seeds:
                images, labels = random_real(data, ipc, seed)
                runs.append(evaluate_synset(images, labels, data, config, seed, self.progress, None,
                                            self.ranks, teacher))
            return combine_runs(runs)

        return self._cached(self._key("random", data, config, seeds, teacher, ipc), compute)

    def full_data(self, data: ImageDataset, config: EvalConfig, seed: int) -> dict[str, ArchResult]:
        """The whole training split under the hard-label protocol of `config`."""
        hard = hard_protocol(config)

        def compute() -> dict[str, ArchResult]:
            return evaluate_synset(data.train_images, data.train_labels, data, hard, seed, self.progress,
                                   None, self.ranks)

        return self._cached(self._key("full", data, hard, [seed], None), compute)
