"""Micro-batching on CPU computes the same step as the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddz.nets import build_net
from ddz.nets.batching import (
    cross_entropy_backward,
    cross_entropy_grad,
    device_layout,
    forward_in_pieces,
    micro_batch,
    pieces,
)
from ddz.nets.stacked import StackedNets
from ddz.training import train_epoch


def small_net(arch: str = "convnet3", **options):
    return build_net(arch, 3, 10, 32, generator_seed=3, **options)


def batch(n: int = 37):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_pieces_cover_the_batch_once() -> None:
    assert pieces(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert pieces(10, None) == [slice(0, 10)]
    assert pieces(3, 8) == [slice(0, 3)]


def test_micro_batch_size_by_image_size_and_norm() -> None:
    x, _ = batch(2)
    assert micro_batch(small_net(), x) == 16  # 8 MB / (4 B x 128 channels x 32 x 32)
    assert micro_batch(small_net(), torch.zeros(2, 3, 16, 16)) == 64
    assert micro_batch(small_net(width=32), x) == 64  # a narrower first layer: more images
    bn = small_net(norm="batchnorm")
    assert micro_batch(bn.train(), x) is None  # batch statistics: the whole batch
    assert micro_batch(bn.eval(), x) == 16  # running statistics: per image
    stacked = StackedNets([build_net("convnet3", 3, 10, 32, generator_seed=s, width=32) for s in (1, 2)])
    assert micro_batch(stacked, x) == 64  # per copy's activation


def test_forward_in_pieces_equals_one_forward() -> None:
    net, (x, _) = small_net(width=16), batch()
    with torch.no_grad():
        torch.testing.assert_close(forward_in_pieces(net, x, 5), net(x), rtol=1e-5, atol=1e-6)


def test_accumulated_gradients_equal_the_batch_gradient() -> None:
    x, y = batch()
    whole, micro = small_net(width=16), small_net(width=16)
    F.cross_entropy(whole(x), y).backward()
    loss, logits = cross_entropy_backward(micro, x, y, 8)
    assert logits.shape == (37, 10) and not logits.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(whole(x), y).detach(), rtol=1e-5, atol=0)
    for a, b in zip(whole.parameters(), micro.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)
    grads = cross_entropy_grad(micro, list(micro.parameters()), x, y, 6)
    for a, g in zip(whole.parameters(), grads, strict=True):
        torch.testing.assert_close(g, a.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["convnet3", "alexnet"])
def test_train_epoch_matches_a_whole_batch_epoch(arch: str) -> None:
    """train_epoch micro-batches on CPU; the SGD steps equal those of plain whole batches."""
    x, y = batch(70)
    micro, whole = small_net(arch), small_net(arch)
    opt_micro = torch.optim.SGD(micro.parameters(), lr=0.01, momentum=0.9)
    opt_whole = torch.optim.SGD(whole.parameters(), lr=0.01, momentum=0.9)
    assert micro_batch(micro, x) < 64  # so the 64-image batches below are really cut
    for epoch in range(2):
        train_epoch(micro, x, y, opt_micro, 64, torch.Generator().manual_seed(epoch))
        order = torch.randperm(70, generator=torch.Generator().manual_seed(epoch))
        for start in range(0, 70, 64):
            idx = order[start : start + 64]
            opt_whole.zero_grad()
            F.cross_entropy(whole(x[idx]), y[idx]).backward()
            opt_whole.step()
    for a, b in zip(whole.parameters(), micro.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_cpu_layout_is_channels_last_and_computes_the_same() -> None:
    net, (x, _) = small_net(width=16), batch(4)
    with torch.no_grad():
        before = net(x)
        net = device_layout(net)
        conv = net.features[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
