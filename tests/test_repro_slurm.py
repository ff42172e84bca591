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
    assert slurm_cluster.run("squeue", "-h").stdout.strip() == ""
