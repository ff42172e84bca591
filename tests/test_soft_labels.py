"""Soft-label evaluation: DD-Ranking's KD losses by hand, MixUp / CutMix, the teacher's checks,
one-hot soft labels = the hard protocol, batched = sequential, the baselines' cache, bad input."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ddz.data.mix import MixConfig, Mixer, mix_targets
from ddz.distill.baselines import Baselines
from ddz.distill.evaluate import EvalConfig, evaluate_synset, fresh_net, random_real
from ddz.distill.labels import LabelConfig, Objective, Teacher, kd_rows
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.seeding import generator
from ddz.training import train_epoch
from ddz.zoo.ptm import PTM

STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
TEACHER = torch.tensor([[1.0, 0.0, 0.0], [-2.0, 2.0, 1.0]])


def softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("loss", ["kl", "sce", "mse_gt"])
def test_kd_losses_by_hand(loss):
    t = 1.2
    expected = []
    for s, q in zip(STUDENT.tolist(), TEACHER.tolist(), strict=True):
        p, log_s = softmax(q, t), [math.log(v) for v in softmax(s, t)]
        if loss == "kl":
            expected.append(sum(pi * (math.log(pi) - ls) for pi, ls in zip(p, log_s, strict=True)))
        elif loss == "sce":
            expected.append(-sum(pi * ls for pi, ls in zip(p, log_s, strict=True)))
        else:
            expected.append(sum((a - b) ** 2 for a, b in zip(s, q, strict=True)) / 3)
    got = kd_rows(STUDENT, TEACHER, LabelConfig("soft", ("x",), loss, t))
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    if loss == "kl":  # DD-Ranking's form: batch-mean KL of log_softmax(s/T) against softmax(t/T)
        reference = F.kl_div(F.log_softmax(STUDENT / t, 1), F.softmax(TEACHER / t, 1), reduction="batchmean")
        assert torch.allclose(got.mean(), reference, atol=1e-6)


def test_stacked_logits_take_the_loss_per_copy():
    config = LabelConfig("soft", ("x",), "kl")
    stacked_s = torch.stack([STUDENT, STUDENT.flip(0)], 2)
    stacked_t = torch.stack([TEACHER, TEACHER.flip(0)], 2)
    per_copy = kd_rows(stacked_s, stacked_t, config).sum(0)
    assert torch.allclose(per_copy, kd_rows(STUDENT, TEACHER, config).sum().repeat(2))


def test_mixers_are_seeded_and_cutmix_lambda_is_the_kept_area():
    x = torch.arange(4 * 16 * 16, dtype=torch.float32).view(4, 1, 16, 16)
    first, again = Mixer(MixConfig("cutmix"), 3)(x), Mixer(MixConfig("cutmix"), 3)(x)
    assert torch.equal(first.images, again.images) and first.lam == again.lam
    kept = (first.images == x).float().mean(dim=(1, 2, 3))
    moved = first.perm != torch.arange(4)
    assert torch.allclose(kept[moved], torch.full_like(kept[moved], first.lam))
    mixup = Mixer(MixConfig("mixup", 0.4), 0)(x)
    assert torch.allclose(mixup.images, mixup.lam * x + (1 - mixup.lam) * x[mixup.perm])
    onehot = torch.eye(4)
    assert torch.allclose(mix_targets(onehot, mixup).sum(1), torch.ones(4))


@pytest.mark.parametrize("changes, fragment", [
    (dict(labels="soft"), "--labels soft needs a teacher"),
    (dict(loss="l2"), "unknown --kd-loss"),
    (dict(labels="soft", teacher=("x",), temperature=float("nan")), "--temperature must be a positive"),
    (dict(labels="soft", teacher=("x",), temperature=0.0), "--temperature must be a positive"),
    (dict(teacher=("x",)), "--teacher gives soft labels"),
])
def test_bad_label_settings_are_one_line(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        LabelConfig(**changes)


def ptm_for(digits, classes=None, size=None, seed=0) -> PTM:
    net = build_net("convnet3", digits.channels, len(classes or digits.classes), size or digits.image_size,
                    generator_seed=seed, width=8)
    return PTM(f"digits/convnet3/seed{seed}@epoch0", "0" * 64, net, list(classes or digits.classes),
               tuple(digits.mean), tuple(digits.std), size or digits.image_size, digits.channels, "convnet3")


def test_a_teacher_of_another_data_set_classes_or_size_is_refused(digits):
    other = ptm_for(digits)
    other.name = "mnist/convnet3/seed0@epoch2"
    with pytest.raises(ConfigError, match="trained on mnist, not digits"):
        Teacher([other], digits)
    with pytest.raises(ConfigError, match="knows 3 classes"):
        Teacher([ptm_for(digits, classes=["a", "b", "c"])], digits)
    with pytest.raises(ConfigError, match="1x32px"):
        Teacher([ptm_for(digits, size=32)], digits)


def test_an_ensemble_averages_logits(digits):
    one, two = ptm_for(digits, seed=1), ptm_for(digits, seed=2)
    x = digits.train_images[:5]
    both = Teacher([one, two], digits).logits(x)
    alone = Teacher([one], digits).logits(x), Teacher([two], digits).logits(x)
    assert torch.allclose(both, (alone[0] + alone[1]) / 2, atol=1e-6)


def test_one_hot_soft_labels_train_the_hard_protocols_weights(digits):
    """Stored soft labels that are exactly one-hot, the soft cross-entropy at T = 1: the same
    weights as the hard-label cross-entropy (the two paths cannot drift)."""
    images, labels = random_real(digits, 2, 0)
    one_hot_logits = torch.full((len(labels), digits.num_classes), -math.inf)
    one_hot_logits[torch.arange(len(labels)), labels] = 0.0
    config = LabelConfig("soft", ("x",), "sce", 1.0, "stored")
    nets = []
    for objective in (None, Objective(config, MixConfig(), [0], digits.num_classes, stored=one_hot_logits)):
        net = fresh_net("convnet3", digits, 0, digits.device)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        for _ in range(3):
            train_epoch(net, images, labels, optimizer, 8, generator(0, "order"), None, objective)
        nets.append(net)
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def small_soft(**changes) -> EvalConfig:
    labels = LabelConfig("soft", ("digits/convnet3/seed1@epoch0",), "kl")
    return replace(EvalConfig(models=2, epochs=2, labels=labels), **changes)


@pytest.mark.parametrize("soft_mode", ["regenerate", "stored"])
def test_batched_soft_evaluation_equals_sequential(digits, soft_mode):
    teacher = Teacher([ptm_for(digits, seed=1)], digits)
    images, labels = random_real(digits, 2, 0)
    config = small_soft(labels=replace(small_soft().labels, soft_mode=soft_mode))
    batched = evaluate_synset(images, labels, digits, config, 0, teacher=teacher)
    sequential = evaluate_synset(images, labels, digits, replace(config, batched=False), 0, teacher=teacher)
    assert batched["convnet3"].accs == sequential["convnet3"].accs
    hard = evaluate_synset(images, labels, digits, replace(config, labels=LabelConfig()), 0)
    assert hard["convnet3"].accs != batched["convnet3"].accs  # the teacher changed the training


def test_the_baselines_come_from_the_cache_on_a_second_call(digits, tmp_path):
    teacher = Teacher([ptm_for(digits, seed=1)], digits)
    config = small_soft(models=1)
    first = Baselines(tmp_path)
    random = first.random_subset(digits, 1, config, [0, 1], teacher)
    full = first.full_data(digits, replace(config, epochs=1), 0)
    assert first.computed == ["random", "full"]
    second = Baselines(tmp_path)
    again = second.random_subset(digits, 1, config, [0, 1], teacher)
    assert again["convnet3"].accs == random["convnet3"].accs
    assert second.full_data(digits, replace(config, epochs=1), 0)["convnet3"].accs == full["convnet3"].accs
    assert second.computed == []
    other = Teacher([ptm_for(digits, seed=2)], digits)
    other.ptms[0].sha256 = "1" * 64
    second.random_subset(digits, 1, config, [0, 1], other)
    assert second.computed == ["random"]  # another teacher is another protocol


@pytest.fixture
def zoo_teacher(run_ddz):
    trained = run_ddz("zoo", "train", "--dataset", "digits", "--arch", "convnet3", "--seeds", "1",
                      "--epochs", "2", "--net-option", "width=8", timeout=300)
    assert trained.returncode == 0, trained.stderr
    return "digits/convnet3/seed0@epoch2"


def test_soft_eval_from_the_zoo_reports_scores_and_caches_its_baselines(run_ddz, tmp_path, zoo_teacher):
    args = ["eval", "--random-real", "--dataset", "digits", "--ipc", "1", "--models", "1", "--epochs", "2",
            "--labels", "soft", "--teacher", zoo_teacher]
    first = run_ddz(*args, "--json", "soft.json")
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "soft.json").read_text())
    assert report["labels"]["regime"] == "soft" and report["labels"]["teacher"][0]["name"] == zoo_teacher
    assert report["labels"]["mix"]["kind"] == "cutmix" and report["labels"]["loss"] == "kl"
    score = report["scores"]["convnet3"]
    assert score["inputs"]["random_acc"] == report["eval"]["convnet3"]["mean"]  # itself, as random
    assert score["ior"] == 0.0 and 0.0 <= score["inputs"]["full_acc"] <= 1.0
    assert report["storage"]["teacher_sha256"] and report["storage"]["images"] == 10 * 16 * 16 * 4
    cached = sorted((tmp_path / "ddz-home" / "cache" / "baselines").glob("*.json"))
    # the subsets under soft labels and under hard labels (HLR's): the very results the report holds
    assert [p.name.split("-")[0] for p in cached] == ["full", "random", "random"]
    by_regime = {json.loads(p.read_text())["key"]["config"]["labels"]["labels"]: json.loads(p.read_text())
                 for p in cached[1:]}
    assert [acc for run in by_regime["soft"]["runs"] for acc in run["convnet3"]["accs"]] == \
        report["eval"]["convnet3"]["accs"]
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = run_ddz(*args, "--json", "again.json")
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read back, not recomputed
    assert json.loads((tmp_path / "again.json").read_text())["scores"] == report["scores"]


@pytest.mark.parametrize("extra, fragment", [
    (["--labels", "soft"], "--labels soft needs a teacher"),
    (["--labels", "soft", "--teacher", "nosuchset/*"], "nosuchset"),
    (["--labels", "soft", "--teacher", "digits/*", "--kd-loss", "l2"], "unknown --kd-loss"),
    (["--labels", "soft", "--teacher", "digits/*", "--temperature", "nan"], "--temperature must be"),
    (["--labels", "soft", "--teacher", "digits/*", "--temperature", "inf"], "--temperature must be"),
    (["--mix", "cutout"], "unknown --mix"),
    (["--score-weight", "2"], "--score-weight must lie in [0, 1]"),
])
def test_bad_soft_label_input_is_one_line_and_writes_nothing(run_ddz, tmp_path, extra, fragment):
    result = run_ddz("eval", "--random-real", "--dataset", "digits", "--ipc", "1", "--models", "1",
                     "--epochs", "1", *extra, "--json", "out.json")
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.json").exists()


def test_distill_evaluates_with_soft_labels_and_records_the_request(run_ddz, tmp_path, zoo_teacher):
    result = run_ddz("distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2",
                     "--net-option", "width=8", "--eval-labels", "soft", "--teacher", zoo_teacher,
                     "--soft-labels", "stored", "--eval-models", "1", "--eval-epochs", "2",
                     "--json", "d.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["labels"]["soft_mode"] == "stored" and report["storage"]["labels"] == 10 * 10 * 4
    assert report["request"]["evaluation"]["labels"]["teacher"] == [zoo_teacher]
    assert set(report["scores"]["convnet3"]) >= {"hlr", "ior", "lrs", "inputs"}
    assert "LRS" in result.stdout


def test_ars_evaluates_without_augmentation_too(digits, tmp_path):
    from ddz import EvalRequest, RunContext, evaluate

    config = EvalConfig(models=1, epochs=2)
    request = EvalRequest(evaluation=config, random_real=True, dataset="digits", ipc=1, runs=2, ars=True,
                          scores=True)
    report = evaluate(request, RunContext(data=digits, cache=tmp_path))
    score = report.scores["convnet3"]
    aug = score["aug"]["inputs"]
    assert aug["set_aug_acc"] == report.eval["convnet3"].mean == aug["random_aug_acc"]  # random beside itself
    assert aug["set_plain_acc"] == aug["random_plain_acc"]
    assert score["ars"] == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))  # f(0)


def test_soft_eval_of_a_run_folder_reuses_the_runs_hard_evaluation(run_ddz, tmp_path, zoo_teacher):
    """`ddz eval RUN --labels soft` needs the set's hard-label accuracy (HLR): the run folder's
    eval.json already holds it, so it is read, not recomputed; the soft result is added beside."""
    common = ["--eval-models", "1", "--eval-epochs", "2"]
    distilled = run_ddz("distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2",
                        "--net-option", "width=8", "--out", "run", "--json", "hard.json", *common)
    assert distilled.returncode == 0, distilled.stderr
    hard_cache = tmp_path / "run" / "eval.json"
    cached = json.loads(hard_cache.read_text())
    cached["eval"]["convnet3"]["accs"] = [0.125]  # no accuracy over the 454 test images is 1/8
    hard_cache.write_text(json.dumps(cached))
    soft = run_ddz("eval", "run", "--labels", "soft", "--teacher", zoo_teacher, "--models", "1",
                   "--epochs", "2", "--json", "soft.json")
    assert soft.returncode == 0, soft.stderr
    report = json.loads((tmp_path / "soft.json").read_text())
    assert report["scores"]["convnet3"]["inputs"]["set_hard_acc"] == 0.125  # read, not recomputed
    assert json.loads(hard_cache.read_text()) == cached  # and left as it was
    soft_cache = json.loads((tmp_path / "run" / "eval-soft.json").read_text())
    assert soft_cache["eval"]["convnet3"]["accs"] == report["eval"]["convnet3"]["accs"]
