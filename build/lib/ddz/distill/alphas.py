"""The guidance weight alpha: the authors' published table, the rule ddz measured for other data
sets, and `--alpha VALUE | ARCH=VALUE` from the user.

Published (the paper's code, yaolu-zjut/DDInterpreter: the "weight of clom" images in docs/ and
the README's example commands): alpha by (data set, method, IPC) for a ConvNet pool, and one
alpha per architecture for CIFAR-10 pools at IPC 50. ddz takes the row of the nearest published
IPC (ties to the smaller). Outside the table (digits, MNIST, SVHN, PathMNIST, ImageNet subsets,
npz:/folder: sets) the value comes from the digits sweep in docs/distill.md
(bench/guidance_sweep.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ddz.errors import ConfigError

PUBLISHED_IPCS = (10, 50)

# (data set, method) -> {IPC: alpha}, one ConvNet architecture in the pool.
PUBLISHED: dict[tuple[str, str], dict[int, float]] = {
    ("fashionmnist", "dc"): {10: 100, 50: 100},
    ("fashionmnist", "dsa"): {10: 100, 50: 100},
    ("fashionmnist", "dm"): {10: 100, 50: 100},
    ("cifar10", "dc"): {10: 1000, 50: 5000},
    ("cifar10", "dsa"): {10: 5000, 50: 1000},
    ("cifar10", "dm"): {10: 2000, 50: 1000},
    ("cifar100", "dc"): {10: 10000, 50: 1000},
    ("cifar100", "dsa"): {10: 10000, 50: 10},
    ("cifar100", "dm"): {10: 500, 50: 1},
}

# CIFAR-10, IPC 50, a pool of several architectures: alpha per architecture and method.
PUBLISHED_PER_ARCH: dict[tuple[str, int], dict[str, dict[str, float]]] = {
    ("cifar10", 50): {
        "dc": {"convnet3": 5000, "vgg11": 5000, "resnet18": 5000, "alexnet": 100},
        "dsa": {"convnet3": 1000, "vgg11": 1000, "resnet18": 1000, "alexnet": 2000},
        "dm": {"convnet3": 1000, "vgg11": 1000, "resnet18": 1000, "alexnet": 1000},
    },
}

# Data sets outside the table: the weight the digits sweep supports (docs/distill.md, "Choosing
# alpha"). PTMs less accurate than the synthetic set cost DM -0.34 points at alpha 10 (within the
# run-to-run spread), -2.6 at 100 and -10.5 at 2000; well-trained ones gained nothing measurable at
# any weight. A default must be safe for PTMs of unknown quality: the largest weight that was.
MEASURED_RULE: dict[str, float] = {"dc": 10.0, "dsa": 10.0, "dm": 10.0}
RULE_SOURCE = "rule: data set outside the published table, digits sweep (docs/distill.md)"


@dataclass(frozen=True)
class AlphaChoice:
    """alpha for each architecture of a PTM pool and where it came from."""

    per_arch: dict[str, float]
    source: str

    @property
    def value(self) -> float | dict[str, float]:
        """One number when every architecture shares it, else {arch: alpha}."""
        values = set(self.per_arch.values())
        return next(iter(values)) if len(values) == 1 else dict(sorted(self.per_arch.items()))


def nearest_published_ipc(ipc: int) -> int:
    return min(PUBLISHED_IPCS, key=lambda row: (abs(row - ipc), row))


def default_alphas(dataset: str, method: str, ipc: int, archs: Iterable[str]) -> AlphaChoice:
    """The published cell for (data set, method, nearest IPC), per architecture where the authors
    published one; the measured rule for data sets outside the table."""
    archs = list(archs)
    cell = PUBLISHED.get((dataset, method))
    if cell is None:
        if method not in MEASURED_RULE:
            raise ConfigError(f"no default guidance weight for {method} (none published, none measured); "
                              "pass --alpha VALUE")
        return AlphaChoice({arch: MEASURED_RULE[method] for arch in archs}, RULE_SOURCE)
    row = nearest_published_ipc(ipc)
    per_arch = PUBLISHED_PER_ARCH.get((dataset, row), {}).get(method, {})
    values = {arch: float(per_arch.get(arch, cell[row])) for arch in archs}
    named = [arch for arch in archs if arch in per_arch]
    source = f"paper table: {dataset} {method} IPC {row}"
    if len(archs) > 1 and named:
        source += f", per-arch row for {', '.join(named)}"
    return AlphaChoice(values, source)


def parse_alpha_options(options: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """`--alpha VALUE` (every architecture) and `--alpha ARCH=VALUE` (repeatable) -> (value for
    all, {arch: value}); each value finite and >= 0."""
    everyone: float | None = None
    per_arch: dict[str, float] = {}
    for option in options:
        arch, sep, text = option.rpartition("=")
        value = _alpha_value(text.strip(), option)
        if not sep:
            if everyone is not None:
                raise ConfigError(
                    f"--alpha given twice without an architecture ({everyone:g} and {value:g}); "
                    "give one VALUE, or ARCH=VALUE per architecture"
                )
            everyone = value
        elif not arch.strip():
            raise ConfigError(f"--alpha {option!r}: give ARCH=VALUE, e.g. --alpha convnet3=1000")
        else:
            per_arch[arch.strip()] = value
    return everyone, per_arch


def _alpha_value(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"--alpha {option!r}: {text!r} is not a number; give VALUE or ARCH=VALUE, e.g. --alpha 1000"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"--alpha {option!r}: alpha must be a finite number >= 0, got {text}")
    return value


def resolve_alphas(
    dataset: str,
    method: str,
    ipc: int,
    archs: Iterable[str],
    alpha: float | None = None,
    arch_alphas: dict[str, float] | None = None,
) -> AlphaChoice:
    """The user's values where given (`alpha` for every architecture, `arch_alphas` per
    architecture, which wins), the default for the rest."""
    archs = list(dict.fromkeys(archs))
    arch_alphas = dict(arch_alphas or {})
    unknown = [arch for arch in arch_alphas if arch not in archs]
    if unknown:
        raise ConfigError(
            f"--alpha {unknown[0]}=...: no {unknown[0]} PTM in the pool (its architectures: "
            f"{', '.join(archs)}); name one of those"
        )
    for value in [alpha, *arch_alphas.values()]:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ConfigError(f"--alpha must be a finite number >= 0, got {value}")
    if alpha is None and not arch_alphas:
        return default_alphas(dataset, method, ipc, archs)
    by_default = [arch for arch in archs if arch not in arch_alphas and alpha is None]
    default = default_alphas(dataset, method, ipc, archs) if by_default else None
    values = {arch: arch_alphas[arch] if arch in arch_alphas else alpha if alpha is not None
              else default.per_arch[arch] for arch in archs}
    source = "user" if default is None else f"user; {', '.join(by_default)}: {default.source}"
    return AlphaChoice(values, source)
