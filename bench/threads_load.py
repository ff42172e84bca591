"""A DM iteration of ddz against the reference-style per-class loop (bench/distill_speed.py), each
alone and beside another CPU-bound process, at 1 thread and at the cores ddz would choose
(ddz.threads.available_cores). The load average is recorded beside every figure: on a shared
machine "alone" means "without our own competitor", not quiet.

Beside a busy core, a 2-thread iteration's time swings several-fold from one second to the next
(the scheduler decides when the descheduled thread runs again), so the two codes' iterations
alternate, and the slowdown is the median over several alone/loaded rounds, with its range.

    .venv/bin/python bench/threads_load.py                 # about 1 minute on 2 cores
    .venv/bin/python bench/threads_load.py --json load.json --rounds 9

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


def measure_interleaved(fns: dict, reps: int, first_iteration: int) -> dict[str, float]:
    """Median seconds per iteration of each variant, their iterations alternating so that both
    see the same moments of a noisy machine."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(reps):
        for name, fn in fns.items():
            began = time.perf_counter()
            fn(first_iteration + rep)
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed iterations per figure (median)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alone/loaded pairs per thread count; the slowdown's median over them")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ds.WIDTH, ds.BATCH_REAL = args.width, args.batch_real
    data = ds.random_dataset("cpu")
    cores = available_cores()
    rows, slowdowns = [], {}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        fns = variants(data)
        for fn in fns.values():
            fn(0)  # warm-up
        iteration = 1
        for round_ in range(args.rounds):
            seconds = {}
            for condition in ("alone", "loaded"):
                busy = None
                if condition == "loaded":
                    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    time.sleep(1.0)
                try:
                    load = load_average()
                    seconds[condition] = measure_interleaved(fns, args.reps, iteration)
                    iteration += args.reps
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                for name, value in seconds[condition].items():
                    rows.append({"code": name, "threads": threads, "round": round_, "condition": condition,
                                 "seconds": round(value, 4), "loadavg": load})
                    print(f"{name:9s} threads {threads} round {round_} {condition:6s} {value:7.3f}s  "
                          f"(loadavg {load})", flush=True)
            for name in fns:
                ratio = seconds["loaded"][name] / seconds["alone"][name]
                slowdowns.setdefault(f"{name} {threads}t", []).append(round(ratio, 2))
    summary = {key: {"median": statistics.median(v), "min": min(v), "max": max(v)}
               for key, v in slowdowns.items()}
    print("loaded / alone, median (min-max) over rounds: " + ", ".join(
        f"{k} {v['median']}x ({v['min']}-{v['max']})" for k, v in summary.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": cores, "width": ds.WIDTH, "batch_real": ds.BATCH_REAL,
                                               "torch": torch.__version__, "rounds": args.rounds,
                                               "reps": args.reps, "rows": rows, "slowdown": slowdowns,
                                               "summary": summary}, indent=2))

if __name__ == "__main__":
    main()
