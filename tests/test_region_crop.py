"""RDED's evaluation augmentation (`--augment rded`): the patch shuffle moves whole strips, the
crop boxes follow torchvision's rules, and crop + resize + flip equals cutting the box out and
resizing it; in an evaluation it is seeded and batched like the others."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddz.data.region_crop import RATIO, RegionCropConfig, crop_boxes, region_crop, shuffle_patches
from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real
from ddz.errors import ConfigError


def numbered(n: int, side: int) -> torch.Tensor:
    return torch.arange(n * side * side, dtype=torch.float32).view(n, 1, side, side)


def blocks(image: torch.Tensor, factor: int) -> list[tuple[float, ...]]:
    side = image.shape[-1] // factor
    return sorted(tuple(image[..., r * side:(r + 1) * side, c * side:(c + 1) * side].flatten().tolist())
                  for r in range(factor) for c in range(factor))


def test_the_patch_shuffle_moves_whole_regions_and_each_image_draws_its_own_order():
    x = numbered(64, 8)
    shuffled = shuffle_patches(x, 2, torch.Generator().manual_seed(0))
    assert all(blocks(a, 2) == blocks(b, 2) for a, b in zip(shuffled, x, strict=True))
    moved = [not torch.equal(a, b) for a, b in zip(shuffled, x, strict=True)]
    assert 0 < sum(moved) < 64  # a random order per image: some stay, most move (3 in 4 expected)
    assert torch.equal(shuffle_patches(x, 1, torch.Generator()), x)


def test_pixels_past_the_last_whole_strip_stay():
    x = numbered(16, 5)  # strips of 2 pixels; column and row 4 are left over
    shuffled = shuffle_patches(x, 2, torch.Generator().manual_seed(1))
    assert torch.equal(shuffled[..., 4, :].sort(-1).values, x[..., 4, :].sort(-1).values)
    assert torch.equal(shuffled[..., :, 4].sort(-1).values, x[..., :, 4].sort(-1).values)


def test_crop_boxes_keep_torchvisions_area_ratio_and_bounds():
    boxes = crop_boxes(4000, 32, 32, (0.5, 1.0), torch.Generator().manual_seed(2))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    fraction, ratio = h * w / 1024, w / h
    rounding = 2 * 33 / 1024  # h and w are rounded to whole pixels
    assert fraction.min() >= 0.5 - rounding and fraction.max() <= 1.0
    whole = (h == 32) & (w == 32)
    assert (ratio[~whole] >= RATIO[0] - 0.07).all() and (ratio[~whole] <= RATIO[1] + 0.07).all()
    assert 0.7 < fraction.mean() < 0.8  # about the middle of (0.5, 1), less what does not fit
    assert math.isclose(float(torch.log(ratio[~whole]).mean()), 0.0, abs_tol=0.03)


def test_crop_resize_and_flip_equal_cutting_the_box_out_and_resizing_it():
    x = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    config = RegionCropConfig(factor=1)
    out = region_crop(x, config, torch.Generator().manual_seed(4))
    replay = torch.Generator().manual_seed(4)  # factor 1 draws no shuffle: the boxes come first
    boxes = crop_boxes(12, 16, 16, (1 / config.factor, config.max_scale), replay)
    flips = torch.rand(12, generator=replay) < 0.5
    for image, (top, left, h, w), flip, got in zip(x, boxes.long().tolist(), flips, out, strict=True):
        expected = F.interpolate(image[None, :, top:top + h, left:left + w], size=(16, 16), mode="bilinear",
                                 align_corners=False)[0]
        if flip:
            expected = expected.flip(-1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert flips.any() and not flips.all()


def test_a_region_crop_config_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="--crop-factor must be at least 1"):
        RegionCropConfig(0)
    with pytest.raises(ConfigError, match="add --augment rded"):
        EvalConfig(crop_factor=2)
    with pytest.raises(ConfigError, match="--crop-factor must be at least 1"):
        EvalConfig(augment="rded", crop_factor=0)


def test_rded_augmentation_evaluates_batched_as_sequentially_and_repeats_with_its_seed(digits):
    images, labels = random_real(digits, 2, seed=0)
    config = EvalConfig(models=2, epochs=2, augment="rded", crop_factor=2)
    batched = evaluate_synset(images, labels, digits, config, seed=5)["convnet3"].accs
    sequential = evaluate_synset(images, labels, digits, EvalConfig(models=2, epochs=2, augment="rded",
                                                                    crop_factor=2, batched=False), seed=5)
    assert batched == sequential["convnet3"].accs
    assert evaluate_synset(images, labels, digits, config, seed=5)["convnet3"].accs == batched
    assert EvalConfig(augment="rded").epochs_for(digits, "convnet3") == 1000  # augmented: 1000 epochs
