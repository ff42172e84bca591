"""Two writers on one DDZ_HOME, for real: concurrent `ddz zoo train` over overlapping grids,
concurrent `ddz repro run` of one spec into one folder, and concurrent `ddz zoo push` to one hub.
Each (arch, seed) and each cell runs once, no file is left damaged or half-written, no commit is
lost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ddz_executable
from olah_server import make_zoo
from test_hub import git

from ddz.io import sha256_file
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths
from ddz.zoo.registry import load_registry

TINY_SPEC = Path(__file__).parent / "specs" / "tiny.yaml"


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*ddz_executable(), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """Wait for every process; each must succeed. Their (stdout, stderr)."""
    outputs = [proc.communicate(timeout=timeout) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return outputs


def no_temporary_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*.tmp")]


@pytest.mark.slow  # two commands training six seeds between them
def test_two_zoo_trains_over_overlapping_grids_train_each_seed_once(tmp_path):
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    common = ["--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--epochs", "2",
              "--snapshots", "1,2", "--net-option", "width=8", "--seeds", "3", "--threads", "1"]
    # one in this process's way (inline), one through worker processes (local)
    first = start([*common, "--seed-start", "0", "--launcher", "inline", "--json", "a.json"], env, tmp_path)
    second = start([*common, "--seed-start", "1", "--launcher", "local", "--jobs", "1", "--json", "b.json"],
                   env, tmp_path)
    finish([first, second], timeout=600)
    # (Started together, both usually plan seeds 1 and 2 as work to do: `(3 jobs, 3 to run)`.)
    trained: dict[int, int] = {}
    for name in ("a.json", "b.json"):
        for result in json.loads((tmp_path / name).read_text())["results"]:
            assert result["status"] in ("trained", "skipped"), result
            trained[result["seed"]] = trained.get(result["seed"], 0) + (result["status"] == "trained")
    assert trained == {0: 1, 1: 1, 2: 1, 3: 1}
    zoo = Zoo(ZooPaths.under(tmp_path / "home"))
    records = zoo.local.records("digits/convnet3/*")
    expected = [f"digits/convnet3/seed{s}@epoch{e}" for s in range(4) for e in (1, 2)]
    assert [str(r.name) for r in records] == expected
    for record in records:
        assert sha256_file(record.path) == record.sha256  # the manifest and every file agree
        zoo.load(str(record.name))
    assert no_temporary_files(tmp_path / "home") == []
    assert list((tmp_path / "home" / "zoo").rglob("checkpoint*")) == []


@pytest.mark.slow  # two grid runs at once
def test_two_repro_runs_of_one_spec_run_each_cell_once(tmp_path):
    spec = tmp_path / "tiny.yaml"
    text = TINY_SPEC.read_text()
    block = "  - dataset: [digits]\n    method: [dm]\n    ipc: [2]\n"
    failing_block = text.index("    pool: [nomatch]") - len(block)
    spec.write_text(text[:failing_block] + text[text.index("baseline:"):])  # the cells that succeed
    env = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    args = ["--device", "cpu", "repro", "run", str(spec), "--scale", "smoke", "--out", str(tmp_path / "grid")]
    outputs = finish([start(args, env, tmp_path), start([*args, "--launcher", "local", "--threads", "1"],
                                                         env, tmp_path)], timeout=900)
    ran = skipped = 0
    for _, err in outputs:
        [line] = [line for line in err.splitlines() if line.startswith("4 cells:")]
        counts = line.split(":")[1].split(";")[0]  # " R run, S finished before, 0 failed"
        r, s, f = (int(part.split()[0]) for part in counts.split(","))
        assert f == 0, err
        ran, skipped = ran + r, skipped + s
    assert (ran, skipped) == (4, 4)
    report = json.loads((tmp_path / "grid" / "report.json").read_text())  # the last writer's
    assert {cell["status"] for cell in report["cells"]} <= {"done", "skipped"} and len(report["cells"]) == 4
    for cell in report["cells"]:
        assert json.loads((tmp_path / "grid" / cell["key"] / "cell.json").read_text())["status"] == "done"
    assert no_temporary_files(tmp_path / "grid") == []


def test_concurrent_pushes_to_one_hub_lose_no_commit(tmp_path):
    hub = tmp_path / "hub"
    registry = tmp_path / "registry.yaml"
    procs = []
    for seed in range(4):  # four machines, each with its own seed, pushing at once
        make_zoo(tmp_path / f"m{seed}" / "zoo", seeds=(seed,), epochs=(1,))
        env = {**os.environ, "DDZ_HOME": str(tmp_path / f"m{seed}"), "DDZ_REGISTRY": str(registry)}
        procs.append(start(["zoo", "push", "digits/*", "--hub", str(hub), "--json"], env, tmp_path))
    pushed = [json.loads(out)["repos"][0] for out, _ in finish(procs, timeout=120)]
    repo = hub / "digits-convnet3"
    history = git(repo, "rev-list", "main").split()
    assert len(history) == 4 and {p["revision"] for p in pushed} == set(history)
    assert len({p["tag"] for p in pushed}) == 4
    for p in pushed:
        assert git(repo, "rev-parse", p["tag"]) == p["revision"]
    manifest = json.loads(git(repo, "show", "main:manifest.json"))
    assert sorted(manifest["snapshots"]) == [f"seed{s}/epoch1.safetensors" for s in range(4)]
    entries = load_registry(registry).entries
    assert sorted(entries) == [f"digits/convnet3/seed{s}@epoch1" for s in range(4)]
    assert no_temporary_files(tmp_path) == []
