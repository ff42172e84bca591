"""The two primitives every training loop in ddz shares: one epoch of SGD, and accuracy.

Both take either one net or a `StackedNets` (N copies trained as one module). For stacked copies
each copy draws its own batch order from its own generator and gets its own augmentation, so
copy n follows exactly the path the same seed would take alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from ddz.devices import autocast_forward
from ddz.nets.batching import cross_entropy_backward, forward_in_pieces, micro_batch, summed_cross_entropy
from ddz.nets.stacked import StackedNets


class BatchObjective(Protocol):
    summed_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def batch(self, x: torch.Tensor, y: torch.Tensor,
              idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def copies_last(y: torch.Tensor) -> torch.Tensor:
    """Copy-major targets (N, b) or (N, b, K) as the stacked logits lay them out: (b, N) or (b, K, N)."""
    return y.T if y.dim() == 2 else y.permute(1, 2, 0)


class TrainStep:
    """One SGD step of `net` on an (augmented) batch, the epoch's summed loss and correct counts
    accumulated on the device (one value per copy for a StackedNets): forward, backward and
    optimiser step, with no host sync. `amp` (a torch dtype): the forwards under torch.autocast,
    losses in float32. `reset()` starts an epoch's totals."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                 copies: int, objective: BatchObjective | None = None, amp: torch.dtype | None = None):
        self.net, self.optimizer, self.amp = net, optimizer, amp
        self.stacked = isinstance(net, StackedNets)
        self.cpu = images.device.type == "cpu"
        self.micro = micro_batch(net, images)
        self.summed = objective.summed_loss if objective is not None else summed_cross_entropy
        self.total_loss = torch.zeros(copies, device=images.device)
        self.correct = torch.zeros(copies, device=images.device, dtype=torch.long)

    def reset(self) -> None:
        self.total_loss.zero_()
        self.correct.zero_()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """x, y: one net's batch (b, C, H, W), (b, ...); stacked copies' (N, b, C, H, W), (N, b, ...)."""
        self.optimizer.zero_grad(set_to_none=True)
        if not self.stacked:
            loss, logits = cross_entropy_backward(autocast_forward(self.net, self.amp), x, y, self.micro,
                                                  self.summed)
        elif self.cpu:  # copy by copy: forward and backward in cache
            steps = [
                cross_entropy_backward(autocast_forward(forward, self.amp), part, target, self.micro,
                                       self.summed)
                for forward, part, target in zip(self.net.copy_forwards(), x, y, strict=True)
            ]
            loss, logits = torch.stack([s[0] for s in steps]), torch.stack([s[1] for s in steps], 2)
            y = copies_last(y)
        else:  # copy n's images in channels [n*C, (n+1)*C), one forward for all copies
            x, y = x.transpose(0, 1).flatten(1, 2), copies_last(y)
            loss, logits = cross_entropy_backward(autocast_forward(self.net, self.amp), x, y, self.micro,
                                                  self.summed)
        self.optimizer.step()
        self.total_loss += loss * logits.shape[0]
        truth = y.argmax(1) if y.is_floating_point() else y  # soft targets: their top class
        self.correct += (logits.argmax(1) == truth).sum(0)


class GraphedStep(TrainStep):
    """The same step with static shapes, replayed from a CUDA graph on a GPU.

    The batch is copied into static input tensors and the step reads them: on a GPU the step
    (forward, backward, optimiser step and the epoch's totals) is captured once per batch shape
    as a torch.cuda.CUDAGraph and replayed, one launch instead of a few hundred; on a CPU it runs
    eagerly from the static tensors (no graphs there), the same arithmetic as `TrainStep`.

    A set of fixed size cut into batches of fixed size gives the same batch shapes every epoch:
    full batches and, when the size is not a multiple of the batch, one smaller last batch. That
    tail is neither dropped nor padded (the protocol trains on every image every epoch, as the
    reference's DataLoader does): it gets a graph of its own, so a run holds at most two graphs.
    The first step of each shape runs eagerly (on a side stream on a GPU, as capture requires
    warm-up); it is a real step of training, and it creates the optimiser's momentum buffers
    that the captured step updates in place. A new optimiser (the protocol's lr decay) needs a
    new GraphedStep. Augmentation and the batch draw stay outside the graph (their branch is
    chosen on the host per batch)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph | None]] = {}
        self.warm: set[tuple] = set()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        key = (tuple(x.shape), tuple(y.shape), y.dtype)
        entry = self.graphs.get(key)
        if entry is None and key not in self.warm:
            self.warm.add(key)
            self._eager(x, y)
            return
        if entry is None:
            entry = self.graphs[key] = self._capture(x, y)
        static_x, static_y, graph = entry
        static_x.copy_(x)
        static_y.copy_(y)
        if graph is None:
            super().__call__(static_x, static_y)
        else:
            graph.replay()

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.device.type != "cuda":
            super().__call__(x, y)
            return
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            super().__call__(x, y)
        torch.cuda.current_stream(x.device).wait_stream(side)

    def _capture(self, x: torch.Tensor, y: torch.Tensor):
        static_x, static_y = x.clone(), y.clone()
        if x.device.type != "cuda":
            return static_x, static_y, None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records, does not run: the replay that follows steps
            TrainStep.__call__(self, static_x, static_y)
        return static_x, static_y, graph


def train_epoch(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator | list[torch.Generator],
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    objective: BatchObjective | None = None,
    step: TrainStep | None = None,
    amp: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over (images, labels) in a random order drawn from `generator`.

    `objective` (ddz.distill.labels.Objective) turns each augmented batch into (images, targets)
    and gives the loss: mixing, soft labels from a teacher; without it, cross-entropy on labels.

    For a StackedNets, `generator` is a list (one per copy) and `augment` takes the copies'
    batches as (N, b, C, H, W).

    `step`: the TrainStep to run each batch with, kept across epochs (a GraphedStep for the
    graph-captured path; its optimiser is the one it was built with); None: a plain TrainStep
    of `optimizer` (with `amp`, autocast's dtype).

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
    step = step or TrainStep(net, optimizer, images, len(generators), objective, amp)
    step.reset()
    for start in range(0, len(images), batch_size):
        idx = orders[:, start : start + batch_size]  # (copies, b)
        x, y = images[idx], labels[idx]
        if not stacked:
            x, y = x[0], y[0]
        if augment is not None:
            x = augment(x)
        if objective is not None:
            x, y = objective.batch(x, y, idx if stacked else idx[0])
        step(x, y)
    losses, accuracies_ = step.total_loss / len(images), step.correct / len(images)
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
