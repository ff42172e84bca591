"""A grid's report: ddz's numbers per cell, the paper's beside them (labelled as the paper's,
never mixed into ddz's columns), the difference, and the sign of every CLoM effect.

report.json holds `cells`, one object per cell; report.md the same as a table. The paper's numbers
come from the spec (PaperValue) and nothing else: no ddz number is ever written into a `paper`
field, and at a scale that is not comparable (smoke: digits) the paper column says so.

A cell evaluated in several label regimes (hard and soft labels) has one `regimes` entry per
regime: its accuracies and DD-Ranking's scores beside a same-size random subset and the full
data; `ddz` (and so the difference and the CLoM effect) is the first regime's, hard labels when
the scale evaluates them, as the paper does. report.md gives each regime's accuracy and scores a
column group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddz.distill.labels import LABELS
from ddz.io import atomic_write_json, atomic_write_text
from ddz.repro.cell import CellOutcome
from ddz.repro.grid import Cell, baseline_of
from ddz.repro.spec import AXES, PaperValue, Spec, paper_value_matches

REPORT_MD, REPORT_JSON = "report.md", "report.json"


def sign(value: float | None) -> str | None:
    if value is None:
        return None
    return "+" if value > 0 else "-" if value < 0 else "0"


def ddz_numbers(outcome: CellOutcome | None) -> dict[str, dict[str, Any]]:
    """ddz's accuracy per evaluation arch, in percent (mean and std over runs x models)."""
    if outcome is None or outcome.report is None:
        return {}
    return percent_numbers(outcome.report["eval"])


def percent_numbers(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A report's `eval` per arch in percent: mean, std, runs, models, accs."""
    return {
        arch: {"mean": 100 * result["mean"], "std": 100 * result["std"], "runs": result.get("runs", 1),
               "models": result["models"], "accs": [100 * a for a in result["accs"]]}
        for arch, result in evaluation.items()
    }


def percent_scores(scores: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """DD-Ranking's scores per arch (ddz.distill.scores, in fractions) as the report gives them:
    accuracies and HLR / IOR in percent (points), LRS as computed from fractions, w."""
    found = {}
    for arch, score in (scores or {}).items():
        inputs = score["inputs"]
        found[arch] = {"set": 100 * inputs["set_acc"], "random": 100 * inputs["random_acc"],
                       "full": 100 * inputs["full_acc"], "set_hard": 100 * inputs["set_hard_acc"],
                       "hlr": 100 * score["hlr"], "ior": 100 * score["ior"], "lrs": score["lrs"],
                       "w": inputs["w"]}
    return found


def regime_numbers(outcome: CellOutcome | None) -> dict[str, dict[str, Any]]:
    """Per label regime: `ddz` (accuracies in %), `scores` (percent_scores) and `labels` (the
    regime as its report records it: teacher PTMs, loss, temperature, soft labels, mixing)."""
    if outcome is None:
        return {}
    return {regime: {"ddz": percent_numbers(part.get("eval", {})),
                     "scores": percent_scores(part.get("scores")), "labels": part.get("labels")}
            for regime, part in outcome.regime_reports().items()}


def paper_numbers(spec: Spec, cell: Cell) -> dict[str, dict[str, Any]]:
    """The paper's reported numbers for this cell per evaluation arch, from the spec alone."""
    first_arch = spec.scale("paper").eval_archs[0]
    found: dict[str, PaperValue] = {}
    for value in spec.paper:
        if paper_value_matches(value, cell.coords):
            found[value.at.get("arch", first_arch)] = value
    return {arch: value.to_json() for arch, value in found.items()}


@dataclass
class GridReport:
    spec: Spec
    scale: str
    cells: list[Cell]
    outcomes: list[CellOutcome]
    folder: Path
    plot: str | None = None  # the PNG's file name, next to the report

    @property
    def comparable(self) -> bool:
        return self.spec.scale(self.scale).comparable

    def cell_objects(self) -> list[dict[str, Any]]:
        by_key = {o.key: o for o in self.outcomes}
        scale = self.spec.scale(self.scale)
        note = None if self.comparable else scale.not_comparable_note(self.spec.datasets)
        objects = []
        for cell in self.cells:
            outcome = by_key.get(cell.key)
            ddz, paper = ddz_numbers(outcome), paper_numbers(self.spec, cell)
            difference = {
                arch: ddz[arch]["mean"] - paper[arch]["mean"] for arch in paper if arch in ddz
            } if self.comparable else {}
            objects.append({
                "key": cell.key,
                **{axis: cell.coords[axis] for axis in AXES},
                "data_set_used": cell.dataset,
                "pool_label": cell.pool_label,
                "ptm_query": list(cell.ptm),
                "experts_label": cell.experts_label,
                "experts_query": list(cell.experts),
                "status": outcome.status if outcome else "not run",
                "error": outcome.error if outcome else None,
                "seconds": round(outcome.seconds, 2) if outcome else None,
                "ddz": ddz,
                "labels": list(cell.labels),
                "regimes": regime_numbers(outcome),
                "paper": paper,
                "paper_comparable": self.comparable,
                "paper_note": note,
                "difference": difference,
                "clom_effect": self._effect(cell, ddz, paper, by_key),
            })
        return objects

    def _effect(self, cell: Cell, ddz: dict, paper: dict, by_key: dict[str, CellOutcome]) -> dict | None:
        base = baseline_of(cell, self.cells, self.spec.baseline)
        if base is None:
            return None
        base_ddz, base_paper = ddz_numbers(by_key.get(base.key)), paper_numbers(self.spec, base)
        ddz_effect = {a: ddz[a]["mean"] - base_ddz[a]["mean"] for a in ddz if a in base_ddz}
        paper_effect = {a: paper[a]["mean"] - base_paper[a]["mean"] for a in paper if a in base_paper}
        return {
            "baseline": base.key,
            "ddz": ddz_effect, "ddz_sign": {a: sign(v) for a, v in ddz_effect.items()},
            "paper": paper_effect, "paper_sign": {a: sign(v) for a, v in paper_effect.items()},
        }

    def to_json(self) -> dict[str, Any]:
        scale = self.spec.scale(self.scale)
        return {
            "spec": self.spec.name,
            "title": self.spec.title,
            "scale": self.scale,
            "paper_comparable": self.comparable,
            "eval_archs": list(scale.eval_archs),
            "labels": list(scale.labels),
            "runs": scale.runs,
            "cells": self.cell_objects(),
            "failed": [o.key for o in self.outcomes if o.status == "failed"],
            "plot": self.plot,
            "assumptions": [a.to_json() for a in self.spec.assumptions],
        }

    def markdown(self) -> str:
        scale = self.spec.scale(self.scale)
        objects = self.cell_objects()
        lines = [
            f"# {self.spec.title}",
            "",
            f"Spec `{self.spec.name}`, scale `{self.scale}`: data sets "
            + ", ".join(f"{d} -> {scale.data_set(d)}" for d in self.spec.datasets)
            + f"; {scale.runs} run(s) x {scale.eval_models} evaluation model(s) per cell; evaluated on "
            + ", ".join(scale.eval_archs) + ". Accuracy in %, mean ± std over runs x models.",
            "",
            "The paper's columns are the paper's reported numbers (from the spec), never ddz's. ddz reports "
            "the community protocol's final accuracy; the authors' code reports the best accuracy seen "
            "during evaluation (docs/distill.md).",
            "",
        ]
        regimes, scored = _regime_columns(objects, scale.labels)
        if regimes != ["hard"] or scored:
            lines += [_regimes_text(self.cells, regimes, scored), ""]
        first = "ddz acc." if regimes == ["hard"] else f"ddz acc. ({regimes[0]} labels)"
        headers = ["cell", "pool", "eval arch", "status", first, "runs x models", "seconds",
                   "paper's acc. (paper's table, row)", "ddz - paper", "CLoM effect, ddz",
                   "CLoM effect, paper"]
        for index, regime in enumerate(regimes):
            headers += [f"ddz acc. ({regime} labels)"] if index else []
            headers += [f"{regime}: {name}" for name in SCORE_COLUMNS] if scored else []
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for obj in objects:
            archs = list(obj["ddz"]) or list(scale.eval_archs)
            for arch in archs:
                lines.append(_row(obj, arch, regimes, scored))
        failed = [o for o in objects if o["status"] == "failed"]
        if failed:
            lines += ["", "## Failed cells", ""]
            lines += [f"- `{o['key']}`: {o['error']}" for o in failed]
        if self.plot:
            lines += ["", f"![{self.spec.name}]({self.plot})"]
        if self.spec.assumptions:
            lines += ["", "## Assumptions (settings the paper does not state)", "",
                      *[f"- {a.what}: {a.value} (source: {a.source})" for a in self.spec.assumptions]]
        if self.spec.notes:
            lines += ["", "## Notes", "", *[f"- {note}" for note in self.spec.notes]]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        atomic_write_json(self.folder / REPORT_JSON, self.to_json())
        atomic_write_text(self.folder / REPORT_MD, self.markdown())


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} ({sign(value)})"


SCORE_COLUMNS = ("random", "full data", "HLR", "IOR", "LRS")


def _regime_columns(objects: list[dict[str, Any]], asked: tuple[str, ...]) -> tuple[list[str], bool]:
    """The regimes the table shows (the scale's, and any a cell reports) and whether any cell has
    scores (then each regime gets the score columns)."""
    found = [regime for obj in objects for regime in obj["regimes"]]
    regimes = [r for r in LABELS if r in asked or r in found] or list(asked)
    scored = any(part["scores"] for obj in objects for part in obj["regimes"].values())
    return regimes, scored


def _regimes_text(cells: list[Cell], regimes: list[str], scored: bool) -> str:
    """What the regime and score columns mean, with each soft regime's teacher."""
    teachers = sorted({q for cell in cells for q in cell.teacher})
    kd = cells[0].kd if cells else {}
    said = []
    for regime in regimes:
        if regime == "soft":
            settings = ", ".join(f"{k} {v}" for k, v in kd.items())
            said.append(f"soft labels from teacher {', '.join(f'`{t}`' for t in teachers) or '(none named)'}"
                        f" ({settings or 'the soft protocol defaults'}; docs/distill.md)")
        else:
            said.append("hard labels (the paper's protocol)")
    text = ("Label regimes, each evaluating the same distilled sets: " if len(regimes) > 1 else "Labels: ")
    text += "; ".join(said) + "."
    if scored:
        text += (" Scores (DD-Ranking): random = a same-size random real subset under the same protocol "
                 "(label regime, augmentation, epochs, seeds); full data = the whole training set with hard "
                 "labels; HLR = full data - the set's hard-label accuracy and IOR = the set - random, in "
                 "points; LRS = f(w IOR - (1 - w) HLR) from fractions, w = 0.5 (docs/distill.md).")
    return text


def _row(obj: dict[str, Any], arch: str, regimes: list[str] | None = None, scored: bool = False) -> str:
    ddz = obj["ddz"].get(arch)
    paper = obj["paper"].get(arch)
    if not obj["paper_comparable"]:
        paper_text = obj["paper_note"]
    elif paper is None:
        paper_text = "not reported"
    else:
        paper_text = f"{_pm(paper['mean'], paper['std'])} ({paper['table']}, {paper['row']})"
    effect = obj["clom_effect"] or {}
    alpha = "" if obj["alpha"] == "default" else f", alpha {obj['alpha']:g}"
    experts = f"; {obj['experts_label']}" if obj["experts_label"] else ""
    cells = [
        f"`{obj['key']}`",
        obj["pool_label"] + alpha + experts,
        arch,
        obj["status"],
        _pm(ddz["mean"], ddz["std"]) if ddz else "-",
        f"{ddz['runs']} x {ddz['models']}" if ddz else "-",
        f"{obj['seconds']:.1f}" if obj["seconds"] is not None else "-",
        paper_text,
        _signed(obj["difference"].get(arch)),
        _signed((effect.get("ddz") or {}).get(arch)),
        _signed((effect.get("paper") or {}).get(arch)),
    ]
    for index, regime in enumerate(regimes or []):
        part = obj["regimes"].get(regime) or {}
        if index:
            acc = (part.get("ddz") or {}).get(arch)
            cells.append(_pm(acc["mean"], acc["std"]) if acc else "-")
        if scored:
            cells += _score_cells((part.get("scores") or {}).get(arch))
    return "| " + " | ".join(cells) + " |"


def _score_cells(score: dict[str, Any] | None) -> list[str]:
    if score is None:
        return ["-"] * len(SCORE_COLUMNS)
    return [f"{score['random']:.1f}", f"{score['full']:.1f}", f"{score['hlr']:+.1f}", f"{score['ior']:+.1f}",
            f"{score['lrs']:.3f}"]
