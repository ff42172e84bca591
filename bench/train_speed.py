"""Images per second of one training step (forward + backward + SGD step) of a DD net: ddz's
step (`ddz.nets.batching.cross_entropy_backward`, cache-sized micro-batches on CPU) against a
plain whole-batch step, in the same process.

    .venv/bin/python bench/train_speed.py [--arch convnet3] [--batch 256] [--size 32] [--channels 3]
                                          [--steps 20] [--warmup 3] [--device cpu] [--json FILE]

The defaults are the protocol's: ConvNet-3 on 32x32x3 with batch 256 and SGD(0.01, momentum 0.9,
weight decay 5e-4), the step every evaluation and PTM-training epoch repeats.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
import torch.nn.functional as F

from ddz.io import atomic_write_json
from ddz.nets import build_net
from ddz.nets.batching import cross_entropy_backward, micro_batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    arch: str, batch: int, size: int, channels: int, classes: int, steps: int, warmup: int, device: str
) -> dict:
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    images = torch.randn(batch, channels, size, size, generator=gen, device=dev)
    labels = torch.randint(0, classes, (batch,), generator=gen, device=dev)
    net = build_net(arch, channels, classes, size, generator_seed=0).to(dev)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    micro = micro_batch(net, images)

    def plain_step() -> None:
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ddz_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        cross_entropy_backward(net, images, labels, micro)
        optimizer.step()

    def timed(step) -> float:
        for _ in range(warmup):
            step()
        synchronize(dev)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(dev)
        return time.perf_counter() - started

    plain_seconds, seconds = timed(plain_step), timed(ddz_step)
    return {
        "arch": arch,
        "batch": batch,
        "shape": [channels, size, size],
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": steps,
        "micro_batch": micro,
        "plain_seconds": round(plain_seconds, 4),
        "plain_images_per_sec": round(steps * batch / plain_seconds, 1),
        "ratio": round(plain_seconds / seconds, 3),
        "seconds": round(seconds, 4),
        "steps_per_sec": round(steps / seconds, 3),
        "images_per_sec": round(steps * batch / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="convnet3")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(
        args.arch, args.batch, args.size, args.channels, args.classes, args.steps, args.warmup, args.device
    )
    print(
        f"{result['arch']} train step {args.channels}x{args.size}x{args.size} batch {args.batch} on "
        f"{result['device']} ({result['threads']} threads): ddz {result['images_per_sec']:.0f} images/s "
        f"(micro-batch {result['micro_batch']}), plain {result['plain_images_per_sec']:.0f} images/s, "
        f"ratio {result['ratio']:.2f}x over {args.steps} steps"
    )
    if args.json_path:
        atomic_write_json(args.json_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
