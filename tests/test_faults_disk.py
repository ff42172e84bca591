"""A full disk (issue 23, item 3): a small tmpfs this test mounts, filled for real, under every kind
of file ddz writes (a snapshot, a distillation checkpoint, a synthetic set, the registry, a
lockfile). Each write ends in one line naming the file system and the file, the previous file
keeps its bytes, no temporary file is left, and once space is freed the same write (or the rerun
of the command) completes.

Mounting needs root (CAP_SYS_ADMIN); where that is refused the tests skip and say so."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import skip_unless_ci
from olah_server import save_snapshot

from ddz.distill import synset as stored
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig
from ddz.errors import DiskFullError
from ddz.nets import build_net
from ddz.zoo.lockfile import read_lock, write_lock
from ddz.zoo.records import Resolved, SnapshotName, SnapshotSummary
from ddz.zoo.registry import load_registry, update_registry
from ddz.zoo.sources.local import LocalZoo, read_snapshot

DISK_SIZE = "1m"


@dataclass
class Disk:
    """A mounted tmpfs: `fill()` takes every free byte (a real ENOSPC follows), `free()` gives it back."""

    root: Path

    def fill(self) -> None:
        with open(self.root / "filler", "ab", buffering=0) as handle:
            for size in (1 << 16, 1 << 12, 1):  # big blocks, then what is left to the last byte
                try:
                    while True:
                        handle.write(b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC

    def free(self) -> None:
        (self.root / "filler").unlink()

    def temporaries(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob(".*.tmp"))

    def line(self, path: Path) -> str:
        return f"no space left on {self.root} writing {path}; free space and rerun"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        skip_unless_ci(f"cannot mount a tmpfs for the full-disk tests (uid {os.getuid()}): "
                    f"{(mounted.stderr or mounted.stdout).strip()}; they need root with CAP_SYS_ADMIN")
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


def _snapshot(folder: Path, version: int) -> Path:
    net = build_net("convnet3", 1, 10, 16, generator_seed=version, width=8)
    return save_snapshot(LocalZoo(folder / "zoo"), SnapshotName("digits", "convnet3", 0, 1), net).path


def _check_snapshot(path: Path, version: int) -> None:
    manifest = LocalZoo(path.parents[3]).record("digits/convnet3/seed0@epoch1")
    tensors, _, _ = read_snapshot(path, manifest.sha256)  # the manifest and the file agree
    net = build_net("convnet3", 1, 10, 16, generator_seed=version, width=8)
    assert all(torch.equal(tensors[k], v) for k, v in net.state_dict().items())


def _images(version: int) -> torch.Tensor:
    return torch.randn(10, 1, 16, 16, generator=torch.Generator().manual_seed(version))


def _checkpoint(folder: Path, version: int) -> Path:
    record = stored.Checkpoint(_images(version), None, version, 1.0, {"run": "test"})
    return stored.save_checkpoint(folder / "run" / stored.CHECKPOINT_FILE, record)


def _check_checkpoint(path: Path, version: int) -> None:
    checkpoint = stored.load_checkpoint(path)
    assert checkpoint.iteration == version and torch.equal(checkpoint.images, _images(version))


def _synset(folder: Path, version: int) -> Path:
    classes = [str(i) for i in range(10)]
    synset = stored.SynSet(_images(version), torch.arange(10), "digits", "dm", 1, version, {}, classes,
                    (0.5,), (0.25,))
    return stored.save_synset(folder / "run" / stored.SYNSET_FILE, synset)


def _check_synset(path: Path, version: int) -> None:
    synset = stored.load_synset(path)
    assert synset.seed == version and torch.equal(synset.images, _images(version))


def _registry(folder: Path, version: int) -> Path:
    path = folder / "registry.yaml"
    with update_registry(path) as registry:
        for n in range(version):
            registry.add_hub(f"/hubs/org{n}-" + "x" * 200)  # ~200 bytes a hub: version 2 is larger
    return path


def _check_registry(path: Path, version: int) -> None:
    assert len(load_registry(path).hubs) == version


def _lockfile(folder: Path, version: int) -> Path:
    rows = [Resolved(f"digits/convnet3/seed{n}@epoch1", "local", sha256=f"{n:064x}",
                     summary=SnapshotSummary(n, 1, 100, {"test_acc": 0.5}),
                     local_path=f"/zoo/digits/convnet3/seed{n}/epoch1.safetensors")
            for n in range(version * 3)]
    return write_lock(folder / "ptms.lock", rows, ["digits/convnet3/*@epoch1"])


def _check_lockfile(path: Path, version: int) -> None:
    assert len(read_lock(path)) == version * 3


WRITERS: dict[str, tuple[Callable[[Path, int], Path], Callable[[Path, int], None]]] = {
    "snapshot": (_snapshot, _check_snapshot),
    "checkpoint": (_checkpoint, _check_checkpoint),
    "synset": (_synset, _check_synset),
    "registry": (_registry, _check_registry),
    "lockfile": (_lockfile, _check_lockfile),
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(disk, kind):
    write, check = WRITERS[kind]
    path = write(disk.root, 1)
    before = path.read_bytes()
    disk.fill()
    with pytest.raises(DiskFullError) as caught:
        write(disk.root, 2)
    assert str(caught.value) == disk.line(path)
    assert path.read_bytes() == before and disk.temporaries() == []
    check(path, 1)
    disk.free()
    assert write(disk.root, 2) == path  # the rerun completes
    check(path, 2)
    assert disk.temporaries() == []


class Iterations:
    """A Progress that records the iteration a run starts from (its first advance)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def task(self, description: str, total: int | None) -> Iterations:
        return self

    def advance(self, steps: int = 1, **fields: object) -> None:
        self.steps.append(steps)

    def close(self) -> None:
        pass


def test_a_distillation_that_fills_the_disk_stops_and_resumes_from_its_checkpoint(disk, digits):
    config = DistillConfig(method="dm", ipc=1, iterations=4, batch_real=8, net_options=(("width", 8),))
    whole = distill(digits, config, seed=0)
    out = disk.root / "run"

    def fill_after_the_first_checkpoint(iteration, images, labels, lr):
        if iteration == 2:
            disk.fill()

    with pytest.raises(DiskFullError) as caught:
        distill(digits, config, seed=0, out_dir=out, checkpoint_every=2,
                watch=fill_after_the_first_checkpoint, watch_every=1)
    assert str(caught.value) == disk.line(out / stored.CHECKPOINT_FILE)
    assert stored.load_checkpoint(out / stored.CHECKPOINT_FILE).iteration == 2 and disk.temporaries() == []
    disk.free()
    progress = Iterations()
    resumed = distill(digits, config, seed=0, out_dir=out, checkpoint_every=2, progress=progress)
    assert progress.steps[0] == 2  # resumed at iteration 2, not restarted
    assert torch.equal(resumed.images, whole.images)
    assert stored.load_synset(out / stored.SYNSET_FILE).iterations == 4 and disk.temporaries() == []


def test_zoo_lock_onto_a_full_disk_is_one_line_and_exit_2_then_the_rerun_completes(disk, run_ddz, tmp_path):
    save_snapshot(LocalZoo(tmp_path / "ddz-home" / "zoo"), SnapshotName("digits", "convnet3", 0, 1),
                  build_net("convnet3", 1, 10, 16, generator_seed=0, width=8))
    lock = disk.root / "ptms.lock"
    disk.fill()
    result = run_ddz("zoo", "lock", "digits/*", "-o", str(lock))
    assert result.returncode == 2 and result.stderr == f"error: {disk.line(lock)}\n"
    assert not lock.exists() and disk.temporaries() == []
    disk.free()
    assert run_ddz("zoo", "lock", "digits/*", "-o", str(lock)).returncode == 0
    assert [row.name for row in read_lock(lock)] == ["digits/convnet3/seed0@epoch1"]


@pytest.mark.slow
def test_ddz_distill_onto_a_full_disk_is_one_line_and_exit_2_then_the_rerun_completes(disk, run_ddz):
    out = disk.root / "run"
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2",
            "--batch-real", "8", "--net-option", "width=8", "--eval-models", "0", "--out", str(out)]
    disk.fill()
    result = run_ddz(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {disk.line(out / stored.CHECKPOINT_FILE)}"] == result.stderr.splitlines()[-1:]
    assert disk.temporaries() == []
    disk.free()
    done = run_ddz(*args)
    assert done.returncode == 0, done.stderr
    assert stored.load_synset(out).iterations == 2 and disk.temporaries() == []
