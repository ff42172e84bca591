"""The DD architectures (ConvNet-D, AlexNet, VGG-11, ResNet-18) behind one factory."""

import sys

from ddz.nets.factory import ARCHS, arch_names, build_from_config, build_net, check_arch
from ddz.nets.models import DDNet
from ddz.nets.timm_models import register_with_timm

__all__ = [
    "ARCHS", "DDNet", "arch_names", "build_from_config", "build_net", "check_arch", "register_with_timm",
]

if "timm" in sys.modules:  # timm is already paid for: register now, as register_with_timm() would
    register_with_timm()
