"""The accuracy curve over iterations (`--eval-every N`): what MTT's reference prints and reports
its best of. ddz's headline stays the final set's accuracy; the curve and its best are recorded
beside it, labelled, so a published MTT number (the best evaluation over the run) can be set
against the right figure (docs/distill.md, "MTT from the zoo")."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddz.distill.evaluate import ArchResult
from ddz.io import atomic_write_json

CURVE_FILE = "curve.json"


@dataclass
class Curve:
    every: int
    points: dict[int, dict[str, ArchResult]] = field(default_factory=dict)
    final: int | None = None  # the iteration of the finished set

    @classmethod
    def load(cls, path: Path, every: int) -> Curve:
        """The points an earlier (killed) run of this folder kept, when it evaluated as often."""
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return cls(every)
        if saved.get("every") != every:
            return cls(every)
        points = {int(p["iteration"]): {arch: ArchResult.from_json(r) for arch, r in p["eval"].items()}
                  for p in saved.get("points", [])}
        return cls(every, points)

    def add(self, iteration: int, result: dict[str, ArchResult], final: bool = False) -> None:
        self.points[iteration] = result
        if final:
            self.final = iteration

    def best(self) -> dict[str, dict[str, Any]]:
        """Per arch, the evaluation with the highest mean over the curve (ties: the earliest)."""
        best: dict[str, dict[str, Any]] = {}
        for iteration in sorted(self.points):
            for arch, result in self.points[iteration].items():
                if arch not in best or result.mean > best[arch]["mean"]:
                    best[arch] = {"iteration": iteration, "mean": result.mean, "std": result.std}
        return best

    def to_json(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "final_iteration": self.final,
            "points": [{"iteration": i, "eval": {a: r.to_json() for a, r in self.points[i].items()}}
                       for i in sorted(self.points)],
            "best": self.best(),
        }

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())
