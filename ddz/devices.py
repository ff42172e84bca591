"""One device resolver: `auto` picks CUDA when visible; an unavailable CUDA device is one clear line."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddz.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, option: str = "--device") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise ConfigError(f"unknown {option} {name!r}; valid: {', '.join(DEVICES)} (or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{option} {name} was asked for but no CUDA device is visible; use {option} cpu")
    return name


def to_device(tensor: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """A host tensor on `device` without making the host wait for the device: to a GPU through
    pinned memory and a non-blocking copy (a plain host-to-GPU copy waits for the copy to end,
    a sync that torch's sync debug mode reports). On CPU, `tensor` itself."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def module_to_device(module: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """`module` moved to `device` as `to_device` moves a tensor (a net built on the host, e.g. from
    a CPU generator's initial weights, reaches a GPU without a sync)."""
    return module._apply(lambda t: to_device(t, device))


def host_values(tensor: torch.Tensor) -> list:
    """The values of a host tensor (a draw from a CPU generator) as Python numbers. Never a device
    sync: a tensor on another device is refused (ValueError), so the loops that must not wait
    for a GPU read their host-side choices through here and nowhere else."""
    if tensor.device.type != "cpu":
        raise ValueError(f"host_values reads host tensors only, not one on {tensor.device}")
    return tensor.tolist()


# --amp: the autocast precision of the nets' forwards ("none": float32 throughout).
AMP = {"none": None, "bf16": torch.bfloat16}


def amp_dtype(name: str, option: str = "--amp") -> torch.dtype | None:
    if name not in AMP:
        raise ConfigError(f"unknown {option} {name!r}; valid: {', '.join(AMP)}")
    return AMP[name]


def autocast_forward(forward: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype | None
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """`forward` run under torch.autocast(dtype) on its input's device, its output back in
    float32, so that losses, gradient distances and optimiser steps stay float32 (autocast's
    weight cache is off: it would hold stale casts across optimiser steps and CUDA graph capture
    forbids it). `forward` itself when dtype is None."""
    if dtype is None:
        return forward

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=dtype, cache_enabled=False):
            out = forward(x)
        return out.float()

    return run
