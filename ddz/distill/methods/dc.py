"""DC (gradient matching) and DSA (DC with siamese augmentation of real and synthetic batches).

Per iteration: a fresh random net; per outer step: per class, the CE gradient on real images
(detached) against the CE gradient on the class's synthetic images (kept in the graph), the
distance summed over classes, plus guidance, one image step; then, except after the last outer
step, `inner_loop` epochs of SGD(lr_net) on the synthetic set (per-image DSA for DSA).

What is batched: the real images of all classes are drawn in one device call, and one grouped
DSA call augments all classes (each class its own parameters, shared by its real and synthetic
images). The gradients themselves stay per class: one backward per class is the cost of the
method (a shared backward of a summed loss would add the classes' gradients together).

Over several ranks (a `ClassShard`) each rank matches the gradients of its own classes and
updates their images; after each image step the whole set is gathered, so that every rank trains
the same inner-loop net (same net seed, same batch order) on the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddz.devices import autocast_forward
from ddz.distill.methods.base import (
    ClassMatching,
    IterationRNG,
    NetSource,
    SynState,
)
from ddz.distill.methods.distance import gradient_distance, matched_parameters
from ddz.nets.batching import cross_entropy_grad, has_batch_statistics, micro_batch
from ddz.training import train_epoch

BN_IMAGES_PER_CLASS = 16  # real images per class that set BatchNorm statistics (as the reference)


def class_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor],
    params: Sequence[torch.Tensor],
    images: torch.Tensor,
    create_graph: bool,
    micro: int | None = None,
    first_class: int = 0,
) -> list[torch.Tensor]:
    """CE gradients of each class's images (K, m, C, H, W), labelled first_class, first_class + 1,
    ...: one tensor per parameter, with a leading class axis (K, *shape). Without `create_graph`
    the gradients are detached and each class runs `micro` images per forward (None: all)."""
    per_class = []
    for c in range(images.shape[0]):
        label = first_class + c
        target = torch.full((images.shape[1],), label, dtype=torch.long, device=images.device)
        if create_graph:
            loss = F.cross_entropy(forward(images[c]), target)
            per_class.append(torch.autograd.grad(loss, params, create_graph=True))
        else:
            per_class.append(cross_entropy_grad(forward, params, images[c], target, micro))
    return [torch.stack(g) for g in zip(*per_class, strict=True)]


def matching_loss(
    net: nn.Module,
    real: torch.Tensor,
    syn: torch.Tensor,
    metric: str = "ours",
    fast_forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    first_class: int = 0,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """Sum over classes of the gradient distance; `real` (K, n, ...) and `syn` (K, IPC, ...)
    already augmented, of classes first_class.. . `fast_forward` (e.g. the compiled net) serves
    the real side, which needs no double backward. `amp`: both sides' forwards under autocast."""
    params = list(net.parameters())
    used = [params[i] for i in matched_parameters(params, metric)]
    micro = micro_batch(net, real[0])
    real_forward = autocast_forward(net if fast_forward is None else fast_forward, amp)
    g_real = class_gradients(real_forward, used, real, False, micro, first_class)
    g_syn = class_gradients(autocast_forward(net, amp), used, syn, True, first_class=first_class)
    return gradient_distance(g_syn, g_real, metric)


class GradientMatching(ClassMatching):
    """DC (`config.method == "dc"`) and DSA (`"dsa"`)."""

    def prepare(self) -> None:
        config, dataset = self.config, self.dataset
        self.name = config.method
        self.nets = NetSource(config, dataset, entry="forward")

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        cfg, data, shard = self.config, self.dataset, self.shard
        classes = shard.classes
        net, fast = self.nets.fresh(rng.net_seed(), requires_grad=True)
        net_optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
        real_gen = rng.generator("real")
        dsa = rng.dsa(cfg.dsa) if cfg.augment else None
        train_augment = (lambda x: dsa(x, dsa.per_sample(len(x)))) if dsa is not None else None
        guide_pick = rng.generator("guidance-pick", device="cpu")
        guide_data = rng.generator("guidance-data")
        order = rng.generator("inner-order")
        batch_stats = has_batch_statistics(net)
        total = torch.zeros((), device=data.device)
        for outer in range(cfg.outer_loop):
            if batch_stats:
                self._freeze_batch_statistics(net, real_gen)
            real = data.sample_all_classes(self.n_real, real_gen, classes)
            syn = state.grouped()
            if dsa is not None:
                params = dsa.siamese(data.num_classes).select(classes.start, classes.stop)
                real, syn = dsa(real, params), dsa(syn, params)
            loss = matching_loss(net, real, syn, cfg.distance, fast, classes.start, cfg.amp_dtype)
            if self.guidance is not None:
                loss = loss + self.guidance.loss(state.images, state.labels, guide_pick, guide_data, shard)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            total += loss.detach()
            if outer == cfg.outer_loop - 1:
                break
            images = shard.whole(state.images)
            labels = shard.labels(images.device) if shard.sharded else state.labels
            for _ in range(cfg.inner_loop):
                train_epoch(fast, images, labels, net_optimizer, cfg.batch_train, order, train_augment,
                            amp=cfg.amp_dtype)
        return total

    def _freeze_batch_statistics(self, net: nn.Module, gen: torch.Generator) -> None:
        """BatchNorm statistics from a few real images of every class, then frozen (eval mode):
        a synthetic class batch is too small for them (the reference does the same)."""
        n = min(BN_IMAGES_PER_CLASS, self.n_real)
        net.train()
        with torch.no_grad():
            net(self.dataset.sample_all_classes(n, gen).flatten(0, 1))
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
