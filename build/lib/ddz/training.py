"""The two primitives every training loop in ddz shares: one epoch of SGD, and accuracy.

Both take either one net or a `StackedNets` (N copies trained as one module). For stacked copies
each copy draws its own batch order from its own generator and gets its own augmentation, so
copy n follows exactly the path the same seed would take alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ddz.nets.batching import cross_entropy_backward, forward_in_pieces, micro_batch
from ddz.nets.stacked import StackedNets


def train_epoch(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator | list[torch.Generator],
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over (images, labels) in a random order drawn from `generator`.

    For a StackedNets, `generator` is a list (one per copy) and `augment` takes the copies'
    batches as (N, b, C, H, W).

    Returns (mean loss, accuracy) over the epoch as tensors on the device (for stacked copies:
    one of each per copy): no host sync, so loops that ignore them (evaluation, the DC/DSA inner
    loop) never wait for a GPU.
    On CPU each batch runs in cache-sized micro-batches with accumulated gradients (same step).
    """
    net.train()
    stacked = isinstance(net, StackedNets)
    generators = generator if isinstance(generator, list) else [generator]
    orders = torch.stack(
        [torch.randperm(len(images), generator=g, device=g.device) for g in generators]
    ).to(images.device)
    total_loss = torch.zeros(len(generators), device=images.device)
    correct = torch.zeros(len(generators), device=images.device, dtype=torch.long)
    micro = micro_batch(net, images)
    for start in range(0, len(images), batch_size):
        idx = orders[:, start : start + batch_size]  # (copies, b)
        x, y = images[idx], labels[idx]
        if not stacked:
            x, y = x[0], y[0]
        if augment is not None:
            x = augment(x)
        optimizer.zero_grad(set_to_none=True)
        if not stacked:
            loss, logits = cross_entropy_backward(net, x, y, micro)
        elif images.device.type == "cpu":  # copy by copy: forward and backward in cache
            steps = [
                cross_entropy_backward(forward, part, target, micro)
                for forward, part, target in zip(net.copy_forwards(), x, y, strict=True)
            ]
            loss, logits = torch.stack([s[0] for s in steps]), torch.stack([s[1] for s in steps], 2)
            y = y.T
        else:  # copy n's images in channels [n*C, (n+1)*C), one forward for all copies
            x, y = x.transpose(0, 1).flatten(1, 2), y.T
            loss, logits = cross_entropy_backward(net, x, y, micro)
        optimizer.step()
        total_loss += loss * idx.shape[1]
        correct += (logits.argmax(1) == y).sum(0)
    losses, accuracies_ = total_loss / len(images), correct / len(images)
    return (losses, accuracies_) if stacked else (losses[0], accuracies_[0])


@torch.no_grad()
def correct_counts(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """How many of (images, labels) `net` classifies right: 0-d, or (N,) for stacked copies."""
    net.eval()
    stacked = isinstance(net, StackedNets)
    correct = torch.zeros(net.copies if stacked else (), device=images.device, dtype=torch.long)
    micro = micro_batch(net, images)
    for start in range(0, len(images), batch_size):
        logits = forward_in_pieces(net, images[start : start + batch_size], micro)
        target = labels[start : start + batch_size]
        correct += (logits.argmax(1) == (target[:, None] if stacked else target)).sum(0)
    return correct


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(correct_counts(net, images, labels)) / len(images)


def accuracies(net: StackedNets, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """The test accuracy of every copy, in one pass over the test set."""
    return (correct_counts(net, images, labels).double() / len(images)).tolist()
