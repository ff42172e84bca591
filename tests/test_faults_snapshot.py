"""A zoo snapshot that goes bad under a running distillation (issue 23, item 6), for real: the
file is truncated or altered on disk between two iterations (from the run's own progress
reports), then put back as it was (as a pull would).

MTT reads its experts lazily, each verified by its sha256: the run stops at the next read with
one line naming the file and its expected sha256, its checkpoint intact; once the file is good
again the same run continues from that checkpoint, not from the start, and ends with the images
of a run that was never interrupted.

Guidance and a distillation teacher (RDED's, SRe2L's) load their PTMs once, verified, at the
start, and their files are checked again after every checkpoint (a stat, and the sha256 when the
file's size, inode or time moved): a file that went bad stops the run there with the same one
line, and once the file is good again the run continues from that checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from olah_server import make_zoo

from ddz import DistillConfig, MTTConfig, RunContext, RunRequest, run
from ddz.distill.methods.config import SRe2LConfig
from ddz.distill.synset import CHECKPOINT_FILE, load_checkpoint, load_synset
from ddz.errors import IntegrityError
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths

CLI_MTT = ["distill", "--dataset", "digits", "--method", "mtt", "--ipc", "1", "--iterations", "4",
           "--lr-img", "100", "--syn-steps", "2", "--expert-epochs", "1", "--max-start-epoch", "1",
           "--experts", "digits/convnet3/seed0", "--checkpoint-every", "1", "--eval-models", "0"]


@pytest.fixture
def zoo(tmp_path) -> Zoo:
    """One seed's snapshots at epochs 0-2 (random narrow nets: enough to fault, nothing to learn):
    an expert trajectory, and a PTM (epoch 2)."""
    zoo = Zoo(ZooPaths.under(tmp_path / "home"))
    make_zoo(zoo.local.root, seeds=(0,), epochs=(0, 1, 2))
    return zoo


class Spoiler:
    """A Progress whose task, once the run has done `after` iterations, spoils `path` (truncates it
    or flips one byte in its middle); it records where each run started (its first advance)."""

    def __init__(self, path: Path | None = None, after: int = 0, how: str = "truncate"):
        self.path, self.after, self.how = path, after, how
        self.done, self.steps = 0, []

    def task(self, description: str, total: int | None) -> Spoiler:
        return self

    def advance(self, steps: int = 1, **fields: object) -> None:
        self.steps.append(steps)
        self.done += steps
        if self.path is not None and self.done == self.after:
            if self.how == "delete":
                self.path.unlink()
                return
            data = self.path.read_bytes()
            if self.how == "truncate":
                self.path.write_bytes(data[: len(data) // 2])
            else:
                middle = len(data) // 2
                self.path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])

    def close(self) -> None:
        pass


def _record(zoo: Zoo, name: str) -> tuple[Path, str]:
    record = zoo.local.record(name)
    return record.path, record.sha256


def _env(zoo: Zoo) -> dict[str, str]:
    return {"DDZ_HOME": str(zoo.paths.home)}


def _stops_with_one_line(result, path: Path, sha256: str) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0] and f"the record says {sha256}" in errors[0], errors
    return errors[0]


MTT = DistillConfig(method="mtt", ipc=1, iterations=4, lr_img=100.0,
                    mtt=MTTConfig(syn_steps=2, expert_epochs=1, max_start_epoch=1))


def _stop_mtt_at_iteration_2(zoo: Zoo, digits, out: Path) -> tuple[Path, str, bytes, RunRequest]:
    """An MTT run whose expert epoch1 is truncated after iteration 2 (every iteration reads
    epoch0 and epoch1): it stops there, its checkpoint at 2."""
    path, sha256 = _record(zoo, "digits/convnet3/seed0@epoch1")
    good = path.read_bytes()
    request = RunRequest("digits", MTT, experts=("digits/convnet3/seed0",), evaluation=None, out=str(out),
                         checkpoint_every=1)
    with pytest.raises(IntegrityError) as caught:
        run(request, RunContext(zoo, data=digits, progress=Spoiler(path, after=2)))
    line = str(caught.value)
    assert line == (f"{path} fails its integrity check: sha256 {caught.value.actual} but the record says "
                    f"{sha256}; the file was changed or corrupted, delete it and re-train or re-pull it")
    assert load_checkpoint(out / CHECKPOINT_FILE).iteration == 2
    return path, sha256, good, request


def test_an_expert_truncated_under_a_running_mtt_run_stops_it_and_the_run_resumes(zoo, digits, tmp_path):
    path, _, good, request = _stop_mtt_at_iteration_2(zoo, digits, tmp_path / "run")
    path.write_bytes(good)  # pulled again
    progress = Spoiler()
    resumed = run(request, RunContext(zoo, data=digits, progress=progress))
    assert progress.steps[0] == 2  # from its checkpoint, not from the start
    whole = run(replace(request, out=str(tmp_path / "whole")), RunContext(zoo, data=digits))
    assert resumed.iterations == 4 and resumed.lr == whole.lr
    assert torch.equal(load_synset(tmp_path / "run").images, load_synset(tmp_path / "whole").images)


def test_an_expert_deleted_under_a_running_mtt_run_is_named_with_its_sha256(zoo, digits, tmp_path):
    path, sha256 = _record(zoo, "digits/convnet3/seed0@epoch1")
    request = RunRequest("digits", MTT, experts=("digits/convnet3/seed0",), evaluation=None,
                         out=str(tmp_path / "run"), checkpoint_every=1)
    with pytest.raises(IntegrityError) as caught:
        run(request, RunContext(zoo, data=digits, progress=Spoiler(path, after=1, how="delete")))
    assert str(caught.value) == f"{path} is missing (its recorded sha256 is {sha256}); re-train or re-pull it"
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE).iteration == 1


@pytest.mark.slow
def test_the_cli_stops_on_the_bad_expert_with_one_line_and_finishes_once_it_is_good(zoo, digits, tmp_path,
                                                                                     run_ddz):
    out = tmp_path / "run"
    path, sha256, good, _ = _stop_mtt_at_iteration_2(zoo, digits, out)
    line = _stops_with_one_line(run_ddz(*CLI_MTT, "--out", str(out), env=_env(zoo)), path, sha256)
    assert line.startswith(f"error: {path} fails its integrity check")
    assert load_checkpoint(out / CHECKPOINT_FILE).iteration == 2
    path.write_bytes(good)
    done = run_ddz(*CLI_MTT, "--out", str(out), env=_env(zoo))
    assert done.returncode == 0, done.stderr
    assert load_synset(out).iterations == 4


def _guidance_request(out: Path, iterations: int = 4) -> RunRequest:
    config = DistillConfig(method="dm", ipc=1, iterations=iterations, batch_real=8,
                           net_options=(("width", 8),))
    return RunRequest("digits", config, ptm=("digits/convnet3/seed0@epoch2",), evaluation=None,
                      out=str(out), checkpoint_every=1)


def test_a_ptm_altered_under_a_running_guidance_run_stops_it_at_the_checkpoint_and_the_run_resumes(
        zoo, digits, tmp_path):
    path, sha256 = _record(zoo, "digits/convnet3/seed0@epoch2")
    good = path.read_bytes()
    request = _guidance_request(tmp_path / "run")
    run(_guidance_request(tmp_path / "whole"), RunContext(zoo, data=digits))  # never spoiled

    # altered after iteration 2: the run stops right after that iteration's checkpoint
    with pytest.raises(IntegrityError) as caught:
        run(request, RunContext(zoo, data=digits, progress=Spoiler(path, after=2, how="flip")))
    assert str(caught.value) == (
        f"{path} fails its integrity check: sha256 {caught.value.actual} but the record says {sha256}; "
        "the file was changed or corrupted, delete it and re-train or re-pull it; the run stopped at its "
        "checkpoint (iteration 2) and continues from there when run again")
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE).iteration == 2

    # while the file is bad, a rerun stops at the start (the pool is verified when it loads)
    with pytest.raises(IntegrityError, match="the record says " + sha256):
        run(request, RunContext(zoo, data=digits))

    path.write_bytes(good)  # pulled again
    progress = Spoiler()
    resumed = run(request, RunContext(zoo, data=digits, progress=progress))
    assert progress.steps[0] == 2 and resumed.iterations == 4
    assert torch.equal(load_synset(tmp_path / "run").images, load_synset(tmp_path / "whole").images)


def test_a_ptm_deleted_under_a_guidance_run_is_named_and_the_run_resumes_once_it_is_back(
        zoo, digits, tmp_path):
    path, sha256 = _record(zoo, "digits/convnet3/seed0@epoch2")
    with pytest.raises(IntegrityError) as caught:
        run(_guidance_request(tmp_path / "gone"),
            RunContext(zoo, data=digits, progress=Spoiler(path, 1, "delete")))
    assert str(caught.value).startswith(f"{path} is missing (its recorded sha256 is {sha256}); ")
    assert str(caught.value).endswith("the run stopped at its checkpoint (iteration 1) and continues from "
                                      "there when run again")
    make_zoo(zoo.local.root, seeds=(0,), epochs=(0, 1, 2))  # trained again: the same bytes
    progress = Spoiler()
    resumed = run(_guidance_request(tmp_path / "gone"), RunContext(zoo, data=digits, progress=progress))
    assert resumed.iterations == 4
    assert progress.steps[0] == 1


class Toucher(Spoiler):
    """Rewrites the file with its own bytes (a new modification time, the same sha256)."""

    def advance(self, steps: int = 1, **fields: object) -> None:
        self.done += steps
        if self.done == self.after:
            self.path.write_bytes(self.path.read_bytes())


def test_a_ptm_rewritten_with_the_same_bytes_does_not_stop_the_run(zoo, digits, tmp_path):
    path, _ = _record(zoo, "digits/convnet3/seed0@epoch2")
    before = path.stat().st_mtime_ns
    synset = run(_guidance_request(tmp_path / "run"), RunContext(zoo, data=digits, progress=Toucher(path, 2)))
    assert synset.iterations == 4 and path.stat().st_mtime_ns != before


def test_a_teacher_altered_under_a_running_sre2l_recovery_stops_it_and_the_run_resumes(tmp_path, digits):
    zoo = Zoo(ZooPaths.under(tmp_path / "home"))
    make_zoo(zoo.local.root, archs=("convnet3bn",), seeds=(0,), epochs=(2,))
    path, sha256 = _record(zoo, "digits/convnet3bn/seed0@epoch2")
    good = path.read_bytes()
    config = DistillConfig(method="sre2l", ipc=1, iterations=4, sre2l=SRe2LConfig(batch=5))
    request = RunRequest("digits", config, teacher=("digits/convnet3bn/seed0@epoch2",), evaluation=None,
                         out=str(tmp_path / "run"), checkpoint_every=1)
    run(replace(request, out=str(tmp_path / "whole")), RunContext(zoo, data=digits))  # never spoiled
    with pytest.raises(IntegrityError) as caught:
        run(request, RunContext(zoo, data=digits, progress=Spoiler(path, after=3, how="flip")))
    assert str(caught.value).startswith(f"{path} fails its integrity check: sha256 {caught.value.actual} "
                                        f"but the record says {sha256}; ")
    assert str(caught.value).endswith("the run stopped at its checkpoint (iteration 3) and continues from "
                                      "there when run again")
    path.write_bytes(good)
    progress = Spoiler()
    run(request, RunContext(zoo, data=digits, progress=progress))
    assert progress.steps[0] == 3
    assert torch.equal(load_synset(tmp_path / "run").images, load_synset(tmp_path / "whole").images)
