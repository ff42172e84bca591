"""How long must the demo train its PTM pool? The sweep behind `DemoConfig`'s zoo settings.

Trains a demo zoo (`--archs` x `--seeds` seeds on the embedded digits, the paper's PTM recipe:
SGD lr 0.01, momentum 0.9, weight decay 5e-3, no augmentation) as the demo's zoo stage does
(`Zoo.plan` + `Zoo.train`, inline launcher) for each (epochs, batch size, ConvNet width)
setting, each in its own fresh zoo under `--out`, and prints a markdown table, a row per arch:
the last epoch's train loss (mean over seeds) and test accuracy (mean and per seed), read from
the snapshots' recorded metrics, and the seconds that arch's seeds took. "zoo CPU s" sums the
setting's rows: all `--archs` of the run.

    .venv/bin/python bench/demo_zoo_sweep.py --out runs/demo-zoo-sweep \
        [--archs convnet3 convnet4 convnet3bn] [--settings 10x256 3x64 10x64w32 20x64w32] [--threads 1]

CPU seconds (the process's, one torch thread by default) rather than wall seconds, so that the
numbers hold on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from ddz.data import load_dataset
from ddz.io import atomic_write_json
from ddz.zoo.api import Zoo
from ddz.zoo.launch import LaunchConfig
from ddz.zoo.paths import ZooPaths
from ddz.zoo.recipes import TrainRecipe
from ddz.zoo.sources.local import read_snapshot_meta

DATASET = "digits"


def parse_setting(text: str) -> tuple[int, int, int | None]:
    """`"20x64"` -> (20 epochs, batch 64, the arch's width); `"20x64w32"`: ConvNets of width 32."""
    epochs, _, rest = text.partition("x")
    batch, _, width = rest.partition("w")
    return int(epochs), int(batch or 256), int(width) if width else None


def run_setting(out: Path, archs: list[str], seeds: int, setting: str, data) -> list[dict]:
    epochs, batch, width = parse_setting(setting)
    home = out / setting
    shutil.rmtree(home, ignore_errors=True)  # fresh: the seconds are training, not skipping
    zoo = Zoo(ZooPaths.under(home / "home", registry=home / "registry.yaml"))
    net = (("width", width),) if width else ()
    recipe = TrainRecipe(epochs=epochs, batch_size=batch, snapshots=(epochs,), net=net)
    rows = []
    for arch in archs:
        started, cpu_started = time.perf_counter(), time.process_time()
        jobs = zoo.plan(DATASET, [arch], list(range(seeds)), recipe, data, device="cpu")
        summary = zoo.train([job for job, _ in jobs], LaunchConfig(launcher="inline"), None, data)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        if summary.failed:
            raise RuntimeError(summary.failed[0].error)
        metas = [read_snapshot_meta(job.store.root / job.snapshot_name(epochs).relpath) for job, _ in jobs]
        rows.append({
            "arch": arch, "setting": setting, "epochs": epochs, "batch": batch, "width": width or 128,
            "steps": epochs * -(-len(data.train_images) // batch),
            "train_loss": statistics.mean(m.metrics["train_loss"] for m in metas),
            "test_accs": [m.metrics["test_acc"] for m in metas],
            "seconds": seconds, "cpu_seconds": cpu_seconds,
        })
    return rows


def markdown(rows: list[dict]) -> str:
    zoo_cpu: dict[str, float] = {}
    for row in rows:
        zoo_cpu[row["setting"]] = zoo_cpu.get(row["setting"], 0.0) + row["cpu_seconds"]
    lines = [
        "| arch | width | epochs x batch (SGD steps) | final train loss | test acc % mean (per seed) "
        "| arch CPU s (wall s) | zoo CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        accs = row["test_accs"]
        lines.append(
            f"| {row['arch']} | {row['width']} | {row['epochs']} x {row['batch']} ({row['steps']}) "
            f"| {row['train_loss']:.3f} "
            f"| {100 * statistics.mean(accs):.1f} ({' / '.join(f'{100 * a:.1f}' for a in accs)}) "
            f"| {row['cpu_seconds']:.1f} ({row['seconds']:.1f}) | {zoo_cpu[row['setting']]:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo-zoo-sweep"))
    parser.add_argument("--archs", nargs="+", default=["convnet3", "convnet4", "convnet3bn"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["10x256", "3x64", "10x64w32", "20x64w32"],
                        help="EPOCHSxBATCH[wWIDTH], e.g. 20x64w32 (width: the ConvNets' net option)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DATASET, device="cpu")
    rows = []
    for setting in args.settings:
        rows += run_setting(args.out, args.archs, args.seeds, setting, data)
        print("\n".join(markdown(rows[-len(args.archs):]).splitlines()[2:]), flush=True)
    print(f"\ndigits: {len(data.train_images)} training images, torch threads {torch.get_num_threads()}\n")
    print(markdown(rows))
    if args.json:
        atomic_write_json(args.json, rows)


if __name__ == "__main__":
    main()
