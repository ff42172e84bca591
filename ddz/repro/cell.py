"""One cell of a grid: an ordinary distillation run folder per seed, evaluated, summarised.

<grid>/<cell key>/seed<S>/ is what `ddz distill --out ... --runs N` writes (checkpoint, synset,
eval.json), so a killed cell resumes from its checkpoints and a finished seed is loaded.
<grid>/<cell key>/cell.json is written last: the cell's settings (its identity), its status and
its report (the `ddz distill --json` contract). A cell whose cell.json says done with the same
settings is skipped; a failed cell keeps its one-line error and is tried again next time.

A cell evaluated in several label regimes (hard and soft) runs one request per regime on the same
run folders: the first distils, the others load the finished sets, and each regime keeps its own
evaluation cache (eval.json, eval-soft.json). Its report is the first regime's; `regimes` holds
every regime's evaluation, labels and scores.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from ddz.data import load_dataset
from ddz.data.base import ImageDataset
from ddz.devices import resolve_device
from ddz.distill.baselines import BASELINES_FOLDER
from ddz.distill.evaluate import EvalConfig
from ddz.distill.guidance import GuidanceConfig
from ddz.distill.labels import LabelConfig
from ddz.distill.methods import DistillConfig, MTTConfig
from ddz.distill.request import RunRequest
from ddz.distill.run import RunContext, run
from ddz.errors import first_line
from ddz.io import atomic_write_json
from ddz.progress import NullProgress, Progress
from ddz.repro.grid import Cell
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths

CELL_FILE = "cell.json"
CELL_LOCK = ".cell.lock"
TAIL_LINES = 15
Status = Literal["done", "skipped", "failed"]
# What a cell keeps of each regime's report (the rest, distillation included, is the regimes' own)
REGIME_KEYS = ("eval", "runs", "labels", "scores", "storage", "seconds_eval", "notes")


@dataclass(frozen=True)
class CellContext:
    """Where a cell's inputs live: the zoo, the data root, the device, the first seed."""

    zoo: ZooPaths
    data_root: str = "data"
    device: str = "auto"
    seed: int = 0
    offline: bool = False

    def to_json(self) -> dict[str, Any]:
        paths = {k: None if v is None else str(v) for k, v in vars(self.zoo).items()}
        return {"zoo": paths, "data_root": self.data_root, "device": self.device, "seed": self.seed,
                "offline": self.offline}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellContext:
        zoo = data["zoo"]
        paths = ZooPaths(Path(zoo["home"]), Path(zoo["registry"]), Path(zoo["hf_cache"]), zoo["hf_endpoint"])
        return cls(paths, data["data_root"], data["device"], data["seed"], data["offline"])


@dataclass
class CellOutcome:
    key: str
    status: Status
    report: dict[str, Any] | None = None  # RunReport.to_json()
    seconds: float = 0.0  # wall time of the cell's work (distillation and evaluation)
    error: str | None = None
    log_tail: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    # label regime -> that regime's evaluation (REGIME_KEYS of its report); {} in a cell.json
    # written before regimes existed, whose report is then its only (hard) regime
    regimes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "seconds": round(self.seconds, 3),
                "error": self.error, "log_tail": self.log_tail, "identity": self.identity,
                "report": self.report, "regimes": self.regimes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellOutcome:
        return cls(data["key"], data["status"], data.get("report"), float(data.get("seconds", 0.0)),
                   data.get("error"), data.get("log_tail"), data.get("identity", {}), data.get("regimes", {}))

    def regime_reports(self) -> dict[str, dict[str, Any]]:
        """Each label regime's evaluation (its report's REGIME_KEYS), first regime first."""
        if self.regimes:
            return self.regimes
        if self.report is None:
            return {}
        regime = (self.report.get("labels") or {}).get("regime", "hard")
        return {regime: {key: self.report[key] for key in REGIME_KEYS if key in self.report}}


def identity(cell: Cell, context: CellContext) -> dict[str, Any]:
    """What must match for a finished cell to be reused."""
    return json.loads(json.dumps({"cell": cell.to_json(), "seed": context.seed}))


def saved_outcome(folder: Path, cell: Cell, context: CellContext) -> CellOutcome | None:
    """The cell's outcome from an earlier run, when it finished with these settings."""
    try:
        saved = CellOutcome.from_json(json.loads((folder / CELL_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None
    if saved.status == "failed" or saved.identity != identity(cell, context):
        return None
    return saved


def run_cell(cell: Cell, folder: Path, context: CellContext, progress: Progress | None = None,
             data: ImageDataset | None = None) -> CellOutcome:
    """Run (or resume, or reload) one cell; any error is caught and recorded as the cell's failure,
    so that a grid goes on. Under the cell's lock (flock on .cell.lock): a cell that another
    process is running is waited for, then found done and skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / CELL_LOCK)):
        saved = saved_outcome(folder, cell, context)
        if saved is not None:
            saved.status = "skipped"
            return saved
        return _run_unlocked(cell, folder, context, progress, data)


def _run_unlocked(cell: Cell, folder: Path, context: CellContext, progress: Progress | None,
                  data: ImageDataset | None) -> CellOutcome:
    started = time.perf_counter()
    try:
        reports = _distill_and_evaluate(cell, folder, context, progress or NullProgress(), data)
        regimes = {regime: {key: report[key] for key in REGIME_KEYS if key in report}
                   for regime, report in reports.items()}
        outcome = CellOutcome(cell.key, "done", reports[cell.labels[0]], time.perf_counter() - started,
                              regimes=regimes)
    except Exception as error:  # noqa: BLE001 - a failed cell is reported and the grid goes on
        tail = "\n".join(traceback.format_exc().rstrip().splitlines()[-TAIL_LINES:])
        seconds = time.perf_counter() - started
        outcome = CellOutcome(cell.key, "failed", None, seconds, first_line(error), tail)
    outcome.identity = identity(cell, context)
    atomic_write_json(folder / CELL_FILE, outcome.to_json())
    return outcome


def cell_data(cell: Cell, context: CellContext) -> ImageDataset:
    return load_dataset(cell.dataset, context.data_root, resolve_device(context.device), cell.resolution)


def cell_evaluation(cell: Cell, labels: str) -> EvalConfig:
    """The cell's evaluation protocol in one label regime (soft: from its teacher)."""
    soft = labels == "soft"
    regime = LabelConfig(labels, cell.teacher, **cell.kd) if soft else LabelConfig()
    return EvalConfig(archs=cell.eval_archs, models=cell.eval_models, epochs=cell.eval_epochs, labels=regime)


def cell_request(cell: Cell, context: CellContext, folder: Path, labels: str | None = None) -> RunRequest:
    """The cell as the one run request every front door builds, evaluated in label regime
    `labels` (None: the cell's first). RDED and SRe2L distil from the soft labels' teacher. Its
    run folders are <folder>/seed<S> whatever the number
    of runs (one run would otherwise use `out` itself); every regime's request names the same."""
    mtt = dict(cell.mtt)
    config = DistillConfig(
        method=cell.method, ipc=cell.ipc, iterations=cell.iterations, arch=cell.arch,
        batch_real=cell.batch_real, net_options=cell.net, outer_loop=cell.outer_loop,
        inner_loop=cell.inner_loop, lr_img=mtt.pop("lr_img", None), mtt=MTTConfig(**mtt),
    )
    iterations = config.resolved(cell.dataset).iterations or 0
    out = folder / f"seed{context.seed}" if cell.runs == 1 else folder
    return RunRequest(
        dataset=cell.dataset, distill=config, ptm=tuple(cell.ptm) if cell.guided else (),
        guidance=GuidanceConfig(cell.guidance, cell.alpha, (), cell.cclom_batch) if cell.guided
        else GuidanceConfig(),
        experts=tuple(cell.experts), runs=cell.runs, seed=context.seed,
        teacher=tuple(cell.teacher) if config.spec.needs_teacher else (),
        evaluation=cell_evaluation(cell, labels or cell.labels[0]),
        resolution=cell.resolution, out=str(out), checkpoint_every=max(1, min(100, iterations // 10)),
        scores=cell.scores,
    )


def baselines_cache(zoo: ZooPaths) -> Path:
    """Where cells keep the scores' baselines (random subsets, full data): the zoo home's cache,
    as `ddz distill` and `ddz eval` do, so that every cell (and spec) on that zoo shares them."""
    return zoo.home / "cache" / BASELINES_FOLDER


def _distill_and_evaluate(cell: Cell, folder: Path, context: CellContext, progress: Progress,
                          data: ImageDataset | None) -> dict[str, dict[str, Any]]:
    """Each label regime's report (RunReport.to_json()), in the cell's order. The first regime's
    run distils; the others find the finished sets in the same run folders and only evaluate."""
    zoo = Zoo(context.zoo, context.offline)
    run_context = RunContext(zoo, context.data_root, resolve_device(context.device), progress, data=data,
                             cache=baselines_cache(context.zoo))
    return {labels: run(cell_request(cell, context, folder, labels), run_context).to_json()
            for labels in cell.labels}
