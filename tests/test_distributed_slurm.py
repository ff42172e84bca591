"""`ddz distill --launcher slurm`: one 2-task job through submitit on the real single-node test
cluster (munged + slurmctld + slurmd), the ranks meeting on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import ddz_executable
from slurm_cluster import ensure_installed, slurm_cluster  # noqa: F401  (the session fixture)

from ddz.distill.synset import load_synset

pytestmark = pytest.mark.slow  # end to end (make check leaves it out)


@pytest.fixture
def cluster(request):
    try:
        ensure_installed()
        return request.getfixturevalue("slurm_cluster")
    except RuntimeError as error:
        pytest.skip(f"the SLURM test cluster cannot start here: {error}")


def test_two_task_job_writes_one_synset(cluster, tmp_path):
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "SLURM_CONF": str(cluster.conf),
           "COLUMNS": "200"}
    done = subprocess.run(
        [*ddz_executable(), "--device", "cpu", "distill", "--dataset", "digits", "--method", "dsa",
         "--ipc", "1", "--iterations", "2", "--net-option", "width=8", "--batch-real", "8",
         "--eval-models", "2",
         "--eval-epochs", "1", "--out", str(tmp_path / "run"), "--json", str(tmp_path / "run.json"),
         "--launcher", "slurm", "--nodes", "1", "--nproc", "2", "--partition", cluster.partition,
         "--cpus-per-job", "1", "--time", "10", "--mem", "2G"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr + cluster.logs()
    assert "2 ranks finished" in done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["world_size"] == 2 and len(report["eval"]["convnet3"]["accs"]) == 2
    synsets = list(tmp_path.rglob("synset.safetensors"))
    assert synsets == [tmp_path / "run" / "synset.safetensors"]
    assert load_synset(synsets[0]).images.shape == (10, 1, 16, 16)
