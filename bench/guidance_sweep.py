"""When does CLoM guidance help? The digits sweep behind docs/distill.md's alpha rule.

Every row is distilled `--runs` times (seeds s..s+N-1) and each synthetic set is evaluated by the
protocol on `--eval-models` fresh ConvNet-3 (width 128), so each cell is mean ± std over
runs x models, as the reference reports. Rows: random real images; DM at `--dm-iterations` and
10x that; DM + CLoM with a pool of PTMs at an early and at the final snapshot, at each
`--alphas` weight; DSA without and with CLoM at `--dsa-alpha` (final snapshot).

The PTM pool is the zoo's (`ddz zoo train --dataset digits --arch convnet3 --seeds 3
--snapshots 1,2,150` under the same DDZ_HOME). Work is split over `--workers` processes of one
torch thread each; finished cells are kept as JSON files, so a killed sweep resumes.

    DDZ_HOME=runs/sweep/home python bench/guidance_sweep.py --out runs/sweep --workers 2
    python bench/guidance_sweep.py --out runs/sweep --report
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    iterations: int = 0
    ptm: str | None = None
    alpha: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-").lower()


def plan(args: argparse.Namespace) -> list[Row]:
    dm = args.dm_iterations
    rows = [Row("random real", "random-real"), Row(f"DM {dm}", "dm", dm), Row(f"DM {10 * dm}", "dm", 10 * dm)]
    for epoch in (args.early_epoch, args.final_epoch):
        for alpha in args.alphas:
            rows.append(Row(f"DM {dm} + CLoM @epoch{epoch} alpha {alpha:g}", "dm", dm,
                            f"digits/convnet3/*@epoch{epoch}", alpha))
    dsa = args.dsa_iterations
    rows.append(Row(f"DSA {dsa}", "dsa", dsa))
    if args.dsa_alpha is not None:
        rows.append(Row(f"DSA {dsa} + CLoM @epoch{args.final_epoch} alpha {args.dsa_alpha:g}", "dsa", dsa,
                        f"digits/convnet3/*@epoch{args.final_epoch}", args.dsa_alpha))
    return rows


def run_cell(row: Row, seed: int, args: argparse.Namespace) -> dict:
    from ddz.data import load_dataset
    from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real
    from ddz.distill.guidance import Guidance, GuidanceConfig
    from ddz.distill.loop import distill
    from ddz.distill.methods import DistillConfig
    from ddz.zoo.api import Zoo

    data = load_dataset("digits")
    started = time.perf_counter()
    if row.method == "random-real":
        images, labels = random_real(data, args.ipc, seed)
    else:
        config = DistillConfig(method=row.method, ipc=args.ipc, iterations=row.iterations,
                               net_options=(("width", args.width),))
        guidance = None
        if row.ptm:
            ptms = Zoo.from_env().load_ptms([row.ptm])  # a script's edge: DDZ_HOME names the zoo
            guidance = Guidance(ptms, data, GuidanceConfig("clom", alpha=row.alpha), row.method, args.ipc)
        synset = distill(data, config, seed, guidance, args.out / "runs" / f"{row.slug}-seed{seed}",
                         checkpoint_every=50, dataset_name="digits")
        images, labels = synset.images, synset.labels
    seconds_distill = time.perf_counter() - started
    eval_config = EvalConfig(models=args.eval_models, epochs=args.eval_epochs)
    result = evaluate_synset(images, labels, data, eval_config, seed)["convnet3"]
    return {"label": row.label, "seed": seed, "seconds_distill": seconds_distill, **result.to_json()}


def worker(index: int, cells: list[tuple[Row, int]], args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    for row, seed in cells[index :: args.workers]:
        path = args.out / "cells" / f"{row.slug}-seed{seed}.json"
        if path.exists():
            continue
        cell = run_cell(row, seed, args)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cell, indent=1))
        tmp.replace(path)
        print(f"{row.label} seed {seed}: {100 * cell['mean']:.2f}", flush=True)


def run_means(row: Row, args: argparse.Namespace) -> dict[int, float]:
    """{seed: mean accuracy of that run's models} for the finished cells of `row`."""
    means = {}
    for k in range(args.runs):
        path = args.out / "cells" / f"{row.slug}-seed{args.seed + k}.json"
        if path.exists():
            means[args.seed + k] = json.loads(path.read_text())["mean"]
    return means


def report(rows: list[Row], args: argparse.Namespace) -> None:
    from ddz.distill.evaluate import ArchResult, combine_runs

    print(f"digits, IPC {args.ipc}; {args.runs} runs x {args.eval_models} ConvNet-3 (width 128), "
          f"{args.eval_epochs}+1 epochs, DSA; distillation net ConvNet-3 width {args.width}")
    print("| run | accuracy (%) mean ± std | run means | cells | distill s / run |")
    print("|---|---|---|---|---|")
    for row in rows:
        cells = [args.out / "cells" / f"{row.slug}-seed{args.seed + k}.json" for k in range(args.runs)]
        found = [json.loads(p.read_text()) for p in cells if p.exists()]
        if not found:
            continue
        summary = combine_runs([{"convnet3": ArchResult.from_json(cell)} for cell in found])["convnet3"]
        seconds = sum(c["seconds_distill"] for c in found) / len(found)
        means = " ".join(f"{100 * m:.2f}" for m in summary.run_means)
        print(f"| {row.label} | {100 * summary.mean:.2f} ± {100 * summary.std:.2f} | {means} | "
              f"{len(found)}x{args.eval_models} | {seconds:.0f} |")
    print()
    print("| guided run minus its unguided run, same seed (points) | per seed | mean |")
    print("|---|---|---|")
    for row in rows:
        same_setting = (row.method, row.iterations)
        unguided = [r for r in rows if r.ptm is None and (r.method, r.iterations) == same_setting]
        if row.ptm is None or not unguided:
            continue
        guided, plain = run_means(row, args), run_means(unguided[0], args)
        diffs = {seed: 100 * (guided[seed] - plain[seed]) for seed in guided if seed in plain}
        if diffs:
            shown = " ".join(f"{d:+.2f}" for d in diffs.values())
            print(f"| {row.label} | {shown} | {sum(diffs.values()) / len(diffs):+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/guidance-sweep"))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dm-iterations", type=int, default=200)
    parser.add_argument("--dsa-iterations", type=int, default=20)
    parser.add_argument("--alphas", type=float, nargs="+", default=[10.0, 100.0, 2000.0])
    parser.add_argument("--dsa-alpha", type=float, default=None)
    parser.add_argument("--early-epoch", type=int, default=1)
    parser.add_argument("--final-epoch", type=int, default=150)
    parser.add_argument("--width", type=int, default=32, help="width of the distillation ConvNet-3")
    parser.add_argument("--eval-models", type=int, default=5)
    parser.add_argument("--eval-epochs", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default=None, help="regular expression on row labels")
    parser.add_argument("--report", action="store_true", help="print the table of finished cells")
    args = parser.parse_args()
    args.out = args.out.resolve()
    rows = [r for r in plan(args) if args.only is None or re.search(args.only, r.label)]
    if args.report:
        report(rows, args)
        return
    cells = [(row, args.seed + k) for row in rows for k in range(args.runs)]
    processes = [multiprocessing.Process(target=worker, args=(i, cells, args)) for i in range(args.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    report(rows, args)


if __name__ == "__main__":
    main()
