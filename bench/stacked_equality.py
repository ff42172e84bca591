"""How far N batched models end from the same N models trained one after another, per arch.

    .venv/bin/python bench/stacked_equality.py [--device cuda] [--epochs 5] [--models 3]

Runs the evaluation protocol's training (`train_net` vs `train_stacked`, DSA, same seeds) on a
random IPC-10 set of 32x32x3 images (64x64 for ConvNet-6) and prints, per arch, the largest
difference of any weight relative to that tensor's largest magnitude, and both accuracy lists.
On CPU the difference is 0 (the tests pin it); on a GPU the grouped kernels add in another order.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ddz.data.base import ImageDataset
from ddz.distill.evaluate import EvalConfig, train_net, train_stacked
from ddz.nets import arch_names
from ddz.training import accuracies, accuracy


def random_set(size: int, device: torch.device) -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(100, 3, size, size, generator=gen)
    labels = torch.arange(100) % 10
    return ImageDataset(
        "random", images.to(device), labels.to(device), images.to(device), labels.to(device),
        [str(c) for c in range(10)], (0.0,) * 3, (1.0,) * 3,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--arch", nargs="+", default=arch_names())
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    config = EvalConfig(epochs=args.epochs)
    seeds = list(range(args.models))
    for arch in args.arch:
        data = random_set(64 if arch == "convnet6" else 32, device)
        x, y = data.train_images, data.train_labels
        sequential = [train_net(arch, x, y, data, config, seed) for seed in seeds]
        stacked = train_stacked(arch, x, y, data, config, seeds)
        worst = 0.0
        for alone, copy in zip(sequential, stacked.nets(), strict=True):
            for key, value in alone.state_dict().items():
                if value.is_floating_point():
                    scale = value.abs().max().clamp_min(1e-12)
                    worst = max(worst, float((copy.state_dict()[key] - value).abs().max() / scale))
        seq_acc = [accuracy(net, x, y) for net in sequential]
        print(f"{arch:>10}: max relative weight difference {worst:.2e}; "
              f"accuracies sequential {seq_acc} batched {accuracies(stacked, x, y)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
