"""Seconds per synthetic image of RDED and SRe2L against DM, at CIFAR-10 shapes (issue 24).

Shapes: 10 classes, 32x32x3 images, 300 random images per class in memory (RDED's --mipc 300),
a ConvNet-3 with BatchNorm (width 128, random weights, running statistics from a pass over the
images) as the teacher; DM distils with its default ConvNet-3 (instancenorm), batch_real 256.

RDED runs whole (its one selection step). SRe2L and DM are timed over `--iterations` steps and
their per-image cost is given at their default budgets by extrapolation (SRe2L 1000 iterations,
DM 20000), marked as such: seconds per iteration x budget / (classes x IPC). The machine's load
average and torch's threads are recorded, as both move CPU timings.

    .venv/bin/python bench/teacher_speed.py --ipc 1 10 --iterations 3
    .venv/bin/python bench/teacher_speed.py --device cuda --ipc 10 50 --iterations 20 --json t.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from ddz.data.base import ImageDataset
from ddz.distill.labels import Teacher
from ddz.distill.loop import distill
from ddz.distill.methods import METHODS, DistillConfig
from ddz.nets import build_net
from ddz.zoo.ptm import PTM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distill_speed import CHANNELS, SIZE, K, random_dataset  # noqa: E402  (a sibling script)


def bn_teacher(data: ImageDataset) -> Teacher:
    net = build_net("convnet3bn", CHANNELS, K, SIZE, generator_seed=0).to(data.device)
    with torch.no_grad():
        net.train()
        for start in range(0, len(data.train_images), 500):
            net(data.train_images[start : start + 500])
    ptm = PTM("random/convnet3bn/seed0@bench", "0" * 64, net, list(data.classes), data.mean, data.std,
              SIZE, CHANNELS, "convnet3bn")
    return Teacher([ptm], data)


def timed(data: ImageDataset, config: DistillConfig, teacher: Teacher | None) -> float:
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    distill(data, config, seed=0, teacher=teacher)
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--iterations", type=int, default=3, help="SRe2L and DM steps timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    data = random_dataset(args.device)
    teacher = bn_teacher(data)
    timed(data, DistillConfig(method="sre2l", ipc=1, iterations=1), teacher)  # warm-up
    rows = []
    for ipc in args.ipc:
        images = K * ipc
        rded = timed(data, DistillConfig(method="rded", ipc=ipc), teacher)
        sre2l = timed(data, DistillConfig(method="sre2l", ipc=ipc, iterations=args.iterations), teacher)
        dm = timed(data, DistillConfig(method="dm", ipc=ipc, iterations=args.iterations), None)
        sre2l_budget, dm_budget = METHODS["sre2l"].iterations, METHODS["dm"].iterations
        rows.append({
            "ipc": ipc, "images": images,
            "rded_seconds": rded, "rded_s_per_image": rded / images,
            "sre2l_s_per_iteration": sre2l / args.iterations,
            "sre2l_s_per_image_at_budget": sre2l / args.iterations * sre2l_budget / images,
            "dm_s_per_iteration": dm / args.iterations,
            "dm_s_per_image_at_budget": dm / args.iterations * dm_budget / images,
        })
    context = {"device": args.device, "torch_threads": torch.get_num_threads(),
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
               "timed_iterations": args.iterations, "budgets": {"sre2l": METHODS["sre2l"].iterations,
                                                                 "dm": METHODS["dm"].iterations}}
    print(f"device {args.device}, {torch.get_num_threads()} threads, load average {context['load_average']}; "
          f"SRe2L and DM timed over {args.iterations} iterations, per image extrapolated to their budgets "
          f"(SRe2L {context['budgets']['sre2l']}, DM {context['budgets']['dm']})")
    print("IPC | RDED s/img (measured) | SRe2L s/iter | SRe2L s/img @1000 | DM s/iter | DM s/img @20000")
    for r in rows:
        print(f"{r['ipc']:>3} | {r['rded_s_per_image']:.4f} | {r['sre2l_s_per_iteration']:.3f} | "
              f"{r['sre2l_s_per_image_at_budget']:.2f} | {r['dm_s_per_iteration']:.3f} | "
              f"{r['dm_s_per_image_at_budget']:.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"context": context, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
