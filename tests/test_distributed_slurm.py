"""`ddz distill --launcher slurm`: one 2-task job through submitit on the real single-node test
cluster (munged + slurmctld + slurmd), the ranks meeting on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ddz_executable
from slurm_cluster import ensure_installed, slurm_cluster  # noqa: F401  (the session fixture)
from test_distributed_cli import TINY, stop_rank_and_wait

from ddz.distill.synset import CHECKPOINT_FILE, load_checkpoint, load_synset

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


def _rank_process(home: Path, rank: int) -> int | None:
    """The pid of the `python -m ddz` rank `rank` of the job whose DDZ_HOME is `home`."""
    for environ_file in Path("/proc").glob("[0-9]*/environ"):
        try:
            environ = environ_file.read_bytes().split(b"\0")
            command = (environ_file.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (f"RANK={rank}".encode() in environ and f"DDZ_HOME={home}".encode() in environ
                and command[1:3] == [b"-m", b"ddz"]):
            return int(environ_file.parent.name)
    return None


def test_a_hung_rank_of_a_slurm_job_ends_the_job_in_one_line_and_the_rerun_resumes(cluster, tmp_path):
    timeout_s = 5
    home = tmp_path / "home"
    env = {**os.environ, "DDZ_HOME": str(home), "SLURM_CONF": str(cluster.conf), "COLUMNS": "200"}
    command = [*ddz_executable(), *TINY, "--iterations", "60", "--checkpoint-every", "5",
               "--eval-models", "0", "--out", "run", "--dist-timeout", str(timeout_s), "--launcher", "slurm",
               "--nproc", "2",
               "--partition", cluster.partition, "--cpus-per-job", "1", "--time", "10", "--mem", "2G"]
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 180
        victim = None
        while victim is None or not (tmp_path / "run" / CHECKPOINT_FILE).exists():
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1] + cluster.logs()
            victim = victim or _rank_process(home, 1)
            time.sleep(0.1)
    except BaseException:
        job.kill()
        raise
    stderr, waited = stop_rank_and_wait(job, victim)
    assert job.returncode == 2, stderr + cluster.logs()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert re.fullmatch(
        r"error: slurm job \d+: rank 1 of 2 hung: it did not answer the other ranks within --dist-timeout, "
        r"and SLURM ended it when they gave up; its last line: rank 1: distill dm \d+/60.*; run the same "
        r"command again to resume from the last checkpoint", errors[0]), errors[0]
    # the job ended with the other rank's timeout, not at its --time (10 minutes)
    assert timeout_s <= waited < timeout_s + 60, waited
    assert cluster.queue_after_drain() == ""
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # SLURM ended the stopped rank
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE).iteration
    assert 0 < saved < 60
    # the same command, without the 5 s deadline that a loaded machine can overrun in the final writes
    at = command.index("--dist-timeout")
    again = subprocess.run(command[:at] + command[at + 2:], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr + cluster.logs()
    assert load_synset(tmp_path / "run" / "synset.safetensors").iterations == 60
