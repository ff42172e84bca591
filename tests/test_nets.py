"""The DD architectures: shapes, pinned parameter counts, timm registration, rebuilds, seeding."""

from __future__ import annotations

import pytest
import timm
import torch

from ddz.errors import ConfigError
from ddz.nets import ARCHS, build_from_config, build_net, register_with_timm

SHAPES = [(3, 32), (1, 28), (1, 16)]

# (channels, size) -> parameter count with 10 classes. Derivations from the protocol's layer lists:
# ConvNet-3 @32x32x3: conv 3*128*9+128 = 3,584; two convs 128*128*9+128 = 147,584 each; three
#   instancenorms 2*128 = 256 each; linear 2048*10+10 = 20,490 -> 320,010.
# AlexNet @32x32x3: convs 5x5 3->128 (9,728), 5x5 128->192 (614,592), 3x3 192->256 (442,624),
#   3x3 256->192 (442,560), 3x3 192->192 (331,968); linear 192*4*4*10+10 (30,730) -> 1,872,202.
# VGG-11 @32x32x3: convs 1,792 + 73,856 + 295,168 + 590,080 + 1,180,160 + 3*2,359,808;
#   instancenorms 2*(64+128+256+256+4*512) = 5,504; linear 5,130 -> 9,231,114.
# ResNet-18 @32x32x3: the CIFAR ResNet-18 count, 11,173,962 (bias-free convs, norm affine pairs).
# 1-channel inputs remove 2/3 of the first conv's weights; 16px shrinks only ConvNet/AlexNet heads.
PARAMS = {
    "convnet3": {(3, 32): 320_010, (1, 28): 317_706, (1, 16): 302_346},
    "convnet3bn": {(3, 32): 320_010, (1, 28): 317_706, (1, 16): 302_346},
    "convnet4": {(3, 32): 452_490, (1, 28): 450_186, (1, 16): 446_346},
    "alexnet": {(3, 32): 1_872_202, (1, 28): 1_865_802, (1, 16): 1_842_762},
    "vgg11": {(3, 32): 9_231_114, (1, 28): 9_229_962, (1, 16): 9_229_962},
    "vgg11bn": {(3, 32): 9_231_114, (1, 28): 9_229_962, (1, 16): 9_229_962},
    "resnet18": {(3, 32): 11_173_962, (1, 28): 11_172_810, (1, 16): 11_172_810},
    "resnet18bn": {(3, 32): 11_173_962, (1, 28): 11_172_810, (1, 16): 11_172_810},
    "convnet6": {(3, 128): 748_170},
}
FEATURES = {
    "convnet3": {(3, 32): 2048, (1, 28): 2048, (1, 16): 512},
    "convnet4": {(3, 32): 512, (1, 28): 512, (1, 16): 128},
    "alexnet": {(3, 32): 3072, (1, 28): 3072, (1, 16): 768},
    "vgg11": {(3, 32): 512, (1, 28): 512, (1, 16): 512},
    "resnet18": {(3, 32): 512, (1, 28): 512, (1, 16): 512},
    "convnet6": {(3, 128): 512},
}
CASES = [(arch, shape) for arch, shapes in PARAMS.items() for shape in shapes]


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_every_arch_is_covered() -> None:
    assert set(PARAMS) == set(ARCHS)


@pytest.mark.parametrize(("arch", "shape"), CASES, ids=[f"{a}-{c}x{s}" for a, (c, s) in CASES])
def test_builds_runs_and_counts(arch: str, shape: tuple[int, int]) -> None:
    channels, size = shape
    net = build_net(arch, channels, 10, size, generator_seed=0)
    assert count(net) == PARAMS[arch][shape]
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    features = net.embed(x)
    expected = FEATURES.get(arch.removesuffix("bn"), {}).get(shape)
    if expected is not None:
        assert features.shape == (2, expected) and net.num_features == expected
    logits = net(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert torch.allclose(net.classifier(features), logits, atol=1e-5)
    assert net.config["arch"] == arch and net.config["in_channels"] == channels


def test_convnet6_is_refused_below_its_resolution() -> None:
    with pytest.raises(ConfigError, match=r"depth <= 5"):
        build_net("convnet6", 3, 10, 32)


def test_timm_creates_the_same_net() -> None:
    assert "ddz_convnet3" in register_with_timm()
    via_timm = timm.create_model("ddz_convnet3", num_classes=10)
    ours = build_net("convnet3", 3, 10, 32)
    assert count(via_timm) == count(ours) == 320_010
    grey = timm.create_model("ddz_alexnet", num_classes=9, in_chans=1, img_size=28)
    assert count(grey) == 1_865_802 - 10 * 3073 + 9 * 3073
    with pytest.raises(ConfigError, match="no timm pretrained weights"):
        timm.create_model("ddz_vgg11", pretrained=True)


@pytest.mark.parametrize("arch", ["convnet3", "convnet3bn", "vgg11bn", "resnet18", "alexnet"])
def test_rebuild_from_config_loads_strictly(arch: str) -> None:
    net = build_net(arch, 1, 7, 16, generator_seed=3)
    twin = build_from_config(net.config)
    assert twin.config == net.config
    twin.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    net.eval(), twin.eval()
    assert torch.equal(net(x), twin(x))


def test_overrides_are_recorded_and_rebuilt() -> None:
    net = build_net("convnet3", 3, 10, 32, width=16, norm="none", pooling="maxpooling")
    assert (net.config["width"], net.config["norm"], net.config["pooling"]) == (16, "none", "maxpooling")
    twin = build_from_config(net.config)
    twin.load_state_dict(net.state_dict(), strict=True)
    assert count(twin) == 3 * 16 * 9 + 16 + 2 * (16 * 16 * 9 + 16) + 16 * 16 * 10 + 10


def test_seeded_weights_and_global_rng() -> None:
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    a = build_net("convnet3", 3, 10, 32, generator_seed=7)
    b = build_net("convnet3", 3, 10, 32, generator_seed=7)
    c = build_net("convnet3", 3, 10, 32, generator_seed=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_unknown_arch_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown arch 'resnet19'.*resnet18"):
        build_net("resnet19", 3, 10, 32)
