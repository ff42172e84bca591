"""Every ddz architecture as a timm model: after `register_with_timm()`,
`timm.create_model("ddz_<arch>", num_classes=..., in_chans=..., img_size=...)` builds it.

Registration is explicit because importing timm (and the torchvision it imports) costs a
process about as much as importing torch, and ddz itself never needs timm: every CLI command,
rank and worker would pay it. Importing ddz.nets after timm registers at once.
"""

from __future__ import annotations

from typing import Any

from ddz.errors import ConfigError
from ddz.nets.factory import ARCHS, build_net
from ddz.nets.models import DDNet


def _entrypoint(arch: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> DDNet:
        if pretrained:
            raise ConfigError(
                f"ddz_{arch} has no timm pretrained weights; load a zoo snapshot with ddz.zoo instead"
            )
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return build_net(
            arch,
            in_channels=kwargs.pop("in_chans", 3),
            num_classes=kwargs.pop("num_classes", 10),
            image_size=kwargs.pop("img_size", 32),
            **kwargs,
        )

    entrypoint.__name__ = entrypoint.__qualname__ = f"ddz_{arch}"
    entrypoint.__module__ = __name__
    return entrypoint


def register_with_timm() -> list[str]:
    """Register `ddz_<arch>` for every arch in timm (idempotent); the names. timm is optional
    for the rest of ddz: without it this raises ConfigError."""
    try:
        from timm.models import is_model, register_model
    except ImportError as missing:
        raise ConfigError("timm is not installed: pip install timm to build ddz nets through it") from missing
    for arch in ARCHS:
        if not is_model(f"ddz_{arch}"):
            register_model(_entrypoint(arch))
    return [f"ddz_{arch}" for arch in ARCHS]
