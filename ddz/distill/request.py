"""What a run is asked to do, as typed records: `RunRequest` (distil N synthetic sets, guided or
not, then evaluate them) and `EvalRequest` (evaluate saved sets or random real images). Both
round-trip through JSON, so a request can be written as a YAML file (`ddz distill --config`) and
read back from any report (`report.json`'s "request")."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ddz.data.augment import DSAConfig
from ddz.data.mix import MixConfig
from ddz.distill.evaluate import EvalConfig
from ddz.distill.guidance import GuidanceConfig
from ddz.distill.labels import LabelConfig
from ddz.distill.methods import DistillConfig
from ddz.errors import ConfigError


def _known(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
    return dict(data)


def check_weight(w: float) -> None:
    if not 0.0 <= w <= 1.0:  # also false for NaN
        raise ConfigError(f"--score-weight must lie in [0, 1], got {w}")


def guidance_from_json(data: dict[str, Any]) -> GuidanceConfig:
    data = _known(GuidanceConfig, data, "guidance")
    data["arch_alphas"] = tuple(tuple(pair) for pair in data.get("arch_alphas", ()))
    return GuidanceConfig(**data)


def eval_from_json(data: dict[str, Any] | None) -> EvalConfig | None:
    if data is None:
        return None
    data = _known(EvalConfig, data, "evaluation")
    data["archs"] = tuple(data.get("archs", EvalConfig.archs))
    data["dsa_config"] = DSAConfig(**data.get("dsa_config", {}))
    labels = _known(LabelConfig, data.get("labels", {}), "evaluation.labels")
    labels["teacher"] = tuple(labels.get("teacher", ()))
    data["labels"] = LabelConfig(**labels)
    mix = data.get("mix")
    data["mix"] = MixConfig(**_known(MixConfig, mix, "evaluation.mix")) if mix is not None else None
    return EvalConfig(**data)


@dataclass(frozen=True)
class RunRequest:
    """Distil `dataset` into `runs` synthetic sets (seeds seed..seed+runs-1) and evaluate each.

    `ptm`: zoo queries (or @lockfiles) of the guidance pool, weighed by `guidance`; `experts`:
    the zoo query of MTT's expert trajectories; `teacher`: the zoo query (or @lockfile) of the
    PTMs that drive RDED and SRe2L (the soft labels of the evaluation name theirs in
    `evaluation.labels.teacher`; `ddz distill --teacher` sets both); `evaluation` None: no
    evaluation; `eval_every` N > 0 also evaluates every N iterations (the curve MTT's reference
    reports); `out`: the run folder (one run) or the folder of seed<S> folders (several); None:
    runs/<name>."""

    dataset: str
    distill: DistillConfig = field(default_factory=DistillConfig)
    ptm: tuple[str, ...] = ()
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    experts: tuple[str, ...] = ()
    teacher: tuple[str, ...] = ()
    runs: int = 1
    seed: int = 0
    evaluation: EvalConfig | None = field(default_factory=EvalConfig)
    eval_every: int = 0
    resolution: int | None = None
    out: str | None = None
    checkpoint_every: int = 100
    # DD-Ranking's scores beside a random subset and the full data (cached). None: with soft
    # labels only, where they matter most (a random subset can look as good) and where the
    # full-data baseline is paid once per setting; True / False: always / never.
    scores: bool | None = None
    score_weight: float = 0.5  # LRS's w
    ars: bool = False  # also evaluate without augmentation: DD-Ranking's ARS

    def __post_init__(self) -> None:
        check_weight(self.score_weight)
        kind, spec = self.guidance.kind, self.distill.spec
        if kind == "none" and self.ptm:
            raise ConfigError("--guidance none with --ptm: drop --ptm, or choose --guidance auto|clom|cclom")
        if kind in ("clom", "cclom") and not self.ptm:
            raise ConfigError(
                f"--guidance {kind} needs PTMs: add --ptm QUERY (e.g. --ptm 'cifar10/convnet3/*@last')")
        if (self.guidance.alpha is not None or self.guidance.arch_alphas) and not self.ptm:
            raise ConfigError("--alpha weights PTM guidance: add --ptm QUERY, or drop --alpha")
        if self.experts and not spec.needs_experts:
            raise ConfigError(f"--experts are MTT's: use --method mtt, or drop --experts for {spec.name}")
        if spec.needs_experts and not self.experts:
            raise ConfigError(
                f"--method {spec.name} needs expert trajectories: add --experts 'DATASET/ARCH/*' "
                "(train them with `ddz zoo train --recipe mtt-expert --snapshots every`)")
        if spec.needs_teacher and not self.teacher:
            raise ConfigError(f"--method {spec.name} needs a teacher: add --teacher QUERY (a zoo query or "
                              "@lockfile, e.g. --teacher 'cifar10/convnet3bn/seed0@last')")
        if self.teacher and not spec.needs_teacher:
            raise ConfigError(f"a distillation teacher drives rded and sre2l, not {spec.name}: drop it "
                              "(soft labels at evaluation: --eval-labels soft --teacher QUERY)")
        if self.ptm and not spec.guided:
            raise ConfigError(f"--method {spec.name} has no loss to add --ptm guidance to: drop --ptm")
        if self.runs < 1:
            raise ConfigError(f"--runs must be at least 1, got {self.runs}")
        if self.eval_every < 0:
            raise ConfigError(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.eval_every and self.evaluation is None:
            raise ConfigError("--eval-every needs evaluation: drop --eval-models 0, or drop --eval-every")
        if self.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")

    @property
    def scores_on(self) -> bool:
        if self.evaluation is None:
            return False
        return self.scores if self.scores is not None else self.evaluation.labels.soft

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.runs)]

    def resolved(self) -> RunRequest:
        """Every default of the distillation filled in (what a report records)."""
        return replace(self, distill=self.distill.resolved(self.dataset))

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRequest:
        data = _known(cls, data, "request")
        if "dataset" not in data:
            raise ConfigError("the request names no data set: add --dataset D (or dataset: D in the file)")
        data["distill"] = DistillConfig.from_json(data.get("distill", {}))
        data["guidance"] = guidance_from_json(data.get("guidance", {}))
        data["evaluation"] = eval_from_json(data.get("evaluation", asdict(EvalConfig())))
        data["ptm"] = tuple(data.get("ptm", ()))
        data["experts"] = tuple(data.get("experts", ()))
        data["teacher"] = tuple(data.get("teacher", ()))
        return cls(**data)


@dataclass(frozen=True)
class EvalRequest:
    """Evaluate saved synthetic sets (files or run folders), set k with seed + k; or, with
    `random_real`, `runs` draws of IPC random real images per class of `dataset`."""

    synsets: tuple[str, ...] = ()
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    random_real: bool = False
    dataset: str | None = None
    ipc: int = 10
    runs: int = 1
    resolution: int | None = None
    scores: bool | None = None  # as RunRequest.scores
    score_weight: float = 0.5
    ars: bool = False

    @property
    def scores_on(self) -> bool:
        return self.scores if self.scores is not None else self.evaluation.labels.soft

    def __post_init__(self) -> None:
        check_weight(self.score_weight)
        if self.random_real and (self.dataset is None or self.synsets):
            raise ConfigError("--random-real needs --dataset D (and no SYNSET argument)")
        if not self.random_real and not self.synsets:
            raise ConfigError("give one or more SYNSET files, or --random-real --dataset D --ipc K")
        if self.runs < 1:
            raise ConfigError(f"--runs must be at least 1, got {self.runs}")

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def read_request_file(path: str | Path) -> dict[str, Any]:
    """The request in a YAML (or JSON) file: a request itself, or a report that records one."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path} does not exist; give a request YAML or a report.json") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"--config {path} is not valid YAML{line}: fix it or regenerate it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} holds no request (a mapping with dataset, distill, ...)")
    request = data.get("request", data)
    if not isinstance(request, dict):
        raise ConfigError(f"--config {path}: its 'request' is not a mapping")
    return request
