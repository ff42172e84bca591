"""DC/DSA/DM internals against hand-built cases and per-class reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddz.data.augment import DSA, DSAConfig, DSAParams
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig, IterationRNG, build_method, loops_for_ipc
from ddz.distill.methods.base import initial_images, new_state
from ddz.distill.methods.dc import matching_loss
from ddz.distill.methods.distance import gradient_distance
from ddz.distill.methods.dm import dm_loss
from ddz.errors import ConfigError
from ddz.nets import build_net

SMALL = (("width", 8),)


def test_ours_distance_on_a_hand_built_case():
    """One class. A conv gradient with two output nodes: node 0 real (1,0,0,0) vs synthetic
    (0,1,0,0) -> cos 0 -> 1; node 1 real (1,1,1,1) vs synthetic (2,2,2,2) -> cos 1 -> 0.
    A linear gradient with one row: (3,4) vs (4,3) -> cos 24/25 -> 1/25.
    A bias that differs wildly contributes 0. Total 1 + 0 + 0.04 (less the 1e-6 guard)."""
    conv_real = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1]]).view(1, 2, 1, 2, 2)
    conv_syn = torch.tensor([[0.0, 1, 0, 0], [2, 2, 2, 2]]).view(1, 2, 1, 2, 2)
    lin_real = torch.tensor([[[3.0, 4.0]]])
    lin_syn = torch.tensor([[[4.0, 3.0]]])
    bias_real, bias_syn = torch.tensor([[1.0, -1.0]]), torch.tensor([[-50.0, 9.0]])
    got = gradient_distance([conv_syn, lin_syn, bias_syn], [conv_real, lin_real, bias_real], "ours")
    assert float(got) == pytest.approx(1.04, abs=1e-5)
    # summed over classes: a second, identical class doubles it
    two = gradient_distance(
        [torch.cat([conv_syn] * 2), torch.cat([lin_syn] * 2)],
        [torch.cat([conv_real] * 2), torch.cat([lin_real] * 2)], "ours",
    )
    assert float(two) == pytest.approx(2.08, abs=1e-5)


def test_mse_and_cos_distances_by_hand():
    real = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0]])]
    syn = [torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0]])]
    assert float(gradient_distance(syn, real, "mse")) == pytest.approx(3.0)
    # concatenated (1,0,0) vs (0,1,1): orthogonal -> 1
    assert float(gradient_distance(syn, real, "cos")) == pytest.approx(1.0, abs=1e-5)


def test_loops_follow_the_table_and_the_interpolation_rule():
    assert loops_for_ipc(1) == (1, 1)
    assert loops_for_ipc(10) == (10, 50)
    assert loops_for_ipc(50) == (50, 10)
    assert loops_for_ipc(5) == (5, 50)
    assert loops_for_ipc(15) == (15, round(37.5))
    assert loops_for_ipc(45) == (45, round(12.5))
    assert loops_for_ipc(100) == (100, 5)
    assert loops_for_ipc(1000) == (1000, 1)


def test_config_defaults_are_the_protocol():
    dc = DistillConfig(method="dc", ipc=10).resolved()
    assert (dc.iterations, dc.lr_img, dc.outer_loop, dc.inner_loop) == (1000, 0.1, 10, 50)
    assert (dc.lr_net, dc.momentum, dc.batch_real, dc.arch) == (0.01, 0.5, 256, "convnet3")
    assert dc.init == "noise"  # the DC README command keeps main.py's default
    dm = DistillConfig(method="dm", ipc=50).resolved()
    assert (dm.iterations, dm.lr_img) == (20000, 1.0)
    assert DistillConfig(method="dm", ipc=100).resolved("cifar10").lr_img == 10.0
    assert DistillConfig(method="dsa").augment and not DistillConfig(method="dc").augment
    with pytest.raises(ConfigError, match="dsa"):
        DistillConfig(method="dsaa").resolved()
    assert DistillConfig.from_json(dm.to_json()) == dm


def _params_of(params: DSAParams, c: int) -> DSAParams:
    return DSAParams(params.tokens[c : c + 1], params.uniforms[c : c + 1])


def test_batched_dm_loss_equals_the_per_class_loss():
    """All classes in one forward per side (instancenorm) == the reference's per-class loop."""
    gen = torch.Generator().manual_seed(0)
    k, n, ipc = 6, 20, 3
    real = torch.randn(k, n, 1, 16, 16, generator=gen)
    syn = torch.randn(k, ipc, 1, 16, 16, generator=gen)
    net = build_net("convnet3", 1, k, 16, generator_seed=1, width=16)
    net.train()
    dsa = DSA(DSAConfig(), seed=5)
    params = dsa.siamese(k)
    batched = dm_loss(net.embed, real, syn, dsa, params)
    per_class = torch.zeros(())
    for c in range(k):
        p = _params_of(params, c)
        r = net.embed(dsa(real[c : c + 1], p)[0]).mean(0)
        s = net.embed(dsa(syn[c : c + 1], p)[0]).mean(0)
        per_class = per_class + ((r - s) ** 2).sum()
    assert float(batched.detach()) == pytest.approx(float(per_class.detach()), rel=1e-5)
    chunked = dm_loss(net.embed, real, syn, dsa, params, chunk=4)  # real side in 2 forwards
    assert float(chunked.detach()) == pytest.approx(float(per_class.detach()), rel=1e-5)


def _reference_distance(gs, gr):
    """The reference's distance_wb, layer by layer, for one class."""
    total = torch.zeros(())
    for s, r in zip(gs, gr, strict=True):
        if s.dim() == 1:
            continue
        s2, r2 = s.reshape(s.shape[0], -1), r.reshape(r.shape[0], -1)
        total = total + torch.sum(1 - torch.sum(s2 * r2, -1) / (s2.norm(dim=-1) * r2.norm(dim=-1) + 1e-6))
    return total


def test_matching_loss_equals_the_per_class_reference_loop():
    gen = torch.Generator().manual_seed(1)
    k, n, ipc = 4, 12, 2
    real = torch.randn(k, n, 1, 16, 16, generator=gen)
    syn = torch.randn(k, ipc, 1, 16, 16, generator=gen, requires_grad=True)
    net = build_net("convnet3", 1, k, 16, generator_seed=2, width=8)
    params = list(net.parameters())
    ours = matching_loss(net, real, syn, "ours")
    reference = torch.zeros(())
    for c in range(k):
        gr = torch.autograd.grad(F.cross_entropy(net(real[c]), torch.full((n,), c)), params)
        syn_loss = F.cross_entropy(net(syn[c]), torch.full((ipc,), c))
        gs = torch.autograd.grad(syn_loss, params, create_graph=True)
        reference = reference + _reference_distance(gs, [g.detach() for g in gr])
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
    (g_ours,) = torch.autograd.grad(ours, syn, retain_graph=True)
    (g_ref,) = torch.autograd.grad(reference, syn)
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_same_seed_gives_identical_images_and_another_seed_does_not(digits, method):
    config = DistillConfig(
        method=method, ipc=2, iterations=2, net_options=SMALL, outer_loop=2, inner_loop=2, batch_real=64
    )
    a = distill(digits, config, seed=4)
    b = distill(digits, config, seed=4)
    c = distill(digits, config, seed=5)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    start = initial_images(digits, config.resolved(), 4)
    assert not torch.equal(a.images, start)  # it did learn something


def test_batchnorm_nets_run_for_every_method(digits):
    for method in ("dc", "dm"):
        config = DistillConfig(
            method=method, ipc=1, iterations=1, arch="convnet3bn", net_options=SMALL, outer_loop=2,
            inner_loop=1, batch_real=32,
        ).resolved()
        state = new_state(initial_images(digits, config, 0), 1, config.lr_img, config.momentum)
        loss = build_method(config, digits).step(state, IterationRNG(0, 0, "cpu"))
        assert math.isfinite(float(loss)) and float(loss) > 0


def test_bad_net_option_is_one_line(digits):
    config = DistillConfig(method="dm", ipc=1, net_options=(("widht", 8),)).resolved()
    with pytest.raises(ConfigError) as error:
        build_method(config, digits)
    assert "\n" not in str(error.value) and "widht" in str(error.value)
