"""A rank that hangs (SIGSTOP, a real stopped process) under `ddz distill --nproc 2`: the other
rank gives up in its collective after --dist-timeout, the launcher names the hung rank in one line
and stops it, and the same command resumes from the last checkpoint."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ddz_executable
from test_distributed_cli import TINY, start_ranks_until_checkpoint, stop_rank_and_wait

from ddz.distill.synset import CHECKPOINT_FILE, load_checkpoint, load_synset

TIMEOUT_S = 5


@pytest.mark.slow  # two runs of the command, one of them waiting out --dist-timeout
def test_a_hung_rank_ends_the_job_within_the_timeout_and_the_run_resumes(tmp_path):
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    command = [*ddz_executable(), *TINY, "--iterations", "60", "--checkpoint-every", "5",
               "--eval-models", "0", "--out", "run", "--dist-timeout", str(TIMEOUT_S)]
    job, victim = start_ranks_until_checkpoint([*command, "--nproc", "2"], tmp_path, env)
    stderr, waited = stop_rank_and_wait(job, victim, timeout_s=120)
    assert job.returncode == 2
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        "error: rank 1 of 2 hung: it did not answer the other ranks within --dist-timeout (it was stopped "
        "by a signal); its last line: rank 1: distill dm"), stderr
    assert lines[0].endswith("run the same command again to resume from the last checkpoint")
    assert "Traceback" not in stderr
    # --dist-timeout, then the launcher's few seconds for the others to stop (a loaded machine adds some)
    assert TIMEOUT_S <= waited < TIMEOUT_S + 20, waited
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # the stopped rank was ended, not left behind
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE).iteration
    assert 0 < saved < 60
    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert load_synset(tmp_path / "run" / "synset.safetensors").iterations == 60
