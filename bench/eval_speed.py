"""Time the evaluation protocol's N models trained one after another (ddz sequential, and a plain
reference-style loop) against the same N models trained as one StackedNets (ddz batched), in one
process; and the zoo's seeds trained for one epoch, one by one vs batched.

    .venv/bin/python bench/eval_speed.py                          # CPU: N = 5 and 25
    .venv/bin/python bench/eval_speed.py --device cuda --models 5 25 100 --json speed.json

Evaluation workload: a CIFAR-10-shaped IPC-10 synset (100 images, 32x32x3; `--shape 1x28` for
MNIST-shaped ones), ConvNet-3, DSA,
batch 256, SGD(0.01, momentum 0.9, wd 5e-4): the per-epoch work of `evaluate_synset`. Each
variant trains its N models for `--epochs` epochs after `--warmup` untimed ones; the table gives
seconds per epoch of all N models (median of `--reps` interleaved rounds). Zoo workload:
`--zoo-images` random 32x32x3 images, batch 256, no augmentation (the PTM recipe), `--zoo-seeds`
seeds for one epoch.

The reference-style loop is the reference evaluate_synset's inner loop written plainly: one net,
whole-batch forward, DSA per batch, cross-entropy, backward, SGD step. Ratios are the other
variant's time / batched time (> 1: batched faster). Peak memory, over all variants of a row
(the batched one holds the most): the CUDA allocator's peak, or on CPU the process's peak RSS (a
running maximum: rows are measured in increasing N).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from ddz.data.augment import DSA, DSAConfig
from ddz.data.base import ImageDataset
from ddz.devices import amp_dtype
from ddz.distill.evaluate import EvalConfig, fresh_net, stacked_augmentation, training_augmentation
from ddz.io import atomic_write_json
from ddz.nets.stacked import StackedNets
from ddz.seeding import generator
from ddz.training import GraphedStep, train_epoch

K, IPC = 10, 10
SHAPE = {"channels": 3, "size": 32}  # --shape; 1x28 is the MNIST family's (ConvNet pads it to 32)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shaped_dataset(images: int, device: torch.device) -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    channels, size = SHAPE["channels"], SHAPE["size"]
    train = torch.randn(images, channels, size, size, generator=gen)
    labels = torch.arange(images) % K
    return ImageDataset(
        "cifar10-shaped", train.to(device), labels.to(device), train[:K].to(device), labels[:K].to(device),
        [str(c) for c in range(K)], (0.0,) * channels, (1.0,) * channels,
    )


def timed(run: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def reference_training(
    data: ImageDataset, seeds: list[int], config: EvalConfig
) -> Callable[[int], Callable[[], None]]:
    """N nets, one after another, each trained by a plain whole-batch loop."""
    device = data.train_images.device
    nets = [fresh_net("convnet3", data, s, device) for s in seeds]
    optimizers = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for n in nets]
    dsas = [DSA(DSAConfig(), s, device) if config.augment != "none" else None for s in seeds]
    images, labels = data.train_images, data.train_labels

    def epochs_of(epochs: int) -> Callable[[], None]:
        def run() -> None:
            for net, optimizer, dsa in zip(nets, optimizers, dsas, strict=True):
                net.train()
                for _ in range(epochs):
                    order = torch.randperm(len(images), device=device)
                    for start in range(0, len(images), config.batch_size):
                        idx = order[start : start + config.batch_size]
                        x = images[idx] if dsa is None else dsa(images[idx], dsa.per_sample(len(idx)))
                        loss = F.cross_entropy(net(x), labels[idx])
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()

        return run

    return epochs_of


def ddz_training(
    data: ImageDataset, seeds: list[int], config: EvalConfig, batched: bool
) -> Callable[[int], Callable[[], None]]:
    """ddz's own training of N nets: sequential (train_epoch per net) or one StackedNets."""
    device = data.train_images.device
    images, labels = data.train_images, data.train_labels
    if batched:
        models = [StackedNets([fresh_net("convnet3", data, s, device) for s in seeds])]
        if config.compile:
            models[0].compile()
        orders = [[generator(s, "order", device=device) for s in seeds]]
        augments = [stacked_augmentation(config, data, "convnet3", seeds, device)]
    else:
        models = [fresh_net("convnet3", data, s, device) for s in seeds]
        orders = [generator(s, "order", device=device) for s in seeds]
        augments = [training_augmentation(config, data, "convnet3", s, device) for s in seeds]
    hyper = {"lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay}
    optimizers = [torch.optim.SGD(m.parameters(), **hyper) for m in models]
    # config.cuda_graph: each model's GraphedStep, kept across epochs (its graphs captured once)
    amp = amp_dtype(config.amp)
    steps = [GraphedStep(m, o, images, len(seeds) if batched else 1, None, amp) if config.cuda_graph else None
             for m, o in zip(models, optimizers, strict=True)]

    def epochs_of(epochs: int) -> Callable[[], None]:
        def run() -> None:
            for model, optimizer, order, augment, step in zip(models, optimizers, orders, augments, steps,
                                                              strict=True):
                for _ in range(epochs):
                    train_epoch(model, images, labels, optimizer, config.batch_size, order, augment, None,
                                step, amp)

        return run

    return epochs_of


def measure_eval(
    models: int, epochs: int, warmup: int, reps: int, device: torch.device, reference: bool, compiled: bool,
    graphed: bool = False, amp: bool = False,
) -> dict:
    """Seconds per epoch of each variant: `reps` rounds, the variants interleaved within a round
    (so that drift of a shared machine hits them alike), median over rounds."""
    data = shaped_dataset(K * IPC, device)
    config = EvalConfig(epochs=epochs)
    seeds = list(range(models))
    runners = {
        "sequential": ddz_training(data, seeds, config, False),
        "batched": ddz_training(data, seeds, config, True),
    }
    if compiled:
        runners["compiled"] = ddz_training(data, seeds, replace(config, compile=True), True)
    if graphed:
        runners["graphed"] = ddz_training(data, seeds, replace(config, cuda_graph=True), True)
    if amp:
        runners["bf16"] = ddz_training(data, seeds, replace(config, amp="bf16"), True)
    if reference:
        runners["reference"] = reference_training(data, seeds, config)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row: dict = {"models": models, "epochs": epochs, "reps": reps}
    for name, runner in runners.items():  # warm-up; for "compiled" it includes compiling
        row[f"{name}_warmup_s"] = timed(runner(warmup), device)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(reps):
        for name, runner in runners.items():
            times[name].append(timed(runner(epochs), device) / epochs)
    for name, seconds in times.items():
        row[f"{name}_s_per_epoch"] = statistics.median(seconds)
        row[f"{name}_all_s_per_epoch"] = seconds
    row["peak_mb"] = round(peak_memory_mb(device), 1)
    for name in ("sequential", "reference", "compiled", "graphed", "bf16"):
        if name in times:
            row[f"batched_vs_{name}"] = row[f"{name}_s_per_epoch"] / row["batched_s_per_epoch"]
    if compiled:
        row["compiled_vs_sequential"] = row["sequential_s_per_epoch"] / row["compiled_s_per_epoch"]
    return row


def measure_zoo(seeds: int, images: int, reps: int, device: torch.device, reference: bool = False) -> dict:
    """One epoch of `seeds` zoo seeds, one by one vs batched (and with `reference`, the plain
    reference-style loop): interleaved rounds, median."""
    data = shaped_dataset(images, device)
    config = EvalConfig(augment="none", lr=0.01, weight_decay=5e-3)
    runners = {name: ddz_training(data, list(range(seeds)), config, name == "batched")
               for name in ("sequential", "batched")}
    if reference:
        runners["reference"] = reference_training(data, list(range(seeds)), config)
    for runner in runners.values():
        timed(runner(1), device)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(reps):
        for name, runner in runners.items():
            times[name].append(timed(runner(1), device))
    row: dict = {"seeds": seeds, "images": images, "reps": reps}
    for name, seconds in times.items():
        row[f"{name}_s"] = statistics.median(seconds)
        row[f"{name}_all_s"] = seconds
    row["batched_vs_sequential"] = row["sequential_s"] / row["batched_s"]
    if reference:
        row["batched_vs_reference"] = row["reference_s"] / row["batched_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", type=int, nargs="+", default=[5, 25])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds of --epochs (median)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference-style loop")
    parser.add_argument("--compile", action="store_true", help="also time batched with torch.compile")
    parser.add_argument("--zoo-seeds", type=int, default=10)
    parser.add_argument("--zoo-images", type=int, default=2560, help="train images (CIFAR-10: 50000)")
    parser.add_argument("--shape", default="3x32", help="CHANNELSxSIZE of the images: 3x32 (CIFAR), 1x28")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    channels, size = (int(v) for v in args.shape.split("x"))
    SHAPE.update(channels=channels, size=size)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"images {channels}x{size}x{size}")
    rows = []
    print(f"{'N':>4} {'reference s/ep':>15} {'sequential s/ep':>16} {'batched s/ep':>13} "
          f"{'vs seq':>7} {'vs ref':>7} {'peak MB':>9}")
    for models in sorted(args.models):
        row = measure_eval(
            models, args.epochs, args.warmup, args.reps, device, not args.no_reference, args.compile
        )
        rows.append(row)
        ref = row.get("reference_s_per_epoch", float("nan"))
        print(
            f"{models:>4} {ref:>15.4f} {row['sequential_s_per_epoch']:>16.4f} "
            f"{row['batched_s_per_epoch']:>13.4f} {row['batched_vs_sequential']:>6.2f}x "
            f"{row.get('batched_vs_reference', float('nan')):>6.2f}x {row['peak_mb']:>9.0f}"
        )
        if args.compile:
            print(f"{'':>4} compiled: {row['compiled_s_per_epoch']:.4f} s/epoch, "
                  f"{row['compiled_vs_sequential']:.2f}x sequential "
                  f"(compile + warm-up {row['compiled_warmup_s']:.1f} s)")
    zoo = measure_zoo(args.zoo_seeds, args.zoo_images, args.reps, device) if args.zoo_seeds else None
    if zoo:
        print(
            f"zoo: {zoo['seeds']} seeds x 1 epoch of {zoo['images']} images: "
            f"sequential {zoo['sequential_s']:.2f} s, batched {zoo['batched_s']:.2f} s, "
            f"{zoo['batched_vs_sequential']:.2f}x"
        )
    if args.json_path:
        atomic_write_json(args.json_path, {
            "device": str(device), "device_name": name, "torch": torch.__version__, "shape": args.shape,
            "threads": torch.get_num_threads(), "eval": rows, "zoo": zoo,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
