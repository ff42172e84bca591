"""RDED (Sun et al., CVPR 2024; LINs-lab/RDED): real patches chosen by a teacher, stitched.

Per class: `candidates` random real images, `crops` random square crops of each (RandomResizedCrop
with ratio 1 and scale (min_scale, 1), resized to side // factor), each crop scored by the
teacher's cross-entropy of the true class (the crop padded with zeros to the full side, which in
the normalised space is the data set's mean colour, as the reference pads). Each image keeps its
best crop; the IPC x factor^2 lowest-scoring images are kept, best first; synthetic image i takes
patch k = i + IPC x r (r = 0 .. factor^2 - 1, row-major regions) (synthesize/utils.py
selector, mix_images). The images are relabelled by the teacher at evaluation (soft labels,
docs/teachers.md).

The reference draws crops on the CPU with torchvision (unseeded, antialiased resize); here every
draw comes from a generator per (seed, class), so a class's patches do not depend on which rank
selects them, and the crops are one batched bilinear `grid_sample` (no antialiasing; at RDED's
small-image defaults, factor 1, crops are only ever enlarged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ddz.data.base import ImageDataset
from ddz.distill.labels import Teacher
from ddz.distill.methods.base import IterationRNG, Stateless, SynState
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError
from ddz.seeding import generator

if TYPE_CHECKING:
    from ddz.distill.methods.config import DistillConfig


def region_sides(side: int, factor: int) -> list[int]:
    """The sides of the factor regions along one axis: side // factor each, the first
    side % factor of them one pixel longer (mix_images)."""
    base, extra = divmod(side, factor)
    return [base + 1 if r < extra else base for r in range(factor)]


def region_boxes(side: int, factor: int) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of each region, row-major."""
    sides = region_sides(side, factor)
    starts = [sum(sides[:r]) for r in range(factor)]
    return [(starts[r], starts[c], sides[r], sides[c]) for r in range(factor) for c in range(factor)]


def stitch(patches: torch.Tensor, factor: int, side: int) -> torch.Tensor:
    """(factor^2 x n, C, p, p) patches -> n images of `side`: image i holds patch i + n x k in
    region k (row-major); a patch is resized (nearest) when its region is not p x p."""
    n = len(patches) // factor**2
    images = patches.new_zeros((n, patches.shape[1], side, side))
    for k, (top, left, h, w) in enumerate(region_boxes(side, factor)):
        part = patches[k * n : (k + 1) * n]
        if part.shape[-2:] != (h, w):
            part = F.interpolate(part, size=(h, w), mode="nearest")
        images[:, :, top : top + h, left : left + w] = part
    return images


def regions(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(n, C, S, S) -> (n, factor^2, C, S, S): each stitched region cut out and resized
    (bilinear) to the full side, the view in which a teacher labels one region."""
    side = images.shape[-1]
    views = [F.interpolate(images[:, :, top : top + h, left : left + w], size=(side, side),
                           mode="bilinear", align_corners=False)
             for top, left, h, w in region_boxes(side, factor)]
    return torch.stack(views, 1)


def region_logits(teacher: Teacher, images: torch.Tensor, factor: int) -> torch.Tensor:
    """The teacher's logits of each region of each image: (n, factor^2, K)."""
    return teacher.logits(regions(images, factor))


def random_crops(images: torch.Tensor, crops: int, out: int, min_scale: float,
                 gen: torch.Generator) -> torch.Tensor:
    """(m, C, S, S) -> (crops, m, C, out, out): square crops of area uniform in
    [min_scale, 1] x S^2 at a uniform position, resized (bilinear) to out x out."""
    m, side = len(images), images.shape[-1]
    device = images.device
    area = torch.empty((crops, m), device=device).uniform_(min_scale, 1.0, generator=gen) * side**2
    h = area.sqrt().round().clamp(1, side)
    top = (torch.rand((crops, m), device=device, generator=gen) * (side - h + 1)).floor()
    left = (torch.rand((crops, m), device=device, generator=gen) * (side - h + 1)).floor()
    # output pixel u samples input pixel left + (u + 0.5) h / out - 0.5 (align_corners=False)
    theta = torch.zeros((crops, m, 2, 3), device=device)
    theta[..., 0, 0] = theta[..., 1, 1] = h / side
    theta[..., 0, 2] = (2 * left + h) / side - 1
    theta[..., 1, 2] = (2 * top + h) / side - 1
    batch = images.unsqueeze(0).expand(crops, *images.shape).reshape(crops * m, *images.shape[1:])
    grid = F.affine_grid(theta.view(-1, 2, 3), [crops * m, images.shape[1], out, out], align_corners=False)
    sampled = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.view(crops, m, *sampled.shape[1:])


def pad_to(patches: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-pad patches to side x side, centred (the reference's pad: the odd pixel bottom/right)."""
    gap = side - patches.shape[-1]
    return F.pad(patches, (gap // 2, gap - gap // 2, gap // 2, gap - gap // 2))


def true_class_scores(teacher: Teacher, patches: torch.Tensor, label: int, side: int,
                      chunk: int = 512) -> torch.Tensor:
    """The teacher's cross-entropy of class `label` for each patch (lower: more typical)."""
    flat = patches.reshape(-1, *patches.shape[-3:])
    scores = []
    for start in range(0, len(flat), chunk):
        logits = teacher.logits(pad_to(flat[start : start + chunk], side))
        scores.append(-F.log_softmax(logits, dim=1)[:, label])
    return torch.cat(scores).view(patches.shape[:-3])


def select_patches(scores: torch.Tensor, patches: torch.Tensor,
                   keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (crops, m), patches (crops, m, C, p, p): each image's best crop, then the `keep`
    best images, best first. Returns (patches (keep, C, p, p), their scores)."""
    best, which = scores.min(0)
    order = torch.argsort(best, stable=True)[:keep]
    return patches[which[order], order], best[order]


class RDED(Stateless):
    """One step selects and stitches every class this rank owns; nothing is learnt."""

    name = "rded"

    def __init__(self, config: DistillConfig, dataset: ImageDataset, teacher: Teacher,
                 shard: ClassShard | None = None):
        self.config, self.dataset, self.teacher = config, dataset, teacher
        self.shard = shard or ClassShard(dataset.num_classes, config.ipc)
        self.settings = config.rded
        assert self.settings.factor is not None  # resolved
        keep = config.ipc * self.settings.factor**2
        smallest = min(dataset.class_counts())
        if keep > min(smallest, self.settings.candidates):
            raise ConfigError(
                f"RDED keeps IPC x factor^2 = {keep} patches per class, one per candidate image, but has "
                f"{min(smallest, self.settings.candidates)} candidates (--candidates, smallest class "
                f"{smallest}); lower --ipc or --factor, or raise --candidates")

    def class_images(self, label: int, seed: int) -> torch.Tensor:
        """The class's synthetic images: IPC stitched images of its best patches."""
        settings, data, ipc = self.settings, self.dataset, self.config.ipc
        factor, side = settings.factor, data.image_size
        gen = generator(seed, "rded", label, device=data.device)
        count = min(settings.candidates, data.class_counts()[label])
        real = data.sample_all_classes(count, gen, range(label, label + 1))[0]
        patches = random_crops(real, settings.crops, side // factor, settings.min_scale, gen)
        scores = true_class_scores(self.teacher, patches, label, side)
        chosen, _ = select_patches(scores, patches, ipc * factor**2)
        return stitch(chosen, factor, side)

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        with torch.no_grad():
            images = [self.class_images(label, rng.seed) for label in self.shard.classes]
            state.images.copy_(torch.cat(images))
        return torch.zeros((), device=state.images.device)
