"""How many images one forward takes.

On a CPU a large batch is slow: one 128-channel activation of 256 images at 32x32 is 134 MB, far
beyond the caches, so every layer streams it through memory several times. Cut into micro-batches
of about 8 MB per activation, the same arithmetic runs about twice as fast on a 2-core machine
(bench/distill_speed.py). The count follows the net's first-layer width, so narrower nets take
more images per forward: the same cache footprint in fewer, larger parallel steps, which is also
what a CPU shared with other work rewards (docs/distill.md, CPU threads). The results are the
same up to float summation order, as long as an image's output does not depend on the rest of
its batch: nets with batch statistics (BatchNorm in train mode) always take the whole batch. On
GPUs large batches are what is fast, so they too take the whole batch.

Distillation nets on CPU also use the channels_last memory format: oneDNN's 2x2 average pooling
is about 10x faster there than in NCHW, which makes DM's real-image forward about 20% faster.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

CPU_CACHE_BYTES = 8 << 20  # one activation of one micro-batch
ESTIMATE_CHANNELS = 128  # the size estimate's width for a net without a conv (the DD nets' default)


def has_batch_statistics(net: nn.Module, training_only: bool = False) -> bool:
    """Whether `net` has BatchNorm layers (`training_only`: ones in train mode, which normalise
    with the statistics of the batch they see)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not training_only)
        for m in net.modules()
    )


def micro_batch(net: nn.Module, images: torch.Tensor) -> int | None:
    """Images per forward for `net` (in its current mode) on batches like `images` (N, C, H, W):
    a cache-sized count on CPU where each image's output is its own, else None (whole batch).
    (Stacked copies on CPU run their convs copy by copy, so the count is per copy's activation.)"""
    if images.device.type != "cpu" or has_batch_statistics(net, training_only=True):
        return None
    per_image = 4 * first_width(net) * images.shape[-2] * images.shape[-1]
    return max(1, CPU_CACHE_BYTES // per_image)


def first_width(net: nn.Module) -> int:
    """Channels of the first conv's output, per copy of stacked nets (ESTIMATE_CHANNELS when the
    net has no conv). Narrower nets take more images per forward: fewer, larger parallel steps."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.out_channels // module.groups  # a StackedConv2d's groups are its copies
    return ESTIMATE_CHANNELS


def device_layout(net: nn.Module) -> nn.Module:
    """`net` in the memory format its device runs fastest: channels_last on CPU."""
    device = next(net.parameters()).device
    return net.to(memory_format=torch.channels_last) if device.type == "cpu" else net


def pieces(n: int, size: int | None) -> list[slice]:
    size = size or n
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def forward_in_pieces(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, size: int | None
) -> torch.Tensor:
    """forward(images), `size` images at a time (None: all at once)."""
    return torch.cat([forward(images[part]) for part in pieces(len(images), size)])


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy: 0-d, or for stacked copies' logits (B, K, N) and labels (B, N)
    one sum per copy, (N,)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, labels, reduction="sum")
    return F.cross_entropy(logits, labels, reduction="none").sum(0)


def cross_entropy_backward(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    size: int | None,
    summed_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = summed_cross_entropy,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagate the batch mean of `summed_loss` (cross-entropy unless given; it sums over
    the batch, per copy for stacked copies), `size` images per forward; parameter gradients
    accumulate in `.grad`. `labels` are any per-image targets (hard labels, soft logits).
    Returns the loss (per copy for stacked copies) and the logits, detached."""
    total = torch.zeros((), device=images.device)
    logits = []
    for part in pieces(len(images), size):
        out = forward(images[part])
        loss = summed_loss(out, labels[part]) / len(images)
        loss.sum().backward()
        total = total + loss.detach()
        logits.append(out.detach())
    return total, torch.cat(logits)


def cross_entropy_grad(
    forward: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    size: int | None,
) -> list[torch.Tensor]:
    """Gradients of the batch-mean cross-entropy with respect to `params` (detached), `size`
    images per forward."""
    grads = [torch.zeros_like(p) for p in params]
    for part in pieces(len(images), size):
        loss = F.cross_entropy(forward(images[part]), labels[part], reduction="sum") / len(images)
        for total, step in zip(grads, torch.autograd.grad(loss, params), strict=True):
            total.add_(step)
    return grads
