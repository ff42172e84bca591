"""Zoo training: bit-identical re-runs, kill -9 resume, done markers, the local launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import ddz_executable

from ddz.cli.parsing import parse_epochs
from ddz.errors import ConfigError
from ddz.io import sha256_file
from ddz.zoo.api import Zoo
from ddz.zoo.launch import LaunchConfig, run_grid
from ddz.zoo.paths import ZooPaths
from ddz.zoo.plan import plan_grid
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.train import train_run, train_runs

EPOCH = "1700000000"  # SOURCE_DATE_EPOCH: pins the `created` time, so whole files compare
RECIPE = TrainRecipe(epochs=8, snapshots=(1, 3, 8), net=(("width", 16),))
CLI_RECIPE = ["--epochs", "8", "--snapshots", "1,3,8", "--net-option", "width=16"]


def snapshot_hashes(zoo: Path) -> dict[str, str]:
    return {p.relative_to(zoo).as_posix(): sha256_file(p) for p in sorted(zoo.rglob("epoch*.safetensors"))}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread here and in workers: on a loaded 2-core machine, 2 OpenMP threads can be
    40x slower; and CPU bits depend on the thread count, so every run here uses the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits) -> dict[str, str]:
    """convnet3 seed 0 trained once, uninterrupted, in this process."""
    zoo = tmp_path_factory.mktemp("reference") / "zoo"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        [(job, state)] = plan_grid("digits", ["convnet3"], [0], RECIPE, digits, zoo_root=zoo, device="cpu")
        assert state == "new"
        result = train_run(job, data=digits)
    torch.set_num_threads(threads)
    assert result.status == "trained" and sorted(result.snapshots) == [1, 3, 8]
    assert result.metrics["test_acc"] > 0.5  # it learns: 10 classes, chance is 0.1
    return snapshot_hashes(zoo)


def test_lr_schedule_and_epoch_lists():
    recipe = TrainRecipe()
    assert [recipe.lr_at(e) for e in (1, 50, 51, 100, 101, 150)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    )
    assert parse_epochs(" 6,1,4,4", "--snapshots") == (1, 4, 6)
    with pytest.raises(ConfigError, match="bad --snapshots"):
        parse_epochs("1,four", "--snapshots")
    with pytest.raises(ConfigError, match="come after the last epoch"):
        TrainRecipe(epochs=5, snapshots=(1, 6))


def test_same_command_gives_bit_identical_snapshots(tmp_path, digits, reference, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    zoo = tmp_path / "zoo"
    [(job, _)] = plan_grid("digits", ["convnet3"], [0], RECIPE, digits, zoo_root=zoo, device="cpu")
    train_run(job, data=digits)
    assert snapshot_hashes(zoo) == reference
    # A finished seed is skipped, untouched, when the grid is submitted again.
    before = {p: p.stat().st_mtime_ns for p in zoo.rglob("epoch*.safetensors")}
    [(job, state)] = plan_grid("digits", ["convnet3"], [0], RECIPE, digits, zoo_root=zoo, device="cpu")
    assert state == "done"
    assert train_run(job, data=digits).status == "skipped"
    assert before == {p: p.stat().st_mtime_ns for p in zoo.rglob("epoch*.safetensors")}
    # The same name under another recipe is refused before anything runs.
    other = TrainRecipe(epochs=8, snapshots=(1, 3, 8), lr=0.02, net=(("width", 16),))
    with pytest.raises(ConfigError, match="different recipe.*another DDZ_HOME or delete"):
        plan_grid("digits", ["convnet3"], [0], other, digits, zoo_root=zoo, device="cpu")


def _wait_for_epoch(run_dir: Path, epoch: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training finished before it could be killed"
        try:
            if json.loads((run_dir / "checkpoint.json").read_text())["epoch"] >= epoch:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize(
    "seeds", [["--seeds", "1"], ["--seeds", "2", "--batch-seeds", "2"]], ids=["one", "batched"]
)
def test_kill_9_mid_run_then_resume_is_bit_identical(tmp_path, reference, seeds):
    """Killed twice with SIGKILL, alone or batched with seed 1: seed 0 ends at the reference bytes."""
    home = tmp_path / "home"
    env = {**os.environ, "DDZ_HOME": str(home), "SOURCE_DATE_EPOCH": EPOCH, "COLUMNS": "200"}
    args = [
        *ddz_executable(),
        "--device",
        "cpu",
        "zoo",
        "train",
        "--dataset",
        "digits",
        "--arch",
        "convnet3",
        *seeds,
        *CLI_RECIPE,
        "--json",
        str(tmp_path / "summary.json"),
    ]
    run_dir = home / "zoo" / "digits" / "convnet3" / "seed0"
    for kill_after in (1, 3):  # killed during epoch 2 (or later), then again after resuming
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_epoch(run_dir, kill_after, proc)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            assert proc.wait(timeout=30) == -signal.SIGKILL
        assert not (run_dir / "done.json").exists()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "summary.json").read_text())["results"][0]
    assert result["status"] == "trained" and result["resumed_from"] >= 3
    assert {k: v for k, v in snapshot_hashes(home / "zoo").items() if "/seed0/" in k} == reference
    assert not list(run_dir.glob("checkpoint*")) and not list(run_dir.glob(".*.tmp"))


def test_ctrl_c_leaves_a_checkpoint_and_a_damaged_one_fails_only_its_job(tmp_path, digits):
    """Local pool of 2 workers: seed 1's checkpoint is damaged, seed 0 still trains; the summary
    names the failure with its log tail."""
    recipe = TrainRecipe(epochs=2, snapshots=(1, 2), net=(("width", 8),))
    zoo = tmp_path / "zoo"
    planned = plan_grid("digits", ["convnet3"], [0, 1], recipe, digits, zoo_root=zoo, device="cpu")
    jobs = [job for job, _ in planned]

    class Interrupt:  # what a Ctrl-C after the first epoch does to an inline run
        def advance(self, steps: int = 1, **fields) -> None:
            raise KeyboardInterrupt

        def close(self) -> None:
            pass

    with pytest.raises(KeyboardInterrupt):
        train_run(jobs[1], Interrupt(), digits)
    sidecar = json.loads((jobs[1].run_dir / "checkpoint.json").read_text())
    assert sidecar["epoch"] == 1
    tensors = jobs[1].run_dir / sidecar["tensors"]
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0x55
    tensors.write_bytes(bytes(data))

    summary = run_grid(jobs, LaunchConfig(launcher="local", jobs=2, folder=tmp_path / "jobs", poll_s=0.1))
    ok, failed = summary.results
    assert ok.status == "trained" and sorted(ok.snapshots) == [1, 2]
    assert [r.seed for r in summary.failed] == [1] and failed.status == "failed"
    assert "checkpoint of digits/convnet3/seed1 is damaged" in failed.error and "\n" not in failed.error
    assert "delete" in failed.error and "damaged" in (failed.log_tail or "")
    assert summary.to_json()["failed"] == ["convnet3/seed1"]
    store = Zoo(ZooPaths.under(tmp_path))
    assert [str(r.name) for r in store.local.records()] == [
        "digits/convnet3/seed0@epoch1",
        "digits/convnet3/seed0@epoch2",
        "digits/convnet3/seed1@epoch1",
    ]
    ptm = store.load("digits/convnet3/seed0@epoch2")
    assert ptm.net(digits.test_images[:4]).shape == (4, 10)


class InterruptAfter:
    """A progress task that raises KeyboardInterrupt (a Ctrl-C) once `epochs` epochs are done."""

    def __init__(self, epochs: int):
        self.left = epochs

    def advance(self, steps: int = 1, **fields) -> None:
        self.left -= steps
        if self.left <= 0:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def two_seeds(digits, zoo: Path) -> list:
    planned = plan_grid("digits", ["convnet3"], [0, 1], RECIPE, digits, zoo_root=zoo, device="cpu")
    return [job for job, _ in planned]


def test_batched_seeds_write_the_snapshots_sequential_runs_write(tmp_path, digits, reference, monkeypatch):
    """Seeds 0 and 1 as one batched model: seed 0's files are byte for byte the sequential ones;
    a batched run interrupted after epoch 2 and resumed ends with the same files again."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    zoo = tmp_path / "zoo"
    jobs = two_seeds(digits, zoo)
    results = train_runs(jobs, data=digits)
    assert [r.status for r in results] == ["trained", "trained"]
    batched = snapshot_hashes(zoo)
    assert {k: v for k, v in batched.items() if "/seed0/" in k} == reference
    last = "digits/convnet3/seed{}/epoch8.safetensors"
    assert batched[last.format(0)] != batched[last.format(1)]

    resumed_zoo = tmp_path / "resumed"
    jobs = two_seeds(digits, resumed_zoo)
    with pytest.raises(KeyboardInterrupt):
        train_runs(jobs, InterruptAfter(2), digits)
    assert [json.loads((job.run_dir / "checkpoint.json").read_text())["epoch"] for job in jobs] == [2, 2]
    results = train_runs(jobs, data=digits)
    assert [(r.status, r.resumed_from) for r in results] == [("trained", 2), ("trained", 2)]
    assert snapshot_hashes(resumed_zoo) == batched


def test_a_seed_checkpointed_alone_resumes_in_a_batch(tmp_path, digits, reference, monkeypatch):
    """Seed 0 stopped after epoch 3 on its own, seed 1 new: they train in two stacks (by start
    epoch) and seed 0 still ends at the sequential bits."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    zoo = tmp_path / "zoo"
    jobs = two_seeds(digits, zoo)
    with pytest.raises(KeyboardInterrupt):
        train_run(jobs[0], InterruptAfter(3), digits)
    results = train_runs(jobs, data=digits)
    assert [(r.status, r.resumed_from) for r in results] == [("trained", 3), ("trained", 0)]
    assert {k: v for k, v in snapshot_hashes(zoo).items() if "/seed0/" in k} == reference


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-seeds", "0"], "--batch-seeds must be at least 1, got 0"),
        (["--batch-seeds", "-2"], "--batch-seeds must be at least 1, got -2"),
        (["--batch-seeds", "2", "--launcher", "local"], "use --launcher inline"),
    ],
)
def test_bad_batch_seeds_get_one_line(run_ddz, args, message):
    result = run_ddz("zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--seeds", "2", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
