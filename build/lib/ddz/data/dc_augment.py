"""The DC method's evaluation augmentation (reference: DatasetCondensation utils.py `augment` and
`get_daparam`), vectorised and drawn from an explicit generator.

Each image gets ONE transform, chosen uniformly from the strategy's tokens:
- crop: pad by 4 pixels with the batch's per-channel mean, take an HxW window at a random
  offset in [0, 8) on each axis (so shifts of -4..+3);
- scale: nearest-neighbour resize to (int(u1 * H), int(u2 * H)) with u1, u2 ~ U(0.8, 1.2),
  centred on a zero canvas, centre HxW crop;
- rotate: an angle in -45..44 degrees about the centre, outside filled with the mean of the
  channel means (bilinear; the reference uses scipy's cubic spline rotation);
- noise: + 0.001 * N(0, 1).

`strategy_for` is the reference's rule for which strategy an evaluation uses: crop_scale_rotate
for MNIST, crop_noise for a BatchNorm ConvNet, none (no augmentation, 300 epochs) otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TOKENS = ("crop", "scale", "rotate", "noise")


@dataclass(frozen=True)
class DCAugConfig:
    strategy: str = "none"
    crop: int = 4
    scale: float = 0.2
    rotate: int = 45
    noise: float = 0.001

    @property
    def tokens(self) -> tuple[str, ...]:
        return () if self.strategy == "none" else tuple(t for t in self.strategy.split("_") if t)


def strategy_for(dataset: str, eval_arch: str) -> str:
    """The reference's get_daparam: which DC augmentation an evaluation of `eval_arch` uses."""
    if eval_arch == "convnet3bn":
        return "crop_noise"
    if dataset == "mnist":
        return "crop_scale_rotate"
    return "none"


def dc_augment(x: torch.Tensor, config: DCAugConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch (N, C, H, W); every draw comes from `generator` (on x's device)."""
    tokens = config.tokens
    if not tokens or len(x) == 0:
        return x
    n, c, h, w = x.shape
    choice = torch.randint(len(tokens), (n,), generator=generator, device=x.device)
    channel_mean = x.mean(dim=(0, 2, 3))
    out = x.clone()
    for index, token in enumerate(tokens):
        members = (choice == index).nonzero().flatten()
        if len(members) == 0:
            continue
        part = x[members]
        if token == "crop":
            part = _crop(part, channel_mean, config.crop, generator)
        elif token == "scale":
            part = _scale(part, config.scale, generator)
        elif token == "rotate":
            part = _rotate(part, float(channel_mean.mean()), config.rotate, generator)
        elif token == "noise":
            noise = torch.randn(part.shape, generator=generator, device=x.device)
            part = part + config.noise * noise
        else:
            raise ValueError(f"unknown DC augmentation {token!r}; valid: {', '.join(TOKENS)}")
        out[members] = part
    return out


def _crop(x: torch.Tensor, channel_mean: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = x.shape
    canvas = channel_mean.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    canvas[:, :, pad : pad + h, pad : pad + w] = x
    top = torch.randint(2 * pad, (n,), generator=gen, device=x.device)
    left = torch.randint(2 * pad, (n,), generator=gen, device=x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return canvas[batch, chans, rows, cols]


def _scale(x: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Per image: nearest resize to (sh, sw), placed centred on a zero canvas of side
    max(sh, sw, H, W), then the centre HxW window; computed as one gather."""
    n, c, h, w = x.shape
    u = torch.rand((n, 2), generator=gen, device=x.device) * 2 * ratio + (1 - ratio)
    sizes = (u * h).floor().long().clamp(min=1)  # the reference scales both axes by H
    sh, sw = sizes[:, 0], sizes[:, 1]
    side = torch.maximum(torch.maximum(sh, sw), torch.tensor(max(h, w), device=x.device))
    # Output pixel y sits at canvas row y + (side - H) // 2, i.e. row y + (side-H)//2 - (side-sh)//2
    # of the resized image, which nearest resizing reads from source row floor(row * H / sh).
    ys = torch.arange(h, device=x.device)[None, :] + ((side - h) // 2 - (side - sh) // 2)[:, None]
    xs = torch.arange(w, device=x.device)[None, :] + ((side - w) // 2 - (side - sw) // 2)[:, None]
    inside_y = (ys >= 0) & (ys < sh[:, None])
    inside_x = (xs >= 0) & (xs < sw[:, None])
    src_y = (ys.clamp(min=0) * h // sh[:, None]).clamp(max=h - 1)
    src_x = (xs.clamp(min=0) * w // sw[:, None]).clamp(max=w - 1)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    out = x[batch, chans, src_y[:, None, :, None], src_x[:, None, None, :]]
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
    return out * mask


def _rotate(x: torch.Tensor, fill: float, max_degrees: int, gen: torch.Generator) -> torch.Tensor:
    n = len(x)
    # numpy's randint(-45, 45) as the reference: -45..44 (and 0 for a limit of 0)
    degrees = torch.randint(-max_degrees, max(max_degrees, 1), (n,), generator=gen, device=x.device)
    angle = degrees.to(x.dtype) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
