"""RDED and SRe2L (issue 24): RDED's selection on hand-built teachers, the stitch and its regions'
geometry, SRe2L's BatchNorm loss by hand, resume of a killed recovery, the method's settings and
their one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ddz.data import load_dataset
from ddz.distill.labels import Teacher
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig, RDEDConfig, SRe2LConfig
from ddz.distill.methods.rded import (
    RDED,
    random_crops,
    region_boxes,
    region_logits,
    regions,
    select_patches,
    stitch,
    true_class_scores,
)
from ddz.distill.methods.sre2l import bn_statistics_loss, cosine_lr, recovery_loss
from ddz.distill.synset import CHECKPOINT_FILE, load_checkpoint
from ddz.distributed.ranks import SINGLE
from ddz.distributed.spawn import run_ranks
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.zoo.ptm import PTM


class Brightness(nn.Module):
    """A hand-built teacher: class 0's logit is `sign` x 10 x the image's mean, every other 0."""

    def __init__(self, classes: int, sign: float):
        super().__init__()
        self.classes, self.sign = classes, sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((len(x), self.classes), device=x.device)
        logits[:, 0] = self.sign * 10 * x.mean((1, 2, 3))
        return logits


def ptm_of(digits, net: nn.Module, arch: str | None = "convnet3bn") -> PTM:
    return PTM(f"digits/{arch}/seed0@epoch0", "0" * 64, net, list(digits.classes), tuple(digits.mean),
               tuple(digits.std), digits.image_size, digits.channels, arch)


def bn_teacher(digits, arch: str = "convnet3bn") -> Teacher:
    """An untrained width-8 net whose BatchNorm running statistics have seen real images."""
    net = build_net(arch, digits.channels, digits.num_classes, digits.image_size, generator_seed=0, width=8)
    with torch.no_grad():
        net.train()
        for _ in range(3):
            net(digits.train_images[:200])
    return Teacher([ptm_of(digits, net, arch)], digits)


# --- RDED -------------------------------------------------------------------------------------

def test_select_keeps_each_images_best_crop_then_the_best_images():
    """scores (crops x images): image 0's best crop is crop 1 (1.0), image 1's crop 0 (0.5),
    image 2's crop 0 (2.0): keeping 2 gives image 1's crop 0, then image 0's crop 1."""
    scores = torch.tensor([[5.0, 0.5, 2.0], [1.0, 3.0, 2.5]])
    patches = torch.arange(6.0).view(2, 3, 1, 1, 1)  # crop c of image m holds 3c + m
    chosen, best = select_patches(scores, patches, 2)
    assert chosen.flatten().tolist() == [1.0, 3.0] and best.tolist() == [0.5, 1.0]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_teachers_scores_decide_which_images_rded_keeps(digits, sign):
    """A teacher that finds bright images typical of class 0 (sign +1) makes RDED keep class 0's
    brightest images; the opposite teacher keeps the darkest. Whole-image crops (min_scale 1, one
    crop) of every image of the class, factor 1: the kept images are the class's extremes."""
    teacher = Teacher([ptm_of(digits, Brightness(digits.num_classes, sign))], digits)
    count = digits.class_counts()[0]
    config = DistillConfig(method="rded", ipc=3, rded=RDEDConfig(factor=1, crops=1, candidates=count,
                                                                 min_scale=1.0)).resolved("digits", 16)
    got = RDED(config, digits, teacher).class_images(0, seed=0)
    class0 = digits.train_images[digits.train_labels == 0]
    extremes = torch.sort(class0.mean((1, 2, 3)), descending=sign > 0).values[:3]
    assert torch.allclose(got.mean((1, 2, 3)), extremes, atol=1e-5)  # ties may pick either image
    for image in got:  # each kept image is one of the class's images, whole
        assert bool(((class0 - image).abs().amax((1, 2, 3)) < 1e-5).any())
    # the score is the teacher's cross-entropy of the true class
    scores = true_class_scores(teacher, class0[:4], 0, digits.image_size)
    logits = teacher.logits(class0[:4])
    assert torch.allclose(scores, -torch.log_softmax(logits, 1)[:, 0], atol=1e-6)


def test_whole_image_crops_are_the_image_and_smaller_crops_stay_inside_it(digits):
    images = digits.train_images[:4]
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(random_crops(images, 1, 16, 1.0, gen)[0], images, atol=1e-5)
    ramp = torch.arange(16.0).repeat(16, 1).view(1, 1, 16, 16)  # pixel value = column
    crops = random_crops(ramp, 50, 16, 0.08, gen)
    assert crops.shape == (50, 1, 1, 16, 16)
    assert float(crops.min()) >= 0 and float(crops.max()) <= 15
    rows = crops[:, 0, 0, 0]  # each row of a crop resized from a column range: non-decreasing
    assert bool((rows[:, 1:] >= rows[:, :-1] - 1e-5).all())


def test_stitch_places_patch_i_plus_n_k_in_region_k_and_regions_cut_them_back():
    """factor 2 on a 5px side: regions 3 and 2 px (the first side % factor one longer); image i
    holds patch i + n*k in region k (row-major), as RDED's mix_images."""
    assert region_boxes(5, 2) == [(0, 0, 3, 3), (0, 3, 3, 2), (3, 0, 2, 3), (3, 3, 2, 2)]
    n, factor = 3, 2
    patches = torch.arange(n * factor**2, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 2, 3, 3)
    images = stitch(patches, factor, 5)
    assert images.shape == (n, 2, 5, 5)
    for i in range(n):
        for k, (top, left, h, w) in enumerate(region_boxes(5, factor)):
            assert bool((images[i, :, top:top + h, left:left + w] == i + n * k).all())
    views = regions(images, factor)
    assert views.shape == (n, factor**2, 2, 5, 5)
    assert torch.allclose(views, torch.arange(12.0).view(4, 3).t().reshape(n, 4, 1, 1, 1).expand_as(views))


def test_region_labels_are_the_teachers_logits_of_each_region(digits):
    teacher = bn_teacher(digits)
    images = stitch(digits.train_images[:8, :, :8, :8], 2, 16)
    got = region_logits(teacher, images, 2)
    assert got.shape == (2, 4, digits.num_classes)
    top_right = torch.nn.functional.interpolate(images[:, :, :8, 8:], size=(16, 16), mode="bilinear",
                                                align_corners=False)
    assert torch.allclose(got[:, 1], teacher.logits(top_right), atol=1e-5)


def test_rded_is_seeded_and_its_defaults_follow_the_image_size(digits):
    teacher = bn_teacher(digits)
    config = DistillConfig(method="rded", ipc=2, rded=RDEDConfig(candidates=20))
    one, two = (distill(digits, config, seed=0, teacher=teacher) for _ in range(2))
    other = distill(digits, config, seed=1, teacher=teacher)
    assert torch.equal(one.images, two.images) and not torch.equal(one.images, other.images)
    assert one.config["rded"]["factor"] == 1 and one.teacher[0]["name"] == "digits/convnet3bn/seed0@epoch0"
    assert RDEDConfig().resolved(224).factor == 2 and RDEDConfig().resolved(32).factor == 1
    assert SRe2LConfig().resolved(224) == SRe2LConfig(jitter=32, flip=True)
    assert SRe2LConfig().resolved(32) == SRe2LConfig(jitter=4, flip=False)


# --- SRe2L ------------------------------------------------------------------------------------

def test_bn_loss_by_hand_on_a_tiny_net():
    """x = (0, 2, 4, 6) in one 2x2 channel: batch mean 3, biased variance 5. BN 1 (running mean 1,
    var 2): |2 - 5| + |1 - 3| = 5, x 10 (the first layer's multiplier) = 50. Its eval-mode output
    (x - 1) / sqrt(2 + eps), through a 1x1 conv of weight 2: mean 2 * 2 / s, variance 4 * 5 / s^2;
    BN 2 (running 0, 1): |1 - 20/s^2| + |4/s|."""
    bn1, conv, bn2 = nn.BatchNorm2d(1), nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1)
    with torch.no_grad():
        bn1.running_mean.fill_(1.0)
        bn1.running_var.fill_(2.0)
        conv.weight.fill_(2.0)
    net = nn.Sequential(bn1, conv, bn2).eval()
    x = torch.tensor([0.0, 2.0, 4.0, 6.0]).view(1, 1, 2, 2).requires_grad_(True)
    with bn_statistics_loss(net, 10.0) as losses:
        net(x)
    s2 = 2 + bn1.eps
    expected = 10 * 5 + abs(1 - 20 / s2) + 4 / math.sqrt(s2)
    assert float(losses[0].detach()) == pytest.approx(expected, rel=1e-5)
    losses[0].backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert float(bn1.running_mean) == 1.0 and float(bn1.running_var) == 2.0  # eval mode: untouched
    with bn_statistics_loss(net, 1.0) as plain:
        net(x)
    assert float(plain[0].detach()) == pytest.approx(expected - 45, rel=1e-5)


def test_recovery_loss_is_cross_entropy_plus_r_bn_times_the_bn_loss(digits):
    teacher = bn_teacher(digits)
    x, y = digits.train_images[:10], torch.arange(10)
    net = teacher.ptms[0].net
    with bn_statistics_loss(net, 10.0) as bn:
        logits = net(x)
    expected = torch.nn.functional.cross_entropy(logits, y) + 0.01 * bn[0]
    assert float(recovery_loss(teacher, x, y, 0.01, 10.0)) == pytest.approx(float(expected), rel=1e-6)
    assert cosine_lr(0.25, 0, 10) == 0.25 and cosine_lr(0.25, 5, 10) == pytest.approx(0.125)


def test_sre2l_keeps_images_in_range_and_a_killed_recovery_resumes_to_the_same_bits(digits, tmp_path):
    """Killed after its checkpoint at iteration 4 (a watch that raises, before step 4), the run
    resumes there, with Adam's moments, and ends bit-identical to an uninterrupted run."""
    teacher = bn_teacher(digits)
    config = DistillConfig(method="sre2l", ipc=2, iterations=7, sre2l=SRe2LConfig(batch=5))
    whole = distill(digits, config, seed=3, teacher=teacher, out_dir=tmp_path / "whole", checkpoint_every=2)

    def kill(iteration, *_):
        if iteration == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(digits, config, seed=3, teacher=teacher, out_dir=tmp_path / "cut", checkpoint_every=2,
                watch=kill, watch_every=1)
    saved = load_checkpoint(tmp_path / "cut" / CHECKPOINT_FILE)
    assert saved.iteration == 4 and set(saved.extra) == {"exp_avg", "exp_avg_sq"}
    resumed = distill(digits, config, seed=3, teacher=teacher, out_dir=tmp_path / "cut", checkpoint_every=2)
    assert torch.equal(resumed.images, whole.images)
    low = (0 - torch.tensor(digits.mean)) / torch.tensor(digits.std)
    high = (1 - torch.tensor(digits.mean)) / torch.tensor(digits.std)
    assert float(whole.images.min()) >= float(low.min()) - 1e-6
    assert float(whole.images.max()) <= float(high.max()) + 1e-6
    # another seed, another recovery; the record names the teacher and the resolved settings
    assert not torch.equal(distill(digits, config, seed=4, teacher=teacher).images, whole.images)
    assert whole.config["sre2l"]["jitter"] == 4 and whole.config["sre2l"]["flip"] is False


def test_a_teacher_without_batchnorm_is_refused_naming_the_batchnorm_archs(digits):
    plain = Teacher([ptm_of(digits, build_net("convnet3", 1, 10, 16, generator_seed=0, width=8),
                            "convnet3")], digits)
    with pytest.raises(ConfigError, match=r"no BatchNorm layer; use a teacher of a BatchNorm arch "
                                          r"\(convnet3bn, vgg11bn, resnet18bn\)"):
        distill(digits, DistillConfig(method="sre2l", ipc=1, iterations=1), teacher=plain)


@pytest.mark.parametrize("build, fragment", [
    (lambda: DistillConfig(method="dm", rded=RDEDConfig(factor=2)), "--factor is an RDED setting"),
    (lambda: DistillConfig(method="rded", sre2l=SRe2LConfig(r_bn=1.0)), "--r-bn is an SRe2L setting"),
    (lambda: DistillConfig(method="rded", iterations=5), "rded selects its images once"),
    (lambda: SRe2LConfig(r_bn=-1.0), "--r-bn must be a finite number >= 0"),
    (lambda: SRe2LConfig(first_bn_multiplier=math.nan), "--first-bn-multiplier must be a finite"),
    (lambda: RDEDConfig(min_scale=0.0), "--min-scale must lie in"),
    (lambda: RDEDConfig(crops=0), "--crops must be at least 1"),
])
def test_bad_settings_are_one_line(build, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build()


def test_distilling_without_the_teacher_it_needs_is_one_line(digits):
    with pytest.raises(ConfigError, match="--method rded needs a teacher"):
        distill(digits, DistillConfig(method="rded", ipc=1))
    with pytest.raises(ConfigError, match="keeps IPC x factor"):
        distill(digits, DistillConfig(method="rded", ipc=30, rded=RDEDConfig(candidates=20)),
                teacher=bn_teacher(digits))


# --- ranks ------------------------------------------------------------------------------------

RDED_SMALL = DistillConfig(method="rded", ipc=2, rded=RDEDConfig(candidates=12))
SRE2L_SMALL = DistillConfig(method="sre2l", ipc=2, iterations=3, sre2l=SRe2LConfig(batch=5))


def distil_teacher_on(ranks, config: DistillConfig, out=None):
    data = load_dataset("digits")
    synset = distill(data, config, 3, out_dir=out, checkpoint_every=1, ranks=ranks, teacher=bn_teacher(data))
    return synset.images


@pytest.mark.slow  # two spawned ranks and one process, each building its teacher: a minute on a busy CPU
@pytest.mark.parametrize("config", [RDED_SMALL, SRE2L_SMALL], ids=["rded", "sre2l"])
def test_two_ranks_give_the_images_and_checkpoint_of_one(config, tmp_path):
    """Classes sharded over two gloo ranks (SRe2L: blocks of 5 classes, one per rank): the images
    of one process, and a checkpoint holding the whole set's Adam moments, gathered."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = distil_teacher_on(SINGLE, config, tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    results = run_ranks(2, distil_teacher_on, config, tmp_path / "two")
    for images in results:
        assert torch.allclose(images, alone, atol=1e-5, rtol=1e-5)
    one, two = (load_checkpoint(tmp_path / name / CHECKPOINT_FILE) for name in ("one", "two"))
    state = {"exp_avg", "exp_avg_sq"} if config.method == "sre2l" else set()
    assert set(one.extra) == set(two.extra) == state
    for name in one.extra:
        assert torch.allclose(one.extra[name], two.extra[name], atol=1e-6, rtol=1e-5)


def test_an_sre2l_block_split_between_ranks_is_refused(digits):
    from ddz.distill.methods.sre2l import SRe2L
    from ddz.distributed.shard import ClassShard

    class Rank1Of3:
        rank, world, is_main = 1, 3, False

    config = DistillConfig(method="sre2l", ipc=1, iterations=1).resolved("digits", 16)
    with pytest.raises(ConfigError, match="blocks of 100 classes"):
        SRe2L(config, digits, bn_teacher(digits), shard=ClassShard(10, 1, Rank1Of3()))
