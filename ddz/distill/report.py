"""The JSON contract that `ddz distill --json` and `ddz eval --json` write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddz.distill.curve import Curve
from ddz.distill.evaluate import ArchResult, combine_runs


def run_record(seed: int, synset: str | None, result: dict[str, ArchResult]) -> dict:
    """One entry of a report's `runs`: a synthetic set, its seed and its own evaluation."""
    return {"seed": seed, "synset": synset, "eval": {arch: r.to_json() for arch, r in result.items()}}


@dataclass
class RunReport:
    dataset: str
    method: str
    ipc: int
    seed: int
    eval: dict[str, ArchResult]
    ptm_query: list[str] = field(default_factory=list)
    ptms: list[dict[str, str]] = field(default_factory=list)  # [{"name", "sha256"}]
    guidance: str | None = None
    alpha: float | dict[str, float] = 0.0
    alpha_source: str | None = None
    iterations: int = 0
    seconds_distill: float = 0.0
    seconds_eval: float = 0.0
    synset: str | None = None
    runs: list[dict] | None = None  # with --runs N: [{"seed", "synset", "eval"}] per synthetic set
    world_size: int = 1  # ranks that distilled / evaluated (torch.distributed)
    lr: list[float] | None = None  # MTT: the step size each synthetic set learnt (evaluation trains with it)
    request: dict[str, Any] | None = None  # the resolved request that produced it (RunRequest.to_json())
    curves: list[Curve] | None = None  # --eval-every: one accuracy curve per synthetic set
    notes: list[str] = field(default_factory=list)  # one-line remarks (e.g. an arch trained unbatched)
    labels: dict[str, Any] | None = None  # the label regime: hard, or soft with its teacher, loss, ...
    scores: dict[str, dict[str, Any]] | None = None  # per arch: HLR, IOR, LRS and their inputs
    storage: dict[str, Any] | None = None  # bytes of images, labels (and the teacher when it relabels)
    teacher: list[dict[str, str]] = field(default_factory=list)  # RDED / SRe2L: the distillation teacher

    @property
    def iters_per_sec(self) -> float | None:
        return self.iterations / self.seconds_distill if self.seconds_distill > 0 else None

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "method": self.method,
            "ipc": self.ipc,
            "ptm_query": list(self.ptm_query),
            "ptms": list(self.ptms),
            "guidance": self.guidance,
            "alpha": self.alpha,
            "alpha_source": self.alpha_source,
            "iterations": self.iterations,
            "seconds_distill": round(self.seconds_distill, 3),
            "iters_per_sec": self.iters_per_sec,
            "seconds_eval": round(self.seconds_eval, 3),
            "seed": self.seed,
            "world_size": self.world_size,
            "synset": self.synset,
            "eval": {arch: result.to_json() for arch, result in self.eval.items()},
            **({"runs": self.runs} if self.runs is not None else {}),
            **({"lr": self.lr} if self.lr is not None else {}),
            **({"eval_curve": [c.to_json() for c in self.curves]} if self.curves else {}),
            **({"notes": self.notes} if self.notes else {}),
            **({"labels": self.labels} if self.labels is not None else {}),
            **({"scores": self.scores} if self.scores is not None else {}),
            **({"storage": self.storage} if self.storage is not None else {}),
            **({"teacher": self.teacher} if self.teacher else {}),
            **({"request": self.request} if self.request is not None else {}),
        }

    @classmethod
    def from_runs(cls, dataset: str, seed: int, synsets: list, synset_files: list[str],
                  per_run: list[dict[str, ArchResult]], seconds_eval: float,
                  world_size: int = 1) -> RunReport:
        """The report of `--runs N`: synthetic sets (seeds seed..seed+N-1), their files and their
        evaluations (empty when not evaluated), one summary over all of them."""
        first = synsets[0]
        several = len(synsets) > 1
        seeds = [s.seed for s in synsets]
        results = per_run or [{}] * len(seeds)
        return cls(
            dataset=dataset, method=first.method, ipc=first.ipc, seed=seed, eval=combine_runs(per_run),
            ptm_query=list(first.ptm_query), ptms=list(first.ptms), guidance=first.guidance,
            alpha=first.alpha, alpha_source=first.alpha_source, iterations=first.iterations,
            seconds_distill=sum(s.seconds_distill for s in synsets), seconds_eval=seconds_eval,
            synset=None if several else synset_files[0], world_size=world_size,
            lr=[s.lr for s in synsets] if first.lr is not None else None, teacher=list(first.teacher),
            runs=[
                run_record(run_seed, file, result)
                for run_seed, file, result in zip(seeds, synset_files, results, strict=True)
            ] if several else None,
        )
