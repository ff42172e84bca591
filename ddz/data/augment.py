"""Differentiable Siamese Augmentation (DSA), vectorised, with explicit random parameters.

Images come as a *grouped batch* (G, m, C, H, W): the m images of one group share one set of
sampled parameters. That one shape covers every use:

- siamese matching of one class (DC/DSA): G=1, the real batch and the synthetic batch are
  augmented with the same `DSAParams`;
- all classes at once (batched DM): G=K classes, each class with its own parameters, shared by
  its real and synthetic images;
- training a net on a synthetic set: G=N, m=1, one parameter set per image.

Parameters are drawn from explicit generators only: the transform token (which of the
augmentations a call applies) from a CPU generator, so choosing the code path never waits for the
device, and the magnitudes from a generator on the images' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddz.devices import host_values, to_device

TOKENS = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAConfig:
    """The DSA defaults of the reference code."""

    strategy: str = "color_crop_cutout_flip_scale_rotate"
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(t for t in self.strategy.split("_") if t)


@dataclass(frozen=True)
class DSAParams:
    """One token and one set of magnitudes per group, drawn in [0, 1) and mapped at apply time."""

    tokens: tuple[str, ...]  # (G,) host-side: which transform each group gets
    uniforms: torch.Tensor  # (G, 10) uniform draws on the device

    @property
    def groups(self) -> int:
        return len(self.tokens)

    def select(self, start: int, stop: int) -> DSAParams:
        """The parameter sets of groups start..stop-1."""
        return DSAParams(self.tokens[start:stop], self.uniforms[start:stop])


def sample_params(
    config: DSAConfig,
    groups: int,
    token_generator: torch.Generator,
    value_generator: torch.Generator,
    shared_token: bool = False,
) -> DSAParams:
    """Draw parameters for `groups` groups. `shared_token`: one transform for all (the reference's
    behaviour when training on a synthetic set: one token per batch, magnitudes per image)."""
    choices = config.tokens
    count = 1 if shared_token else groups
    picks = host_values(torch.randint(0, len(choices), (count,), generator=token_generator))
    tokens = tuple(choices[p] for p in picks) * (groups if shared_token else 1)
    uniforms = torch.rand(
        (groups, 10), generator=value_generator, device=value_generator.device
    )
    return DSAParams(tokens, uniforms)


def augment(x: torch.Tensor, params: DSAParams, config: DSAConfig) -> torch.Tensor:
    """Apply DSA to a grouped batch (G, m, C, H, W) or, with G == N, a plain batch (N, C, H, W)."""
    plain = x.dim() == 4
    grouped = x.unsqueeze(1) if plain else x
    if grouped.shape[0] != params.groups:
        raise ValueError(f"{grouped.shape[0]} groups of images but {params.groups} parameter sets")
    u = params.uniforms.to(x.device, x.dtype)
    out = grouped
    present = sorted(set(params.tokens))
    if len(present) == 1:
        out = _apply_token(present[0], grouped, u, config)
    else:
        out = grouped.clone()
        for token in present:
            sel = _device_index([g for g, t in enumerate(params.tokens) if t == token], x.device)
            out = out.index_copy(0, sel, _apply_token(token, grouped[sel], u[sel], config))
    return out.squeeze(1) if plain else out


def _device_index(indices: list[int], device: torch.device) -> torch.Tensor:
    """A host-side index list on `device`, without making the host wait for the device."""
    return to_device(torch.tensor(indices), device)


def _apply_token(token: str, x: torch.Tensor, u: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    if token == "color":
        return _contrast(_saturation(_brightness(x, u[:, 0], cfg), u[:, 1], cfg), u[:, 2], cfg)
    if token == "crop":
        return _crop(x, u[:, 3], u[:, 4], cfg)
    if token == "cutout":
        return _cutout(x, u[:, 5], u[:, 6], cfg)
    if token == "flip":
        return _flip(x, u[:, 7], cfg)
    if token == "scale":
        return _scale(x, u[:, 8], u[:, 9], cfg)
    if token == "rotate":
        return _rotate(x, u[:, 8], cfg)
    raise ValueError(f"unknown DSA token {token!r}; valid: {', '.join(TOKENS)}")


def _per_group(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1, 1)


def _brightness(x, u, cfg):
    return x + _per_group((u - 0.5) * cfg.brightness)


def _saturation(x, u, cfg):
    mean = x.mean(dim=2, keepdim=True)
    return (x - mean) * _per_group(u * cfg.saturation) + mean


def _contrast(x, u, cfg):
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    return (x - mean) * _per_group(u + cfg.contrast) + mean


def _flip(x, u, cfg):
    return torch.where(_per_group(u < cfg.prob_flip), x.flip(-1), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    g, m = x.shape[:2]
    flat = x.reshape(g * m, *x.shape[2:])
    theta = theta.repeat_interleave(m, dim=0)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=True)
    return F.grid_sample(flat, grid, align_corners=True).view_as(x)


def _scale(x, ux, uy, cfg):
    lo, hi = 1.0 / cfg.ratio_scale, cfg.ratio_scale
    sx, sy = ux * (hi - lo) + lo, uy * (hi - lo) + lo
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def _rotate(x, u, cfg):
    angle = (u - 0.5) * 2 * cfg.ratio_rotate / 180 * math.pi
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def _uniform_int(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Map u in [0, 1) to an integer in [low, high)."""
    return (u * (high - low)).floor().long().clamp_max(high - low - 1) + low


def _crop(x, ux, uy, cfg):
    """Shift by whole pixels (up to ratio_crop_pad of the size), filling with zeros."""
    h, w = x.shape[-2:]
    sh, sw = int(h * cfg.ratio_crop_pad + 0.5), int(w * cfg.ratio_crop_pad + 0.5)
    tx, ty = _uniform_int(ux, -sh, sh + 1), _uniform_int(uy, -sw, sw + 1)
    rows = (torch.arange(h, device=x.device)[None, :] + tx[:, None] + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, :] + ty[:, None] + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    g, m, c = x.shape[:3]
    rows = rows.view(g, 1, 1, h, 1).expand(g, m, c, h, w + 2)
    picked = padded.gather(3, rows)
    cols = cols.view(g, 1, 1, 1, w).expand(g, m, c, h, w)
    return picked.gather(4, cols)


def _cutout(x, ux, uy, cfg):
    """Zero a square of ratio_cutout of the size at a random centre."""
    h, w = x.shape[-2:]
    ch, cw = int(h * cfg.ratio_cutout + 0.5), int(w * cfg.ratio_cutout + 0.5)
    ox = _uniform_int(ux, 0, h + (1 - ch % 2)) - ch // 2
    oy = _uniform_int(uy, 0, w + (1 - cw % 2)) - cw // 2
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_rows = (r >= ox[:, None]) & (r < (ox + ch)[:, None])
    in_cols = (c >= oy[:, None]) & (c < (oy + cw)[:, None])
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep.view(-1, 1, 1, h, w).to(x.dtype)


class DSA:
    """Config + generators in one object: `dsa.siamese(groups)` then `dsa(x, params)`."""

    def __init__(self, config: DSAConfig, seed: int, device: str | torch.device = "cpu"):
        self.config = config
        self.token_generator = torch.Generator().manual_seed(seed)
        self.value_generator = torch.Generator(device=device).manual_seed(seed + 1)

    def siamese(self, groups: int = 1) -> DSAParams:
        """Parameters shared within each of `groups` groups (one token per group)."""
        return sample_params(self.config, groups, self.token_generator, self.value_generator)

    def per_sample(self, n: int) -> DSAParams:
        """One token for the call, magnitudes per image: the reference's training augmentation."""
        return sample_params(
            self.config, n, self.token_generator, self.value_generator, shared_token=True
        )

    def __call__(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        return augment(x, params, self.config)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "token": self.token_generator.get_state(),
            "value": self.value_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.token_generator.set_state(state["token"])
        self.value_generator.set_state(state["value"])
