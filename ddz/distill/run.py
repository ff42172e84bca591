"""One run path for every front door: `run(RunRequest) -> RunReport` and
`evaluate(EvalRequest) -> RunReport`. The CLI's `ddz distill` and `ddz eval`, `ddz repro`'s
cells, the demo and Python users all come through here.

A run: load the data set -> MTT's experts (and ZCA when they were trained whitened) -> the
guidance pool and its alpha -> for each seed, distil into its run folder (resumable) and
evaluate by the protocol, with the step size MTT learnt -> one report, which records the
resolved request so that it can be run again as it was.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch

from ddz.data import load_dataset
from ddz.data.base import ImageDataset
from ddz.data.mix import MixConfig
from ddz.data.zca import whitened
from ddz.distill.baselines import Baselines, hard_protocol
from ddz.distill.curve import CURVE_FILE, Curve
from ddz.distill.evaluate import (
    EVAL_CACHE_FILE,
    SOFT_EVAL_CACHE_FILE,
    ArchResult,
    EvalConfig,
    check_ipc,
    combine_runs,
    evaluate_cached,
    evaluate_synset,
    random_real,
)
from ddz.distill.experts import ExpertBuffer
from ddz.distill.guidance import Guidance
from ddz.distill.labels import Teacher
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig
from ddz.distill.methods.mtt_defaults import mtt_settings
from ddz.distill.report import RunReport, run_record
from ddz.distill.request import EvalRequest, RunRequest
from ddz.distill.scores import AugScores, Scores
from ddz.distill.synset import SYNSET_FILE, SynSet, load_synset
from ddz.distributed.ranks import SINGLE, Ranks
from ddz.errors import ConfigError
from ddz.progress import NullProgress, Progress
from ddz.zoo.api import Zoo


@dataclass
class RunContext:
    """Where a run's inputs live and where it reports: not part of the request (the same
    request runs on another machine, zoo or number of ranks)."""

    zoo: Zoo | None = None  # needed for --ptm and --experts
    data_root: str | Path = "data"
    device: str = "cpu"
    progress: Progress = field(default_factory=NullProgress)
    ranks: Ranks = SINGLE
    log: Callable[[str], None] = lambda line: None  # one line for the user, as the run goes
    data: ImageDataset | None = None  # an already loaded data set (a grid of cells shares one)
    cache: Path | None = None  # where the scores' baselines are kept (None: computed every time)

    def need_zoo(self, option: str) -> Zoo:
        if self.zoo is None:
            raise ConfigError(f"{option} reads the zoo: pass a Zoo in the RunContext")
        return self.zoo

    def load(self, dataset: str, resolution: int | None) -> ImageDataset:
        if self.data is not None:
            return self.data
        return load_dataset(dataset, self.data_root, self.device, resolution)


def default_out(dataset: str, method: str, ipc: int, seed: int, guidance: Guidance | None = None) -> Path:
    """runs/<dataset>-<method>-ipc<K>-seed<S>; a guided run adds -<guidance>-<8 hex digits of its
    PTMs and alpha>, so that guided and unguided runs of one setting do not share a folder."""
    name = Path(dataset.partition(":")[2]).stem if ":" in dataset else dataset
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    folder = f"{name}-{method}-ipc{ipc}-seed{seed}"
    if guidance is not None:
        key = ",".join(p["sha256"] for p in guidance.describe()) + f"|{guidance.alpha}"
        folder += f"-{guidance.kind}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return Path("runs") / folder


def run_folders(base: str | Path | None, dataset: str, method: str, ipc: int, seeds: Sequence[int],
                guidance: Guidance | None = None) -> list[Path]:
    """One folder per run: `base` itself for one run, base/seed<S> for several; by default each
    run's own default folder (so `--runs 2` reuses what `--seed 1` alone would have written)."""
    if base is None:
        return [default_out(dataset, method, ipc, seed, guidance) for seed in seeds]
    if len(seeds) == 1:
        return [Path(base)]
    return [Path(base) / f"seed{seed}" for seed in seeds]


def load_experts(zoo: Zoo, queries: Sequence[str]) -> ExpertBuffer:
    rows = zoo.resolve_all(list(queries))
    return ExpertBuffer(rows, zoo.files(rows))


def check_experts_whitening(request: RunRequest, experts: ExpertBuffer) -> None:
    """MTT's per-(data set, IPC) defaults were tuned with or without ZCA: applying them to experts
    trained the other way silently changes the method. Explicit hyper-parameters override."""
    config = request.distill
    table = mtt_settings(request.dataset, config.ipc)
    defaulted = [name for name in config.mtt.TABLE_FIELDS if getattr(config.mtt, name) is None]
    if config.lr_img is None:
        defaulted.append("lr_img")
    if table.zca is None or table.zca == experts.zca or not defaulted:
        return
    trained = "with" if experts.zca else "without"
    tuned = "with" if table.zca else "without"
    recipe = "mtt-expert-zca" if table.zca else "mtt-expert"
    raise ConfigError(
        f"--experts were trained {trained} ZCA but MTT's defaults for {request.dataset} IPC {config.ipc} "
        f"were tuned {tuned} it; train experts with --recipe {recipe}, or set "
        f"{', '.join('--' + n.replace('_', '-') for n in defaulted)} yourself")


def prepare(request: RunRequest, context: RunContext) -> tuple[ImageDataset, ExpertBuffer | None,
                                                                Guidance | None, Teacher | None]:
    """The data set (whitened when the experts were), the experts, the guidance pool and the
    distillation teacher (RDED, SRe2L)."""
    data = context.load(request.dataset, request.resolution)
    check_ipc(data, request.distill.ipc)
    experts = None
    if request.experts:
        experts = load_experts(context.need_zoo("--experts"), request.experts)
        check_experts_whitening(request, experts)
        if experts.zca and data.zca is None:  # distil (and evaluate) in the space the experts saw
            data = whitened(data)[0]
    guidance = None
    if request.ptm:
        ptms = context.need_zoo("--ptm").load_ptms(list(request.ptm), str(data.device))
        guidance = Guidance(ptms, data, request.guidance, request.distill.method, request.distill.ipc)
        context.log(f"guidance: {guidance.kind}, alpha {guidance.alpha} ({guidance.alpha_source})")
    teacher = None
    if request.teacher:
        ptms = context.need_zoo("--teacher").load_ptms(list(request.teacher), str(data.device))
        teacher = Teacher(ptms, data)
    return data, experts, guidance, teacher


# an evaluation as the request asks for it, under hard labels, or without augmentation
Variant = Literal["protocol", "hard", "plain"]
EvalResult = dict[str, ArchResult]  # per arch


@dataclass
class Evaluator:
    """The evaluation of one request: the protocol, its teacher (soft labels), where notes go."""

    data: ImageDataset
    config: EvalConfig
    context: RunContext
    teacher: Teacher | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, data: ImageDataset, config: EvalConfig, context: RunContext) -> Evaluator:
        teacher = None
        if config.labels.soft:
            ptms = context.need_zoo("--teacher").load_ptms(list(config.labels.teacher), str(data.device))
            teacher = Teacher(ptms, data)
        return cls(data, config, context, teacher)

    @cached_property
    def baselines(self) -> Baselines:
        """The scores' random-subset and full-data accuracies (the context's cache folder)."""
        return Baselines(self.context.cache, self.context.progress, self.context.ranks, self.notes)

    def random_runs(self, ipc: int, seeds: list[int], variant: Variant = "protocol") -> list[EvalResult]:
        """Random real subsets (seed s for each of `seeds`) under `variant`: the baselines' own
        results, so a random-real evaluation and its scores evaluate each subset once."""
        return self.baselines.random_runs(self.data, ipc, self.protocol(variant), seeds,
                                          self.teacher_for(variant))

    def protocol(self, variant: Variant = "protocol") -> EvalConfig:
        """The evaluation itself, its hard-label version (what HLR compares) or its version
        without augmentation (what ARS compares)."""
        if variant == "hard":
            return hard_protocol(self.config)
        if variant == "plain":
            return replace(self.config, augment="none", mix=MixConfig())
        return self.config

    def teacher_for(self, variant: Variant) -> Teacher | None:
        """The soft labels' teacher, except under the hard-label version of the protocol."""
        return None if variant == "hard" else self.teacher

    def variants(self, scores: bool, ars: bool) -> list[Variant]:
        """The other evaluations a set needs for its scores."""
        return [v for v, wanted in (("hard", scores and self.config.labels.soft), ("plain", scores and ars))
                if wanted]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, seed: int, lr: float | None = None,
                 cache: Path | None = None, variant: Variant = "protocol",
                 overwrite: bool = True) -> dict[str, ArchResult]:
        """The set's accuracies (with the step size it learnt) under `variant` of the protocol;
        `cache`: a JSON file that keeps them (`overwrite` False: unless it keeps another)."""
        config, teacher = _with_lr(self.protocol(variant), lr), self.teacher_for(variant)
        context = self.context
        if cache is None:
            return evaluate_synset(images, labels, self.data, config, seed, context.progress, self.notes,
                                   context.ranks, teacher)
        return evaluate_cached(images, labels, self.data, config, seed, cache, context.progress, self.notes,
                               context.ranks, teacher, overwrite)

    def scores(self, ipc: int, seeds: list[int], seed: int, results: dict[Variant, list[EvalResult]],
               weight: float) -> dict[str, dict[str, Any]]:
        """DD-Ranking's scores of the sets beside a random subset (same protocol, same seeds)
        and the full data (hard labels), both cached; ARS when the sets were also evaluated
        without augmentation."""
        baselines = self.baselines
        random = baselines.random_subset(self.data, ipc, self.config, seeds, self.teacher)
        full = baselines.full_data(self.data, self.config, seed)
        mine = combine_runs(results["protocol"])
        hard = combine_runs(results["hard"]) if "hard" in results else mine
        plain = combine_runs(results["plain"]) if "plain" in results else None
        random_plain = (baselines.random_subset(self.data, ipc, self.protocol("plain"), seeds, self.teacher)
                        if plain is not None else None)
        regime = self.config.labels.labels
        scores = {}
        for arch in mine:
            aug = None
            if plain is not None and random_plain is not None:
                aug = AugScores(mine[arch].mean, random[arch].mean, plain[arch].mean, random_plain[arch].mean,
                                weight)
            scores[arch] = Scores(mine[arch].mean, random[arch].mean, full[arch].mean, weight, regime,
                                  hard[arch].mean if regime == "soft" else None, aug).to_json()
        return scores

    def storage(self, images: torch.Tensor) -> dict[str, Any]:
        """Bytes of a set as the soft-label papers count them: images, labels (hard, or stored
        soft), and for regenerated soft labels the teacher (its bytes and hashes)."""
        labels = self.config.labels
        n = len(images)
        stored_soft = labels.soft and labels.soft_mode == "stored"
        record = {"images": images.numel() * images.element_size(),
                  "labels": n * self.data.num_classes * 4 if stored_soft else n * 8,
                  "label_regime": labels.labels if not labels.soft else f"soft/{labels.soft_mode}"}
        if labels.soft and labels.soft_mode == "regenerate" and self.teacher is not None:
            record["teacher"] = self.teacher.bytes
            record["teacher_sha256"] = [p["sha256"] for p in self.teacher.describe()]
        return record


def run(request: RunRequest, context: RunContext | None = None) -> RunReport:
    """Distil and evaluate as `request` says; every rank of `context.ranks` calls it alike."""
    context = context or RunContext()
    data, experts, guidance, teacher = prepare(request, context)
    config = request.distill.resolved(request.dataset, data.image_size)
    folders = run_folders(request.out, request.dataset, config.method, config.ipc, request.seeds, guidance)
    evaluation = request.evaluation
    if evaluation is not None and evaluation.augment == "rded" and evaluation.crop_factor is None \
            and config.method == "rded":  # RDED's crops span its own regions
        evaluation = replace(evaluation, crop_factor=config.rded.factor)
    evaluator = Evaluator.of(data, evaluation, context) if evaluation is not None else None
    synsets: list[SynSet] = []
    per_run: list[dict[str, ArchResult]] = []
    variants = evaluator.variants(request.scores_on, request.ars) if evaluator is not None else []
    other_runs: dict[Variant, list[dict[str, ArchResult]]] = {v: [] for v in variants}
    curves: list[Curve] = []
    seconds_eval = 0.0
    for seed, folder in zip(request.seeds, folders, strict=True):
        curve = Curve.load(folder / CURVE_FILE, request.eval_every)
        watch = _curve_watcher(curve, folder, evaluator, seed, context) if request.eval_every else None
        synset = distill(
            data, config, seed, guidance, folder, request.checkpoint_every, context.progress,
            dataset_name=request.dataset, ptm_query=request.ptm, experts=experts, ranks=context.ranks,
            watch=watch, watch_every=request.eval_every, teacher=teacher,
        )
        synsets.append(synset)
        context.log(f"synthetic set: {folder / SYNSET_FILE}")
        if evaluator is None:
            continue
        started = time.perf_counter()
        caches = cache_files(evaluator.config.labels.soft)
        per_run.append(evaluator(synset.images, synset.labels, seed, synset.lr, folder / caches["protocol"]))
        for variant in variants:
            other_runs[variant].append(evaluator(synset.images, synset.labels, seed, synset.lr,
                                                 folder / caches[variant], variant))
        seconds_eval += time.perf_counter() - started
        if request.eval_every:
            curve.add(synset.iterations, per_run[-1], final=True)
            curves.append(curve)
    files = [str(folder / SYNSET_FILE) for folder in folders]
    report = RunReport.from_runs(request.dataset, request.seed, synsets, files, per_run, seconds_eval,
                                 context.ranks.world)
    report.request = replace(request.resolved(), distill=config).to_json()
    report.curves = curves or None
    if evaluator is not None:
        _label_report(report, evaluator, synsets[0].images)
        if request.scores_on:
            report.scores = evaluator.scores(config.ipc, request.seeds, request.seed,
                                             {"protocol": per_run, **other_runs}, request.score_weight)
        report.notes = list(dict.fromkeys(evaluator.notes))
    return report


def cache_files(soft: bool) -> dict[Variant, str]:
    """Where a run folder keeps each evaluation: eval.json always holds the set under hard labels
    (a hard run's own, or a soft run's HLR input), so the regimes of one set share it."""
    return {"protocol": SOFT_EVAL_CACHE_FILE if soft else EVAL_CACHE_FILE, "hard": EVAL_CACHE_FILE,
            "plain": "eval-soft-plain.json" if soft else "eval-plain.json"}


def _label_report(report: RunReport, evaluator: Evaluator, images: torch.Tensor) -> None:
    labels = evaluator.config.labels
    report.labels = {"regime": labels.labels, "mix": asdict(evaluator.config.mixing),
                     "augment": evaluator.config.augment}
    if evaluator.config.augment == "rded":  # the crops that make a relabelled batch region-level
        report.labels["crop_factor"] = evaluator.config.region_crop().factor
    if labels.soft and evaluator.teacher is not None:
        report.labels.update(teacher=evaluator.teacher.describe(), loss=labels.loss,
                             temperature=labels.temperature, soft_mode=labels.soft_mode)
    report.storage = evaluator.storage(images)


def _with_lr(config: EvalConfig, lr: float | None) -> EvalConfig:
    """A set that learnt its step size (MTT) is evaluated with it."""
    return replace(config, lr=lr) if lr is not None else config


def _curve_watcher(curve: Curve, folder: Path, evaluator: Evaluator | None, seed: int,
                   context: RunContext) -> Callable[[int, torch.Tensor, torch.Tensor, float | None], None]:
    """Evaluate the set as it stands every `eval_every` iterations (not the final one, which the
    run evaluates anyway), kept in the run folder's curve file so a resumed run keeps its points."""
    assert evaluator is not None  # RunRequest refuses --eval-every without evaluation

    def watch(iteration: int, images: torch.Tensor, labels: torch.Tensor, lr: float | None) -> None:
        if iteration in curve.points:
            return
        curve.add(iteration, evaluator(images, labels, seed, lr))
        if context.ranks.is_main:
            curve.save(folder / CURVE_FILE)

    return watch


def evaluate(request: EvalRequest, context: RunContext | None = None) -> RunReport:
    """Evaluate saved synthetic sets (each with its own learnt step size, when it has one) or
    random real subsets; one summary over all of them, as the reference reports."""
    context = context or RunContext()
    seeds = [request.seed + k for k in range(request.runs if request.random_real else len(request.synsets))]
    if request.random_real:
        assert request.dataset is not None
        data = context.load(request.dataset, request.resolution)
        sets = [(*random_real(data, request.ipc, seed), None) for seed in seeds]  # (for the storage record)
        meta: dict = dict(method="random-real", ipc=request.ipc)
        names: list[str | None] = [None] * len(sets)
    else:
        saved = [load_synset(path) for path in request.synsets]
        _check_one_setting(request.synsets, saved)
        first = saved[0]
        data = context.data or load_dataset(first.dataset, context.data_root, context.device,
                                            first.images.shape[-1])
        if first.zca and data.zca is None:  # the set lives in the whitened space its distillation used
            data = whitened(data)[0]
        sets = [(s.images, s.labels, s.lr) for s in saved]
        meta = dict(method=first.method, ipc=first.ipc, ptm_query=first.ptm_query, ptms=first.ptms,
                    guidance=first.guidance, alpha=first.alpha, alpha_source=first.alpha_source,
                    iterations=first.iterations, seconds_distill=sum(s.seconds_distill for s in saved))
        names = list(request.synsets)
    started = time.perf_counter()
    evaluator = Evaluator.of(data, request.evaluation, context)
    variants: list[Variant] = ["protocol", *evaluator.variants(request.scores_on, request.ars)]
    if request.random_real:
        results = {variant: evaluator.random_runs(request.ipc, seeds, variant) for variant in variants}
    else:  # a set in its run folder shares the folder's caches with `ddz distill` (adding, never replacing)
        caches = cache_files(evaluator.config.labels.soft)
        folders = [_run_folder(name) for name in names]
        results = {variant: [evaluator(images, labels, seed, lr, folder / caches[variant] if folder else None,
                                       variant, overwrite=False)
                             for (images, labels, lr), seed, folder in zip(sets, seeds, folders, strict=True)]
                   for variant in variants}
    per_run = results["protocol"]
    several = len(sets) > 1
    report = RunReport(
        dataset=data.name, seed=request.seed, eval=combine_runs(per_run),
        seconds_eval=time.perf_counter() - started, world_size=context.ranks.world,
        synset=None if several else names[0],
        runs=[run_record(seed, name, result)
              for seed, name, result in zip(seeds, names, per_run, strict=True)] if several else None,
        lr=[lr for _, _, lr in sets] if any(lr is not None for _, _, lr in sets) else None,
        **meta,
    )
    _label_report(report, evaluator, sets[0][0])
    if request.scores_on:
        report.scores = evaluator.scores(report.ipc, seeds, request.seed, results, request.score_weight)
    report.notes = list(dict.fromkeys(evaluator.notes))
    return report


def _run_folder(name: str | None) -> Path | None:
    """The run folder a saved set was given as (or as its synset file in one); None otherwise."""
    if name is None:
        return None
    path = Path(name)
    if path.is_dir():
        return path
    return path.parent if path.name == SYNSET_FILE else None


def _check_one_setting(paths: Sequence[str], saved: Sequence[SynSet]) -> None:
    first = saved[0]
    for path, other in zip(paths[1:], saved[1:], strict=True):
        if (other.dataset, other.ipc, other.classes) != (first.dataset, first.ipc, first.classes):
            raise ConfigError(
                f"{path} is {other.dataset} IPC {other.ipc} but {paths[0]} is {first.dataset} "
                f"IPC {first.ipc}; evaluate synthetic sets of one setting together"
            )


__all__ = ["DistillConfig", "EvalRequest", "RunContext", "RunRequest", "default_out", "evaluate", "run",
           "run_folders"]
