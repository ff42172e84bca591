"""DD-Ranking's own score code against ddz's reproduction of it (`ddranking_as_printed`), on the
same accuracies (in percent, as the package measures them).

The `ddranking` package (0.2.0) computes its scores only inside its evaluators'
`compute_metrics`, after training students. This script runs those very methods with the
training stubbed out: each evaluator is built without its constructor (no data, no teachers),
and the helpers that would train and test a student return the accuracies given here. Everything
after them is the package's own code: per round

    soft_label.py:561  hlr = 1.00 * (full_data_hard_label_acc - syn_data_hard_label_acc)
    soft_label.py:562  ior = 1.00 * (syn_data_soft_label_acc - random_data_soft_label_acc)
    soft_label.py:563  alpha = lrs_lambda * ior - (1 - lrs_lambda) * hlr
    soft_label.py:564  lrs = (np.exp(alpha) - np.exp(-1)) / (np.exp(1) - np.exp(-1))
    hard_label.py:380-383  the same, with ior from hard-label accuracies (syn - random)
    aug_robust.py:577  with_aug_score = 1.00 * (syn_data_with_aug_acc - random_data_with_aug_acc)
    aug_robust.py:578  without_aug_score = 1.00 * (syn_data_without_aug_acc - random_data_without_aug_acc)
    aug_robust.py:579  beta = ars_lambda * with_aug_score + (1 - ars_lambda) * without_aug_score
    aug_robust.py:580  ars = (np.exp(beta) - np.exp(-1)) / (np.exp(1) - np.exp(-1))

then the means and np.std over rounds, the CSV (save_results) and the log lines (soft_label.py:
598-600, hard_label.py:418-420, aug_robust.py:614-616). Accuracies are percent in the package
(utils/meter.py:168). The script also reads those lines from the installed files and checks
that they say what is quoted above, so the line numbers in docs/distill.md are the installed ones.

The package pins numpy<2 and pulls pandas, kornia and timm, so it lives in its own environment,
never in ddz's; ddz.distill.scores imports only the standard library, so ddz itself need not be
installed there:

    python3 -m venv /tmp/ddr && /tmp/ddr/bin/pip install ddranking==0.2.0
    PYTHONPATH=$PWD /tmp/ddr/bin/python bench/ddranking_scores.py

Without the package it prints ddz's values alone and exits 1. A mismatch exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddz.distill.scores import DDRankingPrinted, ddranking_as_printed

# the lines quoted above: (module under ddranking, line, text it must contain)
QUOTED = [
    ("metrics.soft_label", 561, "hlr = 1.00 * (full_data_hard_label_acc - syn_data_hard_label_acc)"),
    ("metrics.soft_label", 562, "ior = 1.00 * (syn_data_soft_label_acc - random_data_soft_label_acc)"),
    ("metrics.soft_label", 563, "alpha = lrs_lambda * ior - (1 - lrs_lambda) * hlr"),
    ("metrics.soft_label", 564, "lrs = (np.exp(alpha) - np.exp(-1)) / (np.exp(1) - np.exp(-1))"),
    ("metrics.soft_label", 600, 'logging(f"Label-Robust Score Mean: {lrs_mean:.2f}%'),
    ("metrics.hard_label", 380, "hlr = 1.00 * (full_data_hard_label_acc - syn_data_hard_label_acc)"),
    ("metrics.hard_label", 381, "ior = 1.00 * (syn_data_hard_label_acc - random_data_hard_label_acc)"),
    ("metrics.hard_label", 382, "alpha = lrs_lambda * ior - (1 - lrs_lambda) * hlr"),
    ("metrics.hard_label", 383, "lrs = (np.exp(alpha) - np.exp(-1)) / (np.exp(1) - np.exp(-1))"),
    ("metrics.hard_label", 384, "lrs_list.append(lrs)"),
    ("metrics.hard_label", 388, "lrs_list.append(lrs)"),
    ("metrics.aug_robust", 577, "with_aug_score = 1.00 * (syn_data_with_aug_acc - random_data_with_aug_acc)"),
    ("metrics.aug_robust", 578,
     "without_aug_score = 1.00 * (syn_data_without_aug_acc - random_data_without_aug_acc)"),
    ("metrics.aug_robust", 579, "beta = ars_lambda * with_aug_score + (1 - ars_lambda) * without_aug_score"),
    ("metrics.aug_robust", 580, "ars = (np.exp(beta) - np.exp(-1)) / (np.exp(1) - np.exp(-1))"),
    ("utils.meter", 168, "correct_k * (100.0 / batch_size)"),
]


@dataclass
class Case:
    """One comparison: accuracies in percent, one per round (lists) or one for all."""

    name: str
    kind: str  # "hard" | "soft" | "ars"
    set_acc: list[float]
    random_acc: list[float]
    full_acc: float = 0.0
    set_hard_acc: list[float] | None = None  # soft: the set's hard-label accuracy
    aug: tuple[list[float], list[float], list[float], list[float]] | None = None  # ars
    w: float = 0.5
    notes: list[str] = field(default_factory=list)


CASES = [
    Case("hard, HLR 30 IOR 5 (saturated)", "hard", [60.0], [55.0], 90.0),
    Case("hard, HLR 5 IOR 25 (explodes)", "hard", [85.0], [60.0], 90.0),
    Case("hard, 3 rounds", "hard", [60.0, 62.0, 58.0], [55.0, 50.0, 57.0], 90.0),
    Case("soft, HLR 55 IOR -2", "soft", [70.0], [72.0], 95.0, set_hard_acc=[40.0]),
    Case("soft, HLR 5 IOR 25, w 0.3", "soft", [85.0, 84.0], [60.0, 61.0], 90.0, set_hard_acc=[85.0, 86.0],
         w=0.3),
    Case("ars, +5 / -2", "ars", [], [], aug=([70.0], [65.0], [50.0], [52.0])),
    Case("ars, +30 / +10, w 0.8", "ars", [], [], aug=([90.0, 88.0], [60.0, 61.0], [80.0, 79.0], [70.0, 70.0]),
         w=0.8),
]


def ddz_side(case: Case) -> DDRankingPrinted:
    if case.kind == "ars":
        assert case.aug is not None
        # LRS inputs are irrelevant to ARS: zeros give an LRS the package's ARS class never prints
        return ddranking_as_printed(0.0, 0.0, 0.0, aug=case.aug, ars_w=case.w)
    return ddranking_as_printed(case.set_acc, case.random_acc, case.full_acc, set_hard_acc=case.set_hard_acc,
                                w=case.w)


class _Set:
    """Stands for the synthetic set's images."""


class _Random:
    """Stands for the random subset's images."""


def _bare(cls: type, rounds: int, save_path: str) -> Any:
    """An evaluator without its constructor: only what compute_metrics reads."""
    evaluator = cls.__new__(cls)
    evaluator.num_eval, evaluator.ipc, evaluator.num_classes = rounds, 1, 10
    evaluator.use_dist, evaluator.rank, evaluator.world_size = False, 0, 1
    evaluator.save_path, evaluator.device = save_path, "cpu"
    evaluator.eval_full_data, evaluator.dataset, evaluator.model_name = True, "stub", "stub"
    evaluator.soft_label_mode, evaluator.label_type = "M", "hard"
    return evaluator


def package_side(case: Case, save_path: str) -> tuple[dict[str, Any], list[str]]:
    """Runs the package's compute_metrics with the accuracies of `case`; its result and log lines."""
    from ddranking.metrics import AugmentationRobustScore, LabelRobustScoreHard, LabelRobustScoreSoft

    rounds = len(case.aug[0]) if case.aug is not None else len(case.set_acc)
    state = {"round": -1}

    def round_of() -> int:
        return state["round"]

    if case.kind == "ars":
        assert case.aug is not None
        set_aug, random_aug, set_plain, random_plain = case.aug
        evaluator = _bare(AugmentationRobustScore, rounds, save_path)

        def with_aug(image_tensor, image_path, hard_labels, soft_labels, lr, hyper_param_search=False):
            if isinstance(image_tensor, _Set):
                state["round"] += 1
                return set_aug[round_of()], lr
            return random_aug[round_of()], lr

        def without_aug(image_tensor, image_path, hard_labels, soft_labels, lr, hyper_param_search=False):
            return (set_plain if isinstance(image_tensor, _Set) else random_plain)[round_of()], lr

        evaluator._compute_with_aug_metrics_helper = with_aug
        evaluator._compute_without_aug_metrics_helper = without_aug
        evaluator._get_random_data_helper = lambda eval_iter: (None, _Random(), None, None)
        weight = {"ars_lambda": case.w}
    else:
        hard_set = case.set_hard_acc if case.kind == "soft" else case.set_acc
        assert hard_set is not None
        cls = LabelRobustScoreSoft if case.kind == "soft" else LabelRobustScoreHard
        evaluator = _bare(cls, rounds, save_path)

        def hard(image_tensor, image_path, hard_labels, lr, mode, hyper_param_search=False):
            if mode == "real":
                return case.full_acc, lr
            if isinstance(image_tensor, _Set):
                state["round"] += 1
                return hard_set[round_of()], lr
            return case.random_acc[round_of()], lr  # the hard class's random subset

        def soft(image_tensor, image_path, soft_labels, lr, hyper_param_search=False):
            return (case.set_acc if isinstance(image_tensor, _Set) else case.random_acc)[round_of()], lr

        evaluator._compute_hard_label_metrics_helper = hard
        evaluator._compute_soft_label_metrics_helper = soft
        # (path, tensors, labels): soft labels for the soft class, hard ones for the hard class
        evaluator._get_random_data_helper = lambda eval_iter: (None, _Random(), None)
        weight = {"lrs_lambda": case.w}

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = evaluator.compute_metrics(image_tensor=_Set(), **weight)
    lines = [line for line in out.getvalue().splitlines() if " Mean: " in line]
    return result, lines


def check_quoted_lines() -> list[str]:
    """The quoted lines as the installed files have them; a list of disagreements."""
    import importlib

    problems = []
    for module_name, line, text in QUOTED:
        source = inspect.getsource(importlib.import_module(f"ddranking.{module_name}")).splitlines()
        got = source[line - 1].strip() if line <= len(source) else ""
        if text not in got:
            problems.append(f"{module_name.replace('.', '/')}.py:{line} is {got!r}, not {text!r}")
    return problems


def close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    try:
        import ddranking  # noqa: F401
    except ImportError as error:
        print(f"ddranking is not importable here ({error}); ddz's values alone:")
        for case in CASES:
            print(f"\n{case.name}")
            lines = ddz_side(case).lines()
            for line in lines[3:] if case.kind == "ars" else lines:
                print(f"  {line}")
        print("\ninstall it in a separate environment (see this file's docstring) to compare")
        return 1

    from importlib.metadata import version

    print(f"ddranking {version('ddranking')}, numpy {version('numpy')}, torch {version('torch')}")
    failures = 0
    problems = check_quoted_lines()
    for problem in problems:
        print(f"QUOTE  {problem}")
    failures += len(problems)
    print(f"quoted lines: {len(QUOTED) - len(problems)}/{len(QUOTED)} as in the installed files")

    # the hard-label class as shipped: LRS appended twice per round (hard_label.py:384, 388), so its
    # results table has columns of unequal length and pandas refuses it in save_results
    import ddranking.metrics.hard_label as hard_module

    with tempfile.TemporaryDirectory() as tmp:
        save_path = str(Path(tmp) / "results.csv")
        try:
            package_side(CASES[0], save_path)
            print("hard-label class as shipped: finished")
        except ValueError as error:
            print(f"hard-label class as shipped: save_results raises ValueError: {error}")
        shipped_save = hard_module.save_results
        hard_module.save_results = lambda results, path: None  # to reach its log lines past the crash
        try:
            for case in CASES:
                ours = ddz_side(case)
                result, lines = package_side(case, save_path)
                if case.kind == "ars":
                    pairs = [("ars mean", ours.ars_mean, result["augmentation_robust_score_mean"])]
                    want = ours.lines()[3:]
                else:
                    hlr, ior = sum(ours.hlr) / len(ours.hlr), sum(ours.ior) / len(ours.ior)
                    pairs = [("lrs mean", ours.lrs_mean, result["label_robust_score_mean"]),
                             ("hlr mean", hlr, result["hard_label_recovery_mean"]),
                             ("ior mean", ior, result["improvement_over_random_mean"])]
                    want = ours.lines()[:3]
                same = all(close(a, float(b)) for _, a, b in pairs) and lines == want
                failures += not same
                print(f"\n{'ok  ' if same else 'DIFF'} {case.name}")
                for name, a, b in pairs:
                    print(f"     {name}: ddz {a!r}  package {float(b)!r}")
                for got, expected in zip(lines, want, strict=False):
                    print(f"     package: {got}" + ("" if got == expected else f"   ddz: {expected}"))
                if len(lines) != len(want):
                    print(f"     {len(lines)} log lines from the package, {len(want)} from ddz")
        finally:
            hard_module.save_results = shipped_save
    print(f"\n{'all equal' if failures == 0 else f'{failures} disagreements'}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
