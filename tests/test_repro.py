"""`ddz repro`: specs load and validate (file:line), grids expand to the paper's shape, cells run as
distill run folders (skipped when finished, resumed when killed, failed ones reported while the
rest finish), and the paper's column holds the spec's numbers only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ddz_executable, start_and_kill_when

import ddz.distill.baselines as baselines_module
import ddz.distill.evaluate as evaluate_module
import ddz.distill.loop as loop_module
from ddz.errors import ConfigError
from ddz.repro.cell import CellContext, CellOutcome
from ddz.repro.grid import expand
from ddz.repro.report import GridReport
from ddz.repro.run import run_spec
from ddz.repro.spec_file import load_spec, parse_spec, shipped_specs
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths

TINY = Path(__file__).parent / "specs" / "tiny.yaml"
# cells at the paper scale (= at the smoke scale: the same grid shape), and paper numbers
SHAPES = {"table1": (48, 48), "fig2": (60, 13), "table2": (36, 36), "table3": (12, 12),
          "table4": (12, 48), "table5": (10, 10), "fig3": (18, 3), "fig3nm": (33, 9), "tableA1": (4, 4),
          "soft": (6, 0), "teachers": (18, 0)}


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shipped_spec_loads_and_expands_to_the_papers_shape(name):
    spec = load_spec(shipped_specs()[name])
    cells, papers = SHAPES[name]
    assert len(expand(spec, "paper")) == len(expand(spec, "smoke")) == cells
    assert len(spec.paper) == papers
    assert [c.key for c in expand(spec, "paper")] == [c.key for c in expand(spec, "smoke")]
    assert all(c.dataset == "digits" for c in expand(spec, "smoke"))


def test_only_the_specs_above_ship():
    assert set(shipped_specs()) == set(SHAPES)


def test_grid_blocks_expand_in_order_and_cells_carry_their_settings():
    spec = load_spec(TINY)
    cells = expand(spec, "smoke")
    assert [c.key for c in cells] == [
        "digits-dm-ipc2-none", "digits-dm-ipc2-m1", "digits-dc-ipc2-none", "digits-dc-ipc2-m1",
        "digits-dm-ipc2-nomatch",
    ]
    guided = cells[1]
    assert guided.ptm == ("digits/convnet3/seed0@epoch2",) and guided.iterations == 6
    assert cells[0].ptm == () and cells[0].guidance == "none" and cells[2].iterations == 2


BAD = {
    "unknown key": ("  m1: {label: x, ptms: [a]}\n", "unknown key 'ptms'"),
    "wrong type": ("    ipc: [two]\n", "an IPC must be an integer"),
    "unset variable": ("  m1: {label: x, ptm: ['${dataset}/convnet3@${nope}']}\n", "$nope is not set"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_spec_is_one_line_with_file_and_line(case, run_ddz, tmp_path):
    replacement, message = BAD[case]
    lines = TINY.read_text().splitlines(keepends=True)
    target = "    ipc: [2]\n" if case == "wrong type" else lines[[i for i, t in enumerate(lines)
                                                              if t.startswith("  m1:")][0]]
    number = lines.index(target) + 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("".join(replacement if line == target else line for line in lines))
    line = one_line_error(run_ddz("repro", "run", str(bad), "--scale", "smoke"))
    assert f"{bad}:{number}:" in line and message in line
    with pytest.raises(ConfigError, match=f"{bad}:{number}:"):
        load_spec(bad)


def test_a_paper_value_must_sit_at_exactly_one_cell(tmp_path):
    text = TINY.read_text().replace("{at: {method: dm, pool: none}", "{at: {pool: none}")
    with pytest.raises(ConfigError, match=r"matches 2 cells"):
        parse_spec(text, tmp_path / "spec.yaml")


def _outcome(key: str, accs: list[float]) -> CellOutcome:
    report = {"eval": {"convnet3": {"accs": accs, "mean": sum(accs) / len(accs), "std": 0.01, "models": 1,
                                    "runs": len(accs), "epochs": 2}}}
    return CellOutcome(key, "done", report, 1.0)


@pytest.mark.parametrize("scale", ["paper", "smoke"])
def test_the_paper_column_holds_the_specs_numbers_never_ddzs(scale, tmp_path):
    spec = load_spec(TINY)
    cells = expand(spec, scale)
    # ddz numbers that no paper value equals: each cell's own
    outcomes = [_outcome(c.key, [0.11 + i / 100, 0.13 + i / 100]) for i, c in enumerate(cells)]
    report = GridReport(spec, scale, cells, outcomes, tmp_path)
    report.write()
    written = json.loads((tmp_path / "report.json").read_text())["cells"]
    by_key = {obj["key"]: obj for obj in written}
    row = "C10 DM CLoM ✗, IPC 10 (a stand-in for the test)"
    assert by_key["digits-dm-ipc2-none"]["paper"]["convnet3"] == {
        "mean": 49.6, "std": 0.3, "table": "Table 1", "row": row}
    assert by_key["digits-dm-ipc2-m1"]["paper"]["convnet3"]["mean"] == 50.0
    for obj in written:
        ddz_means = {round(r["mean"], 6) for r in obj["ddz"].values()}
        assert ddz_means and not any(round(p["mean"], 6) in ddz_means for p in obj["paper"].values())
        if obj["key"] not in ("digits-dm-ipc2-none", "digits-dm-ipc2-m1"):
            assert obj["paper"] == {}  # no paper number: nothing is filled in from ddz
    guided = by_key["digits-dm-ipc2-m1"]
    assert guided["clom_effect"]["paper"]["convnet3"] == pytest.approx(0.4)
    assert guided["clom_effect"]["paper_sign"]["convnet3"] == "+"
    assert guided["clom_effect"]["ddz_sign"]["convnet3"] == "+"
    text = (tmp_path / "report.md").read_text()
    if scale == "smoke":
        assert guided["difference"] == {} and guided["paper_note"] == "not comparable: digits"
        assert "not comparable: digits" in text and "49.6 ± 0.3" not in text
    else:
        assert guided["difference"]["convnet3"] == pytest.approx(guided["ddz"]["convnet3"]["mean"] - 50.0)
        assert "50.0 ± 0.4 (Table 1," in text


def test_repro_list_names_every_spec(run_ddz):
    listed = run_ddz("repro", "list")
    assert listed.returncode == 0, listed.stderr
    for name in SHAPES:
        assert name in listed.stdout


def test_the_paper_scale_without_its_data_is_one_line(run_ddz, tmp_path):
    line = one_line_error(run_ddz("repro", "run", "table1", "--out", str(tmp_path / "grid")))
    assert "cifar" in line.lower() and str(tmp_path / "data") in line


def _report_cells(folder: Path) -> list[dict]:
    """The report's cells without what differs between runs of the same grid: seconds, and whether
    a finished cell was computed by this run or an earlier one."""
    cells = json.loads((folder / "report.json").read_text())["cells"]
    finished = {"skipped": "done"}
    return [{**{k: v for k, v in cell.items() if k != "seconds"},
             "status": finished.get(cell["status"], cell["status"])} for cell in cells]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # four grid runs, each a few CPU minutes on a busy 2-core machine
def test_a_killed_grid_resumes_skips_finished_cells_and_reports_failures(run_ddz, tmp_path):
    """SIGKILL in the middle of the second cell; the resumed grid ends with the report of a grid run
    straight through (with the local launcher); a third run skips every finished cell; the cell
    whose query matches nothing is reported failed while the others finish."""
    args = ["repro", "run", str(TINY), "--scale", "smoke"]
    killed = tmp_path / "killed"
    env = {"DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    checkpoint = killed / "digits-dm-ipc2-m1" / "seed0" / "checkpoint.safetensors"
    start_and_kill_when([*ddz_executable(), *args, "--out", str(killed)], tmp_path, {**os.environ, **env},
                        checkpoint, timeout=400)
    assert (killed / "digits-dm-ipc2-none" / "cell.json").exists()
    assert not (killed / "digits-dm-ipc2-m1" / "cell.json").exists()
    first_cell = (killed / "digits-dm-ipc2-none" / "cell.json").stat().st_mtime_ns

    resumed = run_ddz(*args, "--out", str(killed), timeout=600)
    assert resumed.returncode == 2 and "1 cell(s) failed" in resumed.stderr
    assert "5 cells: 3 run, 1 finished before, 1 failed" in resumed.stderr
    assert (killed / "digits-dm-ipc2-none" / "cell.json").stat().st_mtime_ns == first_cell

    straight = run_ddz(*args, "--out", str(tmp_path / "straight"), "--launcher", "local", "--jobs", "1",
                       timeout=600)
    assert straight.returncode == 2, straight.stderr
    assert _report_cells(killed) == _report_cells(tmp_path / "straight")

    report = json.loads((killed / "report.json").read_text())
    status = {cell["key"]: cell["status"] for cell in report["cells"]}
    assert status.pop("digits-dm-ipc2-nomatch") == "failed" and set(status.values()) == {"done", "skipped"}
    failed = next(cell for cell in report["cells"] if cell["status"] == "failed")
    assert "nosuchset" in failed["error"] and "nosuchset" in (killed / "report.md").read_text()

    again = run_ddz(*args, "--out", str(killed), timeout=600)
    assert "0 run, 4 finished before, 1 failed" in again.stderr
    assert (killed / "digits-dm-ipc2-none" / "cell.json").stat().st_mtime_ns == first_cell
    reported = run_ddz("repro", "report", str(TINY), "--scale", "smoke", "--out", str(killed))
    assert reported.returncode == 0, reported.stderr
    assert _report_cells(killed) == _report_cells(tmp_path / "straight")


def _counting(monkeypatch, module, name: str) -> list:
    """Replace module.name by a wrapper that records each call's first argument."""
    calls, original = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a 6-cell grid in two regimes: about 2 CPU minutes on a busy 2-core machine
def test_the_soft_spec_distils_each_cell_once_and_reports_both_regimes(monkeypatch, tmp_path):
    """`soft` at the smoke scale: every cell distils once (one synset write per cell seed), is
    evaluated with hard and with soft labels (the soft run's HLR reads the hard run's eval.json),
    the baselines are computed once per setting in the zoo home's cache, and the report carries
    both regimes' accuracies and scores."""
    spec = load_spec(shipped_specs()["soft"])
    folder = tmp_path / "grid"
    zoo = Zoo(ZooPaths.under(folder / "zoo-home"))
    context = CellContext(zoo.paths, str(tmp_path / "data"), "cpu", seed=0)
    saved = _counting(monkeypatch, loop_module, "save_synset")
    evaluated = _counting(monkeypatch, evaluate_module, "evaluate_synset")  # the sets (evaluate_cached)
    baselines = _counting(monkeypatch, baselines_module, "evaluate_synset")  # random subsets, full data
    result = run_spec(spec, "smoke", folder, zoo, context)
    assert not result.failed, [(o.key, o.error) for o in result.failed]
    cells = expand(spec, "smoke")
    assert sorted(saved) == sorted(folder / c.key / "seed0" / "synset.safetensors" for c in cells)
    assert len(evaluated) == 2 * len(cells)  # hard and soft; the soft run's hard accuracy is cached
    for cell in cells:
        run_folder = folder / cell.key / "seed0"
        assert {p.name for p in run_folder.glob("eval*.json")} == {"eval.json", "eval-soft.json"}
    cache = folder / "zoo-home" / "cache" / "baselines"
    assert len(list(cache.glob("full-*.json"))) == 1 and len(list(cache.glob("random-*.json"))) == 4
    assert len(baselines) == 5  # 2 IPCs x 2 regimes of random subsets, and the full data once

    report = json.loads((folder / "report.json").read_text())
    assert report["labels"] == ["hard", "soft"]
    for obj in report["cells"]:
        assert obj["status"] == "done" and obj["labels"] == ["hard", "soft"]
        hard, soft = obj["regimes"]["hard"], obj["regimes"]["soft"]
        assert hard["ddz"] == obj["ddz"] and hard["labels"]["regime"] == "hard"
        assert soft["labels"]["regime"] == "soft" and soft["labels"]["loss"] == "kl"
        assert [t["name"] for t in soft["labels"]["teacher"]] == ["digits/convnet3/seed1@epoch2"]
        for part in (hard, soft):
            score = part["scores"]["convnet3"]
            assert set(score) >= {"random", "full", "hlr", "ior", "lrs"}
            assert score["set"] == pytest.approx(part["ddz"]["convnet3"]["mean"])
            assert score["ior"] == pytest.approx(score["set"] - score["random"])
        # HLR compares hard labels in both regimes: the soft regime's is the hard regime's
        assert soft["scores"]["convnet3"]["set_hard"] == pytest.approx(obj["ddz"]["convnet3"]["mean"])
        assert soft["scores"]["convnet3"]["hlr"] == pytest.approx(hard["scores"]["convnet3"]["hlr"])
        assert soft["scores"]["convnet3"]["full"] == hard["scores"]["convnet3"]["full"]
    text = (folder / "report.md").read_text()
    assert "ddz acc. (hard labels)" in text and "ddz acc. (soft labels)" in text
    assert "hard: LRS" in text and "soft: LRS" in text and "`digits/convnet3/seed1@epoch2`" in text

    # A cell whose cell.json is gone runs again from its folders: nothing distilled or evaluated.
    (folder / cells[0].key / "cell.json").unlink()
    saved.clear(), evaluated.clear(), baselines.clear()
    again = run_spec(spec, "smoke", folder, zoo, context)
    assert [o.status for o in again.report.outcomes] == ["done"] + ["skipped"] * (len(cells) - 1)
    assert saved == evaluated == baselines == []
    rewritten = json.loads((folder / "report.json").read_text())["cells"][0]
    assert rewritten["regimes"] == report["cells"][0]["regimes"]
