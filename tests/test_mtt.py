"""MTT from zoo snapshots: the trajectory loss, the constant-memory gradient, expert draws, exact
resume, and the one-line errors of a pool that cannot serve."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from ddz.data.augment import DSA, DSAConfig
from ddz.distill.experts import ExpertBuffer
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig, MTTConfig
from ddz.distill.methods.mtt import Student, constant_memory_gradients, plan_steps, unrolled_loss
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.zoo.api import Zoo
from ddz.zoo.launch import LaunchConfig
from ddz.zoo.paths import ZooPaths
from ddz.zoo.recipes import RECIPES, recipe_named

WIDTH = 8

INLINE = LaunchConfig(launcher="inline")  # trained in this process: no worker start-up per seed


@pytest.fixture(scope="module")
def experts(tmp_path_factory, digits) -> Zoo:
    """Two mtt-expert seeds, 4 epochs, every epoch kept (epoch 0 = the initial weights)."""
    from dataclasses import replace

    zoo = Zoo(ZooPaths.under(tmp_path_factory.mktemp("experts")))
    recipe = replace(RECIPES["mtt-expert"], epochs=4, snapshots=tuple(range(5)), net=(("width", WIDTH),))
    jobs = zoo.plan("digits", ["convnet3"], [0, 1], recipe, digits, device="cpu")
    summary = zoo.train([job for job, _ in jobs], INLINE, data=digits)
    assert not summary.failed
    return zoo


def buffer_of(zoo: Zoo, query: str = "digits/convnet3/*") -> ExpertBuffer:
    rows = zoo.resolve(query)
    return ExpertBuffer(rows, zoo.files(rows))


def mtt_config(iterations: int = 3, **mtt) -> DistillConfig:
    settings = dict(syn_steps=3, expert_epochs=2, max_start_epoch=2)
    settings.update(mtt)
    return DistillConfig(method="mtt", ipc=1, iterations=iterations, lr_img=100.0, mtt=MTTConfig(**settings))


def test_the_recipe_table_and_expert_snapshots(experts):
    expert = recipe_named("mtt-expert")
    assert (expert.epochs, expert.lr, expert.momentum, expert.weight_decay, expert.augment) == (
        50, 0.01, 0.0, 0.0, "dsa")
    assert expert.snapshots == tuple(range(51)) and expert.milestones == ()
    with pytest.raises(ConfigError, match="unknown recipe 'mtt'"):
        recipe_named("mtt")
    names = [row.name for row in experts.resolve("digits/convnet3/seed0")]
    assert names == [f"digits/convnet3/seed0@epoch{e}" for e in range(5)]
    meta = buffer_of(experts).meta
    assert meta.recipe["name"] == "mtt-expert" and meta.recipe["augment"] == "dsa"
    # the PTM recipe hashes what it hashed before recipes had names (its zoos keep resuming)
    before = {k: v for k, v in RECIPES["ptm"].to_json().items() if k not in ("name", "augment", "zca")}
    text = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert RECIPES["ptm"].hash() == hashlib.sha256(text.encode()).hexdigest()
    assert expert.hash() != RECIPES["ptm"].hash()


def test_trajectory_loss_on_a_two_epoch_expert_equals_the_direct_computation(experts, digits):
    buffer = buffer_of(experts, "digits/convnet3/seed1@epoch{0,1}")
    student = Student(build_net("convnet3", 1, 10, 16, generator_seed=5, width=WIDTH))
    start = buffer.parameters(0, 0, student.names, torch.device("cpu"))
    target = buffer.parameters(0, 1, student.names, torch.device("cpu"))
    images, labels = digits.train_images[:10].clone(), digits.train_labels[:10]
    lr = torch.tensor(0.01)
    plans = plan_steps(10, 1, 10, torch.Generator().manual_seed(0), None, torch.device("cpu"))
    loss = unrolled_loss(student, start, target, images, labels, lr, plans, None)
    # by hand: one SGD step from the epoch-0 weights on the same ten images
    net = build_net("convnet3", 1, 10, 16, generator_seed=5, width=WIDTH)
    torch.nn.utils.vector_to_parameters(start, net.parameters())
    order = plans[0].indices
    F.cross_entropy(net(images[order]), labels[order]).backward()
    stepped = start - 0.01 * torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    direct = ((stepped - target) ** 2).sum() / ((start - target) ** 2).sum()
    assert torch.allclose(loss, direct, rtol=1e-5)


def test_constant_memory_gradient_equals_the_unrolled_one():
    torch.manual_seed(0)
    student = Student(build_net("convnet3", 1, 10, 16, generator_seed=0, width=4).double())
    size = sum(student.sizes)
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(size, generator=gen, dtype=torch.float64) * 0.1
    target = start + torch.randn(size, generator=gen, dtype=torch.float64) * 0.01
    images = torch.randn(20, 1, 16, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(10).repeat_interleave(2)
    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    dsa = DSA(DSAConfig(), 3)
    plans = plan_steps(20, 6, 8, torch.Generator().manual_seed(2), dsa, torch.device("cpu"))
    loss = unrolled_loss(student, start, target, images, labels, lr, plans, dsa)
    loss.backward()
    again, image_grad, lr_grad = constant_memory_gradients(student, start, target, images, labels, lr,
                                                           plans, dsa)
    assert torch.allclose(again, loss.detach(), rtol=1e-12)
    assert (image_grad - images.grad).norm() <= 1e-5 * images.grad.norm()
    assert abs(float(lr_grad - lr.grad)) <= 1e-5 * abs(float(lr.grad))


class Recording(ExpertBuffer):
    def __init__(self, rows, files):
        super().__init__(rows, files)
        self.reads: list[tuple[int, int]] = []

    def parameters(self, index, epoch, names, device):
        self.reads.append((index, epoch))
        return super().parameters(index, epoch, names, device)


def test_expert_epochs_come_from_one_trajectory_and_runs_repeat(experts, digits, tmp_path):
    rows = experts.resolve("digits/convnet3/*")
    buffer = Recording(rows, experts.files(rows))
    config = mtt_config(iterations=6)
    first = distill(digits, config, seed=3, experts=buffer, dataset_name="digits")
    pairs = list(zip(buffer.reads[::2], buffer.reads[1::2], strict=True))
    assert len(pairs) == 6
    for (start_index, start), (target_index, end) in pairs:
        assert start_index == target_index and end == start + 2 and start < 2
    assert len({index for (index, _), _ in pairs}) == 2  # both experts drawn
    again = distill(digits, config, seed=3, experts=buffer_of(experts), dataset_name="digits")
    assert torch.equal(first.images, again.images) and first.lr == again.lr != 0.01
    other = distill(digits, config, seed=4, experts=buffer_of(experts), dataset_name="digits")
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("memory", ["unrolled", "constant"])
def test_a_stopped_run_resumes_to_the_same_images_and_step_size(experts, digits, tmp_path, memory):
    config = mtt_config(iterations=4, memory=memory)
    whole = distill(digits, config, seed=1, experts=buffer_of(experts), dataset_name="digits")
    distill(digits, mtt_config(iterations=2, memory=memory), seed=1, out_dir=tmp_path / "run",
            checkpoint_every=1, experts=buffer_of(experts), dataset_name="digits")
    resumed = distill(digits, config, seed=1, out_dir=tmp_path / "run", checkpoint_every=1,
                      experts=buffer_of(experts), dataset_name="digits")
    assert torch.allclose(resumed.images, whole.images, atol=1e-6) and resumed.lr == pytest.approx(whole.lr)
    assert resumed.experts == whole.experts and len(whole.experts) == 10


def test_pools_that_cannot_serve_get_one_line(experts, digits):
    with pytest.raises(ConfigError, match=r"seed0 lacks epoch3, epoch4, which --max-start-epoch 3"):
        distill(digits, mtt_config(max_start_epoch=3, expert_epochs=2),
                experts=buffer_of(experts, "digits/convnet3/seed0@epoch{0..2}"), dataset_name="digits")
    with pytest.raises(ConfigError, match=r"trained on digits \(1x16px, 10 classes\) but this distils"):
        distill(digits.to("cpu"), mtt_config(), experts=buffer_of(experts), dataset_name="npz:/x/other.npz")
    with pytest.raises(ConfigError, match="needs expert trajectories"):
        distill(digits, mtt_config(), dataset_name="digits")


def test_cli_one_line_errors(run_ddz, tmp_path):
    unknown = run_ddz("zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--recipe", "mtt")
    assert unknown.returncode == 2 and "unknown recipe 'mtt'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = run_ddz("distill", "--dataset", "digits", "--method", "mtt", "--ipc", "1")
    assert missing.returncode == 2 and "needs expert trajectories" in missing.stderr
    stray = run_ddz("distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--experts", "x/*")
    assert stray.returncode == 2 and "--experts are MTT's" in stray.stderr


def test_zca_is_kornias_fit_and_inverts(digits):
    from ddz.data.zca import EPS, to_unit_range, whitened

    data, zca = whitened(digits)
    unit = to_unit_range(digits.train_images, digits).reshape(len(digits.train_images), -1).double()
    centred = unit - unit.mean(0)
    covariance = centred.T @ centred / (len(unit) - 1)
    eigenvalues = torch.linalg.eigvalsh(covariance)
    white = data.train_images.reshape(len(unit), -1).double()
    white_cov = white.T @ white / (len(white) - 1)
    # whitened covariance = U diag(S / (S + eps)) U^T: its spectrum is S / (S + eps)
    expected = (eigenvalues / (eigenvalues + EPS)).sort().values
    assert torch.allclose(torch.linalg.eigvalsh(white_cov).sort().values, expected, atol=1e-4)
    back = zca.unwhiten(data.test_images)
    assert torch.allclose(back, to_unit_range(digits.test_images, digits), atol=1e-4)
    assert data.name == digits.name and data.mean == (0.0,) and data.zca is zca


def test_zca_experts_make_mtt_distil_and_show_in_the_whitened_space(digits, tmp_path):
    from dataclasses import replace

    from ddz.distill.loop import viewable

    zoo = Zoo(ZooPaths.under(tmp_path / "zca"))
    recipe = replace(RECIPES["mtt-expert"], epochs=3, snapshots=(0, 1, 2, 3), zca=True, net=(("width", 4),))
    jobs = zoo.plan("digits", ["convnet3"], [0], recipe, digits, device="cpu")
    assert not zoo.train([job for job, _ in jobs], INLINE, data=digits).failed
    buffer = buffer_of(zoo)
    assert buffer.zca and buffer.meta.recipe["zca"] is True
    from ddz.data.zca import whitened

    data = whitened(digits)[0]
    synset = distill(data, mtt_config(iterations=2, max_start_epoch=1), experts=buffer, dataset_name="digits",
                     out_dir=tmp_path / "run")
    assert synset.zca and load_back(tmp_path / "run").zca
    images, _, mean, std = viewable(synset.images, data)
    assert mean == (0.0,) and std == (1.0,) and -1.0 < float(images.mean()) < 2.0


def load_back(folder):
    from ddz.distill.synset import load_synset

    return load_synset(folder)


@pytest.mark.slow
def test_mtt_from_a_trained_zoo_beats_random_real_on_digits(run_ddz, tmp_path):
    """The command-line path at a reduced size (2 experts x 6 epochs, width 16; bench/mtt_digits.py
    runs the full 5 x 20 one): MTT at IPC 1 beats random real images by at least 10 points."""
    trained = run_ddz("zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--recipe", "mtt-expert",
                      "--seeds", "2", "--batch-seeds", "2", "--epochs", "6", "--snapshots", "every",
                      "--net-option", "width=16", timeout=500)
    assert trained.returncode == 0, trained.stderr
    evaluation = ("--models", "2", "--epochs", "50")
    distilled = run_ddz("distill", "--dataset", "digits", "--method", "mtt", "--ipc", "1",
                        "--experts", "digits/convnet3/*", "--iterations", "20", "--syn-steps", "10",
                        "--expert-epochs", "2", "--max-start-epoch", "4", "--lr-img", "100",
                        "--eval-models", evaluation[1], "--eval-epochs", evaluation[3], "--json", "mtt.json",
                        timeout=500)
    assert distilled.returncode == 0, distilled.stderr
    real = run_ddz("eval", "--random-real", "--dataset", "digits", "--ipc", "1", *evaluation,
                   "--json", "real.json")
    assert real.returncode == 0, real.stderr
    mtt = json.loads((tmp_path / "mtt.json").read_text())
    baseline = json.loads((tmp_path / "real.json").read_text())
    assert mtt["method"] == "mtt" and len(mtt["lr"]) == 1 and mtt["lr"][0] > 0
    ours, theirs = mtt["eval"]["convnet3"]["mean"], baseline["eval"]["convnet3"]["mean"]
    margin = ours - theirs
    print(f"MTT {ours:.4f} vs random real {theirs:.4f}")
    assert margin >= 0.10, margin


def test_queries_filter_on_the_recipe(experts):
    from ddz.errors import NotFoundError

    rows = experts.resolve("digits/*", where="recipe=mtt-expert and epoch<=1")
    assert [r.name for r in rows] == [f"digits/convnet3/seed{s}@epoch{e}" for s in (0, 1) for e in (0, 1)]
    assert all(r.summary.recipe == "mtt-expert" for r in rows)
    with pytest.raises(NotFoundError, match="satisfies recipe==ptm; recorded: mtt-expert"):
        experts.resolve("digits/*", where="recipe=ptm")
    assert len(experts.resolve("digits/*", where="recipe!=ptm")) == 10
