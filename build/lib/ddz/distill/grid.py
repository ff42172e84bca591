"""A PNG of a synthetic set: one row per class, IPC columns, de-normalised to [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ddz.io import atomic_write

MIN_CELL = 32  # small images (digits: 16px) are enlarged by whole pixels up to this size
PAD = 1


def grid_array(
    images: torch.Tensor, ipc: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """uint8 (rows*H, cols*W[, 3]) array: class k in row k, its IPC images left to right."""
    x = images.detach().float().cpu()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = (x * s + m).clamp(0, 1)
    scale = max(1, -(-MIN_CELL // x.shape[-1]))
    if scale > 1:
        x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    n, c, h, w = x.shape
    rows = n // ipc
    canvas = torch.ones(c, rows * (h + PAD) + PAD, ipc * (w + PAD) + PAD)
    for i in range(n):
        r, col = divmod(i, ipc)
        top, left = PAD + r * (h + PAD), PAD + col * (w + PAD)
        canvas[:, top : top + h, left : left + w] = x[i]
    if c != 3:  # grey (or an unusual channel count, shown as the channel mean)
        canvas = canvas.mean(0, keepdim=True)
    array = (canvas * 255).round().to(torch.uint8).numpy()
    return array[0] if c != 3 else np.ascontiguousarray(array.transpose(1, 2, 0))


def write_grid(
    path: str | Path, images: torch.Tensor, ipc: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Path:
    array = grid_array(images, ipc, mean, std)
    image = Image.fromarray(array)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
