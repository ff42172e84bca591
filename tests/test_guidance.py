"""CLoM and CCLoM against hand computations, the pool draw, and the one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddz.distill.alphas import MEASURED_RULE
from ddz.distill.guidance import Guidance, GuidanceConfig, cclom_loss
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.zoo.ptm import PTM


def make_ptm(dataset, classes=None, channels=None, size=None, mean=None, std=None, arch="convnet3", seed=0):
    classes = list(dataset.classes) if classes is None else classes
    channels = channels or dataset.channels
    size = size or dataset.image_size
    options = {"width": 8} if arch.startswith("convnet") else {}
    net = build_net(arch, channels, len(classes), size, generator_seed=seed, **options)
    return PTM(
        name=f"test/{arch}/seed{seed}", sha256=f"{seed:064d}", net=net, classes=classes,
        mean=tuple(mean or dataset.mean) if channels == dataset.channels else (0.5,) * channels,
        std=tuple(std or dataset.std) if channels == dataset.channels else (0.25,) * channels,
        image_size=size, in_channels=channels,
    )


def synthetic(dataset, ipc=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(dataset.num_classes * ipc, dataset.channels, dataset.image_size,
                         dataset.image_size, generator=gen)
    labels = torch.arange(dataset.num_classes).repeat_interleave(ipc)
    return images, labels


def test_clom_equals_cross_entropy_by_hand(digits):
    """The PTM has other input statistics and a smaller input size than digits: the images must be
    renormalised (undo digits' mean/std, apply the PTM's) and resized before its forward."""
    ptm = make_ptm(digits, size=8, mean=(0.3,), std=(0.7,))
    guidance = Guidance([ptm], digits, GuidanceConfig(kind="auto", alpha=3.0), "dm", 10)
    assert guidance.kind == "clom"
    images, labels = synthetic(digits)
    loss = guidance.loss(images, labels, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))

    raw = images * digits.std[0] + digits.mean[0]
    x = F.interpolate((raw - 0.3) / 0.7, size=(8, 8), mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits = ptm.net(x)
    log_softmax = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    by_hand = 3.0 * -log_softmax[torch.arange(len(labels)), labels].mean()
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)


def test_clom_gradient_reaches_images_not_ptm(digits):
    ptm = make_ptm(digits)
    guidance = Guidance([ptm], digits, GuidanceConfig(alpha=1.0), "dm", 10)
    images, labels = synthetic(digits)
    images.requires_grad_(True)
    guidance.loss(images, labels, torch.Generator().manual_seed(0), torch.Generator()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in ptm.net.parameters())
    assert not ptm.net.training


def algorithm_1(real_feat, real_label, syn_feat, syn_label, num_classes, ipc, batch_size):
    """Algorithm 1 of the paper, written as printed (with the model's features given)."""
    real_label_onehot = torch.zeros((batch_size, num_classes))
    real_label_onehot[torch.arange(batch_size), real_label] = 1
    syn_label_onehot = torch.zeros((ipc * num_classes, num_classes))
    syn_label_onehot[torch.arange(ipc * num_classes), syn_label] = 1
    labels = syn_label_onehot @ real_label_onehot.T
    real_feature_norm = real_feat / real_feat.norm(dim=-1, keepdim=True)
    syn_feature_norm = syn_feat / syn_feat.norm(dim=-1, keepdim=True)
    cos_dist = 1 - syn_feature_norm @ real_feature_norm.T
    return torch.sum(labels * cos_dist) / torch.sum(cos_dist)


def test_cclom_equals_algorithm_1_on_random_features():
    gen = torch.Generator().manual_seed(3)
    num_classes, ipc, batch = 4, 3, 17
    syn_feat = torch.randn(num_classes * ipc, 6, generator=gen)
    real_feat = torch.randn(batch, 6, generator=gen)
    syn_label = torch.arange(num_classes).repeat_interleave(ipc)
    real_label = torch.randint(num_classes, (batch,), generator=gen)
    expected = algorithm_1(real_feat, real_label, syn_feat, syn_label, num_classes, ipc, batch)
    got = cclom_loss(syn_feat, syn_label, real_feat, real_label)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    # it is a fraction of the total distance, and it falls when same-class pairs move together
    assert 0 < float(got) < 1
    closer = syn_feat.clone()
    for i, c in enumerate(syn_label):
        members = real_feat[real_label == c]
        if len(members):
            closer[i] = members.mean(0)
    assert float(cclom_loss(closer, syn_label, real_feat, real_label)) < float(got)


def test_cclom_guidance_uses_a_real_target_batch_and_ptm_features(digits):
    """A PTM with 5 classes (another domain) -> auto picks CCLoM; the loss equals Algorithm 1 on
    its embed features of the synthetic set and of the real batch drawn from the data generator."""
    ptm = make_ptm(digits, classes=[f"s{i}" for i in range(5)])
    config = GuidanceConfig(kind="auto", alpha=2.0, cclom_batch=64)
    guidance = Guidance([ptm], digits, config, "dsa", 10)
    assert guidance.kind == "cclom" and guidance.alpha == 2.0
    images, labels = synthetic(digits, ipc=2)
    data_gen = torch.Generator().manual_seed(7)
    state = data_gen.get_state()
    loss = guidance.loss(images, labels, torch.Generator().manual_seed(0), data_gen)

    data_gen.set_state(state)
    pick = torch.randint(len(digits.train_images), (64,), generator=data_gen)
    with torch.no_grad():
        real_feat = ptm.net.embed(ptm.adapt(digits.train_images[pick], digits.mean, digits.std))
        syn_feat = ptm.net.embed(images)
    expected = 2.0 * algorithm_1(real_feat, digits.train_labels[pick], syn_feat, labels, 10, 2, 64)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_pool_draws_an_arch_then_a_member_reproducibly(digits):
    ptms = [make_ptm(digits, seed=s) for s in range(3)] + [make_ptm(digits, arch="alexnet", seed=9)]
    guidance = Guidance(ptms, digits, GuidanceConfig(), "dc", 10)
    assert set(guidance.groups) == {"convnet3", "alexnet"}
    draws = [guidance.pick(torch.Generator().manual_seed(s)) for s in range(400)]
    again = [guidance.pick(torch.Generator().manual_seed(s)) for s in range(400)]
    assert draws == again
    # the lone alexnet is drawn about half the time (arch first), not a quarter (flat pool)
    assert 0.4 < draws.count(3) / len(draws) < 0.6
    assert {0, 1, 2} <= set(draws)


def test_auto_mixes_clom_and_cclom_per_ptm(digits):
    same = make_ptm(digits)
    other = make_ptm(digits, classes=["a", "b", "c"], seed=1)
    guidance = Guidance([same, other], digits, GuidanceConfig(), "dm", 10)
    assert guidance.kinds == ["clom", "cclom"] and guidance.kind == "clom+cclom"
    assert guidance.alpha == MEASURED_RULE["dm"] and guidance.alpha_source.startswith("rule:")


def test_wrong_channel_count_is_one_line_config_error(digits):
    ptm = make_ptm(digits, channels=3)
    with pytest.raises(ConfigError) as error:
        Guidance([ptm], digits, GuidanceConfig(), "dm", 10)
    message = str(error.value)
    assert "\n" not in message and "3-channel" in message and "digits" in message


def test_clom_with_other_classes_is_refused(digits):
    ptm = make_ptm(digits, classes=["a", "b"])
    with pytest.raises(ConfigError, match="cclom"):
        Guidance([ptm], digits, GuidanceConfig(kind="clom"), "dm", 10)


def test_clom_needs_the_same_class_names_not_just_the_count(digits):
    renamed = [f"digit-{c}" for c in digits.classes]
    with pytest.raises(ConfigError, match=r"class 0 is 'digit-0' there, '0' here.*--guidance cclom") as error:
        Guidance([make_ptm(digits, classes=renamed)], digits, GuidanceConfig(kind="clom"), "dm", 10)
    assert "\n" not in str(error.value)
    auto = Guidance([make_ptm(digits, classes=renamed)], digits, GuidanceConfig(kind="auto"), "dm", 10)
    assert auto.kind == "cclom"


def test_per_arch_alpha_weights_the_drawn_ptm(digits):
    """A two-arch pool with --alpha convnet3=2 --alpha alexnet=5: each call's loss is the drawn
    PTM's cross-entropy times its own architecture's weight."""
    conv, alex = make_ptm(digits), make_ptm(digits, arch="alexnet", seed=4)
    config = GuidanceConfig(kind="clom", arch_alphas=(("convnet3", 2.0), ("alexnet", 5.0)))
    guidance = Guidance([conv, alex], digits, config, "dm", 10)
    assert guidance.alpha == {"alexnet": 5.0, "convnet3": 2.0} and guidance.alpha_source == "user"
    images, labels = synthetic(digits)
    seen = set()
    for seed in range(12):
        picked = guidance.ptms[guidance.pick(torch.Generator().manual_seed(seed))]
        loss = guidance.loss(images, labels, torch.Generator().manual_seed(seed), torch.Generator())
        with torch.no_grad():
            by_hand = F.cross_entropy(picked.net(images), labels)
        weight = 2.0 if picked is conv else 5.0
        assert float(loss) == pytest.approx(weight * float(by_hand), rel=1e-5)
        seen.add(weight)
    assert seen == {2.0, 5.0}


def test_alpha_for_an_arch_outside_the_pool_is_one_line(digits):
    config = GuidanceConfig(kind="clom", arch_alphas=(("alexnet", 5.0),))
    with pytest.raises(ConfigError, match=r"no alexnet PTM in the pool.*convnet3") as error:
        Guidance([make_ptm(digits)], digits, config, "dm", 10)
    assert "\n" not in str(error.value)


def test_bad_guidance_kind_lists_the_valid_ones(digits):
    with pytest.raises(ConfigError, match="clom"):
        Guidance([make_ptm(digits)], digits, GuidanceConfig(kind="clomm"), "dm", 10)
