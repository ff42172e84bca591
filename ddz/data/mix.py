"""MixUp and CutMix, the soft-label protocol's batch augmentations (Zhang et al. 2018; Yun et
al. 2019), seeded and batched like DSA.

A `Mixer` draws, per batch, a permutation of the batch and lambda ~ Beta(beta, beta) from its
own CPU generator (so drawing never waits for a GPU): MixUp blends every image with its partner
(lambda x + (1 - lambda) x[perm]); CutMix pastes a box of the partner, of area (1 - lambda) of
the image with a uniformly drawn centre, clipped at the border, and lambda becomes the exact
share of the image that stayed. Targets mix with the same lambda (`mix_targets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ddz.errors import ConfigError, unknown_name

MIXES = ("none", "cutmix", "mixup")


@dataclass(frozen=True)
class MixConfig:
    kind: str = "none"
    beta: float = 1.0  # DD-Ranking's CutMix default {'beta': 1.0}; RDED's CutMix beta 1

    def __post_init__(self) -> None:
        if self.kind not in MIXES:
            raise ConfigError(unknown_name("--mix", self.kind, MIXES))
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"--mix-beta must be a positive number, got {self.beta}")


@dataclass(frozen=True)
class Mixed:
    images: torch.Tensor
    perm: torch.Tensor  # (b,) partner of each image
    lam: float  # the share of each image that is its own


class Mixer:
    """One stream of mixing draws (numpy's generator: torch has no seeded Beta sampler)."""

    def __init__(self, config: MixConfig, seed: int):
        self.config = config
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor) -> Mixed:
        """Mix a batch (b, C, H, W)."""
        b, _, h, w = x.shape
        perm = torch.from_numpy(self.rng.permutation(b)).to(x.device)
        lam = float(self.rng.beta(self.config.beta, self.config.beta))
        if self.config.kind == "mixup":
            return Mixed(lam * x + (1 - lam) * x[perm], perm, lam)
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        mixed = x.clone()
        mixed[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        return Mixed(mixed, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w))


def mix_targets(targets: torch.Tensor, mixed: Mixed) -> torch.Tensor:
    """Targets (b, ...) float, mixed with the images' lambda."""
    return mixed.lam * targets + (1 - mixed.lam) * targets[mixed.perm]
