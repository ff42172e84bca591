"""Spec schema beyond the basics (tests/test_repro.py): MTT cells (an expert buffer as zoo query
templates, MTT's settings per scale), zoo entries by recipe, and the rule that every spec trains
only the zoo runs its cells read, checked over every shipped spec at both scales."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddz.distill.methods.mtt_defaults import mtt_settings
from ddz.errors import ConfigError
from ddz.repro.grid import Cell, expand
from ddz.repro.spec import SCALES
from ddz.repro.spec_file import load_spec, parse_spec, shipped_specs
from ddz.repro.zoo_use import need_recipe, zoo_use
from ddz.zoo.query import Query

TINY = Path(__file__).parent / "specs" / "tiny.yaml"
# zoo runs (arch x seed) each spec trains at (paper, smoke); table1 trained (80, 9) before its zoo
# became what its pools read
ZOO_RUNS = {"table1": (26, 5), "fig2": (1, 1), "table2": (2, 1), "table3": (0, 2), "table4": (40, 9),
            "table5": (5, 3), "fig3": (1, 1), "fig3nm": (10, 10), "tableA1": (210, 4), "soft": (12, 4),
            "teachers": (2, 1)}

MTT_SPEC = """\
name: mtt
title: "MTT with and without CLoM"
grid:
  - {dataset: [digits], method: [mtt], ipc: [1], pool: [none, m1], experts: [buffer]}
  - {dataset: [digits], method: [dm], ipc: [1], pool: [none]}
pools:
  none: {label: "no CLoM"}
  m1: {label: "CLoM", ptm: ["${dataset}/convnet3/seed0@${final}"]}
experts:
  buffer: {label: "two experts", query: ["${dataset}/convnet3/${experts}"]}
scales:
  paper:
    variables: {final: epoch3, experts: "seed{100..101}"}
    zoo:
      - {dataset: digits, archs: [convnet3], seeds: 1, epochs: 3, net: {width: 8}}
      - {dataset: digits, archs: [convnet3], recipe: mtt-expert, seed_start: 100, seeds: 2, epochs: 3,
         net: {width: 8}}
  smoke:
    variables: {final: epoch3, experts: "seed{100..101}"}
    zoo:
      - {dataset: digits, archs: [convnet3], seeds: 1, epochs: 3, net: {width: 8}}
      - {dataset: digits, archs: [convnet3], recipe: mtt-expert, seed_start: 100, seeds: 2, epochs: 3,
         snapshots: every, net: {width: 8}}
    distill:
      iterations: {mtt: 3, dm: 4}
      mtt: {syn_steps: 2, expert_epochs: 1, max_start_epoch: 2, lr_teacher: 0.01, memory: constant}
"""


def test_an_mtt_cell_carries_its_experts_and_settings_and_other_cells_none(tmp_path):
    spec = parse_spec(MTT_SPEC, tmp_path / "mtt.yaml")
    cells = {c.key: c for c in expand(spec, "smoke")}
    assert list(cells) == ["digits-mtt-ipc1-none-buffer", "digits-mtt-ipc1-m1-buffer", "digits-dm-ipc1-none"]
    mtt = cells["digits-mtt-ipc1-m1-buffer"]
    assert mtt.experts == ("digits/convnet3/seed{100..101}",) and mtt.experts_label == "two experts"
    assert mtt.ptm == ("digits/convnet3/seed0@epoch3",) and mtt.iterations == 3
    assert mtt.mtt == {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2, "lr_teacher": 0.01,
                       "memory": "constant"}
    dm = cells["digits-dm-ipc1-none"]
    assert dm.experts == () and dm.mtt == {} and dm.coords["experts"] is None
    assert expand(spec, "paper")[0].mtt == {}  # unset: MTT's defaults by data set and IPC
    data = json.loads(json.dumps(mtt.to_json()))
    assert data["experts"] == ["digits/convnet3/seed{100..101}"] and data["mtt"]["syn_steps"] == 2
    assert Cell.from_json(data) == mtt
    old = {k: v for k, v in dm.to_json().items() if k not in ("experts", "experts_label", "mtt")}
    old["coords"] = {k: v for k, v in old["coords"].items() if k != "experts"}
    assert Cell.from_json(old) == dm  # a cell.json written before experts existed still reads


def test_zoo_entries_train_by_their_recipe(tmp_path):
    spec = parse_spec(MTT_SPEC, tmp_path / "mtt.yaml")
    ptm, experts = spec.scale("smoke").zoo
    assert need_recipe(ptm).name == "ptm" and need_recipe(ptm).snapshots == (1, 3)
    recipe = need_recipe(experts)
    assert recipe.name == "mtt-expert" and recipe.epochs == 3 and recipe.snapshots == (0, 1, 2, 3)
    assert recipe.augment == "dsa" and dict(recipe.net) == {"width": 8} and experts.seed_list == [100, 101]
    # without epochs the recipe's own: 50 for mtt-expert, with a snapshot after every epoch
    assert need_recipe(spec.scale("paper").zoo[1].__class__("digits", ("convnet3",), 2, recipe="mtt-expert")
                       ).snapshots == tuple(range(51))


BAD_MTT = {
    "mtt without experts": ("m1], experts: [buffer]}", "m1]}", "needs an `experts` axis"),
    "experts for dm": ("method: [dm], ipc: [1], pool: [none]}", "method: [dm], ipc: [1], pool: [none], "
                       "experts: [buffer]}", "experts are for mtt only"),
    "unknown buffer": ("experts: [buffer]}", "experts: [bufer]}", "unknown expert buffer 'bufer'"),
    "unknown mtt key": ("      mtt: {syn_steps: 2,", "      mtt: {syn_step: 2,", "unknown key 'syn_step'"),
    "bad memory": ("memory: constant}", "memory: lots}", "unknown memory 'lots'"),
    "unknown recipe": ("recipe: mtt-expert", "recipe: mtt-experts", "unknown recipe"),
    "unset variable": ('convnet3/${experts}"]', 'convnet3/${expert}"]', "$expert is not set"),
    "bad query": ('query: ["${dataset}/convnet3/${experts}"]', 'query: ["${dataset}/convnet3/${experts}/x"]',
                  "'/'-separated parts"),
    "unused experts": ("seed_start: 100, seeds: 2", "seed_start: 100, seeds: 3",
                       "trains 1 run(s) that no cell's query reads (digits/convnet3 seed102)"),
    "over-trained": ("seeds: 1, epochs: 3, net", "seeds: 1, epochs: 5, snapshots: [3, 5], net",
                     "trains digits/convnet3/seed0 for 5 epochs but the cells read at most epoch 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_MTT))
def test_a_bad_mtt_spec_is_one_line_at_its_node(case, tmp_path):
    old, new, message = BAD_MTT[case]
    assert MTT_SPEC.count(old) >= 1
    text = MTT_SPEC.replace(old, new, 1) if case != "unset variable" else MTT_SPEC.replace(old, new)
    if case == "unset variable":  # the smoke scale sets it: the paper scale's message comes first
        text = text.replace('experts: "seed{100..101}"', 'other: "x"')
    pairs = zip(MTT_SPEC.splitlines(), text.splitlines(), strict=False)
    changed = next(i for i, (a, b) in enumerate(pairs) if a != b)
    with pytest.raises(ConfigError) as error:
        parse_spec(text, tmp_path / "bad.yaml")
    line = str(error.value)
    assert message in line and "\n" not in line
    assert line.startswith(f"{tmp_path / 'bad.yaml'}:{changed + 1}:")  # the line that was changed


def test_tinys_unused_zoo_arch_fails_at_its_zoo_entry(tmp_path):
    text = TINY.read_text().replace("archs: [convnet3], seeds: 1", "archs: [convnet3, convnet4], seeds: 1", 1)
    number = next(i for i, line in enumerate(text.splitlines()) if "convnet4" in line) + 1
    unused = r"trains 1 run\(s\) that no cell's query reads \(digits/convnet4 seed0\)"
    with pytest.raises(ConfigError, match=rf"bad.yaml:{number}:.*{unused}"):
        parse_spec(text, tmp_path / "bad.yaml")


def _needed_epochs(cell: Cell) -> range:
    table = mtt_settings(cell.dataset, cell.ipc)
    expert_epochs = cell.mtt.get("expert_epochs", table.expert_epochs)
    return range(cell.mtt.get("max_start_epoch", table.max_start_epoch) + expert_epochs)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", sorted(ZOO_RUNS))
def test_every_shipped_spec_trains_only_the_zoo_runs_its_cells_read(name, scale):
    spec = load_spec(shipped_specs()[name])
    cells = expand(spec, scale)
    use = zoo_use(spec, scale, cells)
    assert use.unused == [] and use.overtrained == []
    assert len(use.runs) == ZOO_RUNS[name][SCALES.index(scale)]
    # every query reads the planned zoo, but for external PTMs (no seed axis) at the paper scale
    unmatched = [query for _, query in use.unmatched]
    assert all(scale == "paper" and Query.parse(q).seed is None for q in unmatched), unmatched
    # expert trajectories hold every epoch MTT's draws need (0 .. max_start_epoch - 1 + expert_epochs)
    for cell in cells:
        for query in cell.experts:
            parsed = Query.parse(query)
            runs = [run for run in use.runs if use.read.get(run) and parsed.seed.match(f"seed{run.seed}")
                    and parsed.arch.match(run.arch)]
            assert runs, (cell.key, query)
            for run in runs:
                assert set(_needed_epochs(cell)) <= set(run.snapshots), (cell.key, run.name)


def test_specs_that_share_the_paper_zoo_train_each_run_by_one_recipe():
    """At the paper scale every spec trains into the zoo DDZ_HOME names: a (dataset, arch, seed) run
    two specs train must be the same run (ddz.zoo.train stops on a recipe clash)."""
    seen: dict[tuple, tuple[str, str]] = {}
    for name, path in shipped_specs().items():
        spec = load_spec(path)
        for need in spec.scale("paper").zoo:
            recipe_hash = need_recipe(need).hash()
            for arch in need.archs:
                for seed in need.seed_list:
                    key = (need.dataset, arch, seed)
                    other = seen.setdefault(key, (name, recipe_hash))
                    assert other[1] == recipe_hash, f"{key}: {name} and {other[0]} train it differently"


def test_tableA1_is_the_papers_tm_rows_with_two_expert_buffers():
    spec = load_spec(shipped_specs()["tableA1"])
    cells = {c.key: c for c in expand(spec, "paper")}
    assert set(cells) == {"cifar10-mtt-ipc10-none-zca", "cifar10-mtt-ipc10-m10a1-alpha0.1-zca",
                          "cifar10-mtt-ipc50-none-nozca", "cifar10-mtt-ipc50-m10a1-alpha0.1-nozca"}
    assert {(v.at["ipc"], v.at["pool"], v.mean, v.std) for v in spec.paper} == {
        (10, "none", 65.3, 0.7), (10, "m10a1", 66.3, 0.4), (50, "none", 71.6, 0.2), (50, "m10a1", 73.1, 0.2)}
    by_seed = {seed: need for need in spec.scale("paper").zoo for seed in need.seed_list}
    assert need_recipe(by_seed[100]).zca and not need_recipe(by_seed[200]).zca  # IPC 10 whitened, 50 not
    assert mtt_settings("cifar10", 10).zca and not mtt_settings("cifar10", 50).zca
    assert all(c.experts and c.mtt == {} for c in cells.values())  # the paper scale: MTT's defaults
    assert any("IDC, DiM and DREAM" in note for note in spec.notes)
    assert any("alpha" in a.what for a in spec.assumptions)


def test_report_of_a_grid_where_no_cell_has_run_is_one_line_and_writes_nothing(run_ddz, tmp_path):
    empty = tmp_path / "grid"
    empty.mkdir()
    result = run_ddz("repro", "report", str(TINY), "--scale", "smoke", "--out", str(empty))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(empty) in lines[0] and "no cell of tiny" in lines[0] and "ddz repro run" in lines[0]
    assert list(empty.iterdir()) == []


SOFT = shipped_specs()["soft"]

BAD_SOFT = {
    "soft without a teacher": (', teacher: ["${dataset}/convnet3/seed1@${final}"]}', "}",
                               "soft labels need a teacher"),
    "a teacher without soft": ("labels: [hard, soft], teacher", "labels: [hard], teacher",
                               "teacher is for soft labels"),
    "unknown regime": ("labels: [hard, soft]", "labels: [hard, sfot]", "unknown label regime 'sfot'"),
    "a regime twice": ("labels: [hard, soft]", "labels: [soft, soft]", "label regime 'soft' is listed twice"),
    "unset teacher variable": ("seed1@${final}", "seed1@${nope}",
                               "teacher: $nope is not set at scale 'paper'"),
    "bad teacher query": ("convnet3/seed1@${final}", "convnet3/seed1/x@${final}", "eval: teacher:"),
    "unknown kd loss": ("labels: [hard, soft],", "labels: [hard, soft], kd_loss: l2,",
                        "unknown kd_loss 'l2'"),
    "bad temperature": ("labels: [hard, soft],", "labels: [hard, soft], temperature: 0,",
                        "temperature must be a number > 0"),
    "unknown soft labels": ("labels: [hard, soft],", "labels: [hard, soft], soft_labels: kept,",
                            "unknown soft_labels 'kept'"),
    "scores not a bool": ("scores: true,", "scores: 1,", "scores must be true or false"),
    "unused teacher run": ("seeds: 2, epochs: 150}", "seeds: 3, epochs: 150}",
                           "trains 1 run(s) that no cell's query reads (digits/convnet3 seed2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOFT))
def test_a_bad_label_regime_is_one_line_at_its_node(case, tmp_path):
    old, new, message = BAD_SOFT[case]
    good = SOFT.read_text()
    text = good.replace(old, new, 1)
    assert text != good
    pairs = zip(good.splitlines(), text.splitlines(), strict=True)
    changed = next(i for i, (a, b) in enumerate(pairs) if a != b)
    with pytest.raises(ConfigError) as error:
        parse_spec(text, tmp_path / "bad.yaml")
    line = str(error.value)
    assert message in line and "\n" not in line
    assert line.startswith(f"{tmp_path / 'bad.yaml'}:{changed + 1}:")


def test_cells_carry_their_label_regimes_and_hard_cells_keep_their_identity(tmp_path):
    cells = expand(load_spec(SOFT), "smoke")
    assert all(c.labels == ("hard", "soft") and c.teacher == ("digits/convnet3/seed1@epoch2",) for c in cells)
    assert Cell.from_json(json.loads(json.dumps(cells[0].to_json()))) == cells[0]
    text = SOFT.read_text().replace("labels: [hard, soft], teacher",
                                    "labels: [soft, hard], kd_loss: sce, temperature: 4, teacher", 1)
    paper = expand(parse_spec(text, tmp_path / "soft.yaml"), "paper")[0]
    assert paper.labels == ("hard", "soft") and paper.kd == {"loss": "sce", "temperature": 4.0}  # hard first
    # A hard-label cell's JSON (its identity in cell.json) has no label fields: grids run before
    # regimes existed stay finished.
    tiny = expand(load_spec(TINY), "smoke")[0]
    assert tiny.labels == ("hard",) and not {"labels", "teacher", "kd", "scores"} & set(tiny.to_json())
    assert Cell.from_json(tiny.to_json()) == tiny


def test_teacher_cells_distil_from_the_soft_labels_teacher_in_both_regimes(tmp_path):
    """`teachers`: RDED and SRe2L cells name the scale's teacher as their distillation teacher in
    each label regime's request; DM cells have none."""
    from ddz.repro.cell import CellContext, cell_request
    from ddz.zoo.paths import ZooPaths

    cells = {c.key: c for c in expand(load_spec(shipped_specs()["teachers"]), "smoke")}
    context = CellContext(ZooPaths.under(tmp_path))
    for labels in ("hard", "soft"):
        rded = cell_request(cells["cifar10-rded-ipc10-none"], context, tmp_path / "c", labels)
        assert rded.teacher == ("digits/convnet3bn/seed0@epoch2",)
        assert rded.evaluation.labels.labels == labels
        sre2l = cell_request(cells["cifar100-sre2l-ipc1-none"], context, tmp_path / "c", labels)
        assert sre2l.distill.iterations == 5 and sre2l.teacher == rded.teacher
        assert cell_request(cells["cifar10-dm-ipc1-none"], context, tmp_path / "c", labels).teacher == ()


def test_a_spec_with_a_teacher_method_but_no_teacher_is_one_line(tmp_path):
    text = MTT_SPEC.replace("method: [dm], ipc: [1]", "method: [rded], ipc: [1]")
    assert text != MTT_SPEC
    with pytest.raises(ConfigError, match="method rded distils from a teacher: add `teacher: \\[QUERY\\]`"):
        parse_spec(text, tmp_path / "bad.yaml")


TEACHER_SPEC = """\
name: teach
title: "RDED and SRe2L from a zoo teacher"
grid:
  - {dataset: [digits], method: [rded, sre2l], ipc: [1], pool: [none]}
pools:
  none: {label: "no CLoM"}
scales:
  paper:
    variables: {final: epoch1}
    zoo:
      - {dataset: digits, archs: [convnet3bn], seeds: 1, epochs: 1, net: {width: 8}}
    eval: {archs: [convnet3], models: 1, epochs: 1, labels: [hard, soft],
           teacher: ["${dataset}/convnet3bn/seed0@${final}"]}
  smoke:
    variables: {final: epoch1}
    zoo:
      - {dataset: digits, archs: [convnet3bn], seeds: 1, epochs: 1, net: {width: 8}}
    runs: 1
    eval: {archs: [convnet3], models: 1, epochs: 1, scores: false, labels: [hard, soft],
           teacher: ["${dataset}/convnet3bn/seed0@${final}"]}
    distill: {iterations: {sre2l: 2}}
"""


@pytest.mark.slow  # trains a zoo teacher, distils two cells, evaluates each in two regimes
def test_teacher_cells_run_through_repro_and_record_their_teacher(tmp_path):
    from ddz.repro.cell import CellContext
    from ddz.repro.run import run_spec
    from ddz.zoo.api import Zoo
    from ddz.zoo.paths import ZooPaths

    spec = parse_spec(TEACHER_SPEC, tmp_path / "teach.yaml")
    folder = tmp_path / "grid"
    zoo = Zoo(ZooPaths.under(folder / "zoo-home"))
    result = run_spec(spec, "smoke", folder, zoo, CellContext(zoo.paths, str(tmp_path / "data"), "cpu"))
    assert not result.failed, [(o.key, o.error) for o in result.failed]
    report = json.loads((folder / "report.json").read_text())
    for obj in report["cells"]:
        assert obj["status"] == "done"
        soft = obj["regimes"]["soft"]
        assert [t["name"] for t in soft["labels"]["teacher"]] == ["digits/convnet3bn/seed0@epoch1"]
    from ddz.distill.synset import load_synset

    synsets = sorted(folder.glob("*/seed0/synset.safetensors"))
    assert len(synsets) == 2
    assert all(load_synset(s).teacher[0]["name"] == "digits/convnet3bn/seed0@epoch1" for s in synsets)
