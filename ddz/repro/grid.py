"""A spec's grid at one scale: one `Cell` per combination, each everything a worker needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ddz.repro.spec import DEFAULT_ALPHA, NO_EXPERTS, Spec, coordinates, template_variables

# Cell fields left out of its JSON when they hold these (a cell evaluated with hard labels only)
LABEL_DEFAULTS: dict[str, Any] = {"labels": ("hard",), "teacher": (), "kd": {}, "scores": None}


@dataclass(frozen=True)
class Cell:
    """One cell: a `ddz distill` run (runs x seeds) and its evaluation, JSON-serialisable."""

    key: str  # its folder name under the grid's folder
    coords: dict[str, Any]  # dataset (as the spec names it), method, ipc, pool, alpha, experts
    dataset: str  # the data set loaded at this scale
    method: str
    ipc: int
    pool_label: str
    ptm: tuple[str, ...]
    guidance: str
    alpha: float | None  # None: ddz's default (the authors' table, or the measured rule)
    runs: int
    eval_archs: tuple[str, ...]
    eval_models: int
    eval_epochs: int | None
    iterations: int | None
    arch: str
    batch_real: int
    outer_loop: int | None
    inner_loop: int | None
    net: tuple[tuple[str, Any], ...]
    cclom_batch: int
    resolution: int | None
    # MTT: the expert buffer's zoo queries (trajectories) and the settings the scale sets (keys
    # of ddz.repro.spec.MTT_KEYS; absent: MTT's defaults by data set and IPC); empty otherwise.
    experts: tuple[str, ...] = ()
    experts_label: str = ""
    mtt: dict[str, Any] = field(default_factory=dict)
    # The label regimes its sets are evaluated in (one distillation, one evaluation each), the
    # teacher's zoo queries and soft-label settings (LabelConfig fields), DD-Ranking's scores.
    labels: tuple[str, ...] = ("hard",)
    teacher: tuple[str, ...] = ()
    kd: dict[str, Any] = field(default_factory=dict)
    scores: bool | None = None  # None: with soft labels only (RunRequest.scores)

    @property
    def guided(self) -> bool:
        return bool(self.ptm)

    def to_json(self) -> dict[str, Any]:
        """Its settings; the label fields only where they differ from their defaults, so that a
        hard-label cell's identity (cell.json) is what it was before regimes existed."""
        data = asdict(self)
        data["net"] = dict(self.net)
        for key, default in LABEL_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        data = dict(data)
        for key in ("ptm", "eval_archs", "experts", "teacher"):
            data[key] = tuple(data.get(key, ()))
        data["labels"] = tuple(data.get("labels", LABEL_DEFAULTS["labels"]))
        data["net"] = tuple(sorted(data["net"].items()))
        data["coords"] = {"experts": NO_EXPERTS, **data["coords"]}
        return cls(**data)


def cell_key(coords: dict[str, Any]) -> str:
    key = f"{coords['dataset']}-{coords['method']}-ipc{coords['ipc']}-{coords['pool']}"
    if coords["alpha"] != DEFAULT_ALPHA:
        key += f"-alpha{coords['alpha']:g}"
    if coords.get("experts", NO_EXPERTS) != NO_EXPERTS:
        key += f"-{coords['experts']}"
    return key


def expand(spec: Spec, scale_name: str) -> list[Cell]:
    """Every cell of the spec's grid at `scale_name`, in the spec's order."""
    scale = spec.scale(scale_name)
    cells = []
    for coords in coordinates(spec.grid):
        pool = spec.pools[coords["pool"]]
        dataset = scale.data_set(coords["dataset"])
        variables = template_variables(scale, dataset)
        experts = spec.experts.get(coords["experts"]) if coords["experts"] != NO_EXPERTS else None
        cells.append(Cell(
            key=cell_key(coords),
            coords=coords,
            dataset=dataset,
            method=coords["method"],
            ipc=coords["ipc"],
            pool_label=pool.label,
            ptm=tuple(pool.queries(variables)),
            guidance=pool.guidance if pool.ptm else "none",
            alpha=None if coords["alpha"] == DEFAULT_ALPHA or not pool.ptm else float(coords["alpha"]),
            runs=scale.runs,
            eval_archs=scale.eval_archs,
            eval_models=scale.eval_models,
            eval_epochs=scale.eval_epochs,
            iterations=scale.iterations.get(coords["method"]),
            arch=scale.arch,
            batch_real=scale.batch_real,
            outer_loop=scale.outer_loop,
            inner_loop=scale.inner_loop,
            net=scale.net,
            cclom_batch=scale.cclom_batch,
            resolution=scale.resolution,
            experts=tuple(experts.queries(variables)) if experts else (),
            experts_label=experts.label if experts else "",
            mtt=dict(scale.mtt) if experts else {},
            labels=scale.labels,
            teacher=tuple(scale.teacher_queries(variables)),
            kd=dict(scale.kd),
            scores=scale.scores,
        ))
    return cells


def baseline_of(cell: Cell, cells: list[Cell], baseline_pool: str | None) -> Cell | None:
    """The unguided cell a guided cell's CLoM effect is measured from: the same data set, method,
    IPC and expert buffer in the baseline pool."""
    if baseline_pool is None or not cell.guided:
        return None
    for other in cells:
        same = all(other.coords[a] == cell.coords[a] for a in ("dataset", "method", "ipc", "experts"))
        if same and other.coords["pool"] == baseline_pool:
            return other
    return None
