"""The DD architectures, as in the reference code, sized for the data set's resolution.

Every net has `embed(x)` (flattened features before the classifier) and `forward(x)`, and keeps
the arguments it was built with in `self.config`, so that a saved state dict can be rebuilt.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ddz.errors import ConfigError
from ddz.nets.layers import first_conv_padding, norm_layer, pool_layer


class DDNet(nn.Module):
    """One interface for every architecture: embed -> classifier."""

    config: dict[str, Any]
    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # each architecture defines its feature extractor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    @property
    def num_features(self) -> int:
        return self.classifier.in_features


class ConvNet(DDNet):
    """depth x [conv3x3(width) -> norm -> ReLU -> pool] -> Linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int = 32,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        pooling: str = "avgpooling",
    ):
        super().__init__()
        self.config = dict(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size,
            width=width, depth=depth, norm=norm, pooling=pooling,
        )
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for d in range(depth):
            pad = first_conv_padding(in_channels, image_size, 1) if d == 0 else 1
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=pad))
            size += 2 * (pad - 1)
            layers += [norm_layer(norm, width, size), nn.ReLU(inplace=True)]
            if pooling != "none":
                if size < 2:
                    raise ConfigError(
                        f"ConvNet of depth {depth} pools {image_size}px images below 1 pixel; "
                        f"use a shallower ConvNet (depth <= {d}) or larger images"
                    )
                layers.append(pool_layer(pooling))
                size //= 2
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


class AlexNet(DDNet):
    """The DD AlexNet: five convs (no norm), three max-pools, one linear layer."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 32):
        super().__init__()
        self.config = dict(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        pad = first_conv_padding(in_channels, image_size, 2)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 128, kernel_size=5, padding=pad), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(192, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        size = (image_size + 2 * (pad - 2)) // 8
        self.classifier = nn.Linear(192 * size * size, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(DDNet):
    """VGG-11 with instancenorm (or batchnorm for vgg11bn) after every conv.

    A max-pool that would shrink the map below 1 pixel (inputs under 32px) is left out.
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int = 32, norm: str = "instancenorm"
    ):
        super().__init__()
        self.config = dict(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm
        )
        layers: list[nn.Module] = []
        channels = in_channels
        size = image_size
        for i, item in enumerate(VGG11_LAYOUT):
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2, 2))
                    size //= 2
                continue
            pad = first_conv_padding(in_channels, image_size, 1) if i == 0 else 1
            size += 2 * (pad - 1)
            layers += [
                nn.Conv2d(channels, item, kernel_size=3, padding=pad),
                norm_layer(norm, item, size),
                nn.ReLU(inplace=True),
            ]
            channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * size * size, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, size: int):
        super().__init__()
        out_size = (size + stride - 1) // stride
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, planes, out_size)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes, out_size)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                norm_layer(norm, planes, out_size),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(DDNet):
    """CIFAR ResNet-18: 3x3 stem (stride 1, no max-pool), BasicBlock x [2,2,2,2], global avg-pool."""

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int = 32, norm: str = "instancenorm"
    ):
        super().__init__()
        self.config = dict(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm
        )
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 64, image_size)
        blocks: list[nn.Module] = []
        in_planes, size = 64, image_size
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for s in (stride, 1):
                blocks.append(BasicBlock(in_planes, planes, s, norm, size))
                size = (size + s - 1) // s
                in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
