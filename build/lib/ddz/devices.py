"""One device resolver: `auto` picks CUDA when visible; an unavailable CUDA device is one clear line."""

from __future__ import annotations

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
