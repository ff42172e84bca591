"""The two primitives every training loop in ddz shares: one epoch of SGD, and accuracy."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ddz.nets.batching import cross_entropy_backward, forward_in_pieces, micro_batch


def train_epoch(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over (images, labels) in a random order drawn from `generator`.

    Returns (mean loss, accuracy) over the epoch as 0-d tensors on the device: no host sync, so
    loops that ignore them (evaluation, the DC/DSA inner loop) never wait for a GPU.
    On CPU each batch runs in cache-sized micro-batches with accumulated gradients (same step).
    """
    net.train()
    order = torch.randperm(len(images), generator=generator, device=generator.device)
    order = order.to(images.device)
    total_loss = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    micro = micro_batch(net, images)
    for start in range(0, len(images), batch_size):
        idx = order[start : start + batch_size]
        x, y = images[idx], labels[idx]
        if augment is not None:
            x = augment(x)
        optimizer.zero_grad(set_to_none=True)
        loss, logits = cross_entropy_backward(net, x, y, micro)
        optimizer.step()
        total_loss += loss * len(idx)
        correct += (logits.argmax(1) == y).sum()
    return total_loss / len(images), correct / len(images)


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
    net.eval()
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    micro = micro_batch(net, images)
    for start in range(0, len(images), batch_size):
        logits = forward_in_pieces(net, images[start : start + batch_size], micro)
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum()
    return float(correct) / len(images)
