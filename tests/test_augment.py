"""DSA: each transform against a hand computation, siamese/grouped semantics, gradients, seeding."""

from __future__ import annotations

import pytest
import torch

from ddz.data.augment import DSA, TOKENS, DSAConfig, DSAParams, augment

CONFIG = DSAConfig()


def params(token: str, **values: float) -> DSAParams:
    """One group: uniforms at 0.5 except the named columns (u0..u9)."""
    u = torch.full((1, 10), 0.5)
    for key, value in values.items():
        u[0, int(key[1:])] = value
    return DSAParams((token,), u)


def grid(h: int, w: int, c: int = 1) -> torch.Tensor:
    """(1, 1, c, h, w) with distinct values 1..c*h*w."""
    return torch.arange(1, c * h * w + 1, dtype=torch.float32).view(1, 1, c, h, w)


def test_flip_mirrors_columns_below_the_probability() -> None:
    x = grid(3, 4)
    assert torch.equal(augment(x, params("flip", u7=0.2), CONFIG), x.flip(-1))
    assert torch.equal(augment(x, params("flip", u7=0.7), CONFIG), x)


def test_crop_shifts_by_whole_pixels_with_zero_fill() -> None:
    x = grid(16, 16, c=2)
    # shift = int(16 * 0.125 + 0.5) = 2; u -> floor(u * 5) - 2: 0.9 -> +2 rows, 0.0 -> -2 columns
    out = augment(x, params("crop", u3=0.9, u4=0.0), CONFIG)
    expected = torch.zeros_like(x)
    expected[..., :14, 2:] = x[..., 2:, :14]  # out[i, j] = x[i + 2, j - 2]
    assert torch.equal(out, expected)
    assert torch.equal(augment(x, params("crop", u3=0.45, u4=0.45), CONFIG), x)  # floor(2.25) - 2 = 0


def test_cutout_zeros_the_right_square() -> None:
    x = grid(8, 8, c=3)
    # size = int(8 * 0.5 + 0.5) = 4; offset = floor(u * 9) - 2: rows 0.5 -> 2..5, columns 0.0 -> -2..1
    out = augment(x, params("cutout", u5=0.5, u6=0.0), CONFIG)
    expected = x.clone()
    expected[..., 2:6, 0:2] = 0
    assert torch.equal(out, expected)


def test_colour_brightness_saturation_contrast() -> None:
    x = torch.rand(1, 2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    # neutral saturation (u1 * 2.0 = 1) and contrast (u2 + 0.5 = 1): brightness alone adds (u0 - 0.5)
    out = augment(x, params("color", u0=0.8, u1=0.5, u2=0.5), CONFIG)
    assert torch.allclose(out, x + 0.3, atol=1e-6)
    # saturation factor 0.5 pulls every channel half-way to the per-pixel channel mean
    grey = x.mean(dim=2, keepdim=True)
    out = augment(x, params("color", u0=0.5, u1=0.25, u2=0.5), CONFIG)
    assert torch.allclose(out, (x - grey) * 0.5 + grey, atol=1e-6)
    # contrast factor 0.5 + 0.5 = 1.0 at u2 = 0.5; at u2 = 0.0, 0.5 around each image's mean
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    out = augment(x, params("color", u0=0.5, u1=0.5, u2=0.0), CONFIG)
    assert torch.allclose(out, (x - mean) * 0.5 + mean, atol=1e-6)


def test_scale_and_rotate_are_identity_at_neutral_parameters() -> None:
    x = torch.rand(1, 3, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    neutral = (1 - 1 / 1.2) / (1.2 - 1 / 1.2)  # u that maps to a scale factor of exactly 1
    assert torch.allclose(augment(x, params("scale", u8=neutral, u9=neutral), CONFIG), x, atol=1e-5)
    assert torch.allclose(augment(x, params("rotate", u8=0.5), CONFIG), x, atol=1e-5)


def test_scale_and_rotate_by_hand() -> None:
    x = grid(3, 3)
    # ratio 2: sx = u * 1.5 + 0.5; sx = 0.5 samples columns at 0.5, 1, 1.5 (align_corners grid)
    wide = augment(x, params("scale", u8=0.0, u9=1 / 3), DSAConfig(ratio_scale=2.0))
    cols = torch.stack([(x[..., 0] + x[..., 1]) / 2, x[..., 1], (x[..., 1] + x[..., 2]) / 2], -1)
    assert torch.allclose(wide, cols, atol=1e-5)
    # ratio 90 degrees at u = 1: a quarter turn, exact on the pixel grid
    x = grid(4, 4)
    turned = augment(x, params("rotate", u8=1.0), DSAConfig(ratio_rotate=90.0))
    assert torch.allclose(turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-4)


@pytest.mark.parametrize("token", TOKENS)
def test_siamese_groups_of_different_sizes_get_the_same_transform(token: str) -> None:
    dsa = DSA(DSAConfig(strategy=token), seed=3)
    real = torch.randn(1, 6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    synthetic = real[:, :2].clone()
    for _ in range(4):
        shared = dsa.siamese(1)
        assert shared.tokens == (token,)
        assert torch.allclose(dsa(synthetic, shared), dsa(real, shared)[:, :2], atol=1e-6)


def test_grouped_equals_each_group_alone() -> None:
    dsa = DSA(CONFIG, seed=11)
    x = torch.randn(5, 4, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    seen_mixed = False
    for _ in range(6):
        p = dsa.siamese(5)
        seen_mixed |= len(set(p.tokens)) > 1
        out = dsa(x, p)
        for g in range(5):
            alone = dsa(x[g : g + 1], DSAParams(p.tokens[g : g + 1], p.uniforms[g : g + 1]))
            assert torch.allclose(out[g : g + 1], alone, atol=1e-6), p.tokens[g]
    assert seen_mixed
    flat = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    p = dsa.per_sample(5)
    assert len(set(p.tokens)) == 1 and p.uniforms.unique(dim=0).shape[0] == 5
    assert torch.equal(dsa(flat, p), dsa(flat[:, None], p)[:, 0])


@pytest.mark.parametrize("token", TOKENS)
def test_gradients_flow_to_the_images(token: str) -> None:
    x = torch.randn(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(6)).requires_grad_()
    p = DSA(DSAConfig(strategy=token), seed=0).siamese(2)
    out = augment(x, p, DSAConfig(strategy=token))
    out.pow(2).sum().backward()
    assert out.shape == x.shape
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_seeding_is_explicit_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    a, b, c = DSA(CONFIG, seed=5), DSA(CONFIG, seed=5), DSA(CONFIG, seed=6)
    pa, pb, pc = a.siamese(8), b.siamese(8), c.siamese(8)
    assert pa.tokens == pb.tokens and torch.equal(pa.uniforms, pb.uniforms)
    assert not torch.equal(pa.uniforms, pc.uniforms)
    x = torch.ones(8, 2, 1, 8, 8)
    for _ in range(10):
        a(x, a.siamese(8))
        a(x[:, 0], a.per_sample(8))
    assert torch.equal(torch.random.get_rng_state(), before)
    state = a.state_dict()
    following = a.siamese(4)
    b.load_state_dict(state)
    resumed = b.siamese(4)
    assert following.tokens == resumed.tokens and torch.equal(following.uniforms, resumed.uniforms)
