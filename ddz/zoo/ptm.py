"""A loaded pre-trained model: the one face that guidance sees, whatever its source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddz.errors import IntegrityError
from ddz.io import WatchedFile


@dataclass
class PTM:
    """A frozen model with `embed` and `forward`, and the input statistics it was trained with.

    `net` maps normalised images of (in_channels, image_size, image_size) to logits over
    `classes`; `net.embed` gives flattened features. Zoo snapshots and external models
    (torchvision, open_clip) are all wrapped this way.
    """

    name: str
    sha256: str
    net: nn.Module
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    in_channels: int
    arch: str | None = None  # the zoo arch (None for external models)
    zca: bool = False  # trained on ZCA-whitened images (the MTT reference's --zca)
    file: WatchedFile | None = None  # the verified file it came from (None: built, not read)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def freeze(self, device: str | torch.device) -> PTM:
        self.net.to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        return self

    def adapt(
        self, x: torch.Tensor, source_mean: tuple[float, ...], source_std: tuple[float, ...]
    ) -> torch.Tensor:
        """Re-express images normalised with (source_mean, source_std) in this PTM's input space:
        undo the source statistics, apply the PTM's own, and resize to its input size."""
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} expects {self.in_channels}-channel images, got {x.shape[1]}"
            )
        if tuple(source_mean) != tuple(self.mean) or tuple(source_std) != tuple(self.std):
            src_m = torch.tensor(source_mean, device=x.device).view(1, -1, 1, 1)
            src_s = torch.tensor(source_std, device=x.device).view(1, -1, 1, 1)
            dst_m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            dst_s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            x = (x * src_s + src_m - dst_m) / dst_s
        if x.shape[-1] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return x


def file_problem(ptms: Sequence[PTM]) -> IntegrityError | None:
    """None while every PTM's file still holds the bytes that were loaded, else the error naming
    the first that does not (or is gone) and its expected sha256. A run uses the verified weights
    in memory either way; a changed file would make its record, and a resumed run, disagree with
    the zoo."""
    for ptm in ptms:
        if ptm.file is not None:
            try:
                ptm.file.check()
            except IntegrityError as error:
                return error
    return None
