"""N models as one StackedNets: the same nets as one after another, every registered arch."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from ddz.data import ImageDataset
from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real, train_net, train_stacked
from ddz.nets import arch_names, build_net
from ddz.nets.factory import ARCHS, ArchSpec
from ddz.nets.models import ConvNet
from ddz.nets.stacked import StackedNets, stackable
from ddz.training import accuracies, accuracy

# The smallest side each arch trains at without pooling its maps away (ConvNet-6 pools 6 times).
SIDE = {"convnet6": 64}


def random_set(arch: str, images: int = 24) -> ImageDataset:
    side = SIDE.get(arch, 16)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, side, side, generator=gen)
    y = torch.arange(images) % 4
    return ImageDataset("random", x, y, x, y, ["a", "b", "c", "d"], (0.0,) * 3, (1.0,) * 3)


def relative_difference(a: nn.Module, b: nn.Module) -> float:
    worst = 0.0
    for key, value in a.state_dict().items():
        if value.is_floating_point():
            scale = value.abs().max().clamp_min(1e-12)
            worst = max(worst, float((b.state_dict()[key] - value).abs().max() / scale))
    return worst


# The deep nets take seconds each: in the full suite only (make check leaves them out).
DEEP = ("convnet6", "vgg11", "vgg11bn", "resnet18", "resnet18bn")


@pytest.mark.parametrize(
    "arch", [pytest.param(a, marks=pytest.mark.slow) if a in DEEP else a for a in arch_names()]
)
def test_batched_models_end_where_sequential_ones_do(arch: str) -> None:
    data = random_set(arch)
    config = EvalConfig(epochs=4, batch_size=8)  # E + 1 = 5 epochs, with the lr decay and DSA
    seeds = [11, 12]
    alone = [train_net(arch, data.train_images, data.train_labels, data, config, s) for s in seeds]
    stacked = train_stacked(arch, data.train_images, data.train_labels, data, config, seeds)
    for single, copy in zip(alone, stacked.nets(), strict=True):
        assert relative_difference(single, copy) <= 1e-5
    assert accuracies(stacked, data.test_images, data.test_labels) == [
        accuracy(net, data.test_images, data.test_labels) for net in alone
    ]


@pytest.mark.parametrize("arch", ["convnet3", "convnet3bn"])
def test_on_cpu_batched_models_are_bit_identical(arch: str) -> None:
    data = random_set(arch)
    config = EvalConfig(epochs=4, batch_size=8)
    alone = train_net(arch, data.train_images, data.train_labels, data, config, 5)
    stacked = train_stacked(arch, data.train_images, data.train_labels, data, config, [5, 6])
    copy = stacked.nets()[0]
    for key, value in alone.state_dict().items():
        assert torch.equal(copy.state_dict()[key], value), key


def test_copies_keep_their_own_seeds_and_runs_repeat() -> None:
    data = random_set("convnet3")
    config = EvalConfig(epochs=2, batch_size=8)
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    first = train_stacked("convnet3", data.train_images, data.train_labels, data, config, [1, 2, 3]).nets()
    again = train_stacked("convnet3", data.train_images, data.train_labels, data, config, [1, 2, 3]).nets()
    assert torch.equal(torch.random.get_rng_state(), before)  # every draw came from the seeds
    weights = [net.classifier.weight for net in first]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_stacking_then_unstacking_gives_the_nets_back() -> None:
    nets = [build_net("resnet18bn", 3, 10, 16, generator_seed=s) for s in range(3)]
    for net in nets:  # give the BatchNorm buffers values of their own
        net.bn1.running_mean.normal_()
    back = StackedNets(nets).nets()
    for net, copy in zip(nets, back, strict=True):
        assert net.state_dict().keys() == copy.state_dict().keys()
        assert all(torch.equal(copy.state_dict()[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("arch", ["convnet3", "convnet3bn", "resnet18", "vgg11"])
def test_the_grouped_body_a_gpu_runs_computes_the_same_forward(arch: str) -> None:
    """The grouped layers (what a GPU runs), here on CPU, match N single-net forwards."""
    nets = [build_net(arch, 3, 10, 16, generator_seed=s) for s in range(3)]
    x = torch.randn(3, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = torch.stack([net(part) for net, part in zip(nets, x, strict=True)], 2)
    stacked = StackedNets(nets)
    close = {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(stacked.body(x.transpose(0, 1).flatten(1, 2)), expected, **close)
    torch.testing.assert_close(stacked.body(x[0]), torch.stack([net(x[0]) for net in nets], 2), **close)


class PReLUNet(ConvNet):
    """A ConvNet with a learnable activation, which stacking does not know."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 32):
        super().__init__(in_channels, num_classes, image_size, width=8, depth=1)
        self.features.append(nn.PReLU())


def test_an_arch_that_cannot_be_stacked_trains_sequentially_and_says_so(
    digits: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ARCHS, "prelunet", ArchSpec(PReLUNet))
    assert stackable(build_net("prelunet", 1, 10, 16)) == "layer PReLU"
    images, labels = random_real(digits, 1, seed=0)
    notes: list[str] = []
    batched = evaluate_synset(
        images, labels, digits, EvalConfig(archs=("prelunet",), models=2, epochs=2), notes=notes
    )
    assert notes == ["prelunet: its 2 models train one by one (layer PReLU cannot be batched)"]
    sequential = evaluate_synset(
        images, labels, digits, EvalConfig(archs=("prelunet",), models=2, epochs=2, batched=False)
    )
    assert batched["prelunet"].accs == sequential["prelunet"].accs


def test_evaluation_batched_and_sequential_agree(digits: ImageDataset) -> None:
    images, labels = random_real(digits, 2, seed=0)
    notes: list[str] = []
    config = EvalConfig(models=3, epochs=3)
    batched = evaluate_synset(images, labels, digits, config, seed=4, notes=notes)
    sequential = evaluate_synset(images, labels, digits, replace(config, batched=False), seed=4)
    assert notes == []
    assert batched["convnet3"].accs == sequential["convnet3"].accs
    assert len(set(batched["convnet3"].accs)) > 1 or batched["convnet3"].accs[0] > 0.5


@pytest.mark.slow
def test_eval_cli_batched_and_sequential_give_the_same_json(run_ddz, tmp_path) -> None:
    args = ["eval", "--random-real", "--dataset", "digits", "--ipc", "1", "--models", "2", "--epochs", "2"]
    batched = run_ddz(*args, "--json", "batched.json")
    sequential = run_ddz(*args, "--sequential", "--json", "sequential.json")
    assert batched.returncode == 0 and sequential.returncode == 0, batched.stderr + sequential.stderr
    accs = [json.loads((tmp_path / f"{name}.json").read_text())["eval"]["convnet3"]["accs"]
            for name in ("batched", "sequential")]
    assert accs[0] == accs[1] and len(accs[0]) == 2
