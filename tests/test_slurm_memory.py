"""SLURM tasks killed for memory, for real: a second test cluster enforces --mem (slurmd's
OverMemoryKill), and a grid asks for less than a ddz task needs. The killed tasks are reported
with their log tails and slurmstepd's reason, the finished ones are kept, and the rerun with a
larger --mem redoes only the killed ones."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from conftest import ddz_executable
from slurm_cluster import slurm_memory_cluster  # noqa: F401  (the session fixture)

from ddz.zoo.plan import plan_grid
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.train import train_run

pytestmark = pytest.mark.slow  # end to end, through a SLURM cluster

TINY = ["--epochs", "2", "--snapshots", "1,2", "--net-option", "width=8"]
TOO_LITTLE = "300M"  # python, torch and the data alone need more
KILLED = "was killed for using more memory than --mem allows; run again with a larger --mem"

MEM_SPEC = """\
name: memcells
title: "DM and DC on digits without guidance"
grid:
  - dataset: [digits]
    method: [METHODS]
    ipc: [2]
    pool: [none]
baseline: none
pools:
  none: {label: "no CLoM"}
scales:
"""
MEM_SPEC += "".join(f"""\
  {scale}:
    runs: 1
    eval: {{archs: [convnet3], models: 1, epochs: 1}}
    distill: {{iterations: {{dm: 4, dc: 2}}, batch_real: 8, outer_loop: 2, inner_loop: 1, net: {{width: 8}}}}
""" for scale in ("smoke", "paper"))


def test_zoo_tasks_killed_for_memory_are_reported_and_rerun_alone(slurm_memory_cluster, tmp_path,  # noqa: F811
                                                                 digits):
    home = tmp_path / "home"
    recipe = TrainRecipe(epochs=2, snapshots=(1, 2), net=(("width", 8),))
    [(job, _)] = plan_grid("digits", ["convnet3"], [0], recipe, digits, zoo_root=home / "zoo", device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_run(job, data=digits).status == "trained"  # seed 0: trained by an earlier grid
    finally:
        torch.set_num_threads(threads)
    cluster = slurm_memory_cluster
    env = {**cluster.env(), "DDZ_HOME": str(home), "COLUMNS": "200"}

    def grid(mem: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*ddz_executable(), "--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch",
             "convnet3", "--seeds", "3", *TINY, "--launcher", "slurm", "--partition", cluster.partition,
             "--cpus-per-job", "1", "--time", "0:10:00", "--mem", mem, "--json", str(tmp_path / "grid.json")],
            env=env, capture_output=True, text=True, timeout=600)

    done = grid(TOO_LITTLE)
    assert done.returncode == 2, done.stderr + cluster.logs()
    results = json.loads((tmp_path / "grid.json").read_text())["results"]
    assert [r["status"] for r in results] == ["skipped", "failed", "failed"], done.stderr
    for result in results[1:]:
        assert result["error"].startswith("slurm job ") and result["error"].endswith(KILLED), result
        assert "Exceeded job memory limit" in result["log_tail"]  # slurmstepd's line, from the job's log
        assert f"failed convnet3/seed{result['seed']}: {result['error']}" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: 2 job(s) failed: convnet3/seed1, convnet3/seed2 (see above); fix the cause and run the "
        "same command again: finished jobs are skipped")

    again = grid("2G")
    assert again.returncode == 0, again.stderr + cluster.logs()
    results = json.loads((tmp_path / "grid.json").read_text())["results"]
    assert [r["status"] for r in results] == ["skipped", "trained", "trained"], again.stderr
    assert cluster.queue_after_drain() == ""  # no job left behind


def test_a_repro_cell_killed_for_memory_is_reported_and_rerun_alone(slurm_memory_cluster, tmp_path):  # noqa: F811
    cluster = slurm_memory_cluster
    env = {**cluster.env(), "DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    spec = tmp_path / "memcells.yaml"
    run = [*ddz_executable(), "--device", "cpu", "repro", "run", str(spec), "--scale", "smoke", "--out",
           str(tmp_path / "grid")]
    spec.write_text(MEM_SPEC.replace("METHODS", "dm"))
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)  # DM's cell, inline
    assert first.returncode == 0, first.stderr
    spec.write_text(MEM_SPEC.replace("METHODS", "dm, dc"))  # the grid grows by DC's cell
    on_slurm = [*run, "--launcher", "slurm", "--partition", cluster.partition, "--cpus-per-job", "1",
                "--time", "0:10:00", "--mem"]
    done = subprocess.run([*on_slurm, TOO_LITTLE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr + cluster.logs()
    assert "2 cells: 0 run, 1 finished before, 1 failed" in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("failed digits-dc-ipc2-none: ")]
    assert line.endswith(KILLED), done.stderr
    assert "Exceeded job memory limit" in done.stderr  # the log tail, under that line
    again = subprocess.run([*on_slurm, "2G"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr + cluster.logs()
    assert "2 cells: 1 run, 1 finished before, 0 failed" in again.stderr
    report = json.loads((tmp_path / "grid" / "report.json").read_text())
    assert [cell["status"] for cell in report["cells"]] == ["skipped", "done"]
