"""`ddz distill` as a real subprocess: kill -9 and resume, and the one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ddz_executable, start_and_kill_when

from ddz.distill.synset import CHECKPOINT_FILE, SYNSET_FILE, load_checkpoint, load_synset

FAST = ["--net-option", "width=8", "--batch-real", "32", "--eval-models", "0"]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_gives_the_uninterrupted_images(run_ddz, tmp_path):
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "2", "--iterations", "80",
            "--checkpoint-every", "5", *FAST]
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "ddz-home"), "DDZ_DATA_ROOT": str(tmp_path / "data")}
    killed = tmp_path / "killed"
    command = [*ddz_executable(), *args, "--out", str(killed)]
    start_and_kill_when(command, tmp_path, env, killed / CHECKPOINT_FILE)
    done = load_checkpoint(killed / CHECKPOINT_FILE).iteration
    assert 0 < done < 80 and not (killed / SYNSET_FILE).exists()

    resumed = run_ddz(*args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    straight = run_ddz(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    a, b = load_synset(killed), load_synset(tmp_path / "straight")
    assert a.iterations == b.iterations == 80
    assert torch.equal(a.images, b.images)


def test_ipc_larger_than_a_class_is_one_line(run_ddz):
    line = one_line_error(run_ddz("distill", "--dataset", "digits", "--method", "dm", "--ipc", "500"))
    assert "--ipc 500" in line


def test_ptm_query_matching_nothing_is_one_line(run_ddz):
    line = one_line_error(run_ddz(
        "distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "1",
        "--ptm", "nomatch/*", *FAST,
    ))
    assert "nomatch" in line


def test_ptm_with_the_wrong_channel_count_is_one_line(run_ddz, tmp_path):
    """A real zoo snapshot trained on a tiny 3-channel npz data set, offered to 1-channel digits."""
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "rgb.npz",
        train_images=rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8),
        train_labels=rng.integers(0, 2, (20, 1)),
        test_images=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
        test_labels=rng.integers(0, 2, (6, 1)),
    )
    trained = run_ddz("zoo", "train", "--dataset", f"npz:{tmp_path / 'rgb.npz'}", "--arch", "convnet3",
                      "--seeds", "1", "--epochs", "1", "--net-option", "width=4")
    assert trained.returncode == 0, trained.stderr
    line = one_line_error(run_ddz(
        "distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "1",
        "--ptm", "rgb/*", *FAST,
    ))
    assert "3-channel" in line and "digits" in line
    assert not Path(tmp_path / "runs").exists()


def test_default_run_folder_names():
    from ddz.distill.run import default_out

    assert default_out("cifar10", "dm", 10, 0) == Path("runs/cifar10-dm-ipc10-seed0")
    assert default_out("npz:/data/path mnist.npz", "dc", 1, 2) == Path("runs/path_mnist-dc-ipc1-seed2")


def test_guided_runs_get_their_own_folder(digits):
    from ddz.distill.guidance import Guidance, GuidanceConfig
    from ddz.distill.run import default_out
    from ddz.nets import build_net
    from ddz.zoo.ptm import PTM

    net = build_net("convnet3", 1, 10, 16, generator_seed=0, width=4)
    ptm = PTM("digits/convnet3/seed0@epoch1", "a" * 64, net, list(digits.classes),
              digits.mean, digits.std, 16, 1)
    one = default_out(
        "digits", "dm", 10, 0, Guidance([ptm], digits, GuidanceConfig(alpha=1.0), "dm", 10)
    )
    two = default_out(
        "digits", "dm", 10, 0, Guidance([ptm], digits, GuidanceConfig(alpha=2.0), "dm", 10)
    )
    assert one.name.startswith("digits-dm-ipc10-seed0-clom-") and one != two


RUNS = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "2", "--iterations", "6",
        "--net-option", "width=8", "--batch-real", "32", "--eval-models", "2", "--eval-epochs", "3"]


@pytest.mark.slow
def test_runs_two_gives_two_synsets_and_the_reference_summary(run_ddz, tmp_path):
    result = run_ddz(*RUNS, "--runs", "2", "--out", "two", "--json", "two.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "two.json").read_text())
    assert [run["seed"] for run in report["runs"]] == [0, 1]
    a, b = load_synset(tmp_path / "two" / "seed0"), load_synset(tmp_path / "two" / "seed1")
    assert (a.seed, b.seed) == (0, 1) and not torch.equal(a.images, b.images)
    accs = [acc for run in report["runs"] for acc in run["eval"]["convnet3"]["accs"]]
    summary = report["eval"]["convnet3"]
    assert summary["accs"] == accs and len(accs) == 4 and summary["runs"] == 2 and summary["models"] == 2
    assert summary["mean"] == pytest.approx(statistics.fmean(accs))
    assert summary["std"] == pytest.approx(statistics.pstdev(accs))
    assert summary["run_means"] == pytest.approx([statistics.fmean(accs[:2]), statistics.fmean(accs[2:])])
    # `ddz eval` of the two synthetic sets (set k with seed S+k) gives the same summary
    again = run_ddz("eval", "two/seed0", "two/seed1", "--models", "2", "--epochs", "3", "--json", "e.json")
    assert again.returncode == 0, again.stderr
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["eval"] == report["eval"] and [r["seed"] for r in evaluated["runs"]] == [0, 1]
    # run k is exactly what --seed S+k alone gives
    alone = run_ddz("--seed", "1", *RUNS, "--out", "alone", "--json", "alone.json")
    assert alone.returncode == 0, alone.stderr
    assert torch.equal(load_synset(tmp_path / "alone").images, b.images)
    alone_accs = json.loads((tmp_path / "alone.json").read_text())["eval"]["convnet3"]["accs"]
    assert alone_accs == report["runs"][1]["eval"]["convnet3"]["accs"]


@pytest.mark.slow
def test_runs_resume_after_a_kill_between_runs(run_ddz, tmp_path):
    args = [*RUNS, "--runs", "2", "--out", "killed", "--json", "killed.json"]
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "ddz-home")}
    first_done = tmp_path / "killed" / "seed0" / "eval.json"
    start_and_kill_when([*ddz_executable(), *args], tmp_path, env, first_done)
    assert not (tmp_path / "killed.json").exists()
    kept = (tmp_path / "killed" / "seed0" / SYNSET_FILE).stat().st_mtime_ns

    resumed = run_ddz(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "killed" / "seed0" / SYNSET_FILE).stat().st_mtime_ns == kept  # not redone
    straight = run_ddz(*RUNS, "--runs", "2", "--out", "straight", "--json", "straight.json")
    assert straight.returncode == 0, straight.stderr
    got = json.loads((tmp_path / "killed.json").read_text())
    want = json.loads((tmp_path / "straight.json").read_text())
    assert got["eval"] == want["eval"]
    for seed in (0, 1):
        assert torch.equal(load_synset(tmp_path / "killed" / f"seed{seed}").images,
                           load_synset(tmp_path / "straight" / f"seed{seed}").images)


@pytest.mark.slow
def test_alpha_in_the_json_and_its_errors_with_a_real_pool(run_ddz, tmp_path):
    from ddz.distill.alphas import MEASURED_RULE

    trained = run_ddz("zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--seeds", "1",
                      "--epochs", "1", "--net-option", "width=4")
    assert trained.returncode == 0, trained.stderr
    guided = [*RUNS[:-4], "--eval-models", "0", "--ptm", "digits/convnet3/*"]
    default = run_ddz(*guided, "--json", "default.json")
    assert default.returncode == 0, default.stderr
    report = json.loads((tmp_path / "default.json").read_text())
    assert report["alpha"] == MEASURED_RULE["dm"] and report["alpha_source"].startswith("rule:")
    assert report["guidance"] == "clom"
    user = run_ddz(*guided, "--alpha", "convnet3=7", "--json", "user.json")
    assert user.returncode == 0, user.stderr
    report = json.loads((tmp_path / "user.json").read_text())
    assert report["alpha"] == 7.0 and report["alpha_source"] == "user"
    line = one_line_error(run_ddz(*guided, "--alpha", "alexnet=5"))
    assert "no alexnet PTM in the pool" in line and "convnet3" in line
    for bad in ("convnet3=abc", "-1", "nan", "inf"):
        line = one_line_error(run_ddz(*guided, "--alpha", bad))
        assert "--alpha" in line
    line = one_line_error(run_ddz(*RUNS, "--alpha", "10"))
    assert "--ptm" in line


@pytest.mark.slow
def test_resolution_reaches_distill_eval_and_zoo_train(run_ddz, tmp_path):
    from ddz.zoo.loading import load_snapshot

    distilled = run_ddz("distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2",
                        "--resolution", "12", "--net-option", "width=8", "--eval-models", "0", "--out", "r12")
    assert distilled.returncode == 0, distilled.stderr
    assert load_synset(tmp_path / "r12").images.shape[-2:] == (12, 12)
    evaluated = run_ddz("eval", "r12", "--models", "1", "--epochs", "1", "--json", "e.json")
    assert evaluated.returncode == 0, evaluated.stderr  # the data set is loaded at the set's 12 px
    real = run_ddz("eval", "--random-real", "--dataset", "digits", "--ipc", "1", "--resolution", "8",
                   "--models", "1", "--epochs", "1")
    assert real.returncode == 0, real.stderr
    trained = run_ddz("zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--seeds", "1",
                      "--epochs", "1", "--net-option", "width=4", "--resolution", "12")
    assert trained.returncode == 0, trained.stderr
    snapshot = next((tmp_path / "ddz-home" / "zoo" / "digits").rglob("epoch1.safetensors"))
    assert load_snapshot(snapshot, None, "cpu").image_size == 12
