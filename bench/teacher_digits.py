"""RDED and SRe2L with zoo teachers on the embedded digits, beside DM and random real images, under
hard and soft labels with DD-Ranking's scores, at IPC 1 and 10; and how the result moves with the
teacher's epoch (two snapshots of one zoo run).

    python bench/teacher_digits.py --out runs/teacher-digits [--runs 1] [--models 3] [--epochs 300]

1. The zoo of bench/soft_digits.py (trained here if missing); its teacher, a ConvNet-3 with
   BatchNorm (convnet3bn, width 32, 10 epochs, batch 64, snapshots at epochs 2 and 10), distils
   RDED and SRe2L and gives the soft labels.
2. Per IPC: random real subsets, and RDED and SRe2L (its 1000 iterations by default) from each
   teacher snapshot; every set evaluated with hard labels and with soft labels from the teacher
   that distilled it (RDED's relabelling; the late teacher for random real), both for the same
   epochs, with the scores beside a random subset (same protocol, same teacher, same seeds) and
   the full data (hard), cached in HOME/cache. DM, DM + CLoM and MTT under the same teacher and
   protocol are bench/soft_digits.py's rows: give both the same `--home` to share the cache.
Prints a markdown table (bench/soft_digits.py's) and writes DIR/teacher_digits.json. `seconds`:
a hard row's is its distillation plus evaluation, a soft row's its evaluation (both with the
scores' baselines the first time a setting needs them); `seconds_distill` in the JSON.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ddz import (
    DistillConfig,
    EvalConfig,
    EvalRequest,
    RunRequest,
    evaluate,
    run,
)
from ddz.distill.labels import LabelConfig

sys.path.insert(0, str(Path(__file__).parent))
import soft_digits  # noqa: E402  (a sibling script, not a package)

EARLY, LATE = soft_digits.EARLY_TEACHER, soft_digits.TEACHER
digits_parser, print_table, random_rows, row = (soft_digits.digits_parser, soft_digits.print_table,
                                                soft_digits.random_rows, soft_digits.row)


def main() -> None:
    parser = digits_parser(__doc__, "runs/teacher-digits", runs=1, models=3)
    parser.add_argument("--sre2l-iterations", type=int, default=None, help="default: SRe2L's 1000")
    args = parser.parse_args()
    zoo, context, hard = soft_digits.prepare(args)
    accs = {q: zoo.resolve(q)[0].summary.metrics.get("test_acc") for q in (EARLY, LATE)}

    def soft(teacher: str) -> EvalConfig:
        return replace(hard, labels=LabelConfig("soft", (teacher,)))

    rows = soft_digits.Rows()
    for ipc in args.ipc:
        rows.add(*random_rows(context, ipc, args.runs,
                         {"hard": hard, "soft": soft(LATE), "soft (epoch-2 teacher)": soft(EARLY)}))
        requests = {}
        for name, teacher in (("epoch 10", LATE), ("epoch 2", EARLY)):
            requests[f"RDED, teacher {name}"] = (
                RunRequest("digits", DistillConfig(method="rded", ipc=ipc), teacher=(teacher,)), teacher)
            requests[f"SRe2L, teacher {name}"] = (
                RunRequest("digits", DistillConfig(method="sre2l", ipc=ipc, iterations=args.sre2l_iterations),
                           teacher=(teacher,)), teacher)
        for method, (request, teacher) in requests.items():
            folder = args.out / "runs" / f"{method.replace(', ', '-').replace(' ', '').lower()}-ipc{ipc}"
            started = time.perf_counter()
            request = replace(request, runs=args.runs, evaluation=hard, out=str(folder), scores=True)
            report = run(request, context)
            rows.add({**row(method, ipc, "hard", report, time.perf_counter() - started),
                 "seconds_distill": round(report.seconds_distill, 1)})
            files = tuple(r["synset"] for r in report.runs) if report.runs else (report.synset,)
            started = time.perf_counter()
            soft_report = evaluate(EvalRequest(files, soft(teacher), scores=True), context)
            regime = "soft" if teacher == LATE else "soft (epoch-2 teacher)"
            rows.add(row(method, ipc, regime, soft_report, time.perf_counter() - started))
    result = {"teachers": accs, "runs": args.runs, "models": args.models, "epochs": args.epochs, "rows": rows}
    (args.out / "teacher_digits.json").write_text(json.dumps(result, indent=2))
    print(f"teachers' test accuracy: {accs}")
    print_table(rows)


if __name__ == "__main__":
    main()
