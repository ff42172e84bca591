"""`ddz zoo train/list/show` on the command line: one-line errors with exit 2, list and show."""

from __future__ import annotations

import json

import pytest
import torch

from ddz.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DDZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    threads = torch.get_num_threads()
    yield tmp_path / "home"
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dataset", "digits", "--arch", "convnet33"], "unknown arch 'convnet33'"),
        (["--dataset", "digits", "--arch", "convnet3", "--snapshots", "1,x"], "bad --snapshots '1,x'"),
        (
            ["--dataset", "digits", "--arch", "convnet3", "--epochs", "5", "--snapshots", "1,6"],
            "--snapshots 6 come after the last epoch (5)",
        ),
        (["--dataset", "cifar10", "--arch", "convnet3"], "data root"),
        (["--dataset", "npz:/nonexistent/pathmnist.npz", "--arch", "convnet3"], "does not exist"),
        (["--dataset", "digits", "--arch", "convnet3", "--launcher", "ray"], "unknown --launcher 'ray'"),
        (["--dataset", "digits", "--arch", "convnet3", "--recipe", "mtt-zca"], "first): mtt-expert-zca"),
        (["--dataset", "digits", "--arch", "convnet3", "--time", "4h"], "bad --time '4h'"),
        (["--dataset", "digits", "--arch", "convnet3", "--mem", "16Q"], "bad --mem '16Q'"),
        (["--dataset", "digits", "--arch", "convnet3", "--cpus-per-job", "0"], "--cpus-per-job must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, home, tmp_path, args, expected):
    code, _, err = run(capsys, "--data-root", str(tmp_path / "no-such-root"), "zoo", "train", *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and expected in lines[0], err
    assert not (home / "zoo").exists()


TRAIN_TWO_TINY_SEEDS = (
    "--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--seeds", "2",
    "--epochs", "2", "--snapshots", "1,2", "--net-option", "width=8",
)  # fmt: skip


def test_train_list_show_and_a_tampered_snapshot(capsys, home, tmp_path):
    code, _, err = run(
        capsys,
        *TRAIN_TWO_TINY_SEEDS,
        "--launcher",
        "inline",
        "--threads",
        "1",
        "--json",
        str(tmp_path / "grid.json"),
    )
    assert code == 0, err
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert [r["status"] for r in grid["results"]] == ["trained", "trained"]
    assert grid["recipe"]["weight_decay"] == 5e-3 and grid["recipe"]["milestones"] == [50, 100]

    code, out, _ = run(capsys, "zoo", "list", "digits/*@epoch2", "--json")
    listed = json.loads(out)
    assert code == 0 and [r["name"] for r in listed] == [
        "digits/convnet3/seed0@epoch2",
        "digits/convnet3/seed1@epoch2",
    ]
    assert all(r["source"] == "local" for r in listed)
    assert all(0 <= r["metadata"]["metrics"]["test_acc"] <= 1 and r["metadata"]["size"] > 0 for r in listed)

    code, out, _ = run(capsys, "zoo", "list")
    assert code == 0 and "digits/convnet3/seed1@epoch1" in out and listed[0]["sha256"][:12] in out

    code, out, _ = run(capsys, "zoo", "show", "digits/convnet3/seed1@epoch2", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["verified"] is True
    assert shown["metadata"]["recipe"]["net"] == {"width": 8} and shown["metadata"]["seed"] == 1

    # Re-submitting the grid skips both seeds.
    code, out, _ = run(
        capsys,
        *TRAIN_TWO_TINY_SEEDS,
    )
    assert code == 0 and out.count("skipped") == 2

    path = home / "zoo" / "digits" / "convnet3" / "seed1" / "epoch2.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    code, _, err = run(capsys, "zoo", "show", "digits/convnet3/seed1@epoch2")
    assert code == 2 and "fails its integrity check" in err and len(err.strip().splitlines()) == 1

    code, _, err = run(capsys, "zoo", "show", "digits/convnet3/seed7@epoch2")
    assert code == 2 and "no snapshot digits/convnet3/seed7@epoch2" in err


TINY_ZCA = (
    "--device", "cpu", "zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--epochs", "1",
    "--net-option", "width=4", "--launcher", "inline", "--threads", "1",
)  # fmt: skip


def test_zca_from_the_named_recipe_and_from_the_flag(capsys, home):
    """mtt-expert-zca and --zca (on the default recipe) train on whitened data and say so in
    every snapshot's recorded recipe; --no-zca turns the named recipe's off."""
    runs = {
        0: (["--recipe", "mtt-expert-zca"], "mtt-expert-zca", True),
        1: (["--zca"], "ptm", True),
        2: ([], "ptm", False),
        3: (["--recipe", "mtt-expert-zca", "--no-zca"], "mtt-expert-zca", False),
    }
    hashes = {}
    for seed, (options, name, zca) in runs.items():
        code, _, err = run(capsys, *TINY_ZCA, "--seed-start", str(seed), *options)
        assert code == 0, err
        code, out, _ = run(capsys, "zoo", "list", f"digits/convnet3/seed{seed}@*", "--json")
        rows = json.loads(out)
        assert code == 0 and rows, out
        for row in rows:
            code, out, _ = run(capsys, "zoo", "show", row["name"], "--json")
            recipe = json.loads(out)["metadata"]["recipe"]
            assert (recipe["name"], recipe["zca"]) == (name, zca), row["name"]
        hashes[seed] = json.loads(out)["metadata"]["recipe_hash"]
    assert [r["name"] for r in rows] == ["digits/convnet3/seed3@epoch0", "digits/convnet3/seed3@epoch1"]
    assert hashes[1] != hashes[2] and hashes[0] != hashes[3]  # whitening changes what a run is
