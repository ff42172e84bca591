"""`ddz distill --nproc N` / `ddz eval --nproc N` end to end: real rank processes on 127.0.0.1,
one run folder written by rank 0, world_size in the JSON, a killed rank reported in one line."""

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

from ddz.distill.synset import CHECKPOINT_FILE, load_checkpoint, load_synset

TINY = ["--device", "cpu", "distill", "--dataset", "digits", "--method", "dm", "--ipc", "2",
        "--net-option", "width=8", "--batch-real", "32"]


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the child of `launcher` that runs as `rank` (from its environment)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    return None


def start_ranks_until_checkpoint(command: list[str], cwd: Path, env: dict[str, str]
                                 ) -> tuple[subprocess.Popen, int]:
    """Start `command` (ranks writing into cwd/run), wait for its first checkpoint; the launcher
    and the pid of its rank 1."""
    job = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 120
        while not (cwd / "run" / CHECKPOINT_FILE).exists():
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            time.sleep(0.1)
        victim = rank_pid(job.pid, 1)
        assert victim is not None
    except BaseException:
        job.kill()
        raise
    return job, victim


def stop_rank_and_wait(job: subprocess.Popen, victim: int, timeout_s: float = 180) -> tuple[str, float]:
    """SIGSTOP `victim` (a rank of `job`, hung for real), then wait for `job` to end: its stderr and
    the seconds it took after the stop. The job is killed if it outlives the wait."""
    try:
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        _, stderr = job.communicate(timeout=timeout_s)
        return stderr, time.monotonic() - stopped
    finally:
        if job.poll() is None:
            job.kill()


def test_nproc_2_writes_one_run_equal_to_one_process(run_ddz, run_ddz_process, tmp_path):
    common = [*TINY, "--iterations", "6", "--checkpoint-every", "3", "--eval-models", "2",
              "--eval-epochs", "1"]
    two = run_ddz_process(*common, "--nproc", "2", "--out", "two", "--json", "two.json")
    assert two.returncode == 0, two.stderr
    one = run_ddz("--threads", "1", *common, "--out", "one", "--json", "one.json")
    assert one.returncode == 0, one.stderr
    report = json.loads((tmp_path / "two.json").read_text())
    assert report["world_size"] == 2 and json.loads((tmp_path / "one.json").read_text())["world_size"] == 1
    assert len(report["eval"]["convnet3"]["accs"]) == 2
    ours = load_synset(tmp_path / "two" / "synset.safetensors")
    theirs = load_synset(tmp_path / "one" / "synset.safetensors")
    assert (ours.images - theirs.images).abs().max() <= 1e-5 * theirs.images.abs().max()
    assert torch.equal(ours.labels, theirs.labels)
    assert two.stdout.count("digits dm IPC 2") == 1  # only rank 0 prints the table
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if not p.name.startswith(".")) == [
        "checkpoint.safetensors", "eval.json", "synset.png", "synset.safetensors"]


def test_bad_input_found_by_the_ranks_is_one_line(run_ddz_process):
    done = run_ddz_process(*TINY[:-4], "--ipc", "500", "--nproc", "2", "--eval-models", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --ipc 500 is out of range"), done.stderr


def test_bad_rank_options_are_one_line(run_ddz):
    for args, message in [(["--nproc", "0"], "--nproc must be at least 1"),
                          (["--dist-timeout", "0", "--nproc", "2"], "--dist-timeout must be positive"),
                          (["--launcher", "pbs", "--nproc", "2"], "unknown launcher 'pbs'")]:
        done = run_ddz(*TINY, "--iterations", "1", "--eval-models", "0", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert message in done.stderr.strip().splitlines()[-1]


@pytest.mark.slow  # end to end: two runs of the command
def test_a_killed_rank_ends_the_job_with_one_line_and_the_run_resumes(tmp_path):
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    command = [*ddz_executable(), *TINY, "--iterations", "150", "--checkpoint-every", "5",
               "--eval-models", "0", "--out", "run", "--dist-timeout", "60"]
    job, victim = start_ranks_until_checkpoint([*command, "--nproc", "2"], tmp_path, env)
    try:
        os.kill(victim, signal.SIGKILL)
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 2
    last = stderr.strip().splitlines()[-1]
    expected = "error: rank 1 of 2 was killed by SIGKILL; its last line: rank 1: distill dm"
    assert last.startswith(expected), stderr
    assert "Traceback" not in stderr
    done_before = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE).iteration
    assert 0 < done_before < 150
    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert load_synset(tmp_path / "run" / "synset.safetensors").iterations == 150


@pytest.mark.slow
def test_torchrun_starts_the_same_run(tmp_path):
    from ddz.distributed.local import free_port

    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "GLOO_SOCKET_IFNAME": "lo",
           "OMP_NUM_THREADS": "1"}
    torchrun = [str(Path(os.sys.executable)), "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "ddz"]
    done = subprocess.run([*torchrun, *TINY, "--iterations", "4", "--eval-models", "2", "--eval-epochs", "1",
                           "--out", "run", "--json", "run.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run.json").read_text())["world_size"] == 2
    assert load_synset(tmp_path / "run" / "synset.safetensors").images.shape == (20, 1, 16, 16)
