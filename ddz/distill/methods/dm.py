"""DM (distribution matching): match the mean embeddings of real and synthetic images of each
class under a new random net per iteration (no weight gradients, train mode).

loss = sum_c || mean embed(aug(real_c)) - mean embed(aug(syn_c)) ||^2, with the same siamese DSA
parameters for the real and synthetic images of a class.

All classes go through one forward per side: one grouped DSA call (G = K classes), one forward of
all real images (no graph), one of all synthetic images. With instancenorm (no cross-sample
statistics) that is exactly the per-class loss. With batchnorm the statistics then cover every
class, which is what the reference DM code does for its BN nets (it concatenates the classes
there, as the DM authors recommend), so the same path serves both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddz.data.augment import DSA, DSAParams
from ddz.data.base import ImageDataset
from ddz.distill.guidance import Guidance
from ddz.distill.methods.base import DistillConfig, IterationRNG, NetSource, SynState, real_batch_size


def dm_loss(
    embed: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    syn: torch.Tensor,
    dsa: DSA | None = None,
    params: DSAParams | None = None,
) -> torch.Tensor:
    """The DM loss of real (K, n, C, H, W) and synthetic (K, IPC, C, H, W) images, all classes in
    one forward per side; with `dsa`, class k of both sides gets parameter set k."""
    if dsa is not None:
        real, syn = dsa(real, params), dsa(syn, params)
    k = real.shape[0]
    with torch.no_grad():
        real_mean = embed(real.flatten(0, 1)).view(k, real.shape[1], -1).mean(1)
    syn_mean = embed(syn.flatten(0, 1)).view(k, syn.shape[1], -1).mean(1)
    return ((real_mean - syn_mean) ** 2).sum()


class DistributionMatching:
    name = "dm"

    def __init__(self, config: DistillConfig, dataset: ImageDataset, guidance: Guidance | None = None):
        self.config, self.dataset, self.guidance = config, dataset, guidance
        self.nets = NetSource(config, dataset, entry="embed")
        self.n_real = real_batch_size(dataset, config.batch_real)

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        data = self.dataset
        _, embed = self.nets.fresh(rng.net_seed(), requires_grad=False)
        real = data.sample_all_classes(self.n_real, rng.generator("real"))
        dsa = rng.dsa(self.config.dsa) if self.config.augment else None
        params = dsa.siamese(data.num_classes) if dsa is not None else None
        loss = dm_loss(embed, real, state.grouped(), dsa, params)
        if self.guidance is not None:
            loss = loss + self.guidance.loss(
                state.images, state.labels,
                rng.generator("guidance-pick", device="cpu"), rng.generator("guidance-data"),
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        return loss.detach()
