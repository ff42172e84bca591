"""The protocol to the letter of the reference: the evaluation loop against a hand-written loop
in the form of DatasetCondensation's evaluate_synset, the DC evaluation augmentation and its
epoch rule, the per-method init and lr_img defaults, and DM's BatchNorm forward."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ddz.data.dc_augment import DCAugConfig, dc_augment, strategy_for
from ddz.distill.evaluate import EvalConfig, combine_runs, evaluate_synset, random_real, train_net
from ddz.distill.methods import DistillConfig
from ddz.distill.methods.dm import DistributionMatching
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.seeding import derive_seed, generator


def reference_form(images, labels, digits, epochs, seed, reset_momentum=True, batch=8):
    """The reference's loop: `for ep in range(Epoch + 1)`, one SGD step per shuffled batch, and
    after epoch Epoch // 2 + 1 lr x0.1 with a NEW optimiser (momentum gone)."""
    net = build_net("convnet3", 1, 10, 16, generator_seed=derive_seed(seed, "init"))
    lr = 0.01
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    order = generator(seed, "order")
    for ep in range(epochs + 1):
        net.train()
        perm = torch.randperm(len(images), generator=order)
        for start in range(0, len(images), batch):
            idx = perm[start : start + batch]
            optimizer.zero_grad()
            F.cross_entropy(net(images[idx]), labels[idx]).backward()
            optimizer.step()
        if ep == epochs // 2 + 1:
            lr *= 0.1
            if reset_momentum:
                optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
            else:
                for group in optimizer.param_groups:
                    group["lr"] = lr
    return net


def test_evaluation_equals_the_reference_loop_with_the_drop_and_the_momentum_reset(digits):
    images, labels = random_real(digits, 2, seed=3)
    config = EvalConfig(models=1, epochs=4, batch_size=8, augment="none")
    ours = train_net("convnet3", images, labels, digits, config, seed=5)
    theirs = reference_form(images, labels, digits, epochs=4, seed=5)
    kept_momentum = reference_form(images, labels, digits, epochs=4, seed=5, reset_momentum=False)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    for name, value in theirs_state.items():
        assert torch.allclose(ours_state[name], value, rtol=1e-5, atol=1e-6), name
    # the reset is visible: keeping the momentum across the drop ends elsewhere
    kept = kept_momentum.state_dict()
    assert any(not torch.allclose(ours_state[n], v, rtol=1e-5, atol=1e-6) for n, v in kept.items())


def test_epochs_follow_the_reference_rule(digits):
    assert EvalConfig().epochs_for(digits, "convnet3") == 1000  # DSA
    assert EvalConfig(augment="none").epochs_for(digits, "convnet3") == 300
    assert EvalConfig(augment="dc").epochs_for(digits, "convnet3") == 300  # get_daparam: none here
    assert EvalConfig(augment="dc").epochs_for(digits, "convnet3bn") == 1000  # crop_noise
    assert EvalConfig(augment="dc", epochs=7).epochs_for(digits, "convnet3bn") == 7
    with pytest.raises(ConfigError, match="unknown evaluation augmentation 'dcc'.*dc, dsa, rded, none"):
        EvalConfig(augment="dcc")
    images, labels = random_real(digits, 1, seed=0)
    result = evaluate_synset(images, labels, digits, EvalConfig(models=1, epochs=2, augment="dc"))
    assert result["convnet3"].epochs == 2


def test_dc_strategy_rule_of_get_daparam():
    assert strategy_for("mnist", "convnet3") == "crop_scale_rotate"
    assert strategy_for("cifar10", "convnet3") == "none"
    assert strategy_for("cifar10", "convnet3bn") == "crop_noise"
    assert strategy_for("mnist", "convnet3bn") == "crop_noise"


def test_dc_crop_is_a_window_of_the_mean_padded_image():
    x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    out = dc_augment(x, DCAugConfig("crop"), torch.Generator().manual_seed(1))
    mean = x.mean(dim=(0, 2, 3))
    padded = mean.view(1, 2, 1, 1).expand(6, 2, 13, 13).clone()
    padded[:, :, 4:9, 4:9] = x
    offsets = []
    for i in range(6):
        found = [(r, c) for r, c in itertools.product(range(8), range(8))
                 if torch.equal(out[i], padded[i, :, r : r + 5, c : c + 5])]
        assert found, f"image {i} is no window of its padded self"
        offsets.append(found[0])
    assert len(set(offsets)) > 1


def test_dc_scale_rotate_noise_shapes_and_identities():
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for strategy in ("scale", "rotate", "noise", "crop_scale_rotate", "crop_noise"):
        a = dc_augment(x, DCAugConfig(strategy), torch.Generator().manual_seed(2))
        b = dc_augment(x, DCAugConfig(strategy), torch.Generator().manual_seed(2))
        assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    noisy = dc_augment(x, DCAugConfig("noise"), torch.Generator().manual_seed(3))
    assert 0 < float((noisy - x).abs().max()) < 0.01
    # a zero-degree rotation and a unit scale are the identity
    assert torch.allclose(dc_augment(x, DCAugConfig("rotate", rotate=0), torch.Generator()), x, atol=1e-5)
    assert torch.equal(dc_augment(x, DCAugConfig("scale", scale=0.0), torch.Generator()), x)
    assert torch.equal(dc_augment(x, DCAugConfig("none"), torch.Generator()), x)


def test_dc_scale_by_hand():
    """The reference's scalefun: (h, w) = int(U(0.8, 1.2) * H) each, nearest resize, centred on a
    zero canvas of side max(h, w, H), centre HxW crop; the draws replayed from the generator."""
    x = torch.arange(100.0).view(1, 1, 10, 10)
    gen = torch.Generator().manual_seed(0)
    out = dc_augment(x, DCAugConfig("scale", scale=0.2), gen)
    gen = torch.Generator().manual_seed(0)
    torch.randint(1, (1,), generator=gen)  # the token draw
    u = torch.rand((1, 2), generator=gen) * 0.4 + 0.8
    sh, sw = int(u[0, 0] * 10), int(u[0, 1] * 10)
    resized = F.interpolate(x, size=(sh, sw), mode="nearest")
    side = max(sh, sw, 10)
    canvas = torch.zeros(1, 1, side, side)
    canvas[:, :, (side - sh) // 2 : (side - sh) // 2 + sh, (side - sw) // 2 : (side - sw) // 2 + sw] = resized
    top = (side - 10) // 2
    assert torch.equal(out, canvas[:, :, top : top + 10, top : top + 10])


def test_per_method_init_and_lr_img_defaults():
    assert DistillConfig(method="dc").resolved().init == "noise"
    assert DistillConfig(method="dsa").resolved().init == "real"
    assert DistillConfig(method="dm").resolved().init == "real"
    assert DistillConfig(method="dc", init="real").resolved().init == "real"
    assert DistillConfig(method="dm", ipc=100).resolved("cifar10").lr_img == 10.0
    assert DistillConfig(method="dm", ipc=50).resolved("cifar10").lr_img == 1.0
    assert DistillConfig(method="dm", ipc=100).resolved("cifar100").lr_img == 1.0
    assert DistillConfig(method="dm", ipc=100).resolved("digits").lr_img == 1.0
    assert DistillConfig(method="dsa", ipc=100).resolved("cifar10").lr_img == 0.1
    assert DistillConfig(method="dm", ipc=100, lr_img=3.0).resolved("cifar10").lr_img == 3.0


def test_dm_with_batchnorm_puts_every_class_through_one_forward(digits, monkeypatch):
    import ddz.distill.methods.dm as dm

    monkeypatch.setattr(dm, "ACTIVATION_BUDGET", 1)  # would cut real batches into single classes
    plain = DistributionMatching(DistillConfig(method="dm", net_options=(("width", 8),)).resolved(), digits)
    assert plain.chunk == 1
    bn = DistributionMatching(
        DistillConfig(method="dm", arch="convnet3bn", net_options=(("width", 8),)).resolved(), digits
    )
    assert bn.chunk == digits.num_classes


def test_combine_runs_is_the_mean_and_std_over_every_model_of_every_run():
    from ddz.distill.evaluate import ArchResult

    runs = [{"convnet3": ArchResult([0.5, 0.7], 10, 2)}, {"convnet3": ArchResult([0.6, 1.0], 10, 2)}]
    combined = combine_runs(runs)["convnet3"]
    assert combined.accs == [0.5, 0.7, 0.6, 1.0] and combined.runs == 2 and combined.models == 2
    assert combined.mean == pytest.approx(0.7)
    assert combined.std == pytest.approx(((0.04 + 0.0 + 0.01 + 0.09) / 4) ** 0.5)
    assert combined.run_means == pytest.approx([0.6, 0.8])
