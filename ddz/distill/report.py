"""The JSON contract that `ddz distill --json` and `ddz eval --json` write."""

from __future__ import annotations

from dataclasses import dataclass, field

from ddz.distill.evaluate import ArchResult


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
        }
