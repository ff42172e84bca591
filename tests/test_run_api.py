"""One run path: the CLI, the Python API and a repro cell give the same numbers for one request;
a report reruns from its own file; MTT sets are evaluated with their own step sizes; the
accuracy curve; ZCA experts against MTT's defaults."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from ddz import DistillConfig, EvalConfig, EvalRequest, MTTConfig, RunContext, RunRequest, evaluate, run
from ddz.distill.request import read_request_file
from ddz.distill.run import check_experts_whitening
from ddz.errors import ConfigError
from ddz.repro.cell import CellContext, run_cell
from ddz.repro.grid import expand
from ddz.repro.spec_file import load_spec
from ddz.zoo.api import Zoo
from ddz.zoo.launch import LaunchConfig
from ddz.zoo.paths import ZooPaths
from ddz.zoo.recipes import RECIPES

TINY = Path(__file__).parent / "specs" / "tiny.yaml"
NET = ["--net-option", "width=8"]
SMALL = ["--dataset", "digits", "--method", "dm", "--ipc", "2", "--iterations", "6", "--batch-real", "8",
         *NET, "--eval-models", "1", "--eval-epochs", "2"]

INLINE = LaunchConfig(launcher="inline")  # trained in this process: no worker start-up per seed


def small_request(out: Path) -> RunRequest:
    return RunRequest("digits", DistillConfig(method="dm", ipc=2, iterations=6, batch_real=8,
                                              net_options=(("width", 8),)),
                      evaluation=EvalConfig(models=1, epochs=2), out=str(out))


def test_cli_api_and_a_repro_cell_give_equal_accuracies(run_ddz, tmp_path, digits):
    cli = run_ddz("distill", *SMALL, "--out", "cli", "--json", "cli.json")
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads((tmp_path / "cli.json").read_text())
    api = run(small_request(tmp_path / "api"), RunContext(data=digits)).to_json()
    assert api["eval"] == from_cli["eval"]
    assert api["request"] == {**from_cli["request"], "out": str(tmp_path / "api")}

    cell = next(c for c in expand(load_spec(TINY), "smoke") if c.method == "dm" and not c.guided)
    context = CellContext(ZooPaths.under(tmp_path / "zoo"), str(tmp_path / "data"), "cpu", seed=0)
    outcome = run_cell(replace(cell, runs=1, batch_real=8, iterations=6, eval_epochs=2), tmp_path / "cell",
                       context, data=digits)
    assert outcome.status == "done", outcome.error
    assert outcome.report["eval"] == from_cli["eval"]


def test_a_report_reruns_from_its_file_and_options_override_it(run_ddz, tmp_path):
    first = run_ddz("distill", *SMALL, "--out", "one", "--json", "one.json")
    assert first.returncode == 0, first.stderr
    again = run_ddz("distill", "--config", "one.json", "--out", "two", "--json", "two.json")
    assert again.returncode == 0, again.stderr
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["eval"] == one["eval"]
    assert two["request"] == {**one["request"], "out": "two"}
    # A hand-written YAML request with one option changed on the command line.
    (tmp_path / "request.yaml").write_text("dataset: digits\ndistill: {method: dm, ipc: 2, iterations: 6, "
                                           "batch_real: 8, net_options: [[width, 8]]}\n"
                                           "evaluation: {models: 1, epochs: 2}\n")
    third = run_ddz("--seed", "1", "distill", "--config", "request.yaml", "--iterations", "4",
                    "--out", "three", "--json", "three.json")
    assert third.returncode == 0, third.stderr
    request = json.loads((tmp_path / "three.json").read_text())["request"]
    assert request["distill"]["iterations"] == 4 and request["seed"] == 1
    assert request["distill"]["lr_img"] == 1.0  # resolved: DM's default recorded


@pytest.mark.parametrize("content, fragment", [
    ("dataset: digits\ndistill: {method: dm, ipc: 2, itrations: 3}\n",
     "unknown distillation setting 'itrations'"),
    ("dataset: [digits\n", "not valid YAML (line"),
    ("- 1\n", "holds no request"),
])
def test_a_bad_request_file_is_one_line(run_ddz, tmp_path, content, fragment):
    (tmp_path / "bad.yaml").write_text(content)
    result = run_ddz("distill", "--config", "bad.yaml")
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


def test_missing_required_options_without_a_file_is_one_line(run_ddz):
    result = run_ddz("distill", "--dataset", "digits")
    assert result.returncode == 2 and "missing --method, --ipc" in result.stderr


def test_read_request_file_takes_a_report_or_a_request(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"eval": {}, "request": {"dataset": "digits"}}))
    assert read_request_file(tmp_path / "report.json") == {"dataset": "digits"}


@pytest.fixture(scope="module")
def experts(tmp_path_factory, digits) -> Zoo:
    zoo = Zoo(ZooPaths.under(tmp_path_factory.mktemp("experts")))
    recipe = replace(RECIPES["mtt-expert"], epochs=3, snapshots=(0, 1, 2, 3), net=(("width", 8),))
    jobs = zoo.plan("digits", ["convnet3"], [0, 1], recipe, digits, device="cpu")
    assert not zoo.train([job for job, _ in jobs], INLINE, data=digits).failed
    return zoo


def mtt_request(out: Path, **changes) -> RunRequest:
    config = DistillConfig(method="mtt", ipc=1, iterations=4, lr_img=100.0,
                           mtt=MTTConfig(syn_steps=3, expert_epochs=1, max_start_epoch=2))
    base = RunRequest("digits", config, experts=("digits/convnet3/*",),
                      evaluation=EvalConfig(models=1, epochs=3), out=str(out))
    return replace(base, **changes)


def test_mtt_sets_are_evaluated_each_with_its_own_step_size(experts, digits, tmp_path):
    context = RunContext(experts, data=digits)
    distilled = run(mtt_request(tmp_path / "mtt", runs=2), context)
    assert len(distilled.lr) == 2 and distilled.lr[0] != distilled.lr[1]
    files = tuple(run_["synset"] for run_ in distilled.runs)
    again = evaluate(EvalRequest(files, EvalConfig(models=1, epochs=3)), context)
    assert again.lr == distilled.lr
    assert again.eval["convnet3"].accs == distilled.eval["convnet3"].accs


def test_eval_every_records_the_curve_and_keeps_it_over_a_resume(experts, digits, tmp_path):
    context = RunContext(experts, data=digits)
    half = run(mtt_request(tmp_path / "run", eval_every=2, runs=1, distill=replace(
        mtt_request(tmp_path).distill, iterations=2)), context)
    assert [i for i in sorted(half.curves[0].points)] == [0, 2]
    whole = run(mtt_request(tmp_path / "run", eval_every=2), context)
    curve = whole.to_json()["eval_curve"][0]
    assert [p["iteration"] for p in curve["points"]] == [0, 2, 4] and curve["final_iteration"] == 4
    assert curve["points"][0] == half.to_json()["eval_curve"][0]["points"][0]  # kept, not recomputed
    means = {p["iteration"]: p["eval"]["convnet3"]["mean"] for p in curve["points"]}
    assert curve["best"]["convnet3"]["mean"] == max(means.values())
    assert whole.eval["convnet3"].mean == means[4]  # the headline is the final set


def test_experts_whitened_unlike_the_defaults_stop_with_one_line():
    plain, whitened = SimpleNamespace(zca=False), SimpleNamespace(zca=True)
    request = RunRequest("cifar10", DistillConfig(method="mtt", ipc=10), experts=("cifar10/convnet3/*",))
    with pytest.raises(ConfigError, match="without ZCA but MTT.s defaults for cifar10 IPC 10 were tuned"):
        check_experts_whitening(request, plain)
    check_experts_whitening(request, whitened)
    check_experts_whitening(replace(request, distill=DistillConfig(method="mtt", ipc=50)), plain)
    with pytest.raises(ConfigError, match="--recipe mtt-expert,"):
        check_experts_whitening(replace(request, distill=DistillConfig(method="mtt", ipc=50)), whitened)
    explicit = DistillConfig(method="mtt", ipc=10, lr_img=100.0, mtt=MTTConfig(
        syn_steps=30, expert_epochs=2, max_start_epoch=20, lr_lr=1e-5, lr_teacher=1e-3, batch_syn=100))
    check_experts_whitening(replace(request, distill=explicit), plain)  # explicit settings override
    check_experts_whitening(replace(request, dataset="digits", distill=DistillConfig(method="mtt", ipc=1)),
                            whitened)  # no tuned setting: no opinion


@pytest.mark.parametrize("changes, fragment", [
    (dict(experts=("x/*",)), "--experts are MTT's"),
    (dict(distill=DistillConfig(method="mtt", ipc=1)), "needs expert trajectories"),
    (dict(eval_every=2, evaluation=None), "--eval-every needs evaluation"),
    (dict(runs=0), "--runs must be at least 1"),
])
def test_bad_requests_are_one_line(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        replace(RunRequest("digits"), **changes)


def test_mtt_settings_belong_to_mtt():
    with pytest.raises(ConfigError, match="--syn-steps is an MTT setting"):
        DistillConfig(method="dm", mtt=MTTConfig(syn_steps=3))


@pytest.mark.slow
def test_mtt_cells_run_from_repro(run_ddz, tmp_path):
    """A spec's MTT cells train their experts through the zoo and run through the one run path:
    the cell's report is an MTT report with its experts, learnt step size and request."""
    spec = Path(__file__).parent / "specs" / "tiny_mtt.yaml"
    result = run_ddz("repro", "run", str(spec), "--scale", "smoke", "--out", "grid", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 cells: 2 run, 0 finished before, 0 failed" in result.stderr
    for key, guided in (("digits-mtt-ipc1-none-plain", False), ("digits-mtt-ipc1-m1-alpha0.1-plain", True)):
        cell = json.loads((tmp_path / "grid" / key / "cell.json").read_text())
        report = cell["report"]
        assert cell["status"] == "done" and report["method"] == "mtt" and len(report["lr"]) == 1
        assert report["request"]["experts"] == ["digits/convnet3/seed{100..101}"]
        assert report["request"]["distill"]["mtt"]["syn_steps"] == 2
        assert bool(report["ptms"]) == guided


@pytest.mark.slow
def test_zca_from_zoo_train_through_mtt_to_eval(run_ddz, tmp_path):
    """Experts trained with the ZCA recipe make MTT distil in the whitened space; a guidance PTM
    trained without ZCA takes part; `ddz eval` of the saved set finds the same space (the same
    accuracy as the run's own evaluation)."""
    small = ["--dataset", "digits", "--epochs", "2", "--net-option", "width=4"]
    experts = run_ddz("zoo", "train", *small, "--arch", "convnet3", "--recipe", "mtt-expert-zca",
                      "--seeds", "2", "--snapshots", "every", "--launcher", "inline", timeout=500)
    assert experts.returncode == 0, experts.stderr
    ptm = run_ddz("zoo", "train", *small, "--arch", "convnet3bn", "--seeds", "1", timeout=500)
    assert ptm.returncode == 0, ptm.stderr
    distilled = run_ddz("distill", "--dataset", "digits", "--method", "mtt", "--ipc", "1",
                        "--iterations", "2", "--experts", "digits/convnet3/*", "--syn-steps", "2",
                        "--expert-epochs", "1",
                        "--max-start-epoch", "1", "--ptm", "digits/convnet3bn/seed0@epoch2", "--alpha", "0.1",
                        "--eval-models", "1", "--eval-epochs", "2", "--out", "run", "--json", "run.json",
                        timeout=500)
    assert distilled.returncode == 0, distilled.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    from ddz import load_synset

    assert load_synset(tmp_path / "run").zca and report["guidance"] == "clom"
    again = run_ddz("eval", "run", "--models", "1", "--epochs", "2", "--json", "eval.json")
    assert again.returncode == 0, again.stderr
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["eval"]["convnet3"]["accs"] == report["eval"]["convnet3"]["accs"]
    assert evaluated["lr"] == report["lr"]
