"""RDED's evaluation augmentation (LINs-lab/RDED validation/main.py), batched and drawn from an
explicit generator: the patches of each stitched image shuffled, then a random resized crop,
then a horizontal flip.

1. **Patch shuffle** (its `ShufflePatches(factor)`): each image's `factor` column strips are put
   in a random order, then its `factor` row strips (one permutation per image and axis). Pixels
   past `factor * (side // factor)` stay where they are.
2. **Random resized crop** (torchvision's `RandomResizedCrop(size, scale=(1/factor, max_scale))`
   with its ratio (3/4, 4/3)): an area fraction and a log-uniform aspect ratio per image, the
   first of 10 draws that fits (as torchvision tries 10), else the whole image; the box resized
   back to the full side.
3. **Flip**: left-right with probability 1/2.

A crop covers at least 1/factor of the stitched image, so it centres on about one region: the
teacher's label of the augmented batch (the soft protocol's "regenerate" mode) is RDED's
region-level label. With factor 1 the shuffle does nothing and the crop spans 1 to 100 % of the
image. Crop, resize and flip are one affine `grid_sample` per batch, equal to resizing each cut-out
box bilinearly (`F.interpolate`, no antialiasing: torchvision antialiases when it shrinks, and a
crop of at most the whole image is only ever enlarged here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddz.errors import ConfigError

TRIES = 10  # torchvision RandomResizedCrop.get_params
RATIO = (3 / 4, 4 / 3)  # torchvision's default, which RDED keeps


@dataclass(frozen=True)
class RegionCropConfig:
    factor: int = 1  # RDED's --factor: patches per side of a stitched image
    max_scale: float = 1.0  # RDED's --max-scale-crops

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ConfigError(f"--crop-factor must be at least 1, got {self.factor}")
        if not 1 / self.factor <= self.max_scale <= 1:
            raise ConfigError(f"the largest crop must lie in [1/factor, 1], got {self.max_scale}")


def shuffle_patches(x: torch.Tensor, factor: int, generator: torch.Generator) -> torch.Tensor:
    """x (N, C, H, W) with each image's column strips, then its row strips, in a random order."""
    if factor == 1:
        return x
    for dim in (3, 2):
        x = x.gather(dim, _strip_order(x, dim, factor, generator))
    return x


def _strip_order(x: torch.Tensor, dim: int, factor: int, generator: torch.Generator) -> torch.Tensor:
    n, side = len(x), x.shape[dim]
    width = side // factor
    order = torch.rand(n, factor, generator=generator, device=x.device).argsort(dim=1)
    within = torch.arange(width, device=x.device)
    index = (order[:, :, None] * width + within).flatten(1)  # (N, factor * width)
    rest = torch.arange(factor * width, side, device=x.device).expand(n, -1)
    index = torch.cat([index, rest], dim=1)
    shape = [n, 1, 1, 1]
    shape[dim] = side
    return index.view(shape).expand(x.shape)


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], generator: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 4) integer boxes (top, left, h, w) drawn as torchvision's RandomResizedCrop draws them."""
    area = height * width
    fraction = torch.empty(n, TRIES, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, TRIES, device=device).uniform_(math.log(RATIO[0]), math.log(RATIO[1]),
                                                              generator=generator)
    ratio = log_ratio.exp()
    w = (area * fraction * ratio).sqrt().round()
    h = (area * fraction / ratio).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1)  # the first draw that fits (0 when none does)
    pick = torch.arange(n, device=device)
    h, w = h[pick, first], w[pick, first]
    none_fits = ~fits.any(dim=1)
    h = torch.where(none_fits, torch.full_like(h, height), h)
    w = torch.where(none_fits, torch.full_like(w, width), w)
    u = torch.rand(n, 2, generator=generator, device=device)
    top = (u[:, 0] * (height - h + 1)).floor()
    left = (u[:, 1] * (width - w + 1)).floor()
    return torch.stack([top, left, h, w], dim=1)


def region_crop(x: torch.Tensor, config: RegionCropConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch (N, C, H, W) as RDED's evaluation does; every draw from `generator`."""
    if len(x) == 0:
        return x
    n, _, height, width = x.shape
    x = shuffle_patches(x, config.factor, generator)
    top, left, h, w = crop_boxes(n, height, width, (1 / config.factor, config.max_scale), generator,
                                 x.device).unbind(1)
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    # the output grid (align_corners False) mapped onto the box: x_in = centre + half-size * x_out
    sx = (w / width) * torch.where(flip, -1.0, 1.0)
    sy = h / height
    tx = (2 * left + w) / width - 1
    ty = (2 * top + h) / height - 1
    zeros = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zeros, tx], 1), torch.stack([zeros, sy, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # clamped to the box's outer pixel centres: the crop's own edge is repeated, as resizing the
    # cut-out crop does, instead of reading the pixels beyond it
    low = torch.stack([(2 * left + 1) / width, (2 * top + 1) / height], 1) - 1
    high = torch.stack([(2 * (left + w) - 1) / width, (2 * (top + h) - 1) / height], 1) - 1
    grid = torch.maximum(torch.minimum(grid, high[:, None, None].to(x.dtype)), low[:, None, None].to(x.dtype))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
