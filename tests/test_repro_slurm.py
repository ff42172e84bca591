"""`ddz repro run --launcher slurm` against the real single-node test cluster: the zoo and every
cell as SLURM jobs, the failing cell reported while the others finish."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ddz_executable
from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "specs" / "tiny.yaml"


def test_a_grid_through_slurm_one_job_per_cell(slurm_cluster, tmp_path):  # noqa: F811
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "SLURM_CONF": str(slurm_cluster.conf),
           "COLUMNS": "200"}
    done = subprocess.run(
        [*ddz_executable(), "--device", "cpu", "repro", "run", str(TINY), "--scale", "smoke", "--out",
         str(tmp_path / "grid"), "--launcher", "slurm", "--partition", slurm_cluster.partition,
         "--cpus-per-job", "1", "--time", "0:15:00", "--mem", "2G", "--jobs", "2"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 2, done.stderr + slurm_cluster.logs()
    report = json.loads((tmp_path / "grid" / "report.json").read_text())
    status = {cell["key"]: cell["status"] for cell in report["cells"]}
    assert status.pop("digits-dm-ipc2-nomatch") == "failed", done.stderr
    assert set(status.values()) == {"done"} and len(status) == 4, done.stderr
    assert report["failed"] == ["digits-dm-ipc2-nomatch"]
    assert "nosuchset" in report["cells"][-1]["error"]
    # one submitit job folder per cell, plus the zoo's job
    assert len(list((tmp_path / "grid" / "jobs").glob("cells-*/slurm/*/*_log.err"))) == 5
    assert slurm_cluster.queue_after_drain() == ""  # no job left behind


TWO_CELLS = """\
name: twocells
title: "Two DM cells on digits, one of them failing until its pool is fixed"
grid:
  - dataset: [digits]
    method: [dm]
    ipc: [2]
    pool: [none, m1]
baseline: none
pools:
  none: {label: "no CLoM"}
  m1: {label: "CLoM", ptm: ["POOL"]}
scales:
"""
TWO_CELLS += "".join(f"""\
  {scale}:
    variables: {{final: epoch2}}ZOO
    runs: 1
    eval: {{archs: [convnet3], models: 1, epochs: 1}}
    distill: {{iterations: {{dm: 4}}, batch_real: 8, net: {{width: 8}}}}
""" for scale in ("smoke", "paper"))
DIGITS_ZOO = """
    zoo:
      - {dataset: digits, archs: [convnet3], seeds: 1, epochs: 2, net: {width: 8}}"""


def test_a_failed_cell_is_reported_with_its_log_tail_and_the_rerun_redoes_only_it(slurm_cluster,  # noqa: F811
                                                                                    tmp_path):
    spec = tmp_path / "twocells.yaml"
    # m1's pool names a zoo nobody trained: its cell fails in its SLURM job, the other one finishes
    spec.write_text(TWO_CELLS.replace("POOL", "nosuchset/convnet3/seed0@${final}").replace("ZOO", ""))
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "SLURM_CONF": str(slurm_cluster.conf),
           "COLUMNS": "200"}
    command = [*ddz_executable(), "--device", "cpu", "repro", "run", str(spec), "--scale", "smoke", "--out",
               str(tmp_path / "grid"), "--launcher", "slurm", "--partition", slurm_cluster.partition,
               "--cpus-per-job", "1", "--time", "0:10:00", "--mem", "2G"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr + slurm_cluster.logs()
    assert done.stderr.strip().splitlines()[-1] == (
        "error: 1 cell(s) failed (see above and report.md); fix the cause and run the same command "
        "again: finished cells are skipped")
    assert "2 cells: 1 run, 0 finished before, 1 failed" in done.stderr
    report = json.loads((tmp_path / "grid" / "report.json").read_text())
    failed = report["cells"][1]
    assert failed["status"] == "failed" and "nosuchset" in failed["error"]
    tail = json.loads((tmp_path / "grid" / failed["key"] / "cell.json").read_text())["log_tail"]
    assert 'File "' in tail and "NotFoundError: no dataset matches 'nosuchset'" in tail
    assert tail in done.stderr  # shown under the failed cell's line

    # the cause fixed: the spec trains the zoo m1 reads; the cell without a pool is not run again
    spec.write_text(TWO_CELLS.replace("POOL", "digits/convnet3/seed0@${final}").replace("ZOO", DIGITS_ZOO))
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr + slurm_cluster.logs()
    assert "2 cells: 1 run, 1 finished before, 0 failed" in again.stderr
    assert len(list((tmp_path / "grid" / "jobs").glob("cells-*/slurm/*/*_log.err"))) == 2 + 1
