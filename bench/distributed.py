"""Distillation over ranks: the wall time of one DM run split over 2 ranks vs 1, and the bytes
that DM and DSA steps communicate for a CIFAR-10-shaped set.

    .venv/bin/python bench/distributed.py                      # CPU: 1 rank x 2 threads vs 2 x 1
    .venv/bin/python bench/distributed.py --iterations 200 --json dist.json
    .venv/bin/python bench/distributed.py --device cuda --skip-bytes   # the same DM run on one GPU

Wall time: `ddz distill --method dm` on the embedded digits (ConvNet-3 at width 128, IPC 10,
batch_real 128, no evaluation), the same work twice: `--nproc 1` with 2 CPU threads, and
`--nproc 2` with 1 thread per rank. Reported: the distillation loop's seconds (`seconds_distill`
from --json, start-up excluded) and the whole command's wall seconds, the median of `--reps`
alternating rounds. On a GPU only the one-rank run is timed (two NCCL ranks need two GPUs).

Bytes: a random CIFAR-10-shaped data set (10 classes, 3x32x32) on 2 spawned gloo ranks; the
counts are what ddz.distributed.ranks tallied for one method step (DSA with the protocol's
outer/inner loops for the IPC) and for one gather of the whole set (at a checkpoint and at the
end). The sizes of the collectives depend on the image shape, the IPC and the loops only, so a
width-8 net and 8 real images per class stand in for the protocol's. `sent`: bytes a rank hands
to the collectives; `received`: bytes it gets from the other rank.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ddz.data.base import ImageDataset
from ddz.distill.methods import DistillConfig, IterationRNG, build_method
from ddz.distill.methods.base import initial_images, new_state
from ddz.distributed.ranks import Ranks
from ddz.distributed.shard import ClassShard
from ddz.distributed.spawn import run_ranks
from ddz.io import atomic_write_json

DM_RUN = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "10", "--batch-real", "128",
          "--eval-models", "0", "--checkpoint-every", "0"]


def time_run(device: str, iterations: int, nproc: int, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "run.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DDZ_HOME": folder}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ddz", "--device", device, *DM_RUN, "--iterations", str(iterations),
             "--nproc", str(nproc), "--out", str(Path(folder) / "run"), "--json", str(report)],
            env=env, check=True, capture_output=True, text=True,
        )
        wall = time.perf_counter() - started
        return {"seconds_distill": json.loads(report.read_text())["seconds_distill"], "wall": wall}


def cifar_shaped(per_class: int = 64) -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(10 * per_class, 3, 32, 32, generator=gen)
    labels = torch.arange(10).repeat_interleave(per_class)
    return ImageDataset("cifar10-shaped", images, labels, images[:10], labels[:10],
                        [f"c{i}" for i in range(10)], (0.0,) * 3, (1.0,) * 3)


def _delta(after: dict, before: dict) -> dict[str, dict[str, int]]:
    return {
        op: {key: value - before.get(op, {}).get(key, 0) for key, value in counts.items()}
        for op, counts in after.items()
        if counts != before.get(op)
    }


def step_traffic(ranks: Ranks, method: str, ipc: int) -> dict[str, dict]:
    """One step's collectives and one gather of the whole set, as this rank tallied them."""
    data = cifar_shaped()
    config = DistillConfig(method=method, ipc=ipc, batch_real=8, batch_train=256,
                           net_options=(("width", 8),)).resolved("cifar10")
    shard = ClassShard(data.num_classes, ipc, ranks)
    images = shard.own(initial_images(data, config, 0))
    state = new_state(images, ipc, config.lr_img, config.momentum, shard.classes.start)
    before = ranks.traffic()
    build_method(config, data, None, shard).step(state, IterationRNG(0, 0, data.device))
    after_step = ranks.traffic()
    shard.whole(state.images)
    return {"step": _delta(after_step, before), "whole_set": _delta(ranks.traffic(), after_step),
            "outer_loop": config.outer_loop, "inner_loop": config.inner_loop}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-bytes", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                     "cpus": os.cpu_count(), "device": args.device, "iterations": args.iterations}

    layouts = [(1, 2), (2, 1)] if args.device == "cpu" else [(1, os.cpu_count() or 1)]
    rounds: dict[str, list[dict[str, float]]] = {f"{n} rank x {t} thread": [] for n, t in layouts}
    for _ in range(args.reps):
        for nproc, threads in layouts:
            timed = time_run(args.device, args.iterations, nproc, threads)
            rounds[f"{nproc} rank x {threads} thread"].append(timed)
    print(f"DM, digits IPC 10, ConvNet-3 width 128, batch_real 128, {args.iterations} iterations, "
          f"{args.device}, median of {args.reps}:")
    results["wall"] = {}
    for name, runs in rounds.items():
        loop = statistics.median(r["seconds_distill"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        results["wall"][name] = {"seconds_distill": loop, "wall": wall, "runs": runs}
        print(f"  {name:18s} loop {loop:8.2f} s ({args.iterations / loop:6.2f} it/s)   command {wall:8.2f} s")

    if not args.skip_bytes:
        print("bytes per rank, 2 ranks, CIFAR-10-shaped (10 classes, 3x32x32):")
        results["bytes"] = {}
        for method in ("dm", "dsa"):
            for ipc in (10, 50):
                traffic = run_ranks(2, step_traffic, method, ipc)[0]
                results["bytes"][f"{method} ipc{ipc}"] = traffic
                step = traffic["step"]
                sent = sum(op["sent"] for op in step.values())
                received = sum(op["received"] for op in step.values())
                calls = ", ".join(f"{op} x{counts['calls']}" for op, counts in step.items()) or "none"
                whole = traffic["whole_set"]["all_gather"]
                print(f"  {method} IPC {ipc}: per iteration sent {sent} received {received} ({calls}); "
                      f"whole-set gather sent {whole['sent']} received {whole['received']}")
    if args.json:
        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
