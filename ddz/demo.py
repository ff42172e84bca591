"""The whole ddz flow on the embedded data set (scikit-learn's digits), in a few CPU minutes.

train a zoo -> publish it to a local git hub -> resolve a query through the registry and pull the
snapshots back through the hub path (sha256-verified) -> distil with DM, without and with CLoM ->
evaluate both (and the random-real baseline) by the protocol -> report.md + PNG grids.

Everything lives under one folder (`out`): its own zoo home (zoo, caches), registry and hub, passed
explicitly as a ZooPaths, so the demo never touches a user's zoo and a re-run reuses what an
earlier run trained.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ddz.data import load_dataset
from ddz.data.base import ImageDataset
from ddz.distill.baselines import BASELINES_FOLDER
from ddz.distill.evaluate import ArchResult, EvalConfig
from ddz.distill.guidance import GuidanceConfig
from ddz.distill.labels import LabelConfig
from ddz.distill.methods import DistillConfig
from ddz.distill.report import RunReport
from ddz.distill.request import EvalRequest, RunRequest
from ddz.distill.run import RunContext, evaluate, run
from ddz.distill.synset import GRID_FILE
from ddz.io import atomic_write_json, atomic_write_text
from ddz.progress import NullProgress, Progress
from ddz.zoo.api import Zoo
from ddz.zoo.launch import LaunchConfig
from ddz.zoo.paths import ZooPaths
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.records import Resolved
from ddz.zoo.sources.local import read_snapshot_meta

DATASET = "digits"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of each stage. `quick()` is what the test suite runs."""

    # The PTM pool (bench/demo_zoo_sweep.py, docs/zoo.md "The demo's PTM pool"): not convnet4,
    # whose last instance norm sees 2x2 pixels on 16px digits and leaves it flat logits. The
    # recipe stays the paper's (SGD lr 0.01, momentum 0.9, wd 5e-3, no augmentation); only the
    # sizes below are the demo's.
    archs: tuple[str, ...] = ("convnet3", "convnet3bn")
    seeds: int = 3
    zoo_epochs: int = 10
    zoo_batch: int = 64
    zoo_width: int | None = 32  # the ConvNets' width (None: the arch's own, 128)
    # torch CPU threads while the zoo trains (None: the process's). One: these small nets gain
    # nothing from more on a shared machine (docs/zoo.md), and the snapshots are the same bytes
    # whatever the core count (CPU results are bit-identical for a given thread count).
    zoo_threads: int | None = 1
    early_epoch: int = 2
    ipc: int = 10
    dm_iterations: int = 200
    batch_real: int = 64
    eval_models: int = 5
    eval_epochs: int = 150
    ptm_epoch: int | None = None  # the snapshot that guides; None: the last (zoo_epochs)
    alpha: float | None = None  # None: ddz's default for digits (ddz.distill.alphas)

    @classmethod
    def quick(cls) -> DemoConfig:
        # Ten evaluation epochs: the soft row's full-data baseline trains on the whole training
        # split, and at 30 epochs it cost most of the suite's demo test.
        return cls(
            zoo_epochs=2, early_epoch=1, dm_iterations=20, batch_real=64, eval_models=2, eval_epochs=10
        )

    @property
    def ptm_query(self) -> str:
        return f"{DATASET}/*/*@epoch{self.ptm_epoch or self.zoo_epochs}"

    @property
    def zoo_recipe(self) -> TrainRecipe:
        """The paper's PTM recipe (SGD lr 0.01, momentum 0.9, wd 5e-3, no augmentation) at the
        demo's sizes: epochs, batch, ConvNet width; snapshots at the early epoch and the last."""
        return TrainRecipe(
            epochs=self.zoo_epochs,
            batch_size=self.zoo_batch,
            snapshots=tuple(sorted({self.early_epoch, self.zoo_epochs})),
            net=(("width", self.zoo_width),) if self.zoo_width else (),
        )


def train_zoo(zoo: Zoo, config: DemoConfig, data: ImageDataset, device: str, progress: Progress) -> None:
    """The demo's zoo: every arch x seed by `config.zoo_recipe` (runs already done are skipped)."""
    jobs = zoo.plan(DATASET, list(config.archs), list(range(config.seeds)), config.zoo_recipe, data,
                    device=device)
    launch = LaunchConfig(launcher="inline", threads=config.zoo_threads)
    summary = zoo.train([job for job, _ in jobs], launch, progress, data)
    if summary.failed:
        raise RuntimeError(f"zoo training failed: {summary.failed[0].error}")


def ptm_entries(pulled: list[tuple[Resolved, Path]]) -> list[dict[str, Any]]:
    """The report's PTM list: name, sha256 and the test accuracy the snapshot recorded when it
    was trained (read from its header, not recomputed; None if it recorded none)."""
    entries = []
    for row, path in pulled:
        meta = read_snapshot_meta(path)
        test_acc = meta.metrics.get("test_acc")
        entries.append({"name": str(meta.name), "sha256": row.sha256, "test_acc": test_acc})
    return entries


def ptm_table(ptms: list[dict[str, Any]]) -> list[str]:
    """The markdown table of the PTMs used: name, test accuracy, sha256."""
    def acc(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    return [
        "| name | test accuracy (%) | sha256 |",
        "|---|---|---|",
        *[f"| {p['name']} | {acc(p.get('test_acc'))} | `{p['sha256']}` |" for p in ptms],
    ]


@dataclass
class DemoRow:
    method: str
    ptm_query: str
    result: ArchResult
    seconds: float
    grid: str | None = None
    labels: str = "hard"  # or "soft (TEACHER)"
    scores: dict[str, Any] | None = None  # DD-Ranking's scores of the row (ddz.distill.scores)

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "ptm_query": self.ptm_query,
            "labels": self.labels,
            "seconds": round(self.seconds, 2),
            "grid": self.grid,
            **self.result.to_json(),
            **({"scores": self.scores} if self.scores is not None else {}),
        }


@dataclass
class DemoReport:
    config: DemoConfig
    seed: int
    rows: list[DemoRow]
    ptms: list[dict[str, Any]]  # name, sha256, test_acc (the snapshot's recorded metric)
    alpha: float | dict[str, float]
    alpha_source: str
    zoo_seconds: float
    hub: str
    pushed_revisions: dict[str, str]
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def guidance_effect(self) -> float:
        """Accuracy of DM + CLoM minus DM (fractions, like the rows)."""
        by_method = {row.method: row.result.mean for row in self.rows}
        return by_method["DM + CLoM"] - by_method["DM"]

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config),
            "seed": self.seed,
            "rows": [r.to_json() for r in self.rows],
            "ptms": self.ptms,
            "alpha": self.alpha,
            "alpha_source": self.alpha_source,
            "guidance_effect": self.guidance_effect,
            "hub": self.hub,
            "pushed_revisions": self.pushed_revisions,
            "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
        }


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> DemoReport:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = config or DemoConfig()
    progress = progress or NullProgress()
    zoo = Zoo(ZooPaths.under(out / "home", registry=out / "registry.yaml"))
    stages: dict[str, float] = {}
    data = load_dataset(DATASET, device=device)

    # 1. The zoo: every arch x seed, snapshots at an early epoch and the last.
    started = time.perf_counter()
    train_zoo(zoo, config, data, device, progress)
    stages["zoo"] = time.perf_counter() - started

    # 2. Publish to a local git hub; the registry records each snapshot pinned to its commit.
    started = time.perf_counter()
    hub = out / "hub"
    pushed = zoo.push(f"{DATASET}/*/*", str(hub), progress=progress)
    revisions = {repo.repo: repo.revision for repo in pushed.repos}

    # 3. Resolve the early-snapshot query through the registry and pull it back through the hub.
    pulled = zoo.pull(config.ptm_query, progress=progress)
    ptm_list = ptm_entries(pulled)
    stages["hub"] = time.perf_counter() - started

    # 4. Distil with DM, unguided and guided by the pool, then evaluate by the protocol.
    context = RunContext(zoo, device=device, progress=progress, data=data,
                         cache=zoo.paths.home / "cache" / BASELINES_FOLDER)
    rows, guided = demo_rows(out, config, seed, context)
    stages.update({row.method: row.seconds for row in rows[1:]})
    alpha, alpha_source = guided.alpha, guided.alpha_source or ""

    report = DemoReport(
        config=config,
        seed=seed,
        rows=rows,
        ptms=ptm_list,
        alpha=alpha,
        alpha_source=alpha_source,
        zoo_seconds=stages["zoo"],
        hub=str(hub),
        pushed_revisions=revisions,
        stage_seconds=stages,
    )
    write_report(out, report)
    return report


def demo_rows(out: Path, config: DemoConfig, seed: int,
              context: RunContext) -> tuple[list[DemoRow], RunReport]:
    """Random real, DM and DM + CLoM, each one request through the run path every front door
    uses; the guided run's report comes back too (its alpha and where it came from)."""
    evaluation = EvalConfig(models=config.eval_models, epochs=config.eval_epochs)
    started = time.perf_counter()
    baseline = evaluate(EvalRequest(evaluation=evaluation, seed=seed, random_real=True, dataset=DATASET,
                                    ipc=config.ipc, scores=False), context)
    rows = [DemoRow("random real", "-", baseline.eval[evaluation.archs[0]], time.perf_counter() - started)]
    distill_config = DistillConfig(
        method="dm", ipc=config.ipc, iterations=config.dm_iterations, batch_real=config.batch_real
    )
    guided = GuidanceConfig(kind="clom", alpha=config.alpha)
    dm: RunReport | None = None
    for label, folder, query in (("DM", "dm", None), ("DM + CLoM", "dm-clom", config.ptm_query)):
        started = time.perf_counter()
        run_dir = out / "runs" / folder
        report = run(RunRequest(
            DATASET, distill_config, ptm=(query,) if query else (),
            guidance=guided if query else GuidanceConfig(), seed=seed, evaluation=evaluation,
            out=str(run_dir), checkpoint_every=max(config.dm_iterations // 4, 1), scores=False,
        ), context)
        grid = out / f"{folder}.png"
        shutil.copyfile(run_dir / GRID_FILE, grid)
        rows.append(DemoRow(label, query or "-", report.eval[evaluation.archs[0]],
                            time.perf_counter() - started, grid.name))
        dm = dm if query else report
    rows.append(soft_row(config, evaluation, dm, context))
    return rows, report


def soft_row(config: DemoConfig, evaluation: EvalConfig, dm: RunReport | None,
             context: RunContext) -> DemoRow:
    """The DM set under soft labels from the zoo's first PTM (DD-Ranking's protocol), with its
    scores beside a random subset under the same soft labels and the full data."""
    assert dm is not None
    teacher = f"{DATASET}/{config.archs[0]}/seed0@epoch{config.zoo_epochs}"
    soft = replace(evaluation, labels=LabelConfig("soft", (teacher,)))
    started = time.perf_counter()
    report = evaluate(EvalRequest((str(dm.synset),), soft, seed=dm.seed), context)
    arch = evaluation.archs[0]
    return DemoRow("DM, soft labels", "-", report.eval[arch], time.perf_counter() - started, None,
                   f"soft ({teacher})", report.scores[arch])


def report_markdown(report: DemoReport) -> str:
    c = report.config
    lines = [
        "# ddz demo report",
        "",
        f"Data set: scikit-learn digits (16x16, 10 classes), IPC {c.ipc}, seed {report.seed}.",
        "",
        "| method | PTM query | labels | accuracy (%) mean ± std | models | LRS | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        r = row.result
        lrs = f"{row.scores['lrs']:.4f}" if row.scores else "-"
        lines.append(
            f"| {row.method} | `{row.ptm_query}` | {row.labels} | {100 * r.mean:.2f} ± {100 * r.std:.2f} | "
            f"{r.models} | {lrs} | {row.seconds:.1f} |"
        )
    lines += ["", guidance_sentence(report)]
    lines += [
        "",
        "## Settings",
        "",
        f"- Zoo: archs {', '.join(c.archs)} (width {c.zoo_width or 'the arch default'}); seeds "
        f"0..{c.seeds - 1}; {c.zoo_epochs} epochs with the paper's PTM recipe (SGD lr 0.01, momentum "
        f"0.9, wd 5e-3, no augmentation) at batch {c.zoo_batch}; snapshots at epochs "
        f"{c.early_epoch} and {c.zoo_epochs} ({report.zoo_seconds:.1f} s). Each PTM's test accuracy "
        "is listed under \"PTMs used\".",
        f"- Hub: local git hub `{report.hub}`; revisions: "
        + ", ".join(f"{repo}@{rev[:10]}" for repo, rev in sorted(report.pushed_revisions.items())),
        f"- Distillation: DM, {c.dm_iterations} iterations, batch_real {c.batch_real}, ConvNet-3, "
        f"DSA on; CLoM pool = `{c.ptm_query}` pulled back through the hub, one PTM drawn per iteration, "
        f"alpha {report.alpha} ({report.alpha_source}).",
        f"- Evaluation: ConvNet-3 x {c.eval_models} models, {c.eval_epochs} + 1 epochs (the reference's "
        f"loop), SGD lr 0.01 (x0.1 after epoch {c.eval_epochs // 2 + 1}, optimiser rebuilt), momentum 0.9, "
        f"wd 5e-4, batch 256, DSA; accuracy on the real test split.",
        "",
        "## PTMs used",
        "",
        *ptm_table(report.ptms),
        "",
        "## Synthetic sets (classes x IPC)",
        "",
        *[f"### {row.method}\n\n![{row.method}]({row.grid})\n" for row in report.rows if row.grid],
    ]
    return "\n".join(lines) + "\n"


def guidance_sentence(report: DemoReport) -> str:
    """The effect of guidance in this run, measured against its own spread: one synthetic set per
    row, so the stds are those of the evaluation models."""
    rows = {row.method: row.result for row in report.rows}
    plain, guided = rows["DM"], rows["DM + CLoM"]
    gain = 100 * report.guidance_effect
    spread = 100 * max(plain.std, guided.std)
    verdict = "within" if abs(gain) <= spread else "beyond"
    change = "gain" if gain >= 0 else "loss"
    return (
        f"CLoM {change}: {gain:+.2f} points (DM {100 * plain.mean:.2f} ± {100 * plain.std:.2f}, "
        f"DM + CLoM {100 * guided.mean:.2f} ± {100 * guided.std:.2f}; {verdict} the larger std of the "
        f"{plain.models} evaluation models). One synthetic set per row: see docs/distill.md for the "
        "sweep over seeds that this demo's snapshot and alpha come from."
    )


def write_report(out: Path, report: DemoReport) -> None:
    atomic_write_text(out / "report.md", report_markdown(report))
    atomic_write_json(out / "report.json", report.to_json())
