"""DD-Ranking's scores (HLR, IOR, LRS, ARS), each computed here by hand from the definitions in
ddranking 0.2.0 (metrics/soft_label.py:561-564, hard_label.py:380-383, aug_robust.py:577-580):
ddz's fraction scores, the package's percent arithmetic as it prints it, and bad weights."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddz.distill.scores import AugScores, Scores, ddranking_as_printed, robust_score
from ddz.errors import ConfigError

E, INV_E = math.exp(1), math.exp(-1)


def form(x: float) -> float:
    """(e^x - e^-1) / (e - e^-1), written out again."""
    return (math.exp(x) - math.exp(-1)) / (math.exp(1) - math.exp(-1))


def test_the_form_is_zero_at_minus_one_and_one_at_one():
    assert robust_score(-1.0) == pytest.approx(0.0, abs=1e-15)
    assert robust_score(1.0) == pytest.approx(1.0, rel=1e-15)
    assert robust_score(0.0) == pytest.approx((1 - INV_E) / (E - INV_E))  # 0.2689...
    assert robust_score(0.0) == pytest.approx(0.268941, abs=1e-6)


# (set, random, full, HLR, IOR, a at w = 0.5) with every number written out by hand
HARD_CASES = [
    (0.60, 0.55, 0.90, 0.30, 0.05, 0.5 * 0.05 - 0.5 * 0.30),   # a = -0.125
    (0.85, 0.60, 0.90, 0.05, 0.25, 0.5 * 0.25 - 0.5 * 0.05),   # a = 0.10
    (0.30, 0.45, 0.95, 0.65, -0.15, 0.5 * -0.15 - 0.5 * 0.65),  # a = -0.40: worse than random
]


@pytest.mark.parametrize(("set_acc", "random_acc", "full_acc", "hlr", "ior", "a"), HARD_CASES)
def test_hard_label_scores_by_hand(set_acc, random_acc, full_acc, hlr, ior, a):
    s = Scores(set_acc, random_acc, full_acc)
    assert s.hlr == pytest.approx(hlr, abs=1e-12)
    assert s.ior == pytest.approx(ior, abs=1e-12)
    assert s.alpha == pytest.approx(a, abs=1e-12)
    assert s.lrs == pytest.approx((math.exp(a) - math.exp(-1)) / (math.exp(1) - math.exp(-1)), rel=1e-12)
    assert 0.0 <= s.lrs <= 1.0
    assert s.ars is None


def test_the_first_triple_spelled_out():
    s = Scores(set_acc=0.60, random_acc=0.55, full_acc=0.90)
    assert (round(s.hlr, 12), round(s.ior, 12), round(s.alpha, 12)) == (0.30, 0.05, -0.125)
    assert s.lrs == pytest.approx((math.exp(-0.125) - math.exp(-1)) / (math.exp(1) - math.exp(-1)))
    assert s.lrs == pytest.approx(0.218949, abs=1e-6)


def test_weight_at_its_ends():
    # w = 1: only IOR counts; w = 0: only -HLR counts
    only_ior = Scores(0.60, 0.55, 0.90, w=1.0)
    assert only_ior.alpha == pytest.approx(0.05)
    assert only_ior.lrs == pytest.approx(form(0.05))
    only_hlr = Scores(0.60, 0.55, 0.90, w=0.0)
    assert only_hlr.alpha == pytest.approx(-0.30)
    assert only_hlr.lrs == pytest.approx(form(-0.30))
    # the extremes of the range: a set as good as full data and perfectly above random scores 1,
    # a set at 0 % with a perfect random subset scores 0
    assert Scores(1.0, 0.0, 1.0, w=1.0).lrs == pytest.approx(1.0)
    assert Scores(0.0, 1.0, 1.0).lrs == pytest.approx(0.0, abs=1e-15)
    w = 0.3
    s = Scores(0.85, 0.60, 0.90, w=w)
    assert s.alpha == pytest.approx(0.3 * 0.25 - 0.7 * 0.05)  # 0.04


def test_soft_labels_take_hlr_from_the_hard_label_accuracy():
    # soft: the set 0.70 and random 0.72 under soft labels, the set 0.40 under hard labels
    s = Scores(set_acc=0.70, random_acc=0.72, full_acc=0.95, labels="soft", set_hard_acc=0.40)
    assert s.hlr == pytest.approx(0.55)        # 0.95 - 0.40, not 0.95 - 0.70
    assert s.ior == pytest.approx(-0.02)       # 0.70 - 0.72
    assert s.alpha == pytest.approx(0.5 * -0.02 - 0.5 * 0.55)  # -0.285
    assert s.lrs == pytest.approx(form(-0.285))


def test_ars_by_hand():
    # with augmentation: set 0.70, random 0.65; without: set 0.50, random 0.52
    aug = AugScores(set_aug_acc=0.70, random_aug_acc=0.65, set_plain_acc=0.50, random_plain_acc=0.52)
    assert aug.with_aug == pytest.approx(0.05)
    assert aug.without_aug == pytest.approx(-0.02)
    assert aug.beta == pytest.approx(0.5 * 0.05 + 0.5 * -0.02)  # 0.015: both improvements add
    assert aug.ars == pytest.approx(form(0.015))
    weighted = AugScores(0.70, 0.65, 0.50, 0.52, w=0.8)
    assert weighted.beta == pytest.approx(0.8 * 0.05 + 0.2 * -0.02)  # 0.036
    assert weighted.ars == pytest.approx(form(0.036))
    s = Scores(0.60, 0.55, 0.90, aug=aug)
    assert s.ars == pytest.approx(form(0.015))


def test_to_json_gives_inputs_and_outputs():
    aug = AugScores(0.70, 0.65, 0.50, 0.52)
    s = Scores(0.70, 0.72, 0.95, w=0.4, labels="soft", set_hard_acc=0.40, aug=aug)
    out = json.loads(json.dumps(s.to_json()))
    assert out["units"] == "fraction" and out["labels"] == "soft"
    assert out["inputs"] == {"set_acc": 0.70, "random_acc": 0.72, "full_acc": 0.95,
                             "set_hard_acc": 0.40, "w": 0.4}
    assert out["hlr"] == pytest.approx(0.55) and out["ior"] == pytest.approx(-0.02)
    assert out["lrs"] == pytest.approx(form(0.4 * -0.02 - 0.6 * 0.55))
    assert out["ars"] == pytest.approx(form(0.015))
    assert out["aug"]["inputs"]["set_aug_acc"] == 0.70
    assert out["aug"]["with_aug"] == pytest.approx(0.05)
    hard = Scores(0.60, 0.55, 0.90).to_json()
    assert hard["inputs"]["set_hard_acc"] == 0.60 and "ars" not in hard


# --- the package's own arithmetic: percent inputs, differences of percentages exponentiated


def test_percent_reproduces_the_package_on_the_first_triple():
    p = ddranking_as_printed(60.0, 55.0, 90.0)
    assert p.hlr == (30.0,) and p.ior == (5.0,)
    assert p.lrs[0] == pytest.approx(form(0.5 * 5 - 0.5 * 30))  # f(-12.5) = -0.156516...
    assert p.lines() == [
        "Hard Label Recovery Mean: 30.00%  Std: 0.00",
        "Improvement Over Random Mean: 5.00%  Std: 0.00",
        "Label-Robust Score Mean: -0.16%  Std: 0.00",
    ]


def test_percent_saturates_towards_minus_0_1565():
    floor = -INV_E / (E - INV_E)
    assert floor == pytest.approx(-0.156518, abs=1e-6)
    # HLR 10 points, IOR 0: a = -5, LRS = -0.153651 (2.9e-3 above the floor, printed -0.15)
    ten = ddranking_as_printed(80.0, 80.0, 90.0)
    assert ten.lrs[0] == pytest.approx(form(-5.0))
    assert ten.lrs[0] == pytest.approx(-0.153651, abs=1e-6)
    assert ten.lines()[2] == "Label-Robust Score Mean: -0.15%  Std: 0.00"
    # HLR 20 points, IOR 0: a = -10, within 2e-5 of the floor
    twenty = ddranking_as_printed(70.0, 70.0, 90.0)
    assert twenty.lrs[0] - floor == pytest.approx(math.exp(-10) / (E - INV_E))
    assert twenty.lrs[0] - floor < 2e-5
    # a set 30 points under full data scores the same whether it beats random by 1 or by 9 points
    better, worse = ddranking_as_printed(60.0, 51.0, 90.0), ddranking_as_printed(60.0, 59.0, 90.0)
    assert better.lines()[2] == worse.lines()[2] == "Label-Robust Score Mean: -0.16%  Std: 0.00"
    assert abs(better.lrs[0] - worse.lrs[0]) < 2e-5  # f(-10.5) - f(-14.5)
    # ... while in fractions the two are told apart
    assert Scores(0.60, 0.51, 0.90).lrs - Scores(0.60, 0.59, 0.90).lrs == pytest.approx(
        form(0.5 * 0.09 - 0.15) - form(0.5 * 0.01 - 0.15))


def test_percent_explodes_when_ior_exceeds_hlr():
    # set 85, random 60, full 90: HLR 5, IOR 25, a = 10
    p = ddranking_as_printed(85.0, 60.0, 90.0)
    assert p.lrs[0] == pytest.approx((math.exp(10) - INV_E) / (E - INV_E))  # 9371.2...
    assert p.lrs[0] > 9000
    # set at full data's accuracy, random 80 points below: a = 40
    big = ddranking_as_printed(90.0, 10.0, 90.0)
    assert big.lrs[0] == pytest.approx(math.exp(40) / (E - INV_E), rel=1e-12)  # 1.0e17
    assert big.lines()[2].startswith("Label-Robust Score Mean: 100")


def test_overflow_gives_inf_not_an_error():
    assert robust_score(1000.0) == math.inf
    assert robust_score(math.inf) == math.inf
    assert robust_score(-math.inf) == pytest.approx(-INV_E / (E - INV_E))
    assert math.isnan(robust_score(math.nan))
    p = ddranking_as_printed(2000.0, 0.0, 2000.0, w=1.0)  # out of range, as the package allows
    assert p.lrs == (math.inf,)
    assert p.lines()[2] == "Label-Robust Score Mean: inf%  Std: nan"


def test_percent_soft_labels_and_rounds():
    # soft: HLR from the hard-label accuracy; two rounds are scored each and averaged
    p = ddranking_as_printed([70.0, 72.0], [72.0, 71.0], 95.0, set_hard_acc=[40.0, 42.0])
    assert p.hlr == (55.0, 53.0) and p.ior == (-2.0, 1.0)
    lrs = [form(0.5 * -2 - 0.5 * 55), form(0.5 * 1 - 0.5 * 53)]
    assert p.lrs == pytest.approx(tuple(lrs))
    mean = sum(lrs) / 2
    std = math.sqrt(sum((v - mean) ** 2 for v in lrs) / 2)  # np.std: population
    assert p.lrs_mean == pytest.approx(mean)
    assert p.lines()[0] == "Hard Label Recovery Mean: 54.00%  Std: 1.00"
    assert p.lines()[2] == f"Label-Robust Score Mean: {mean:.2f}%  Std: {std:.2f}"


def test_percent_ars_by_hand():
    p = ddranking_as_printed(60.0, 55.0, 90.0, aug=(70.0, 65.0, 50.0, 52.0))
    assert p.with_aug == (5.0,) and p.without_aug == (-2.0,)
    assert p.ars[0] == pytest.approx(form(0.5 * 5 + 0.5 * -2))  # f(1.5) = 1.7502...
    assert p.ars_mean == pytest.approx(form(1.5))
    assert p.lines()[3:] == [
        "With Augmentation Mean: 5.00%  Std: 0.00",
        "Without Augmentation Mean: -2.00%  Std: 0.00",
        f"Augmentation-Robust Score Mean: {form(1.5):.2f}%  Std: 0.00",
    ]
    # the same accuracies in fractions: beta = 0.015
    assert AugScores(0.70, 0.65, 0.50, 0.52).ars == pytest.approx(form(0.015))


# --- bad input: one line, ConfigError


@pytest.mark.parametrize("w", [-0.1, 1.5, math.nan, math.inf, -math.inf, "0.5", None, True])
def test_bad_weight_is_one_line(w):
    for build in (lambda: Scores(0.6, 0.55, 0.9, w=w),
                  lambda: AugScores(0.7, 0.65, 0.5, 0.52, w=w),
                  lambda: ddranking_as_printed(60.0, 55.0, 90.0, w=w),
                  lambda: ddranking_as_printed(60.0, 55.0, 90.0, aug=(1.0, 1.0, 1.0, 1.0), ars_w=w)):
        with pytest.raises(ConfigError) as caught:
            build()
        message = str(caught.value)
        assert "\n" not in message and "[0, 1]" in message


def test_bad_accuracies_are_one_line():
    with pytest.raises(ConfigError, match=r"fractions, not percent"):
        Scores(60.0, 55.0, 90.0)
    with pytest.raises(ConfigError, match="set_acc"):
        Scores(math.nan, 0.5, 0.9)
    with pytest.raises(ConfigError, match="set_hard_acc"):
        Scores(0.7, 0.72, 0.95, labels="soft")
    with pytest.raises(ConfigError, match="labels='soft'"):
        Scores(0.7, 0.72, 0.95, set_hard_acc=0.4)
    with pytest.raises(ConfigError, match="labels"):
        Scores(0.7, 0.72, 0.95, labels="mixed")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="random_plain_acc"):
        AugScores(0.7, 0.65, 0.5, -0.1)
    with pytest.raises(ConfigError, match="rounds"):
        ddranking_as_printed([60.0, 61.0], [55.0], 90.0)


def test_the_module_imports_without_torch():
    code = "import sys, ddz.distill.scores; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


fraction = st.floats(min_value=0.0, max_value=1.0)
weight = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=200, deadline=None)
@given(fraction, fraction, fraction, weight)
def test_fraction_scores_stay_in_zero_one_and_percent_is_the_same_form_times_100(s, r, f, w):
    scores = Scores(s, r, f, w=w)
    assert -1e-12 <= scores.lrs <= 1.0 + 1e-12
    assert scores.lrs == pytest.approx(form(w * (s - r) - (1 - w) * (f - s)), abs=1e-12)
    # the package's number is the same form at 100 times the argument
    printed = ddranking_as_printed(100 * s, 100 * r, 100 * f, w=w)
    assert printed.lrs[0] == pytest.approx(robust_score(100 * scores.alpha), rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(fraction, fraction, fraction, fraction, weight)
def test_ars_stays_in_zero_one(a, b, c, d, w):
    assert -1e-12 <= AugScores(a, b, c, d, w=w).ars <= 1.0 + 1e-12
