"""Hard and soft labels on the embedded digits, with DD-Ranking's scores: random real, DM,
DM + CLoM and MTT at IPC 1 and 10, each evaluated under both regimes through the one run path.

    python bench/soft_digits.py --out runs/soft-digits [--runs 3] [--models 5] [--epochs 300]

1. A zoo: PTMs (ConvNet-3, the demo's recipe: width 32, 10 epochs, batch 64; seeds 0-2 the CLoM
   pool), the teacher (ConvNet-3 with BatchNorm, same recipe, snapshots at epochs 2 and 10: the
   one bench/teacher_digits.py distils RDED and SRe2L with, so that both tables share one
   teacher and one cache under `--home`) and MTT experts (mtt-expert, seeds 10-14, 15 epochs,
   every epoch).
2. Per IPC: random real subsets, DM, DM + CLoM and MTT, `--runs` sets each; every set evaluated
   with hard labels and with soft labels from the teacher (DD-Ranking's defaults: KL at T 1.2,
   CutMix, logits regenerated per batch), both with the same epochs; scores beside a random
   subset (same protocol, same seeds) and the full data (hard), cached in DIR/home/cache.
Prints a markdown table and writes DIR/soft_digits.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from ddz import (
    DistillConfig,
    EvalConfig,
    EvalRequest,
    GuidanceConfig,
    LaunchConfig,
    MTTConfig,
    RunContext,
    RunRequest,
    Zoo,
    ZooPaths,
    evaluate,
    load_dataset,
    run,
)
from ddz.distill.baselines import BASELINES_FOLDER
from ddz.distill.labels import LabelConfig
from ddz.zoo.recipes import RECIPES, TrainRecipe

TEACHER = "digits/convnet3bn/seed0@epoch10"
EARLY_TEACHER = "digits/convnet3bn/seed0@epoch2"
EXPERT_EPOCHS = 15
METHOD_NAMES = {"DM": "dm", "DM + CLoM": "dm-clom", "MTT": "mtt"}


def train_zoo(zoo: Zoo, data, expert_epochs: int = EXPERT_EPOCHS) -> None:
    """The zoo both digits benches use (already trained runs are skipped)."""
    ptm = TrainRecipe(epochs=10, batch_size=64, snapshots=(10,), net=(("width", 32),))
    teacher = replace(ptm, snapshots=(2, 10))
    experts = replace(RECIPES["mtt-expert"], epochs=expert_epochs, snapshots=tuple(range(expert_epochs + 1)))
    for arch, recipe, seeds in (("convnet3", ptm, [0, 1, 2]), ("convnet3bn", teacher, [0]),
                                ("convnet3", experts, list(range(10, 15)))):
        jobs = zoo.plan("digits", [arch], seeds, recipe, data, device="cpu")
        summary = zoo.train([job for job, _ in jobs], LaunchConfig(launcher="inline"), data=data)
        assert not summary.failed, summary.failed[0].error


def row(method: str, ipc: int, regime: str, report, seconds: float) -> dict:
    result = report.eval["convnet3"]
    score = report.scores["convnet3"]
    return {"method": method, "ipc": ipc, "labels": regime, "mean": result.mean, "std": result.std,
            "accs": result.accs, "hlr": score["hlr"], "ior": score["ior"], "lrs": score["lrs"],
            "random": score["inputs"]["random_acc"], "full": score["inputs"]["full_acc"],
            "seconds": round(seconds, 1)}


def digits_parser(doc: str, out: str, runs: int, models: int) -> argparse.ArgumentParser:
    """The options this script and bench/teacher_digits.py share."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--home", type=Path, default=None,
                        help="the zoo and the baselines' cache (default: OUT/home); the benches can share it")
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--models", type=int, default=models)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--dm-iterations", type=int, default=1000)
    return parser


class Rows(list):
    """The table's rows; each printed as one JSON line as it comes, so a long run that stops keeps them."""

    def add(self, *new: dict) -> None:
        for item in new:
            self.append(item)
            print(json.dumps(item), flush=True)


def prepare(args: argparse.Namespace) -> tuple[Zoo, RunContext, EvalConfig]:
    """The shared zoo (trained where missing), the run context with the baselines' cache, and the
    hard-label protocol of the bench's `--models` and `--epochs`."""
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    zoo = Zoo(ZooPaths.under(args.home or args.out / "home"))
    train_zoo(zoo, data, getattr(args, "expert_epochs", EXPERT_EPOCHS))
    context = RunContext(zoo, data=data, cache=zoo.paths.home / "cache" / BASELINES_FOLDER)
    return zoo, context, EvalConfig(models=args.models, epochs=args.epochs)


def random_rows(context: RunContext, ipc: int, runs: int, regimes: dict[str, EvalConfig]) -> list[dict]:
    """Random real subsets of digits evaluated in each regime, with their scores."""
    rows = []
    for regime, config in regimes.items():
        started = time.perf_counter()
        report = evaluate(EvalRequest(evaluation=config, random_real=True, dataset="digits", ipc=ipc,
                                      runs=runs, scores=True), context)
        rows.append(row("random real", ipc, regime, report, time.perf_counter() - started))
    return rows


def main() -> None:
    parser = digits_parser(__doc__, "runs/soft-digits", runs=3, models=5)
    parser.add_argument("--mtt-iterations", type=int, default=300)
    parser.add_argument("--expert-epochs", type=int, default=EXPERT_EPOCHS)
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES.values()) + ["random"],
                        choices=list(METHOD_NAMES.values()) + ["random"], help="the rows to run (all)")
    args = parser.parse_args()
    zoo, context, hard = prepare(args)
    teacher_acc = zoo.resolve(TEACHER)[0].summary.metrics.get("test_acc")
    soft = replace(hard, labels=LabelConfig("soft", (TEACHER,)))
    rows = Rows()
    for ipc in args.ipc:
        if "random" in args.methods:
            rows.add(*random_rows(context, ipc, args.runs, {"hard": hard, "soft": soft}))
        dm = DistillConfig(method="dm", ipc=ipc, iterations=args.dm_iterations, batch_real=64)
        requests = {
            "DM": RunRequest("digits", dm),
            "DM + CLoM": RunRequest("digits", dm, ptm=("digits/convnet3/seed[0-2]@epoch10",),
                                    guidance=GuidanceConfig("clom")),
            "MTT": RunRequest("digits", DistillConfig(method="mtt", ipc=ipc, iterations=args.mtt_iterations,
                                                      mtt=MTTConfig(max_start_epoch=args.expert_epochs - 3)),
                              experts=("digits/convnet3/seed1[0-4]",)),
        }
        for method, request in requests.items():
            if METHOD_NAMES[method] not in args.methods:
                continue
            folder = args.out / "runs" / f"{method.replace(' + ', '-').lower()}-ipc{ipc}"
            started = time.perf_counter()
            request = replace(request, runs=args.runs, evaluation=hard, out=str(folder), scores=True)
            report = run(request, context)
            rows.add({**row(method, ipc, "hard", report, time.perf_counter() - started),
                 "seconds_distill": round(report.seconds_distill, 1)})
            files = tuple(r["synset"] for r in report.runs) if report.runs else (report.synset,)
            started = time.perf_counter()
            soft_report = evaluate(EvalRequest(files, soft), context)
            rows.add(row(method, ipc, "soft", soft_report, time.perf_counter() - started))
    summary = {"teacher": TEACHER, "teacher_test_acc": teacher_acc, "runs": args.runs, "models": args.models,
               "epochs": args.epochs, "rows": rows}
    (args.out / "soft_digits.json").write_text(json.dumps(summary, indent=2))
    print(f"teacher {TEACHER}: test accuracy {teacher_acc}")
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """The rows as a markdown table (bench/teacher_digits.py prints its rows with it too)."""
    print("| method | IPC | labels | accuracy (%) | random (%) | full (%) | HLR | IOR | LRS | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['ipc']} | {r['labels']} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} "
              "| "
              f"{100 * r['random']:.2f} | {100 * r['full']:.2f} | {r['hlr']:+.4f} | {r['ior']:+.4f} | "
              f"{r['lrs']:.4f} | {r['seconds']} |")


if __name__ == "__main__":
    main()
