"""Normalisation and pooling layers by the names the DD reference code uses."""

from __future__ import annotations

from torch import nn

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
POOLINGS = ("avgpooling", "maxpooling", "none")


def norm_layer(kind: str, channels: int, size: int) -> nn.Module:
    if kind == "instancenorm":  # instance norm with affine weights, as GroupNorm(C, C)
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, size, size], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


def pool_layer(kind: str) -> nn.Module:
    if kind == "avgpooling":
        return nn.AvgPool2d(kernel_size=2, stride=2)
    if kind == "maxpooling":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling {kind!r}; valid: {', '.join(POOLINGS)}")


def first_conv_padding(in_channels: int, image_size: int, default: int) -> int:
    """28x28 grey images (MNIST family) get 2 extra pixels of padding per side (-> 32x32)."""
    return default + 2 if in_channels == 1 and image_size == 28 else default
