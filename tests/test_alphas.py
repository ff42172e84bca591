"""The guidance weight: every published cell, the nearest-IPC row, the per-arch row, the
measured rule outside the table, and --alpha parsing with its one-line errors."""

from __future__ import annotations

import pytest

from ddz.distill.alphas import (
    MEASURED_RULE,
    default_alphas,
    nearest_published_ipc,
    parse_alpha_options,
    resolve_alphas,
)
from ddz.errors import ConfigError

# The authors' table (shared/reference/clom-alphas.md), typed out again here so that a change
# to the code's copy cannot pass unnoticed.
PAPER = {
    ("dc", 10): {"fashionmnist": 100, "cifar10": 1000, "cifar100": 10000},
    ("dc", 50): {"fashionmnist": 100, "cifar10": 5000, "cifar100": 1000},
    ("dsa", 10): {"fashionmnist": 100, "cifar10": 5000, "cifar100": 10000},
    ("dsa", 50): {"fashionmnist": 100, "cifar10": 1000, "cifar100": 10},
    ("dm", 10): {"fashionmnist": 100, "cifar10": 2000, "cifar100": 500},
    ("dm", 50): {"fashionmnist": 100, "cifar10": 1000, "cifar100": 1},
}
POOL_C10_50 = {
    "dc": {"convnet3": 5000, "vgg11": 5000, "resnet18": 5000, "alexnet": 100},
    "dsa": {"convnet3": 1000, "vgg11": 1000, "resnet18": 1000, "alexnet": 2000},
    "dm": {"convnet3": 1000, "vgg11": 1000, "resnet18": 1000, "alexnet": 1000},
}


CELLS = [(method, ipc, dataset) for (method, ipc), row in PAPER.items() for dataset in row]


@pytest.mark.parametrize(("method", "ipc", "dataset"), CELLS)
def test_every_published_cell(method, ipc, dataset):
    choice = default_alphas(dataset, method, ipc, ["convnet3"])
    assert choice.per_arch == {"convnet3": PAPER[(method, ipc)][dataset]}
    assert choice.value == PAPER[(method, ipc)][dataset]
    assert choice.source == f"paper table: {dataset} {method} IPC {ipc}"


@pytest.mark.parametrize(
    ("ipc", "row"), [(1, 10), (10, 10), (29, 10), (30, 10), (31, 50), (50, 50), (500, 50)]
)
def test_nearest_published_ipc_row(ipc, row):
    assert nearest_published_ipc(ipc) == row
    assert default_alphas("cifar10", "dm", ipc, ["convnet3"]).value == PAPER[("dm", row)]["cifar10"]


@pytest.mark.parametrize("method", ["dc", "dsa", "dm"])
def test_cifar10_ipc50_pool_takes_one_alpha_per_arch(method):
    archs = ["convnet3", "vgg11", "resnet18", "alexnet"]
    choice = default_alphas("cifar10", method, 50, archs)
    assert choice.per_arch == POOL_C10_50[method]
    assert "per-arch row" in choice.source
    # an architecture the authors did not list takes the table cell
    cell_50, cell_10 = PAPER[(method, 50)]["cifar10"], PAPER[(method, 10)]["cifar10"]
    assert default_alphas("cifar10", method, 50, ["convnet4"]).per_arch == {"convnet4": cell_50}
    # at IPC 10 there is no per-arch row: every architecture takes the cell
    assert set(default_alphas("cifar10", method, 10, archs).per_arch.values()) == {cell_10}


@pytest.mark.parametrize("dataset", ["digits", "mnist", "svhn", "pathmnist", "imagenette", "rgb"])
def test_data_sets_outside_the_table_take_the_measured_rule(dataset):
    for method in ("dc", "dsa", "dm"):
        choice = default_alphas(dataset, method, 10, ["convnet3"])
        assert choice.value == MEASURED_RULE[method]
        assert choice.source.startswith("rule:") and "docs/distill.md" in choice.source


def test_parse_alpha_options():
    assert parse_alpha_options([]) == (None, {})
    assert parse_alpha_options(["2000"]) == (2000.0, {})
    per_arch = {"convnet3": 5000.0, "alexnet": 100.0}
    assert parse_alpha_options(["convnet3=5000", "alexnet=100"]) == (None, per_arch)
    assert parse_alpha_options(["0", "alexnet=1e3"]) == (0.0, {"alexnet": 1000.0})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["convnet3=abc"], "'abc' is not a number"),
        (["-5"], "finite number >= 0, got -5"),
        (["nan"], "finite number >= 0, got nan"),
        (["inf"], "finite number >= 0, got inf"),
        (["convnet3=-1"], "finite number >= 0"),
        (["=3"], "give ARCH=VALUE"),
        (["10", "20"], "given twice"),
    ],
)
def test_bad_alpha_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_alpha_options(options)
    assert "\n" not in str(error.value)


def test_user_values_win_and_the_source_says_which():
    archs = ["convnet3", "alexnet"]
    everyone = resolve_alphas("cifar10", "dsa", 50, archs, alpha=7.0)
    assert everyone.per_arch == {"convnet3": 7.0, "alexnet": 7.0} and everyone.value == 7.0
    mixed = resolve_alphas("cifar10", "dsa", 50, archs, alpha=7.0, arch_alphas={"alexnet": 3.0})
    assert mixed.per_arch == {"convnet3": 7.0, "alexnet": 3.0} and mixed.source == "user"
    partial = resolve_alphas("cifar10", "dsa", 50, archs, arch_alphas={"alexnet": 3.0})
    assert partial.per_arch == {"convnet3": 1000.0, "alexnet": 3.0}
    assert partial.source.startswith("user; convnet3: paper table: cifar10 dsa IPC 50")
    with pytest.raises(ConfigError, match="no vgg11 PTM in the pool"):
        resolve_alphas("cifar10", "dsa", 50, archs, arch_alphas={"vgg11": 3.0})
