"""torch threads from the cores a process may really use: a real affinity mask (sched_setaffinity,
as taskset and SLURM's binding set it) and a real cgroup CPU quota; `--threads` overrides both,
and a zoo snapshot records the count it was trained with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from conftest import ddz_executable, skip_unless_ci

from ddz.threads import available_cores, cgroup_cpus

SHOW = "from ddz.threads import default_threads; print(default_threads())"
MULTI_CORE = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to take one away")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    return {**env, "PYTHONPATH": str(Path(__file__).parents[1]), **extra}


def on_core_zero() -> None:
    os.sched_setaffinity(0, {0})


@MULTI_CORE
def test_an_affinity_of_one_core_gives_one_thread():
    alone = subprocess.run([sys.executable, "-c", SHOW], env=clean_env(), capture_output=True, text=True,
                           check=True)
    pinned = subprocess.run([sys.executable, "-c", SHOW], env=clean_env(), capture_output=True, text=True,
                            check=True, preexec_fn=on_core_zero)
    assert int(alone.stdout) == available_cores() >= 2
    assert int(pinned.stdout) == 1
    given = subprocess.run([sys.executable, "-c", SHOW], env=clean_env(OMP_NUM_THREADS="3"),
                           capture_output=True, text=True, check=True, preexec_fn=on_core_zero)
    assert int(given.stdout) == 3  # a launcher's (or the user's) explicit count is kept


def cpu_cgroup_root() -> Path | None:
    """A writable cpu controller hierarchy (cgroup v1 `cpu`, or v2 with cpu enabled), if any."""
    for root in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            v2 = (root / "cgroup.controllers").exists()
            if v2 and "cpu" not in (root / "cgroup.subtree_control").read_text().split():
                continue
            return root
    return None


@MULTI_CORE
def test_a_cgroup_quota_of_one_cpu_gives_one_thread():
    root = cpu_cgroup_root()
    if root is None:
        skip_unless_ci("no writable cpu cgroup here")
    group = root / f"ddz-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as error:
        skip_unless_ci(f"cannot make a cgroup here: {error}")
    try:
        if (group / "cpu.max").exists():
            (group / "cpu.max").write_text("100000 100000")
        else:
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("150000")  # 1.5 CPUs: rounded down to 1 thread

        def enter() -> None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

        shown = subprocess.run(
            [sys.executable, "-c", SHOW + "; from ddz.threads import cgroup_cpus; print(cgroup_cpus())"],
            env=clean_env(), capture_output=True, text=True, check=True, preexec_fn=enter)
        threads, quota = shown.stdout.split()
        assert int(threads) == 1 and float(quota) in (1.0, 1.5)
        assert cgroup_cpus() is None or cgroup_cpus() >= 2  # this process, outside the group
    finally:
        group.rmdir()


@pytest.mark.slow  # three commands
def test_threads_option_and_the_snapshot_record(tmp_path):
    args = ["--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--epochs", "1",
            "--snapshots", "1", "--net-option", "width=8", "--launcher", "inline"]
    env = clean_env(DDZ_HOME=str(tmp_path / "home"), COLUMNS="200")
    bad = subprocess.run([*ddz_executable(), "--threads", "0", *args], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --threads must be at least 1, got 0"
    pinned = {"preexec_fn": on_core_zero} if len(os.sched_getaffinity(0)) >= 2 else {}
    default = subprocess.run([*ddz_executable(), *args, "--seeds", "1"], env=env, capture_output=True,
                             text=True, cwd=tmp_path, **pinned)
    assert default.returncode == 0, default.stderr
    given = subprocess.run([*ddz_executable(), "--threads", "2", *args, "--seeds", "1", "--seed-start", "1"],
                           env=env, capture_output=True, text=True, cwd=tmp_path, **pinned)
    assert given.returncode == 0, given.stderr
    from ddz.zoo.sources.local import read_snapshot_meta

    run = tmp_path / "home" / "zoo" / "digits" / "convnet3"
    assert read_snapshot_meta(run / "seed0" / "epoch1.safetensors").torch_threads == 1  # the one core
    assert read_snapshot_meta(run / "seed1" / "epoch1.safetensors").torch_threads == 2  # --threads 2


@MULTI_CORE
@pytest.mark.slow  # two commands beside a busy process
def test_a_default_count_beside_busy_cores_is_warned_of_and_an_explicit_one_is_not(tmp_path):
    cores = sorted(os.sched_getaffinity(0))[:2]

    def on_two_cores() -> None:
        os.sched_setaffinity(0, set(cores))

    def on_the_second_core() -> None:
        os.sched_setaffinity(0, {cores[1]})

    args = ["--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--epochs", "1",
            "--snapshots", "1", "--net-option", "width=8", "--launcher", "inline", "--seeds", "1"]
    env = clean_env(DDZ_HOME=str(tmp_path / "home"), COLUMNS="400")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=on_the_second_core)
    try:
        default = subprocess.run([*ddz_executable(), *args], env=env, capture_output=True, text=True,
                                 cwd=tmp_path, preexec_fn=on_two_cores)
        given = subprocess.run([*ddz_executable(), "--threads", "2", *args, "--seed-start", "1"], env=env,
                               capture_output=True, text=True, cwd=tmp_path, preexec_fn=on_two_cores)
    finally:
        busy.kill()
        busy.wait()
    assert default.returncode == 0 and given.returncode == 0, default.stderr + given.stderr
    [warning] = [line for line in default.stderr.splitlines() if line.startswith("warning:")]
    assert "of this process's 2 cores busy; at 2 threads" in warning
    assert warning.endswith("pass --threads 1 to run at full speed on the idle cores "
                            "(docs/distill.md, CPU threads)")
    assert "warning:" not in given.stderr  # the user chose the count


def _dm_images(data, busy_core: int | None) -> tuple[torch.Tensor, int | None]:
    """Three DM iterations at 2 threads (width 128, 128 real images per class), beside a process
    busy on `busy_core` (None: the cache-sized pieces forced); the images and the last step's
    images per real forward."""
    from ddz.distill.methods import DistillConfig, IterationRNG, build_method
    from ddz.distill.methods.base import new_state

    config = DistillConfig(method="dm", ipc=2, batch_real=128, net_options=(("width", 128),)).resolved()
    start = data.sample_all_classes(2, torch.Generator().manual_seed(1)).flatten(0, 1)
    busy = None
    if busy_core is not None:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                preexec_fn=lambda: os.sched_setaffinity(0, {busy_core}))
        time.sleep(0.5)
    try:
        method = build_method(config, data)
        if busy is None:
            method.cores = None
        state = new_state(start.clone(), 2, config.lr_img, config.momentum)
        time.sleep(0.3)
        for iteration in range(3):
            method.step(state, IterationRNG(0, iteration, "cpu"))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return state.images.detach().clone(), method.real_pieces


@MULTI_CORE
@pytest.mark.slow  # DM at width 128, beside a busy process
def test_dm_takes_a_class_per_real_forward_beside_a_busy_core_and_keeps_its_bits(digits):
    cores = sorted(os.sched_getaffinity(0))[:2]
    threads, affinity = torch.get_num_threads(), os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    torch.set_num_threads(2)
    try:
        quiet, quiet_pieces = _dm_images(digits, None)
        loaded, loaded_pieces = _dm_images(digits, cores[1])
    finally:
        torch.set_num_threads(threads)
        os.sched_setaffinity(0, affinity)
    assert quiet_pieces == 64  # 8 MB / (4 B x 128 channels x 16 x 16)
    assert loaded_pieces == 128  # a class per forward
    assert torch.equal(quiet, loaded)  # the same bits either way
