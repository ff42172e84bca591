"""PTM guidance: CLoM and CCLoM over a pool of pre-trained models (Lu et al., "Can pre-trained
models assist in dataset distillation?").

Each call draws ONE PTM from the pool: an architecture uniformly, then one of its PTMs (seeds,
snapshots) uniformly, as the paper's N_m x N_a pools are sampled. The PTM is frozen, in eval
mode, and sees the synthetic images renormalised from the target's statistics to its own and
resized to its input size (PTM.adapt).

- CLoM  = alpha * mean_i CE(PTM(s_i), y_i)                 (PTM classes = the target's)
- CCLoM = alpha * sum(M * D) / sum(D)                       (any PTM: features only)
  D = 1 - cos(F(x_S), F(x_B)) between PTM.embed features of the synthetic set and a random
  batch of real TARGET images, M = onehot(y_S) onehot(y_B)^T (Algorithm 1 of the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddz.data.base import ImageDataset
from ddz.distill.alphas import AlphaChoice, resolve_alphas
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError, unknown_name
from ddz.zoo.ptm import PTM

KINDS = ("auto", "clom", "cclom", "none")


def clom_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the PTM's logits on the synthetic images (without alpha)."""
    return F.cross_entropy(logits, labels)


def cclom_loss(
    syn_features: torch.Tensor,
    syn_labels: torch.Tensor,
    real_features: torch.Tensor,
    real_labels: torch.Tensor,
) -> torch.Tensor:
    """sum(M * D) / sum(D) with D = 1 - cos between every (synthetic, real) feature pair and
    M[i, j] = 1 where synthetic i and real j share a label (without alpha)."""
    same, distance = cclom_terms(syn_features, syn_labels, real_features, real_labels)
    return (same * distance).sum() / distance.sum()


def cclom_terms(
    syn_features: torch.Tensor,
    syn_labels: torch.Tensor,
    real_features: torch.Tensor,
    real_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """M and D of CCLoM (see `cclom_loss`)."""
    same = (syn_labels[:, None] == real_labels[None, :]).to(syn_features.dtype)
    syn = syn_features / syn_features.norm(dim=-1, keepdim=True)
    real = real_features / real_features.norm(dim=-1, keepdim=True)
    return same, 1 - syn @ real.T


@dataclass(frozen=True)
class GuidanceConfig:
    """`kind`: auto (CLoM for PTMs trained on the target's classes, else CCLoM), clom, cclom.
    `alpha` (every architecture) and `arch_alphas` (per architecture, wins): None / empty take
    the default of ddz.distill.alphas (the authors' table, or the measured rule).
    `cclom_batch`: real target images per CCLoM call (the paper does not give it; the authors'
    README example uses 8196, ddz takes fewer to keep the extra forward cheap)."""

    kind: str = "auto"
    alpha: float | None = None
    arch_alphas: tuple[tuple[str, float], ...] = ()
    cclom_batch: int = 1024

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(unknown_name("guidance", self.kind, KINDS))
        if self.cclom_batch < 1:
            raise ConfigError(f"--cclom-batch must be at least 1, got {self.cclom_batch}")


def ptm_arch(ptm: PTM) -> str:
    """The architecture a PTM counts under for the N_a draw."""
    arch = getattr(ptm.net, "config", {}).get("arch") or ptm.arch
    return str(arch) if arch else ptm.name


class Guidance:
    """A pool of PTMs and the loss they add to a distillation step."""

    def __init__(
        self, ptms: Sequence[PTM], dataset: ImageDataset, config: GuidanceConfig, method: str, ipc: int
    ):
        if config.kind == "none" or not ptms:
            raise ConfigError("guidance needs at least one PTM (--ptm QUERY) and --guidance auto|clom|cclom")
        for ptm in ptms:
            if ptm.in_channels != dataset.channels:
                raise ConfigError(
                    f"PTM {ptm.name} takes {ptm.in_channels}-channel images but {dataset.name} has "
                    f"{dataset.channels}; use PTMs trained on {dataset.channels}-channel data"
                )
        self.ptms = [ptm.freeze(dataset.device) for ptm in ptms]
        self.kinds = [self._kind_for(ptm, config.kind, dataset) for ptm in self.ptms]
        self.config, self.dataset = config, dataset
        self.groups: dict[str, list[int]] = {}
        for i, ptm in enumerate(self.ptms):
            self.groups.setdefault(ptm_arch(ptm), []).append(i)
        self.alphas: AlphaChoice = resolve_alphas(
            dataset.name, method, ipc, self.groups, config.alpha, dict(config.arch_alphas)
        )

    @property
    def alpha(self) -> float | dict[str, float]:
        """One number when the pool's architectures share it, else {arch: alpha}."""
        return self.alphas.value

    @property
    def alpha_source(self) -> str:
        return self.alphas.source

    @staticmethod
    def _kind_for(ptm: PTM, kind: str, dataset: ImageDataset) -> str:
        if kind == "auto":
            return "clom" if list(ptm.classes) == list(dataset.classes) else "cclom"
        if kind == "clom" and list(ptm.classes) != list(dataset.classes):
            differ = next(
                (f"class {i} is {a!r} there, {b!r} here"
                 for i, (a, b) in enumerate(zip(ptm.classes, dataset.classes, strict=False)) if a != b),
                f"{ptm.num_classes} classes there, {dataset.num_classes} here",
            )
            raise ConfigError(
                f"--guidance clom needs PTMs trained on {dataset.name}'s classes, but {ptm.name} "
                f"differs ({differ}); use --guidance cclom (or auto)"
            )
        return kind

    @property
    def kind(self) -> str:
        """'clom', 'cclom', or 'clom+cclom' for a pool that mixes both."""
        return "+".join(k for k in ("clom", "cclom") if k in self.kinds)

    def describe(self) -> list[dict[str, str]]:
        return [{"name": p.name, "sha256": p.sha256} for p in self.ptms]

    def pick(self, generator: torch.Generator) -> int:
        """Index of the PTM for this call: an architecture, then one of its PTMs (CPU generator,
        so the choice never waits for the device)."""
        archs = list(self.groups)
        members = self.groups[archs[int(torch.randint(len(archs), (1,), generator=generator))]]
        return members[int(torch.randint(len(members), (1,), generator=generator))]

    def ptm_input(self, ptm: PTM, images: torch.Tensor) -> torch.Tensor:
        """Images of the data set as `ptm` takes them. On ZCA-whitened data a PTM trained without
        ZCA sees the un-whitened images ([0, 1] space, then its own normalisation)."""
        data = self.dataset
        if data.zca is not None and not ptm.zca:
            flat = (0.0,) * data.channels, (1.0,) * data.channels
            return ptm.adapt(data.zca.unwhiten(images), *flat)
        return ptm.adapt(images, data.mean, data.std)

    def loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        pick_generator: torch.Generator,
        data_generator: torch.Generator,
        shard: ClassShard | None = None,
    ) -> torch.Tensor:
        """The guidance loss of the synthetic set. With a sharded `shard`, `images` are this rank's
        and the losses of all ranks add up to the loss of the whole set, and so do their gradients."""
        index = self.pick(pick_generator)
        ptm, kind = self.ptms[index], self.kinds[index]
        alpha = self.alphas.per_arch[ptm_arch(ptm)]
        data = self.dataset
        x = self.ptm_input(ptm, images)
        sharded = shard is not None and shard.sharded
        if kind == "clom":
            logits = ptm.net(x)
            if sharded:  # the mean over the whole set: this rank's sum over all images
                return alpha * F.cross_entropy(logits, labels, reduction="sum") / shard.total_images
            return alpha * clom_loss(logits, labels)
        pick = torch.randint(
            len(data.train_images), (self.config.cclom_batch,),
            generator=data_generator, device=data_generator.device,
        ).to(data.device)
        with torch.no_grad():
            real = ptm.net.embed(self.ptm_input(ptm, data.train_images[pick]))
        if sharded:
            return alpha * sharded_cclom_loss(ptm.net.embed(x), labels, real, data.train_labels[pick], shard)
        return alpha * cclom_loss(ptm.net.embed(x), labels, real, data.train_labels[pick])


def sharded_cclom_loss(
    syn_features: torch.Tensor,
    syn_labels: torch.Tensor,
    real_features: torch.Tensor,
    real_labels: torch.Tensor,
    shard: ClassShard,
) -> torch.Tensor:
    """This rank's part of sum(M * D) / sum(D) when each rank holds some synthetic rows.

    With n, d this rank's sums and N, D the sums over ranks (summed across ranks, constants):
    n / D - N (d - d.detach()) / D^2. Its gradient is that of N / D with respect to this rank's
    images (dn / D - N dd / D^2), and its value n / D sums to N / D over the ranks."""
    same, distance = cclom_terms(syn_features, syn_labels, real_features, real_labels)
    own = torch.stack([(same * distance).sum(), distance.sum()])
    total_same, total = shard.ranks.sum(own)
    return own[0] / total - total_same * (own[1] - own[1].detach()) / total**2
