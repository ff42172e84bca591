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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ddz.data import load_dataset
from ddz.distill.evaluate import ArchResult, EvalConfig, evaluate_synset, random_real
from ddz.distill.guidance import Guidance, GuidanceConfig
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig
from ddz.distill.synset import GRID_FILE
from ddz.io import atomic_write_json, atomic_write_text
from ddz.progress import NullProgress, Progress
from ddz.zoo.api import Zoo
from ddz.zoo.launch import LaunchConfig
from ddz.zoo.loading import load_snapshot
from ddz.zoo.paths import ZooPaths
from ddz.zoo.recipes import TrainRecipe

DATASET = "digits"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of each stage. `quick()` is what the test suite runs."""

    archs: tuple[str, ...] = ("convnet3", "convnet4")
    seeds: int = 3
    zoo_epochs: int = 10
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
        return cls(
            zoo_epochs=2, early_epoch=1, dm_iterations=20, batch_real=64, eval_models=2, eval_epochs=30
        )

    @property
    def ptm_query(self) -> str:
        return f"{DATASET}/*/*@epoch{self.ptm_epoch or self.zoo_epochs}"


@dataclass
class DemoRow:
    method: str
    ptm_query: str
    result: ArchResult
    seconds: float
    grid: str | None = None

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "ptm_query": self.ptm_query,
            "seconds": round(self.seconds, 2),
            "grid": self.grid,
            **self.result.to_json(),
        }


@dataclass
class DemoReport:
    config: DemoConfig
    seed: int
    rows: list[DemoRow]
    ptms: list[dict[str, str]]
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
    recipe = TrainRecipe(
        epochs=config.zoo_epochs, snapshots=tuple(sorted({config.early_epoch, config.zoo_epochs}))
    )
    jobs = zoo.plan(DATASET, list(config.archs), list(range(config.seeds)), recipe, data, device=device)
    summary = zoo.train([job for job, _ in jobs], LaunchConfig(launcher="inline"), progress, data)
    if summary.failed:
        raise RuntimeError(f"zoo training failed: {summary.failed[0].error}")
    stages["zoo"] = time.perf_counter() - started

    # 2. Publish to a local git hub; the registry records each snapshot pinned to its commit.
    started = time.perf_counter()
    hub = out / "hub"
    pushed = zoo.push(f"{DATASET}/*/*", str(hub), progress=progress)
    revisions = {repo.repo: repo.revision for repo in pushed.repos}

    # 3. Resolve the early-snapshot query through the registry and pull it back through the hub.
    pulled = zoo.pull(config.ptm_query, progress=progress)
    ptms = [load_snapshot(path, row.sha256, device) for row, path in pulled]
    stages["hub"] = time.perf_counter() - started

    # 4. Distil with DM, unguided and guided by the pulled pool, then evaluate by the protocol.
    eval_config = EvalConfig(models=config.eval_models, epochs=config.eval_epochs)
    distill_config = DistillConfig(
        method="dm", ipc=config.ipc, iterations=config.dm_iterations, batch_real=config.batch_real
    )
    rows: list[DemoRow] = []

    started = time.perf_counter()
    images, labels = random_real(data, config.ipc, seed)
    result = evaluate_synset(images, labels, data, eval_config, seed, progress)[eval_config.archs[0]]
    rows.append(DemoRow("random real", "-", result, time.perf_counter() - started))

    guide = Guidance(ptms, data, GuidanceConfig(kind="clom", alpha=config.alpha), "dm", config.ipc)
    runs = [("DM", "-", None), ("DM + CLoM", config.ptm_query, guide)]
    for label, query, guidance in runs:
        started = time.perf_counter()
        run_dir = out / "runs" / ("dm-clom" if guidance is not None else "dm")
        synset = distill(
            data,
            distill_config,
            seed,
            guidance,
            run_dir,
            checkpoint_every=max(config.dm_iterations // 4, 1),
            progress=progress,
            dataset_name=DATASET,
            ptm_query=[query] if guidance is not None else [],
        )
        result = evaluate_synset(synset.images, synset.labels, data, eval_config, seed, progress)
        grid = out / f"{run_dir.name}.png"
        shutil.copyfile(run_dir / GRID_FILE, grid)
        rows.append(
            DemoRow(label, query, result[eval_config.archs[0]], time.perf_counter() - started, grid.name)
        )
        stages[label] = rows[-1].seconds

    report = DemoReport(
        config=config,
        seed=seed,
        rows=rows,
        ptms=[{"name": p.name, "sha256": p.sha256} for p in ptms],
        alpha=guide.alpha,
        alpha_source=guide.alpha_source,
        zoo_seconds=stages["zoo"],
        hub=str(hub),
        pushed_revisions=revisions,
        stage_seconds=stages,
    )
    write_report(out, report)
    return report


def report_markdown(report: DemoReport) -> str:
    c = report.config
    lines = [
        "# ddz demo report",
        "",
        f"Data set: scikit-learn digits (16x16, 10 classes), IPC {c.ipc}, seed {report.seed}.",
        "",
        "| method | PTM query | accuracy (%) mean ± std | models | seconds |",
        "|---|---|---|---|---|",
    ]
    for row in report.rows:
        r = row.result
        lines.append(
            f"| {row.method} | `{row.ptm_query}` | {100 * r.mean:.2f} ± {100 * r.std:.2f} | "
            f"{r.models} | {row.seconds:.1f} |"
        )
    lines += ["", guidance_sentence(report)]
    lines += [
        "",
        "## Settings",
        "",
        f"- Zoo: archs {', '.join(c.archs)}; seeds 0..{c.seeds - 1}; {c.zoo_epochs} epochs with the "
        f"paper's PTM recipe (SGD lr 0.01, momentum 0.9, wd 5e-3, batch 256, no augmentation); "
        f"snapshots at epochs {c.early_epoch} and {c.zoo_epochs} ({report.zoo_seconds:.1f} s).",
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
        "| name | sha256 |",
        "|---|---|",
        *[f"| {p['name']} | `{p['sha256']}` |" for p in report.ptms],
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
