"""DM (distribution matching): match the mean embeddings of real and synthetic images of each
class under a new random net per iteration (no weight gradients, train mode).

loss = sum_c || mean embed(aug(real_c)) - mean embed(aug(syn_c)) ||^2, with the same siamese DSA
parameters for the real and synthetic images of a class.

All classes go through one forward per side: one grouped DSA call (G = K classes), one forward of
all real images (no graph), one of all synthetic images (large real batches, e.g. 100 classes or
128px images, are cut into a few forwards of whole classes to bound the activation memory). With
instancenorm (no cross-sample statistics) that is exactly the per-class loss. With batchnorm the
statistics then cover every class, which is what the reference DM code does for its BN nets (it
concatenates the classes there, as the DM authors recommend), so one path serves both. On CPU
the real forward of a per-image net runs in cache-sized micro-batches (ddz.nets.batching).

Over several ranks (a `ClassShard`) each rank embeds and updates the images of its own classes
under the same net: the loss is a sum over classes, so that is exactly the one-process step.
Nets whose BatchNorm statistics span every class cannot be cut so, and are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ddz.data.augment import DSA, DSAParams
from ddz.data.base import ImageDataset
from ddz.devices import autocast_forward
from ddz.distill.methods.base import ClassMatching, IterationRNG, NetSource, SynState
from ddz.errors import ConfigError
from ddz.nets.batching import forward_in_pieces, micro_batch
from ddz.threads import CoreWatch

if TYPE_CHECKING:
    from ddz.distill.methods.config import DistillConfig

ACTIVATION_BUDGET = 1 << 31  # bytes of first-layer activations per real forward
BUSY_CORES = 0.5  # other processes' load on this process's cores that counts as a busy core


def classes_per_forward(n_real: int, dataset: ImageDataset, config: DistillConfig) -> int:
    """How many classes of real images one forward takes, estimating the first layer's output
    (width x H x W floats per image; width 128 unless --net-option width says otherwise)."""
    width = int(dict(config.net_options).get("width", 128))
    per_image = 4 * width * dataset.image_size**2
    return max(1, ACTIVATION_BUDGET // (per_image * n_real))


def dm_loss(
    embed: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    syn: torch.Tensor,
    dsa: DSA | None = None,
    params: DSAParams | None = None,
    chunk: int | None = None,
    micro: int | None = None,
) -> torch.Tensor:
    """The DM loss of real (K, n, C, H, W) and synthetic (K, IPC, C, H, W) images: real images
    augmented `chunk` classes at a time (default all) and embedded `micro` images per forward
    (default: the chunk's), all synthetic images in one forward; with `dsa`, class k of both
    sides gets parameter set k."""
    k = real.shape[0]
    chunk = chunk or k
    means = []
    with torch.no_grad():
        for start in range(0, k, chunk):
            part = real[start : start + chunk]
            if dsa is not None:
                part = dsa(part, params.select(start, start + chunk))
            features = forward_in_pieces(embed, part.flatten(0, 1), micro)
            means.append(features.view(len(part), part.shape[1], -1).mean(1))
    real_mean = torch.cat(means)
    if dsa is not None:
        syn = dsa(syn, params)
    syn_mean = embed(syn.flatten(0, 1)).view(k, syn.shape[1], -1).mean(1)
    return ((real_mean - syn_mean) ** 2).sum()


class DistributionMatching(ClassMatching):
    name = "dm"

    def prepare(self) -> None:
        config, dataset = self.config, self.dataset
        self.nets = NetSource(config, dataset, entry="embed")
        # BatchNorm statistics must cover every class, as in the reference: one forward, no chunks.
        if self.nets.batch_statistics:
            if self.shard.sharded:
                raise ConfigError(
                    f"DM with {config.arch} over several ranks: its BatchNorm statistics span every "
                    "class, which one rank does not see; use an instancenorm net or one rank"
                )
            self.chunk = dataset.num_classes
        else:
            self.chunk = classes_per_forward(self.n_real, dataset, config)
        # Several CPU threads beside other busy processes: a class per real forward, not cache-sized
        # pieces, since each parallel step waits for the descheduled thread (docs/distill.md, CPU
        # threads). The pieces' size does not change the features' bits, so reruns stay identical.
        self.cores = CoreWatch() if dataset.device.type == "cpu" and torch.get_num_threads() > 1 else None
        self.real_pieces: int | None = None  # images per real forward in the last step

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        data, classes = self.dataset, self.shard.classes
        net, embed = self.nets.fresh(rng.net_seed(), requires_grad=False)
        embed = autocast_forward(embed, self.config.amp_dtype)
        real = data.sample_all_classes(self.n_real, rng.generator("real"), classes)
        micro = micro_batch(net, real[0])
        could_grow = micro is not None and micro < self.n_real and self.cores is not None
        if could_grow and self.cores.busy() >= BUSY_CORES:
            micro = self.n_real
        self.real_pieces = micro
        dsa = rng.dsa(self.config.dsa) if self.config.augment else None
        params = None if dsa is None else dsa.siamese(data.num_classes).select(classes.start, classes.stop)
        loss = dm_loss(embed, real, state.grouped(), dsa, params, self.chunk, micro)
        if self.guidance is not None:
            loss = loss + self.guidance.loss(
                state.images, state.labels,
                rng.generator("guidance-pick", device="cpu"), rng.generator("guidance-data"), self.shard,
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        return loss.detach()
