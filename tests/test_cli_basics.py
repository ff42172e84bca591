"""The installed `ddz` console script: one-line user errors with exit 2, and the eval JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONTRACT_KEYS = {
    "dataset",
    "method",
    "ipc",
    "ptm_query",
    "ptms",
    "guidance",
    "alpha",
    "iterations",
    "seconds_distill",
    "iters_per_sec",
    "seed",
    "eval",
}
EVAL = ["eval", "--dataset", "digits", "--random-real", "--ipc", "2", "--models", "1"]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert "Traceback" not in result.stderr and "\n" not in message, result.stderr
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["eval", "--dataset", "cifar11", "--random-real"], ["unknown data set 'cifar11'", "cifar10"]),
        ([*EVAL, "--arch", "resnet19"], ["unknown arch 'resnet19'", "resnet18"]),
        (["--device", "tpu", *EVAL], ["unknown --device 'tpu'", "auto, cpu, cuda"]),
        (["eval", "--dataset", "svhn", "--random-real"], ["svhn/", "train_32x32.mat", "ufldl"]),
        ([*EVAL[:5], "999"], ["--ipc 999 is out of range for digits"]),
    ],
    ids=["dataset", "arch", "device", "missing-files", "ipc"],
)
def test_user_errors_are_one_line_exit_2(run_ddz, args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_ddz(*args), *fragments)


def test_eval_json_contract_and_seed(run_ddz, tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for path in (first, second):
        result = run_ddz("--seed", "3", *EVAL, "--epochs", "5", "--json", str(path))
        assert result.returncode == 0, result.stderr
    report = json.loads(first.read_text())
    assert set(report) >= CONTRACT_KEYS
    assert (report["dataset"], report["method"], report["ipc"], report["seed"]) == (
        "digits",
        "random-real",
        2,
        3,
    )
    assert report["ptm_query"] == [] and report["ptms"] == []
    convnet = report["eval"]["convnet3"]
    assert {"accs", "mean", "std", "epochs", "models"} <= set(convnet)
    assert (convnet["epochs"], convnet["models"], len(convnet["accs"])) == (5, 1, 1)
    assert 0.0 <= convnet["accs"][0] <= 1.0 and convnet["mean"] == convnet["accs"][0]
    assert json.loads(second.read_text())["eval"]["convnet3"]["accs"] == convnet["accs"]
    assert "convnet3" in result.stdout  # the results table


def test_usage_errors_exit_2_without_traceback(run_ddz) -> None:
    result = run_ddz("eval", "--bogus")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "--bogus" in result.stderr


def test_help_and_zoo_listing_import_no_torch(run_ddz_process, tmp_path: Path) -> None:
    """`ddz --help`, `ddz zoo list` and `ddz zoo show` start without torch or timm (seconds saved
    on every call; bench/cli_startup.py times it)."""
    from olah_server import make_zoo

    make_zoo(tmp_path / "ddz-home" / "zoo", seeds=(0,), epochs=(1,))
    for args in (["--help"], ["zoo", "list"], ["zoo", "show", "digits/convnet3/seed0@epoch1"]):
        result = run_ddz_process(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert result.returncode == 0, result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert "ddz.cli.main" in imported  # the import log is there
        assert not imported & {"torch", "timm"}, args
    assert "digits/convnet3/seed0@epoch1" in result.stdout


def test_progress_rows_stay_readable_at_80_columns(monkeypatch) -> None:
    """Counts and times keep their columns at 80 characters; fields are rounded; a long
    description is the part that gives way (an ellipsis)."""
    import io
    import re

    from rich.console import Console

    import ddz.cli.common as common

    buffer = io.StringIO()
    narrow = Console(file=buffer, width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(common, "console", narrow)
    with common.RichProgress() as progress:
        progress.task("zoo grid (inline)", 10).advance(3)
        progress.task("convnet3 seeds 0,1,2,3", 150).advance(12, epoch=12, loss=0.10933597385883331, acc=0.85)
        progress.task("distill dm ipc 10", 20000).advance(100, loss=12.3456789)
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue()).split("\r")
    rows = [line for line in frames[-1].splitlines() if line.strip()]
    assert len(rows) == 3 and all(len(row) <= 80 for row in rows)
    assert re.search(r" 3/10 \d:\d\d:\d\d ", rows[0]) and re.search(r" 100/20000 \d:\d\d:\d\d ", rows[2])
    assert "loss=12.3" in rows[2] and "0.1093359" not in buffer.getvalue()
    assert rows[1].split(" 12/150 ")[0].rstrip(" ╸━").endswith("…")
