"""Distillation and evaluation over real gloo ranks (spawned processes on 127.0.0.1) against one
process: the same seed gives the same synthetic images and the same accuracies."""

from __future__ import annotations

import pytest
import torch

from ddz.data import load_dataset
from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real
from ddz.distill.guidance import Guidance, GuidanceConfig
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig
from ddz.distill.synset import CHECKPOINT_FILE, SYNSET_FILE, load_checkpoint, load_synset
from ddz.distributed.ranks import SINGLE, Ranks
from ddz.distributed.shard import ClassShard, class_blocks
from ddz.distributed.spawn import run_ranks
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.zoo.ptm import PTM

TINY_NET = (("width", 8),)
DM = DistillConfig(method="dm", ipc=2, iterations=3, batch_real=16, net_options=TINY_NET)
DSA = DistillConfig(
    method="dsa", ipc=2, iterations=2, batch_real=8, batch_train=8, outer_loop=2, inner_loop=2,
    net_options=TINY_NET,
)
DC = DistillConfig(
    method="dc", ipc=1, iterations=2, batch_real=8, outer_loop=2, inner_loop=1, net_options=TINY_NET
)


def tiny_ptm(dataset, classes=None) -> PTM:
    classes = list(dataset.classes) if classes is None else classes
    net = build_net("convnet3", dataset.channels, len(classes), dataset.image_size, generator_seed=5, width=8)
    return PTM("test/convnet3/seed5", "5" * 64, net, classes, dataset.mean, dataset.std,
               dataset.image_size, dataset.channels)


def guidance_for(dataset, kind: str | None, method: str, ipc: int) -> Guidance | None:
    if kind is None:
        return None
    classes = None if kind == "clom" else [f"other{i}" for i in range(7)]
    return Guidance([tiny_ptm(dataset, classes)], dataset, GuidanceConfig(kind, alpha=50.0, cclom_batch=64),
                    method, ipc)


def distil_on(ranks: Ranks, config: DistillConfig, guidance: str | None = None, out=None, seed: int = 3):
    data = load_dataset("digits")
    guide = guidance_for(data, guidance, config.method, config.ipc)
    synset = distill(data, config, seed, guide, out, checkpoint_every=1, ranks=ranks)
    return synset.images, ranks.traffic()


def distil_alone(config: DistillConfig, guidance: str | None = None, out=None):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return distil_on(SINGLE, config, guidance, out)[0]
    finally:
        torch.set_num_threads(threads)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    relative = (ours - theirs).abs().max() / theirs.abs().max()
    assert relative <= 1e-5, f"relative difference {relative:.3g}"


def test_class_blocks_cover_every_class_once():
    assert class_blocks(10, 3) == [range(0, 4), range(4, 7), range(7, 10)]
    assert class_blocks(10, 1) == [range(0, 10)]
    with pytest.raises(ConfigError, match="at most 10 ranks"):
        class_blocks(10, 11)


def test_one_rank_shard_is_the_whole_set():
    shard = ClassShard(10, 3)
    images = torch.arange(30.0)
    assert torch.equal(shard.own(images), images) and torch.equal(shard.whole(images), images)
    assert shard.total_images == 30 and not shard.sharded


def test_a_class_subset_draws_the_rows_of_the_whole_draw(digits):
    whole = digits.sample_all_classes(4, torch.Generator().manual_seed(1))
    part = digits.sample_all_classes(4, torch.Generator().manual_seed(1), range(3, 7))
    assert torch.equal(part, whole[3:7])


def expected_gathers(config: DistillConfig) -> int:
    """DC/DSA: one gather of the set per outer step but the last, per iteration; every method:
    one more at the end (the whole set for the caller). DM gathers nothing while it learns."""
    per_iteration = 0 if config.method == "dm" else config.outer_loop - 1
    return config.iterations * per_iteration + 1


@pytest.mark.parametrize(("config", "guidance"), [(DM, None), (DM, "clom"), (DM, "cclom"), (DSA, None),
                                                  (DC, "clom")],
                         ids=["dm", "dm-clom", "dm-cclom", "dsa", "dc-clom"])
def test_two_ranks_learn_the_images_of_one(config, guidance):
    alone = distil_alone(config, guidance)
    results = run_ranks(2, distil_on, config, guidance)
    for images, _ in results:
        assert_close(images, alone)
    assert torch.equal(results[0][0], results[1][0])  # every rank gets the same whole set
    assert results[0][0].shape == alone.shape
    traffic = results[0][1]["all_gather"]
    half_set = 5 * config.ipc * 16 * 16 * 4  # bytes of 5 classes' images: what each rank sends
    assert traffic["calls"] == expected_gathers(config)
    assert traffic["sent"] == traffic["received"] == expected_gathers(config) * half_set


def test_checkpoint_of_two_ranks_resumes_with_one(tmp_path):
    longer = DistillConfig(**{**DM.__dict__, "iterations": 5})
    uninterrupted = distil_alone(longer, out=tmp_path / "one")
    run_ranks(2, distil_on, DM, None, tmp_path / "two")
    checkpoint = load_checkpoint(tmp_path / "two" / CHECKPOINT_FILE)
    assert checkpoint.iteration == DM.iterations and checkpoint.images.shape == uninterrupted.shape
    assert checkpoint.momentum is not None and checkpoint.momentum.shape == uninterrupted.shape
    resumed = distil_alone(longer, out=tmp_path / "two")
    assert_close(resumed, uninterrupted)
    assert load_synset(tmp_path / "two" / SYNSET_FILE).iterations == 5


def test_dm_with_batch_statistics_over_ranks_is_refused():
    data = load_dataset("digits")
    shard = ClassShard(data.num_classes, 2, Ranks(rank=0, world=2))
    from ddz.distill.methods.dm import DistributionMatching

    config = DistillConfig(method="dm", ipc=2, arch="convnet3bn", net_options=TINY_NET).resolved("digits")
    with pytest.raises(ConfigError, match="BatchNorm"):
        DistributionMatching(config, data, None, shard)


EVAL = EvalConfig(archs=("convnet3", "convnet4"), models=3, epochs=2)


def evaluate_on(ranks: Ranks):
    data = load_dataset("digits")
    images, labels = random_real(data, 2, seed=1)
    results = evaluate_synset(images, labels, data, EVAL, 7, ranks=ranks)
    return {arch: result.accs for arch, result in results.items()}


def test_evaluation_over_two_ranks_gives_the_accuracies_of_one():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = evaluate_on(SINGLE)
    finally:
        torch.set_num_threads(threads)
    for accs in run_ranks(2, evaluate_on):
        assert accs == alone
    assert len(alone["convnet3"]) == 3 and len(alone["convnet4"]) == 3
