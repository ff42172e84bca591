"""A DM iteration of ddz against the reference-style per-class loop (bench/distill_speed.py), each
alone and beside another CPU-bound process, at 1 thread and at the cores ddz would choose
(ddz.threads.available_cores). The load average is recorded beside every figure: on a shared
machine "alone" means "without our own competitor", not quiet.

    .venv/bin/python bench/threads_load.py                 # about 2 minutes on 2 cores
    .venv/bin/python bench/threads_load.py --json load.json --reps 3

The competitor is `python -c "while True: pass"`, one busy core. Shapes: bench/distill_speed.py's
(32x32x3, 10 classes, IPC 10) at ConvNet-3 width 32 and batch_real 64, to stay short (--width 128
--batch-real 256: the full shapes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import distill_speed as ds  # noqa: E402  (the reference-style loop and the shapes)

from ddz.distill.methods import DistillConfig, IterationRNG, build_method  # noqa: E402
from ddz.distill.methods.base import new_state  # noqa: E402
from ddz.threads import available_cores  # noqa: E402


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def variants(data) -> dict:
    config = DistillConfig(method="dm", ipc=ds.IPC, batch_real=ds.BATCH_REAL,
                           net_options=(("width", ds.WIDTH),)).resolved()
    start = data.sample_all_classes(ds.IPC, torch.Generator().manual_seed(1)).flatten(0, 1)
    ours = new_state(start, ds.IPC, config.lr_img, config.momentum)
    theirs = new_state(start, ds.IPC, config.lr_img, config.momentum)
    runner, reference = build_method(config, data), ds.ReferenceStyle(data, seed=0)
    return {
        "ddz": lambda it: runner.step(ours, IterationRNG(0, it, "cpu")),
        "reference": lambda it: reference.dm_iteration(theirs, IterationRNG(0, it, "cpu"), config.dsa),
    }


def measure(fn, reps: int) -> tuple[float, str]:
    fn(0)  # warm-up
    loads, times = [], []
    for rep in range(reps):
        loads.append(load_average())
        began = time.perf_counter()
        fn(rep + 1)
        times.append(time.perf_counter() - began)
    return statistics.median(times), loads[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2, help="timed iterations per figure (median)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ds.WIDTH, ds.BATCH_REAL = args.width, args.batch_real
    data = ds.random_dataset("cpu")
    cores = available_cores()
    rows = []
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for condition in ("alone", "loaded"):
            busy = None
            if condition == "loaded":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for name, fn in variants(data).items():
                    seconds, load = measure(fn, args.reps)
                    rows.append({"code": name, "threads": threads, "condition": condition,
                                 "seconds": round(seconds, 3), "loadavg": load})
                    print(f"{name:9s} threads {threads} {condition:6s} {seconds:7.3f}s  (loadavg {load})",
                          flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    slowdown = {}
    for row in rows:
        if row["condition"] == "loaded":
            alone = next(r for r in rows if r["condition"] == "alone" and r["code"] == row["code"]
                         and r["threads"] == row["threads"])
            slowdown[f"{row['code']} {row['threads']}t"] = round(row["seconds"] / alone["seconds"], 2)
    print("loaded / alone: " + ", ".join(f"{k} {v}x" for k, v in slowdown.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": cores, "width": ds.WIDTH, "batch_real": ds.BATCH_REAL,
                                               "torch": torch.__version__, "rows": rows,
                                               "slowdown": slowdown}, indent=2))


if __name__ == "__main__":
    main()
