"""An experiment spec: one of the paper's tables or figures as a grid of `ddz distill` cells.

A spec (YAML, shipped in ddz/repro/specs/) names
- `grid`: blocks of axes (dataset, method, ipc, pool, alpha, experts); each block is the product
  of its axes, the cells are the blocks' cells in order;
- `pools`: PTM pools as zoo query templates (`$dataset`, and the scale's variables), the guidance;
- `experts`: MTT's expert buffers as zoo query templates (trajectories: every snapshot of each
  run the queries select); an MTT cell names one on its `experts` axis;
- `scales`: `paper` (the paper's data sets and settings) and `smoke` (the same grid on the embedded
  digits, small counts): the data set each spec data set stands for, the template variables, the
  zoo to train (each entry a recipe: `ptm`, or `mtt-expert` for trajectories), runs, distillation
  settings (MTT's under `distill.mtt`) and evaluation settings (the label regimes among them:
  `labels: [hard, soft]` evaluates each cell's sets both ways, soft from a `teacher` query);
- `paper`: the numbers the paper reports, each with its table and row, at the cells they belong to.

Reading and validating a spec file is ddz.repro.spec_file's job.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddz.errors import ConfigError, unknown_name

AXES = ("dataset", "method", "ipc", "pool", "alpha", "experts")
SCALES = ("paper", "smoke")
DEFAULT_ALPHA = "default"  # the alpha axis value that keeps ddz's default (the authors' table)
NO_EXPERTS = None  # the experts axis value of cells whose method needs none (every method but MTT)
# What a scale may set for MTT (`distill.mtt`), with `ddz distill`'s meaning (--syn-steps, ...);
# what it leaves out takes MTT's defaults by data set and IPC (ddz.distill.methods.mtt_defaults).
MTT_INTS = ("syn_steps", "expert_epochs", "max_start_epoch", "batch_syn")
MTT_RATES = ("lr_img", "lr_lr", "lr_teacher")
MTT_CHOICES = {"memory": ("unrolled", "constant")}
MTT_KEYS = (*MTT_INTS, *MTT_RATES, *MTT_CHOICES)
# What a scale's `eval` may set for soft labels, with `ddz eval`'s meaning (--kd-loss,
# --temperature, --soft-labels) -> the LabelConfig field it sets; absent: the soft protocol's defaults.
KD_KEYS = {"kd_loss": "loss", "temperature": "temperature", "soft_labels": "soft_mode"}


@dataclass(frozen=True)
class Pool:
    """A PTM pool: zoo query templates (none: the unguided baseline) and the guidance kind."""

    name: str
    label: str
    ptm: tuple[str, ...] = ()
    guidance: str = "auto"

    def queries(self, variables: dict[str, str]) -> list[str]:
        return [string.Template(t).substitute(variables) for t in self.ptm]


@dataclass(frozen=True)
class Experts:
    """An MTT expert buffer: zoo query templates whose runs are the trajectories (a query without
    `@SNAPSHOT` selects every snapshot of a run)."""

    name: str
    label: str
    query: tuple[str, ...]

    def queries(self, variables: dict[str, str]) -> list[str]:
        return [string.Template(t).substitute(variables) for t in self.query]


@dataclass(frozen=True)
class ZooNeed:
    """Seeds x archs of one data set, trained by one recipe, that the scale's cells draw from."""

    dataset: str
    archs: tuple[str, ...]
    seeds: int
    epochs: int | None = None  # None: the recipe's (ptm 150, mtt-expert 50)
    snapshots: tuple[int, ...] | None = None  # None: the recipe's snapshots that fit, and the last
    net: tuple[tuple[str, Any], ...] = ()
    recipe: str = "ptm"  # a recipe of ddz.zoo.recipes.RECIPES
    seed_start: int = 0  # seeds seed_start .. seed_start + seeds - 1
    zca: bool = False  # ZCA-whiten the data first (MTT's experts for CIFAR-10 IPC 1/10)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.seeds))


@dataclass(frozen=True)
class Scale:
    """The settings a grid runs at."""

    name: str
    datasets: dict[str, str]  # spec data set -> the data set loaded (identity when absent)
    variables: dict[str, str]
    zoo: tuple[ZooNeed, ...] = ()
    runs: int = 5
    eval_archs: tuple[str, ...] = ("convnet3",)
    eval_models: int = 5
    eval_epochs: int | None = None
    iterations: dict[str, int] = field(default_factory=dict)  # per method; absent: the protocol's
    arch: str = "convnet3"  # the distillation net
    batch_real: int = 256
    outer_loop: int | None = None
    inner_loop: int | None = None
    net: tuple[tuple[str, Any], ...] = ()
    cclom_batch: int = 1024
    resolution: int | None = None
    mtt: dict[str, Any] = field(default_factory=dict)  # MTT_KEYS the scale sets
    # The evaluation's label regimes (in ddz.distill.labels.LABELS order: hard first, the paper's),
    # each evaluating the same distilled sets; soft labels come from `teacher` (zoo query
    # templates, as pools') with `kd` (LabelConfig fields: loss, temperature, soft_mode).
    labels: tuple[str, ...] = ("hard",)
    teacher: tuple[str, ...] = ()
    kd: dict[str, Any] = field(default_factory=dict)
    # None: with soft labels only
    scores: bool | None = None  # DD-Ranking's scores beside a random subset and the full data

    def teacher_queries(self, variables: dict[str, str]) -> list[str]:
        return [string.Template(t).substitute(variables) for t in self.teacher]

    def data_set(self, name: str) -> str:
        return self.datasets.get(name, name)

    @property
    def comparable(self) -> bool:
        """Whether ddz's numbers at this scale can stand beside the paper's (same data sets)."""
        return self.name == "paper"

    def not_comparable_note(self, spec_datasets: list[str]) -> str:
        used = dict.fromkeys(self.data_set(d) for d in spec_datasets)
        return f"not comparable: {', '.join(used)}"


@dataclass(frozen=True)
class PaperValue:
    """One number the paper reports (accuracy, %), where it stands, and the cell it belongs to."""

    at: dict[str, Any]  # axis -> value; "arch": the evaluation architecture (default: the first)
    mean: float
    std: float | None
    table: str
    row: str

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "table": self.table, "row": self.row}


@dataclass(frozen=True)
class Assumption:
    """A setting the paper does not state, the value ddz takes, and where that value comes from."""

    what: str
    value: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class PlotSpec:
    """A figure: ddz accuracy against `x` (an axis), one line per `lines` value, one panel per
    `panels` value, the baseline pool dotted."""

    x: str
    lines: str = "method"
    panels: str | None = None
    x_values: dict[str, float] = field(default_factory=dict)  # pool name -> x, when x is "pool"
    x_label: str = ""
    log_x: bool = False


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    source: Path
    grid: tuple[dict[str, tuple[Any, ...]], ...]
    pools: dict[str, Pool]
    scales: dict[str, Scale]
    paper: tuple[PaperValue, ...] = ()
    experts: dict[str, Experts] = field(default_factory=dict)
    assumptions: tuple[Assumption, ...] = ()
    baseline: str | None = None  # the pool of the unguided cells every CLoM effect is measured from
    plot: PlotSpec | None = None
    notes: tuple[str, ...] = ()

    def scale(self, name: str) -> Scale:
        if name not in self.scales:
            raise ConfigError(unknown_name("scale", name, self.scales))
        return self.scales[name]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for block in self.grid for d in block["dataset"]))


def template_variables(scale: Scale, dataset: str) -> dict[str, str]:
    """What a pool's query may name: $dataset (the cell's data set, as loaded), every spec data
    set name (as loaded at this scale), and the scale's variables."""
    return {**{k: scale.data_set(k) for k in scale.datasets}, **scale.variables, "dataset": dataset}


def coordinates(grid: tuple[dict[str, tuple[Any, ...]], ...]) -> list[dict[str, Any]]:
    """Every cell's axis values: each block's product, blocks in order, repeats dropped."""
    cells: dict[tuple, dict[str, Any]] = {}
    for block in grid:
        for values in itertools.product(*(block[axis] for axis in AXES)):
            cells.setdefault(values, dict(zip(AXES, values, strict=True)))
    return list(cells.values())


def paper_value_matches(value: PaperValue, coords: dict[str, Any]) -> bool:
    """Whether a paper value sits at a cell: every axis it names has the cell's value (alpha
    defaults to the default alpha; an unnamed experts axis matches any buffer)."""
    wanted = {"alpha": DEFAULT_ALPHA, **{k: v for k, v in value.at.items() if k != "arch"}}
    return all(coords[axis] == wanted_value for axis, wanted_value in wanted.items())
