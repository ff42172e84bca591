"""MTT on the embedded digits, experts from the zoo: random real vs DM vs MTT vs MTT + CLoM.

    python bench/mtt_digits.py --device cuda --out runs/mtt-digits [--ipc 1 10] [--alphas 0.1 1]

1. A zoo of experts: `ddz zoo train --recipe mtt-expert --seeds 5 --epochs 20 --snapshots every`
   (ConvNet-3, epochs 0..20 of each seed).
2. Per IPC: random real images, DM, MTT and MTT + CLoM (one alpha per run; the pool is the
   experts' epoch-20 snapshots: well-trained, N_m = 5, N_a = 1, as the paper's appendix uses),
   each synthetic set evaluated by the protocol (5 ConvNet-3 models, DSA; MTT sets with the step
   size they learnt). MTT runs the reference distill.py's defaults except max_start_epoch 15
   (20-epoch experts hold epochs 0..20, and start + expert_epochs must exist).
Prints a table and writes DIR/mtt_digits.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from ddz.data import load_dataset
from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real
from ddz.distill.experts import ExpertBuffer
from ddz.distill.guidance import Guidance, GuidanceConfig
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig, MTTConfig
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths
from ddz.zoo.recipes import RECIPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/mtt-digits"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--mtt-iterations", type=int, default=500)
    parser.add_argument("--dm-iterations", type=int, default=1000)
    parser.add_argument("--eval-models", type=int, default=5)
    parser.add_argument("--eval-epochs", type=int, default=500)
    parser.add_argument("--expert-epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-start-epoch", type=int, default=15)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits", device=args.device)
    zoo = Zoo(ZooPaths.under(args.out / "home"))

    started = time.perf_counter()
    recipe = replace(RECIPES["mtt-expert"], epochs=args.expert_epochs,
                     snapshots=tuple(range(args.expert_epochs + 1)))
    jobs = zoo.plan("digits", ["convnet3"], list(range(args.seeds)), recipe, data, device=args.device)
    from ddz.zoo.launch import LaunchConfig

    summary = zoo.train([job for job, _ in jobs], LaunchConfig(launcher="inline", batch_seeds=args.seeds),
                        data=data)
    assert not summary.failed, summary.failed
    seconds_experts = time.perf_counter() - started
    rows = zoo.resolve("digits/convnet3/*")
    experts = ExpertBuffer(rows, zoo.files(rows))
    pool = zoo.load_ptms([f"digits/convnet3/*@epoch{args.expert_epochs}"], args.device)
    evaluation = EvalConfig(models=args.eval_models, epochs=args.eval_epochs)

    results = []

    def record(ipc: int, label: str, images, labels, seconds: float, lr: float | None = None) -> None:
        config = replace(evaluation, lr=lr) if lr is not None else evaluation
        arch = evaluate_synset(images, labels, data, config, seed=0)["convnet3"]
        results.append({"ipc": ipc, "method": label, "mean": arch.mean, "std": arch.std, "accs": arch.accs,
                        "models": arch.models, "seconds_distill": round(seconds, 2), "lr": lr})
        print(f"IPC {ipc:2d}  {label:22s} {100 * arch.mean:6.2f} ± {100 * arch.std:5.2f}  "
              f"({seconds:.1f} s distil{'' if lr is None else f', learnt lr {lr:.4f}'})", flush=True)

    for ipc in args.ipc:
        record(ipc, "random real", *random_real(data, ipc, 0), 0.0)
        started = time.perf_counter()
        dm = distill(data, DistillConfig(method="dm", ipc=ipc, iterations=args.dm_iterations), seed=0,
                     dataset_name="digits")
        record(ipc, "DM", dm.images, dm.labels, time.perf_counter() - started)
        mtt = DistillConfig(method="mtt", ipc=ipc, iterations=args.mtt_iterations,
                            mtt=MTTConfig(max_start_epoch=args.max_start_epoch))
        started = time.perf_counter()
        plain = distill(data, mtt, seed=0, experts=experts, dataset_name="digits")
        record(ipc, "MTT", plain.images, plain.labels, time.perf_counter() - started, plain.lr)
        for alpha in args.alphas:
            guidance = Guidance(pool, data, GuidanceConfig(kind="clom", alpha=alpha), "mtt", ipc)
            started = time.perf_counter()
            guided = distill(data, mtt, seed=0, guidance=guidance, experts=experts, dataset_name="digits")
            record(ipc, f"MTT + CLoM (alpha {alpha:g})", guided.images, guided.labels,
                   time.perf_counter() - started, guided.lr)
    report = {"device": args.device, "torch": torch.__version__, "seconds_experts": round(seconds_experts, 1),
              "settings": vars(args) | {"out": str(args.out)}, "results": results}
    (args.out / "mtt_digits.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
