"""One factory for every architecture, and the registry as data (timm registration: timm_models.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ddz.errors import ConfigError, unknown_name
from ddz.nets.models import VGG, AlexNet, ConvNet, DDNet, ResNet18


@dataclass(frozen=True)
class ArchSpec:
    """How to build one named architecture: a class and its fixed keyword arguments."""

    cls: type[DDNet]
    kwargs: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


ARCHS: dict[str, ArchSpec] = {
    "convnet3": ArchSpec(ConvNet, {"depth": 3}, "ConvNet-3, width 128, instancenorm, avg-pool"),
    "convnet4": ArchSpec(ConvNet, {"depth": 4}, "ConvNet-4"),
    "convnet6": ArchSpec(ConvNet, {"depth": 6}, "ConvNet-6, for 128px ImageNet subsets"),
    "convnet3bn": ArchSpec(ConvNet, {"depth": 3, "norm": "batchnorm"}, "ConvNet-3 with batchnorm"),
    "alexnet": ArchSpec(AlexNet, {}, "AlexNet (DD variant, no norm)"),
    "vgg11": ArchSpec(VGG, {"norm": "instancenorm"}, "VGG-11 with instancenorm"),
    "vgg11bn": ArchSpec(VGG, {"norm": "batchnorm"}, "VGG-11 with batchnorm"),
    "resnet18": ArchSpec(ResNet18, {"norm": "instancenorm"}, "CIFAR ResNet-18, instancenorm"),
    "resnet18bn": ArchSpec(ResNet18, {"norm": "batchnorm"}, "CIFAR ResNet-18, batchnorm"),
}


def arch_names() -> list[str]:
    return list(ARCHS)


def check_arch(name: str) -> None:
    if name not in ARCHS:
        raise ConfigError(unknown_name("arch", name, ARCHS))


def build_net(
    arch: str,
    in_channels: int,
    num_classes: int,
    image_size: int,
    generator_seed: int | None = None,
    **overrides: Any,
) -> DDNet:
    """Build `arch` for inputs of (in_channels, image_size, image_size).

    With `generator_seed`, the initial weights are a function of that seed alone: the global RNG
    is forked for the build, so callers' random state is untouched.
    """
    check_arch(arch)
    spec = ARCHS[arch]
    kwargs = {**spec.kwargs, **overrides}
    if generator_seed is None:
        net = spec.cls(in_channels, num_classes, image_size, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(generator_seed)
            net = spec.cls(in_channels, num_classes, image_size, **kwargs)
    net.config = {"arch": arch, **net.config}
    return net


def build_from_config(config: dict[str, Any]) -> DDNet:
    """Rebuild a net from the `config` it recorded (as stored in snapshot metadata)."""
    config = dict(config)
    arch = config.pop("arch")
    check_arch(arch)
    base = ARCHS[arch].kwargs
    extra = {k: v for k, v in config.items() if k not in ("in_channels", "num_classes", "image_size")}
    return build_net(
        arch, config["in_channels"], config["num_classes"], config["image_size"],
        **{k: v for k, v in extra.items() if base.get(k) != v or k in base},
    )
