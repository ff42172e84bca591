"""DD-Ranking's scores from accuracies: HLR, IOR, LRS and ARS (docs/distill.md, "Scores beside a
random subset (DD-Ranking)").

Definitions, as the `ddranking` package 0.2.0 codes them (metrics/soft_label.py:561-564,
metrics/hard_label.py:380-383, metrics/aug_robust.py:577-580):

- HLR (hard-label recovery) = full real data's hard-label accuracy - the set's hard-label accuracy;
- IOR (improvement over random) = the set's accuracy - a same-size random real subset's accuracy,
  both under the same protocol (the same label regime: hard for hard, soft for soft);
- LRS (label-robust score) = f(w * IOR - (1 - w) * HLR), w = 0.5 by default;
- ARS (augmentation-robust score) = f(w * (set - random, with augmentation)
  + (1 - w) * (set - random, without augmentation)), w = 0.5 by default;

with f(x) = (e^x - e^-1) / (e - e^-1), so f(-1) = 0, f(1) = 1 and f(0) = 0.269.

Units. ddz measures accuracy in fractions of 1, and `Scores` computes in fractions: then each
difference lies in [-1, 1], a = w * IOR - (1 - w) * HLR lies in [-1, 1] and LRS in [0, 1], the
range the form was built for. DD-Ranking's code measures accuracy in percent (utils/meter.py:168,
`correct_k * (100.0 / batch_size)`) and exponentiates differences of percentages: an HLR of 10
points gives f(-5) = -0.154 whatever the set's IOR is below it, and an IOR above HLR explodes
(f(45) = 1.5e19). `ddranking_as_printed` reproduces that, for the same accuracies in percent, so
the two can be set side by side; ddz reports the fraction scores.

Torch-free: importing this module imports nothing beyond the standard library and ddz.errors.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ddz.errors import ConfigError

Labels = Literal["hard", "soft"]

_E, _INV_E = math.e, math.exp(-1.0)
_SPAN = _E - _INV_E


def robust_score(x: float) -> float:
    """DD-Ranking's form f(x) = (e^x - e^-1) / (e - e^-1): f(-1) = 0, f(1) = 1.

    Where e^x overflows a float (x > 709.78, possible only with percent inputs far outside
    [0, 100] or by bad input), returns float('inf') rather than raising OverflowError, as numpy's
    np.exp, which DD-Ranking uses, does (with a warning). NaN gives NaN; -inf gives f = -e^-1 /
    (e - e^-1) = -0.1565, the form's lower bound."""
    try:
        grown = math.exp(x)
    except OverflowError:
        return math.inf
    if math.isinf(grown):
        return math.inf
    return (grown - _INV_E) / _SPAN


def check_weight(w: float, name: str = "w") -> float:
    """w as a float in [0, 1], else ConfigError (one line)."""
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise ConfigError(f"{name} must be a number in [0, 1], got {w!r}")
    if not math.isfinite(w) or not 0.0 <= w <= 1.0:
        raise ConfigError(f"{name} must be a finite number in [0, 1], got {w!r}")
    return float(w)


def _check_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be an accuracy in [0, 1], got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        hint = " (ddz's accuracies are fractions, not percent)" if 1.0 < value <= 100.0 else ""
        raise ConfigError(f"{name} must be an accuracy in [0, 1], got {value!r}{hint}")
    return float(value)


@dataclass(frozen=True)
class AugScores:
    """ARS's inputs, in fractions: the set's and the same-size random subset's accuracies with the
    protocol's augmentation and without it, all in one label regime (aug_robust.py:536-575).

    with_aug = set_aug_acc - random_aug_acc; without_aug = set_plain_acc - random_plain_acc;
    ars = f(w * with_aug + (1 - w) * without_aug) (aug_robust.py:577-580): both improvements
    count positively; w weighs the augmented one."""

    set_aug_acc: float
    random_aug_acc: float
    set_plain_acc: float
    random_plain_acc: float
    w: float = 0.5

    def __post_init__(self) -> None:
        for name in ("set_aug_acc", "random_aug_acc", "set_plain_acc", "random_plain_acc"):
            object.__setattr__(self, name, _check_fraction(getattr(self, name), name))
        object.__setattr__(self, "w", check_weight(self.w, "ARS weight w"))

    @property
    def with_aug(self) -> float:
        return self.set_aug_acc - self.random_aug_acc

    @property
    def without_aug(self) -> float:
        return self.set_plain_acc - self.random_plain_acc

    @property
    def beta(self) -> float:
        return self.w * self.with_aug + (1.0 - self.w) * self.without_aug

    @property
    def ars(self) -> float:
        return robust_score(self.beta)

    def to_json(self) -> dict[str, Any]:
        return {
            "units": "fraction",
            "inputs": {"set_aug_acc": self.set_aug_acc, "random_aug_acc": self.random_aug_acc,
                       "set_plain_acc": self.set_plain_acc, "random_plain_acc": self.random_plain_acc,
                       "w": self.w},
            "with_aug": self.with_aug, "without_aug": self.without_aug, "ars": self.ars,
        }


@dataclass(frozen=True)
class Scores:
    """HLR, IOR and LRS of one set, in fractions (accuracies in [0, 1]); ARS when `aug` is given.

    set_acc: the set's accuracy under the evaluated protocol, whose label regime `labels` names;
    random_acc: a same-size random real subset's accuracy under the very same protocol;
    full_acc: the full real training set's hard-label accuracy;
    set_hard_acc: the set's hard-label accuracy, needed when labels is "soft" (HLR compares hard
    with hard, soft_label.py:561); with labels "hard" it is set_acc and must be left out;
    w: LRS's weight on IOR (1 - w on HLR), in [0, 1].

    hlr = full_acc - set_hard_acc; ior = set_acc - random_acc; a = w * ior - (1 - w) * hlr;
    lrs = f(a) = (e^a - e^-1) / (e - e^-1). Invalid input raises ConfigError (one line)."""

    set_acc: float
    random_acc: float
    full_acc: float
    w: float = 0.5
    labels: Labels = "hard"
    set_hard_acc: float | None = None
    aug: AugScores | None = None

    def __post_init__(self) -> None:
        for name in ("set_acc", "random_acc", "full_acc"):
            object.__setattr__(self, name, _check_fraction(getattr(self, name), name))
        object.__setattr__(self, "w", check_weight(self.w, "LRS weight w"))
        if self.labels not in ("hard", "soft"):
            raise ConfigError(f"labels must be 'hard' or 'soft', got {self.labels!r}")
        if self.labels == "soft":
            if self.set_hard_acc is None:
                raise ConfigError("soft-label scores need set_hard_acc, the set's hard-label accuracy, "
                                  "for HLR")
            object.__setattr__(self, "set_hard_acc", _check_fraction(self.set_hard_acc, "set_hard_acc"))
        elif self.set_hard_acc is not None:
            raise ConfigError("set_hard_acc is for labels='soft'; with hard labels it is set_acc")
        if self.aug is not None and not isinstance(self.aug, AugScores):
            raise ConfigError(f"aug must be AugScores or None, got {type(self.aug).__name__}")

    @property
    def hard_acc(self) -> float:
        """The set's hard-label accuracy, HLR's input."""
        return self.set_acc if self.set_hard_acc is None else self.set_hard_acc

    @property
    def hlr(self) -> float:
        return self.full_acc - self.hard_acc

    @property
    def ior(self) -> float:
        return self.set_acc - self.random_acc

    @property
    def alpha(self) -> float:
        return self.w * self.ior - (1.0 - self.w) * self.hlr

    @property
    def lrs(self) -> float:
        return robust_score(self.alpha)

    @property
    def ars(self) -> float | None:
        return None if self.aug is None else self.aug.ars

    def to_json(self) -> dict[str, Any]:
        """Inputs and outputs; accuracies and scores in fractions ("units")."""
        out: dict[str, Any] = {
            "units": "fraction",
            "labels": self.labels,
            "inputs": {"set_acc": self.set_acc, "random_acc": self.random_acc, "full_acc": self.full_acc,
                       "set_hard_acc": self.hard_acc, "w": self.w},
            "hlr": self.hlr, "ior": self.ior, "lrs": self.lrs,
        }
        if self.aug is not None:
            out["ars"] = self.aug.ars
            out["aug"] = self.aug.to_json()
        return out


Runs = float | Sequence[float]


@dataclass(frozen=True)
class DDRankingPrinted:
    """What `ddranking` 0.2.0 computes and logs for the same accuracies (in percent): per evaluation
    round its hlr, ior, lrs (and with_aug, without_aug, ars), their means and population standard
    deviations (np.std), and the log lines as it formats them (soft_label.py:598-600,
    aug_robust.py:614-616: two decimals, a '%' after every mean, LRS and ARS included)."""

    hlr: tuple[float, ...]
    ior: tuple[float, ...]
    lrs: tuple[float, ...]
    with_aug: tuple[float, ...] = ()
    without_aug: tuple[float, ...] = ()
    ars: tuple[float, ...] = ()

    @staticmethod
    def _stats(values: tuple[float, ...]) -> tuple[float, float]:
        if any(math.isinf(v) for v in values):  # np.mean of inf is inf, np.std nan
            return math.inf, math.nan
        return statistics.fmean(values), statistics.pstdev(values)

    @property
    def lrs_mean(self) -> float:
        return self._stats(self.lrs)[0]

    @property
    def ars_mean(self) -> float | None:
        return self._stats(self.ars)[0] if self.ars else None

    def lines(self) -> list[str]:
        rows = [("Hard Label Recovery", self.hlr), ("Improvement Over Random", self.ior),
                ("Label-Robust Score", self.lrs)]
        if self.ars:
            rows += [("With Augmentation", self.with_aug), ("Without Augmentation", self.without_aug),
                     ("Augmentation-Robust Score", self.ars)]
        out = []
        for name, values in rows:
            mean, std = self._stats(values)
            out.append(f"{name} Mean: {mean:.2f}%  Std: {std:.2f}")
        return out


def _rounds(name: str, value: Runs) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ConfigError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")
    return tuple(float(v) for v in values)


def ddranking_as_printed(set_acc: Runs, random_acc: Runs, full_acc: Runs, *,
                         set_hard_acc: Runs | None = None, w: float = 0.5,
                         aug: tuple[Runs, Runs, Runs, Runs] | None = None,
                         ars_w: float = 0.5) -> DDRankingPrinted:
    """DD-Ranking 0.2.0's scores as its code computes them, accuracies in PERCENT.

    Each argument is one accuracy or one per evaluation round (the package scores each round and
    averages the scores, soft_label.py:512-596). set_hard_acc as in `Scores` (None: set_acc, the
    hard-label class). aug = (set with aug, random with aug, set without, random without).
    Per round: hlr = full - set_hard, ior = set - random, lrs = f(w * ior - (1 - w) * hlr)
    (soft_label.py:561-564); with_aug, without_aug and ars = f(ars_w * with_aug + (1 - ars_w) *
    without_aug) (aug_robust.py:577-580), f(x) = (e^x - e^-1) / (e - e^-1) on the percentages.

    No range check on the accuracies (the package has none); w and ars_w must be in [0, 1]
    (ConfigError; the package accepts any). Where e^x overflows, the score is float('inf'), as
    np.exp gives, rather than an OverflowError."""
    w = check_weight(w, "LRS weight w")
    sets, randoms, fulls = _rounds("set_acc", set_acc), _rounds("random_acc", random_acc), \
        _rounds("full_acc", full_acc)
    hards = sets if set_hard_acc is None else _rounds("set_hard_acc", set_hard_acc)
    n = len(sets)
    if fulls and len(fulls) == 1:  # the package's cache holds one full-data accuracy for all rounds
        fulls = fulls * n
    if not len(randoms) == len(hards) == len(fulls) == n:
        raise ConfigError("ddranking_as_printed: give one accuracy per round for every input, "
                          "the same number of rounds")
    hlr = tuple(f - h for f, h in zip(fulls, hards, strict=True))
    ior = tuple(s - r for s, r in zip(sets, randoms, strict=True))
    lrs = tuple(robust_score(w * i - (1.0 - w) * h) for i, h in zip(ior, hlr, strict=True))
    if aug is None:
        return DDRankingPrinted(hlr, ior, lrs)
    ars_w = check_weight(ars_w, "ARS weight w")
    if isinstance(aug, (str, bytes)) or len(aug) != 4:
        raise ConfigError("aug must be four accuracies: set with aug, random with aug, set without, "
                          "random without")
    set_aug, random_aug, set_plain, random_plain = (
        _rounds(name, v) for name, v in zip(("set_aug_acc", "random_aug_acc", "set_plain_acc",
                                             "random_plain_acc"), aug, strict=True))
    if not len(set_aug) == len(random_aug) == len(set_plain) == len(random_plain):
        raise ConfigError("ddranking_as_printed: the four ARS inputs need the same number of rounds")
    with_aug = tuple(s - r for s, r in zip(set_aug, random_aug, strict=True))
    without_aug = tuple(s - r for s, r in zip(set_plain, random_plain, strict=True))
    ars = tuple(robust_score(ars_w * a + (1.0 - ars_w) * b)
                for a, b in zip(with_aug, without_aug, strict=True))
    return DDRankingPrinted(hlr, ior, lrs, with_aug, without_aug, ars)
