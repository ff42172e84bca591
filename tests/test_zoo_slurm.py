"""The SLURM launcher against a real single-node cluster (munged + slurmctld + slurmd)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from conftest import ddz_executable
from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths
from ddz.zoo.plan import plan_grid
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.train import train_run

pytestmark = pytest.mark.slow  # end to end (make check leaves it out)

TINY = ["--epochs", "2", "--snapshots", "1,2", "--net-option", "width=8"]


def test_grid_through_slurm_with_one_failing_job(slurm_cluster, tmp_path, digits):  # noqa: F811
    home = tmp_path / "home"
    # Seed 2 gets a damaged checkpoint (as if a node died while writing it): its job must fail
    # and be reported, while seeds 0 and 1 train.
    recipe = TrainRecipe(epochs=2, snapshots=(1, 2), net=(("width", 8),))
    [(job, _)] = plan_grid("digits", ["convnet3"], [2], recipe, digits, zoo_root=home / "zoo", device="cpu")

    class Interrupt:
        def advance(self, steps: int = 1, **fields) -> None:
            raise KeyboardInterrupt

        def close(self) -> None:
            pass

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_run(job, Interrupt(), digits)
    except KeyboardInterrupt:
        pass
    finally:
        torch.set_num_threads(threads)
    sidecar = json.loads((job.run_dir / "checkpoint.json").read_text())
    (job.run_dir / sidecar["tensors"]).write_bytes(b"not a safetensors file")

    env = {**os.environ, "DDZ_HOME": str(home), "SLURM_CONF": str(slurm_cluster.conf), "COLUMNS": "200"}
    command = [*ddz_executable(), "--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch",
               "convnet3", "--seeds", "3", *TINY, "--launcher", "slurm",
               "--partition", slurm_cluster.partition,
               "--cpus-per-job", "1", "--time", "0:10:00", "--mem", "1G", "--json",
               str(tmp_path / "grid.json")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr + slurm_cluster.logs()
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["launcher"] == "slurm" and grid["failed"] == ["convnet3/seed2"]
    statuses = {r["seed"]: r["status"] for r in grid["results"]}
    assert statuses == {0: "trained", 1: "trained", 2: "failed"}, done.stderr
    failed = grid["results"][2]
    assert "checkpoint of digits/convnet3/seed2 is damaged" in failed["error"]
    assert "IntegrityError" in failed["log_tail"]  # the job's own stderr, from its slurm log
    assert "failed convnet3/seed2" in done.stderr and "1 job(s) failed: convnet3/seed2" in done.stderr

    # Results come from the store: verified snapshots of the two jobs that ran on the cluster.
    zoo = Zoo(ZooPaths.under(home))
    names = [str(r.name) for r in zoo.local.records("digits/convnet3/seed[01]@*")]
    assert names == [f"digits/convnet3/seed{s}@epoch{e}" for s in (0, 1) for e in (1, 2)]
    for name in names:
        assert zoo.load(name).in_channels == 1
    # The job folder lives under DDZ_HOME/jobs, with submitit's logs of each SLURM job.
    [folder] = (home / "jobs").iterdir()
    assert len(list(folder.glob("slurm/*/*_log.err"))) == 3
    assert slurm_cluster.queue_after_drain() == ""  # no job left behind
    # SLURM saw the failed task exit with status 1 (the task's own error, re-raised by submitit)
    logs = folder.glob("slurm/*/*_log.err")
    [job_id] = [log.parent.name for log in logs if "IntegrityError" in log.read_text()]
    assert "ExitCode=1:0" in slurm_cluster.run("scontrol", "show", "job", job_id).stdout

    # Fix the cause as the message says; the same command redoes only the failed job.
    (job.run_dir / "checkpoint.json").unlink()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr + slurm_cluster.logs()
    rerun = json.loads((tmp_path / "grid.json").read_text())
    assert {r["seed"]: r["status"] for r in rerun["results"]} == {0: "skipped", 1: "skipped", 2: "trained"}
    assert len(list((home / "jobs").glob("*/slurm/*/*_log.err"))) == 3 + 1  # one more SLURM job
