"""Reading a spec file: YAML checked against its nodes (ddz.yaml_nodes), so that an unknown key, a
wrong type or a bad value is one ConfigError line with file:line:column; and finding the specs
that ship with ddz (ddz/repro/specs/)."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ddz.data import check_dataset_name
from ddz.distill.guidance import KINDS
from ddz.distill.labels import LABELS, LOSSES, SOFT_MODES
from ddz.distill.methods import METHODS
from ddz.errors import ConfigError, DDZError, unknown_name
from ddz.nets import check_arch
from ddz.repro.spec import (
    AXES,
    DEFAULT_ALPHA,
    KD_KEYS,
    MTT_CHOICES,
    MTT_INTS,
    MTT_KEYS,
    MTT_RATES,
    NO_EXPERTS,
    SCALES,
    Assumption,
    Experts,
    PaperValue,
    PlotSpec,
    Pool,
    Scale,
    Spec,
    ZooNeed,
    coordinates,
    paper_value_matches,
    template_variables,
)
from ddz.repro.zoo_use import unused_message, zoo_use
from ddz.yaml_nodes import NodeChecker, parse_nodes
from ddz.zoo.query import Query
from ddz.zoo.recipes import RECIPES

# the methods that distil from expert trajectories (MTT), as the methods' table says
EXPERT_METHODS = tuple(name for name, spec in METHODS.items() if spec.needs_experts)

SPEC_FOLDER = "specs"


class _Reader(NodeChecker):
    """NodeChecker plus typed fields: each read returns the plain value or fails at its node."""

    def fields(self, node: yaml.Node, data: Any, what: str, allowed: tuple[str, ...],
               required: tuple[str, ...] = ()) -> dict[str, tuple[yaml.Node, Any]]:
        items = self.mapping(node, what)
        self.keys(items, allowed, required, node, what)
        data = data or {}
        return {key: (value_node, data[key]) for key, _, value_node in items}

    def integer(self, node: yaml.Node, value: Any, what: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(node, f"{what} must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, node: yaml.Node, value: Any, what: str, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                or (positive and value == 0):
            raise self.fail(node, f"{what} must be a number {'>' if positive else '>='} 0, got {value!r}")
        return float(value)

    def boolean(self, node: yaml.Node, value: Any, what: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(node, f"{what} must be true or false, got {value!r}")
        return value

    def string(self, node: yaml.Node, value: Any, what: str) -> str:
        self.text(node, value, what)
        return value

    def items(self, node: yaml.Node, value: Any, what: str) -> list[tuple[yaml.Node, Any]]:
        if not isinstance(node, yaml.SequenceNode) or not value:
            raise self.fail(node, f"{what} must be a non-empty list")
        return list(zip(node.value, value, strict=True))

    def strings(self, node: yaml.Node, value: Any, what: str) -> tuple[str, ...]:
        return tuple(self.string(n, v, f"an item of {what}") for n, v in self.items(node, value, what))

    def checked(self, node: yaml.Node, check, value: Any) -> Any:
        """`check(value)` (a library validator), its DDZError moved to this node."""
        try:
            check(value)
        except DDZError as error:
            raise self.fail(node, str(error)) from None
        return value

    def net_options(self, node: yaml.Node, value: Any, what: str) -> tuple[tuple[str, Any], ...]:
        self.mapping(node, what)
        return tuple(sorted((value or {}).items()))


SPEC_KEYS = ("name", "title", "notes", "assumptions", "grid", "pools", "experts", "baseline", "scales",
             "paper", "plot")
SCALE_KEYS = ("datasets", "variables", "zoo", "runs", "eval", "distill")
DISTILL_KEYS = ("iterations", "arch", "batch_real", "outer_loop", "inner_loop", "net", "cclom_batch",
                "resolution", "mtt")
EVAL_KEYS = ("archs", "models", "epochs", "labels", "teacher", "scores", *KD_KEYS)
ZOO_KEYS = ("dataset", "archs", "seeds", "seed_start", "recipe", "epochs", "snapshots", "zca", "net")


def _pools(read: _Reader, node: yaml.Node, data: Any) -> dict[str, Pool]:
    pools = {}
    for name, (pool_node, raw) in read.fields(node, data, "pools", tuple((data or {}).keys())).items():
        what = f"pool {name!r}"
        got = read.fields(pool_node, raw, what, ("label", "ptm", "guidance"), ("label",))
        ptm = read.strings(*got["ptm"], f"{what}: ptm") if "ptm" in got else ()
        guidance = read.string(*got["guidance"], f"{what}: guidance") if "guidance" in got else "auto"
        if guidance not in KINDS:
            raise read.fail(got["guidance"][0], unknown_name("guidance", guidance, KINDS))
        pools[name] = Pool(name, read.string(*got["label"], f"{what}: label"), ptm, guidance)
    return pools


def _experts(read: _Reader, node: yaml.Node, data: Any) -> dict[str, Experts]:
    buffers = {}
    for name, (buffer_node, raw) in read.fields(node, data, "experts", tuple((data or {}).keys())).items():
        what = f"experts {name!r}"
        got = read.fields(buffer_node, raw, what, ("label", "query"), ("label", "query"))
        buffers[name] = Experts(name, read.string(*got["label"], f"{what}: label"),
                                read.strings(*got["query"], f"{what}: query"))
    return buffers


def _assumptions(read: _Reader, node: yaml.Node, data: Any) -> tuple[Assumption, ...]:
    found = []
    for item_node, raw in read.items(node, data, "assumptions"):
        keys = ("what", "value", "source")
        got = read.fields(item_node, raw, "an assumption", keys, keys)
        found.append(Assumption(*(read.string(*got[k], k) for k in keys)))
    return tuple(found)


def _grid(read: _Reader, node: yaml.Node, data: Any, pools: dict[str, Pool],
          experts: dict[str, Experts]) -> tuple[dict, ...]:
    blocks = []
    for block_node, raw in read.items(node, data, "grid"):
        got = read.fields(block_node, raw, "a grid block", AXES, ("dataset", "method", "ipc", "pool"))
        block: dict[str, tuple] = {}
        for axis, (axis_node, values) in got.items():
            pairs = read.items(axis_node, values, f"grid axis {axis!r}")
            if axis == "dataset":
                block[axis] = tuple(read.string(n, v, "a data set") for n, v in pairs)
            elif axis == "method":
                block[axis] = tuple(read.string(n, v, "a method") for n, v in pairs)
                for n, v in pairs:
                    if v not in METHODS:
                        raise read.fail(n, unknown_name("method", v, METHODS))
            elif axis == "ipc":
                block[axis] = tuple(read.integer(n, v, "an IPC") for n, v in pairs)
            elif axis == "pool":
                for n, v in pairs:
                    if read.string(n, v, "a pool") not in pools:
                        raise read.fail(n, unknown_name("pool", str(v), pools))
                block[axis] = tuple(v for _, v in pairs)
            elif axis == "experts":
                for n, v in pairs:
                    if read.string(n, v, "an expert buffer") not in experts:
                        raise read.fail(n, unknown_name("expert buffer", str(v), experts))
                block[axis] = tuple(v for _, v in pairs)
            else:
                block[axis] = tuple(
                    v if v == DEFAULT_ALPHA else read.number(n, v, f"an alpha (or {DEFAULT_ALPHA!r})")
                    for n, v in pairs
                )
        block.setdefault("alpha", (DEFAULT_ALPHA,))
        block.setdefault("experts", (NO_EXPERTS,))
        _check_experts_axis(read, block_node, got, block)
        blocks.append(block)
    return tuple(blocks)


def _check_experts_axis(read: _Reader, block_node: yaml.Node, got: dict, block: dict) -> None:
    """MTT cells need an expert buffer; the other methods take none."""
    needing = [m for m in block["method"] if m in EXPERT_METHODS]
    if "experts" not in got and needing:
        raise read.fail(block_node, f"a grid block with method {needing[0]} needs an `experts` axis naming "
                        "its expert buffer (see `experts:`)")
    if "experts" in got:
        others = [m for m in block["method"] if m not in EXPERT_METHODS]
        if others:
            raise read.fail(got["experts"][0], f"experts are for {', '.join(EXPERT_METHODS)} only; put "
                            f"{', '.join(others)} in a block without `experts`")


def _zoo(read: _Reader, node: yaml.Node, data: Any, what: str) -> tuple[ZooNeed, ...]:
    needs = []
    for need_node, raw in read.items(node, data, what):
        got = read.fields(need_node, raw, f"an entry of {what}", ZOO_KEYS, ("dataset", "archs", "seeds"))
        archs = read.strings(*got["archs"], "archs")
        for arch_node, arch in read.items(*got["archs"], "archs"):
            read.checked(arch_node, check_arch, arch)
        recipe = read.string(*got["recipe"], "recipe") if "recipe" in got else "ptm"
        if recipe not in RECIPES:
            raise read.fail(got["recipe"][0], unknown_name("recipe", recipe, RECIPES))
        epochs = read.integer(*got["epochs"], "epochs") if "epochs" in got else RECIPES[recipe].epochs
        snapshots = None
        if "snapshots" in got and got["snapshots"][1] == "every":
            snapshots = tuple(range(epochs + 1))
        elif "snapshots" in got:
            snapshots = tuple(read.integer(n, v, "a snapshot epoch (or `every`)", minimum=0)
                              for n, v in read.items(*got["snapshots"], "snapshots"))
            late = [e for e in snapshots if e > epochs]
            if late:
                raise read.fail(got["snapshots"][0],
                                f"snapshot epoch {late[0]} comes after the last epoch ({epochs})")
        needs.append(ZooNeed(
            dataset=read.checked(got["dataset"][0], check_dataset_name,
                                 read.string(*got["dataset"], "dataset")),
            archs=archs,
            seeds=read.integer(*got["seeds"], "seeds"),
            epochs=epochs if "epochs" in got else None,
            snapshots=snapshots,
            net=read.net_options(*got["net"], "net") if "net" in got else (),
            recipe=recipe,
            seed_start=read.integer(*got["seed_start"], "seed_start", 0) if "seed_start" in got else 0,
            zca=read.boolean(*got["zca"], "zca") if "zca" in got else False,
        ))
    return tuple(needs)


def _scale(read: _Reader, name: str, node: yaml.Node, data: Any, spec_datasets: list[str]) -> Scale:
    what = f"scale {name!r}"
    got = read.fields(node, data, what, SCALE_KEYS)
    datasets: dict[str, str] = {}
    if "datasets" in got:
        for key, (value_node, value) in read.fields(*got["datasets"], f"{what}: datasets",
                                                    tuple(spec_datasets)).items():
            datasets[key] = read.checked(value_node, check_dataset_name, read.string(value_node, value, key))
    for spec_dataset in spec_datasets:
        if spec_dataset not in datasets:
            read.checked(node, check_dataset_name, spec_dataset)
    variables: dict[str, str] = {}
    if "variables" in got:
        raw = got["variables"][1] or {}
        for key, (value_node, value) in read.fields(*got["variables"], f"{what}: variables",
                                                    tuple(raw)).items():
            variables[key] = read.string(value_node, value, f"variable {key!r}")
    settings: dict[str, Any] = {}
    if "eval" in got:
        ev = read.fields(*got["eval"], f"{what}: eval", EVAL_KEYS)
        if "archs" in ev:
            settings["eval_archs"] = read.strings(*ev["archs"], "eval archs")
            for arch_node, arch in read.items(*ev["archs"], "eval archs"):
                read.checked(arch_node, check_arch, arch)
        if "models" in ev:
            settings["eval_models"] = read.integer(*ev["models"], "eval models")
        if "epochs" in ev:
            settings["eval_epochs"] = read.integer(*ev["epochs"], "eval epochs")
        settings.update(_label_regimes(read, ev, f"{what}: eval"))
    if "distill" in got:
        dist = read.fields(*got["distill"], f"{what}: distill", DISTILL_KEYS)
        for key, (value_node, value) in dist.items():
            if key == "iterations":
                per_method = read.fields(value_node, value, "iterations", METHODS)
                settings[key] = {m: read.integer(n, v, f"{m} iterations") for m, (n, v) in per_method.items()}
            elif key == "net":
                settings[key] = read.net_options(value_node, value, "net")
            elif key == "arch":
                settings[key] = read.checked(value_node, check_arch, read.string(value_node, value, "arch"))
            elif key == "mtt":
                settings[key] = _mtt(read, value_node, value, f"{what}: distill.mtt")
            else:
                settings[key] = read.integer(value_node, value, key)
    if "runs" in got:
        settings["runs"] = read.integer(*got["runs"], "runs")
    if "zoo" in got and got["zoo"][1] != []:
        settings["zoo"] = _zoo(read, *got["zoo"], f"{what}: zoo")
    scale = Scale(name, datasets, variables, **settings)
    if scale.teacher:
        _check_teacher(read, got["eval"][0], scale)
    return scale


def _label_regimes(read: _Reader, ev: dict[str, tuple[yaml.Node, Any]], what: str) -> dict[str, Any]:
    """`labels` (hard and/or soft, each once), the soft regime's `teacher` (zoo query templates),
    its `kd_loss`, `temperature`, `soft_labels`, and `scores`: the Scale fields they set."""
    settings: dict[str, Any] = {}
    if "labels" in ev:
        listed: list[str] = []
        for node, value in read.items(*ev["labels"], f"{what}: labels"):
            if value not in LABELS:
                raise read.fail(node, unknown_name("label regime", str(value), LABELS))
            if value in listed:
                raise read.fail(node, f"{what}: label regime {value!r} is listed twice")
            listed.append(value)
        settings["labels"] = tuple(regime for regime in LABELS if regime in listed)  # hard first
    soft = "soft" in settings.get("labels", ())
    if soft and "teacher" not in ev:
        raise read.fail(ev["labels"][0], f"{what}: soft labels need a teacher: add `teacher: [QUERY]` "
                        "(zoo query templates, e.g. \"${dataset}/convnet3/seed1@last\")")
    for key in ("teacher", *KD_KEYS):
        if key in ev and not soft:
            raise read.fail(ev[key][0], f"{what}: {key} is for soft labels: add soft to `labels` "
                            "(labels: [hard, soft]), or drop it")
    if "teacher" in ev:
        settings["teacher"] = read.strings(*ev["teacher"], f"{what}: teacher")
    kd: dict[str, Any] = {}
    if "kd_loss" in ev:
        node, value = ev["kd_loss"]
        if value not in LOSSES:
            raise read.fail(node, unknown_name("kd_loss", str(value), LOSSES))
        kd["loss"] = value
    if "soft_labels" in ev:
        node, value = ev["soft_labels"]
        if value not in SOFT_MODES:
            raise read.fail(node, unknown_name("soft_labels", str(value), SOFT_MODES))
        kd["soft_mode"] = value
    if "temperature" in ev:
        node, value = ev["temperature"]
        kd["temperature"] = read.number(node, value, "temperature", positive=True)
        if not math.isfinite(kd["temperature"]):
            raise read.fail(node, f"temperature must be a finite number > 0, got {value!r}")
    if kd:
        settings["kd"] = kd
    if "scores" in ev:
        settings["scores"] = read.boolean(*ev["scores"], "scores")
    return settings


def _check_teacher(read: _Reader, eval_node: yaml.Node, scale: Scale) -> None:
    """The teacher's templates fill in at their scale, into queries that parse."""
    node = {key: value_node for key, _, value_node in read.mapping(eval_node, "eval")}["teacher"]
    what = f"scale {scale.name!r}: eval: teacher"
    try:
        queries = scale.teacher_queries(template_variables(scale, "DATASET"))
    except (KeyError, ValueError) as error:
        raise read.fail(node, f"{what}: ${error.args[0]} is not set at scale {scale.name!r}; set it under "
                        f"scales.{scale.name}.variables") from None
    for query in queries:
        try:
            Query.parse(query)
        except DDZError as error:
            raise read.fail(node, f"{what}: {error}") from None


def _mtt(read: _Reader, node: yaml.Node, data: Any, what: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key, (value_node, value) in read.fields(node, data, what, MTT_KEYS).items():
        if key in MTT_INTS:
            settings[key] = read.integer(value_node, value, key)
        elif key in MTT_RATES:
            settings[key] = read.number(value_node, value, key, positive=True)
        else:
            if value not in MTT_CHOICES[key]:
                raise read.fail(value_node, unknown_name(key, str(value), MTT_CHOICES[key]))
            settings[key] = value
    return settings


def _check_templates(read: _Reader, named: dict[str, yaml.Node], kinds: dict[str, Any],
                     scales: dict[str, Scale]) -> None:
    """Every pool's and expert buffer's templates must fill in at every scale, into queries that
    parse: an unknown $name or a malformed query fails at the pool (or buffer)."""
    for scale in scales.values():
        variables = template_variables(scale, "DATASET")
        for what, items in kinds.items():
            for item in items.values():
                try:
                    queries = item.queries(variables)
                except (KeyError, ValueError) as error:
                    raise read.fail(named[what][item.name], f"{what} {item.name!r}: ${error.args[0]} is not "
                                    f"set at scale {scale.name!r}; set it under scales.{scale.name}.variables"
                                    ) from None
                for query in queries:
                    try:
                        Query.parse(query)
                    except DDZError as error:
                        raise read.fail(named[what][item.name],
                                        f"{what} {item.name!r} at scale {scale.name!r}: {error}") from None


def _paper(read: _Reader, node: yaml.Node, data: Any) -> tuple[PaperValue, ...]:
    values = []
    for value_node, raw in read.items(node, data, "paper"):
        got = read.fields(value_node, raw, "a paper value", ("at", "mean", "std", "table", "row"),
                          ("at", "mean", "table", "row"))
        at = read.fields(*got["at"], "at", (*AXES, "arch"))
        values.append(PaperValue(
            at={key: value for key, (_, value) in at.items()},
            mean=read.number(*got["mean"], "mean"),
            std=read.number(*got["std"], "std") if "std" in got else None,
            table=read.string(*got["table"], "table"),
            row=read.string(*got["row"], "row"),
        ))
    return tuple(values)


def _plot(read: _Reader, node: yaml.Node, data: Any) -> PlotSpec:
    got = read.fields(node, data, "plot", ("x", "lines", "panels", "x_values", "x_label", "log_x"), ("x",))
    for key in ("x", "lines", "panels"):
        if key in got and got[key][1] not in AXES:
            raise read.fail(got[key][0], unknown_name("axis", str(got[key][1]), AXES))
    x_values = {}
    if "x_values" in got:
        raw = got["x_values"][1] or {}
        for key, (value_node, value) in read.fields(*got["x_values"], "x_values", tuple(raw)).items():
            x_values[key] = read.number(value_node, value, f"x of {key!r}")
    log_x = got["log_x"][1] if "log_x" in got else False
    if not isinstance(log_x, bool):
        raise read.fail(got["log_x"][0], "log_x must be true or false")
    return PlotSpec(
        x=got["x"][1], lines=got["lines"][1] if "lines" in got else "method",
        panels=got["panels"][1] if "panels" in got else None, x_values=x_values,
        x_label=read.string(*got["x_label"], "x_label") if "x_label" in got else got["x"][1], log_x=log_x,
    )


def parse_spec(text: str, source: Path) -> Spec:
    root, data = parse_nodes(text, source)
    read = _Reader(source)
    if root is None:
        raise ConfigError(f"{source}: the spec is empty")
    got = read.fields(root, data, "the spec", SPEC_KEYS, ("name", "title", "grid", "pools", "scales"))
    pools = _pools(read, *got["pools"])
    experts = _experts(read, *got["experts"]) if "experts" in got else {}
    grid = _grid(read, *got["grid"], pools, experts)
    spec_datasets = list(dict.fromkeys(d for block in grid for d in block["dataset"]))
    scales = {}
    for name, (scale_node, raw) in read.fields(*got["scales"], "scales", SCALES, SCALES).items():
        scales[name] = _scale(read, name, scale_node, raw, spec_datasets)
    _check_distillation_teacher(read, grid, scales, got["scales"])
    named = {kind: {key: value_node for key, _, value_node in read.mapping(got[section][0], section)}
             for kind, section in (("pool", "pools"), ("experts", "experts")) if section in got}
    _check_templates(read, named, {"pool": pools, "experts": experts}, scales)
    baseline = None
    if "baseline" in got:
        baseline = read.string(*got["baseline"], "baseline")
        if baseline not in pools:
            raise read.fail(got["baseline"][0], unknown_name("pool", baseline, pools))
    spec = Spec(
        name=read.string(*got["name"], "name"),
        title=read.string(*got["title"], "title"),
        source=source,
        grid=grid,
        pools=pools,
        scales=scales,
        paper=_paper(read, *got["paper"]) if "paper" in got else (),
        experts=experts,
        assumptions=_assumptions(read, *got["assumptions"]) if "assumptions" in got else (),
        baseline=baseline,
        plot=_plot(read, *got["plot"]) if "plot" in got else None,
        notes=read.strings(*got["notes"], "notes") if "notes" in got else (),
    )
    _check_paper_cells(read, spec, got["paper"][0] if "paper" in got else None)
    _check_zoo_use(read, spec, got["scales"])
    return spec


def _check_distillation_teacher(read: _Reader, grid: tuple[dict, ...], scales: dict[str, Scale],
                                scales_node: tuple[yaml.Node, Any]) -> None:
    """RDED and SRe2L distil from the scale's soft-label teacher: a scale must name one."""
    needing = [m for block in grid for m in block["method"] if METHODS[m].needs_teacher]
    if not needing:
        return
    for name, (scale_node, _) in read.fields(*scales_node, "scales", SCALES).items():
        if not scales[name].teacher:
            raise read.fail(scale_node, f"scale {name!r}: method {needing[0]} distils from a teacher: add "
                            "`teacher: [QUERY]` under its `eval` (the soft labels' teacher, also RDED's and "
                            "SRe2L's)")


def _check_zoo_use(read: _Reader, spec: Spec, scales: tuple[yaml.Node, Any]) -> None:
    """Every zoo entry must train only runs (and epochs) that some cell's query reads."""
    for name, (scale_node, _) in read.fields(*scales, "scales", SCALES).items():
        if not spec.scale(name).zoo:
            continue
        use = zoo_use(spec, name)
        zoo_node = {key: value_node for key, _, value_node in read.mapping(scale_node, name)}["zoo"]
        for entry, entry_node in enumerate(zoo_node.value):
            message = unused_message(spec, name, entry, use)
            if message:
                raise read.fail(entry_node, message)


def _check_paper_cells(read: _Reader, spec: Spec, node: yaml.Node | None) -> None:
    """Each paper value must belong to exactly one cell (and one of the paper scale's eval archs),
    and no cell may get two values."""
    if node is None:
        return
    cells = coordinates(spec.grid)
    archs = spec.scale("paper").eval_archs
    taken: dict[tuple, int] = {}
    for index, (value_node, value) in enumerate(zip(node.value, spec.paper, strict=True)):
        matches = [coords for coords in cells if paper_value_matches(value, coords)]
        if len(matches) != 1:
            raise read.fail(value_node, f"paper value at {value.at} matches {len(matches)} cells; "
                            "it must match one")
        arch = value.at.get("arch", archs[0])
        if arch not in archs:
            raise read.fail(value_node, f"paper value for eval arch {arch!r}, which the paper scale does not "
                            f"evaluate ({', '.join(archs)})")
        slot = (*matches[0].values(), arch)
        if slot in taken:
            raise read.fail(value_node, f"that cell ({arch}) already has a paper value "
                            f"(entry {taken[slot] + 1})")
        taken[slot] = index


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read spec {path}: {error.strerror}") from None
    return parse_spec(text, path)


def shipped_specs() -> dict[str, Path]:
    """The specs that ship with ddz, by name."""
    folder = resources.files("ddz.repro") / SPEC_FOLDER
    return {Path(str(p)).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=str)
            if str(p).endswith(".yaml")}


def find_spec(name_or_path: str) -> Spec:
    """A shipped spec by name, or a spec file by path."""
    shipped = shipped_specs()
    if name_or_path in shipped:
        return load_spec(shipped[name_or_path])
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_spec(path)
    raise ConfigError(unknown_name("spec", name_or_path, shipped) + " (or give a path to a .yaml spec)")
