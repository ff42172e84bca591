"""`ddz distill --method rded|sre2l --teacher QUERY` end to end with teachers trained into a zoo:
ordinary synsets, soft labels from the teacher by default (hard on request), scores, kill -9 and
resume of a recovery, and the bad inputs as one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ddz_executable, ddz_in_process, start_and_kill_when

from ddz.distill.synset import CHECKPOINT_FILE, GRID_FILE, SYNSET_FILE, load_checkpoint, load_synset

BN = "digits/convnet3bn/seed0@epoch1"
PLAIN = "digits/convnet3/seed0@epoch1"
FAST = ["--eval-models", "1", "--eval-epochs", "2"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A zoo home with a width-8 convnet3bn and convnet3 of 1 epoch on digits."""
    home = tmp_path_factory.mktemp("teacher-zoo")
    result = run_in(home, "zoo", "train", "--dataset", "digits", "--arch", "convnet3bn", "--arch", "convnet3",
                    "--seeds", "1", "--epochs", "1", "--net-option", "width=8", "--launcher", "inline")
    assert result.returncode == 0, result.stderr
    return home


def environment(home: Path) -> dict[str, str]:
    return {"DDZ_HOME": str(home / "ddz-home"), "DDZ_DATA_ROOT": str(home / "data"), "COLUMNS": "200"}


def run_in(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return ddz_in_process(list(args), cwd or home, environment(home))


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow  # the scores train on the full data once: minutes on a busy 2-core machine
def test_rded_distils_a_synset_evaluated_with_the_teachers_soft_labels(zoo, tmp_path):
    out = tmp_path / "rded"
    result = run_in(zoo, "distill", "--dataset", "digits", "--method", "rded", "--ipc", "1", "--teacher", BN,
                    "--candidates", "30", *FAST, "--out", str(out), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["method"] == "rded" and report["teacher"][0]["name"] == BN
    assert report["labels"]["regime"] == "soft" and report["labels"]["teacher"][0]["name"] == BN
    assert report["request"]["teacher"] == [BN] and report["request"]["distill"]["rded"]["factor"] == 1
    assert {"hlr", "ior", "lrs"} <= set(report["scores"]["convnet3"])
    synset = load_synset(out)
    assert synset.images.shape == (10, 1, 16, 16) and (out / GRID_FILE).is_file()
    assert synset.teacher == report["teacher"]
    again = run_in(zoo, "distill", "--config", str(tmp_path / "r.json"), "--eval-models", "0")
    assert again.returncode == 0, again.stderr  # the report reruns (loading the finished set)


def test_rded_evaluated_with_its_own_crops_takes_its_factor(zoo, tmp_path):
    """`--eval-augment rded`: RDED's patch shuffle and region crops over the run's own 2 x 2
    regions, the teacher relabelling each augmented batch (region-level soft labels)."""
    result = run_in(zoo, "distill", "--dataset", "digits", "--method", "rded", "--ipc", "1", "--teacher", BN,
                    "--factor", "2", "--candidates", "12", "--eval-augment", "rded", "--no-scores",
                    *FAST, "--out", str(tmp_path / "r"), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["labels"]["regime"] == "soft" and report["labels"]["soft_mode"] == "regenerate"
    assert report["labels"]["augment"] == "rded" and report["labels"]["crop_factor"] == 2
    assert report["request"]["evaluation"]["crop_factor"] is None  # a rerun resolves it again


def test_sre2l_with_hard_labels_on_request(zoo, tmp_path):
    result = run_in(zoo, "distill", "--dataset", "digits", "--method", "sre2l", "--ipc", "1", "--teacher", BN,
                    "--iterations", "3", "--eval-labels", "hard", *FAST, "--out", str(tmp_path / "s"),
                    "--json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["labels"]["regime"] == "hard" and report["teacher"][0]["name"] == BN
    assert report["request"]["evaluation"]["labels"]["teacher"] == []
    assert report["request"]["distill"]["sre2l"] == {"r_bn": 0.01, "first_bn_multiplier": 10.0, "jitter": 4,
                                                      "flip": False, "batch": 100}


@pytest.mark.slow
def test_kill_9_during_a_recovery_then_resume_gives_the_uninterrupted_images(zoo, tmp_path):
    args = ["distill", "--dataset", "digits", "--method", "sre2l", "--ipc", "2", "--teacher", BN,
            "--iterations", "60", "--checkpoint-every", "5", "--eval-models", "0"]
    killed = tmp_path / "killed"
    start_and_kill_when([*ddz_executable(), *args, "--out", str(killed)], zoo,
                        {**os.environ, **environment(zoo)}, killed / CHECKPOINT_FILE)
    done = load_checkpoint(killed / CHECKPOINT_FILE).iteration
    assert 0 < done < 60 and not (killed / SYNSET_FILE).exists()
    resumed = run_in(zoo, *args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    straight = run_in(zoo, *args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    assert torch.equal(load_synset(killed).images, load_synset(tmp_path / "straight").images)


@pytest.mark.parametrize("extra, fragment", [
    (["--method", "sre2l"], "--method sre2l needs a teacher"),
    (["--method", "sre2l", "--teacher", PLAIN], "(convnet3bn, vgg11bn, resnet18bn)"),
    (["--method", "rded", "--teacher", BN, "--iterations", "5"], "rded selects its images once"),
    (["--method", "dm", "--factor", "2"], "--factor is an RDED setting"),
    (["--method", "rded", "--teacher", BN, "--ptm", PLAIN], "no loss to add --ptm guidance to"),
    (["--method", "rded", "--teacher", BN, "--ipc", "40", "--candidates", "30"], "keeps IPC x factor^2"),
    (["--method", "rded", "--teacher", "cifar10/convnet3bn/*"], "cifar10"),
])
def test_bad_teacher_method_input_is_one_line_and_writes_nothing(zoo, tmp_path, extra, fragment):
    args = ["--ipc", "1", *extra] if "--ipc" not in extra else extra
    result = run_in(zoo, "distill", "--dataset", "digits", *args, "--eval-models", "0",
                    "--out", str(tmp_path / "o"), "--json", str(tmp_path / "o.json"))
    assert fragment in one_line_error(result)
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "o" / SYNSET_FILE).exists()
