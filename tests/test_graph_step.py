"""The evaluation's graph-capturable step (EvalConfig.cuda_graph): on a CPU it runs from its
static tensors eagerly and must train exactly the nets the default step trains, tail batch
included; `amp` reaches the forwards. (CUDA capture itself needs a GPU: bench/gpu.py.)"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ddz.data import ImageDataset
from ddz.distill.evaluate import EvalConfig, evaluate_synset, fresh_net, random_real, train_net, train_stacked
from ddz.errors import ConfigError
from ddz.nets.stacked import StackedNets
from ddz.seeding import generator
from ddz.training import GraphedStep, TrainStep, train_epoch

CONFIG = EvalConfig(models=2, epochs=3, batch_size=8)  # 20 images: batches 8, 8 and a tail of 4


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def synset(digits: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return random_real(digits, 2, seed=0)


def test_graphed_step_trains_the_same_stacked_nets(digits, synset):
    images, labels = synset
    plain = train_stacked("convnet3", images, labels, digits, CONFIG, [11, 12])
    graphed = train_stacked("convnet3", images, labels, digits, replace(CONFIG, cuda_graph=True), [11, 12])
    assert states_equal(plain, graphed)


def test_graphed_step_trains_the_same_single_net(digits, synset):
    images, labels = synset
    plain = train_net("convnet3", images, labels, digits, CONFIG, 5)
    graphed = train_net("convnet3", images, labels, digits, replace(CONFIG, cuda_graph=True), 5)
    assert states_equal(plain, graphed)


def test_graphed_epochs_keep_one_static_batch_per_shape(digits, synset):
    """The full batches and the tail get one static pair each; the first step of a shape runs
    eagerly (warm-up), later ones from the static tensors; the epoch's totals equal TrainStep's."""
    images, labels = synset
    nets = {}
    totals = {}
    for kind in (TrainStep, GraphedStep):
        net = StackedNets([fresh_net("convnet3", digits, s, images.device) for s in (1, 2)])
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        step = kind(net, optimizer, images, 2)
        orders = [generator(s, "order") for s in (1, 2)]
        for _ in range(2):
            loss, acc = train_epoch(net, images, labels, optimizer, 8, orders, None, None, step)
        nets[kind], totals[kind] = net, (loss, acc)
        if kind is GraphedStep:
            shapes = sorted(key[0] for key in step.graphs)
            assert shapes == [(2, 4, 1, 16, 16), (2, 8, 1, 16, 16)]
            assert all(graph is None for _, _, graph in step.graphs.values())  # CPU: no CUDA graph
    assert states_equal(nets[TrainStep], nets[GraphedStep])
    assert all(torch.equal(a, b) for a, b in zip(totals[TrainStep], totals[GraphedStep], strict=True))


def test_cuda_graph_flag_gives_the_same_accuracies(digits, synset):
    images, labels = synset
    config = replace(CONFIG, epochs=1)
    plain = evaluate_synset(images, labels, digits, config, seed=3)["convnet3"].accs
    graphed = evaluate_synset(images, labels, digits, replace(config, cuda_graph=True), seed=3)
    graphed = graphed["convnet3"].accs
    assert plain == graphed


def test_amp_bf16_reaches_the_forwards(digits, synset):
    images, labels = synset
    config = replace(CONFIG, models=1, epochs=1)
    plain = train_net("convnet3", images[:8], labels[:8], digits, config, 5)
    bf16 = train_net("convnet3", images[:8], labels[:8], digits, replace(config, amp="bf16"), 5)
    assert not states_equal(plain, bf16)  # other arithmetic, other weights
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in bf16.parameters())
    with pytest.raises(ConfigError, match="unknown --amp 'fp8'"):
        EvalConfig(amp="fp8")
