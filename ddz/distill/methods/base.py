"""What every distillation method shares: the loops-by-IPC rule, the per-iteration random
streams, the synthetic-set state, fresh random nets and the Method protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from ddz.data.augment import DSA, DSAConfig
from ddz.data.base import ImageDataset
from ddz.devices import module_to_device
from ddz.distributed.shard import ClassShard
from ddz.errors import ConfigError
from ddz.nets import build_net
from ddz.nets.batching import device_layout, has_batch_statistics
from ddz.seeding import derive_seed, generator

if TYPE_CHECKING:
    from ddz.distill.guidance import Guidance
    from ddz.distill.methods.config import DistillConfig

# (outer, inner) loops of the reference DC/DSA code, by IPC.
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def loops_for_ipc(ipc: int) -> tuple[int, int]:
    """The reference table where it has the IPC; otherwise outer = IPC (as in every table row) and

    - 1 < IPC < 10: inner 50 (the IPC-10 value; the IPC-1 row's inner is never used, since the
      net is not trained after the last outer step);
    - 10 < IPC < 50: inner linearly interpolated between the neighbouring rows, rounded;
    - IPC > 50: inner = round(500 / IPC), at least 1 (the table keeps outer x inner near 500).
    """
    if ipc < 1:
        raise ConfigError(f"--ipc must be at least 1, got {ipc}")
    if ipc in LOOPS:
        return LOOPS[ipc]
    if ipc < 10:
        return ipc, 50
    if ipc < 50:
        lo = max(k for k in LOOPS if k < ipc)
        hi = min(k for k in LOOPS if k > ipc)
        frac = (ipc - lo) / (hi - lo)
        return ipc, round(LOOPS[lo][1] + frac * (LOOPS[hi][1] - LOOPS[lo][1]))
    return ipc, max(1, round(500 / ipc))


class IterationRNG:
    """The random streams of one iteration, each derived from (seed, purpose, iteration).

    Nothing random carries over between iterations, so the iteration counter is the whole random
    state of a run: a run resumed from a checkpoint draws exactly what it would have drawn.
    """

    def __init__(self, seed: int, iteration: int, device: str | torch.device):
        self.seed, self.iteration, self.device = seed, iteration, torch.device(device)

    def generator(self, purpose: str, device: str | torch.device | None = None) -> torch.Generator:
        return generator(self.seed, purpose, self.iteration, device=device or self.device)

    def net_seed(self) -> int:
        return derive_seed(self.seed, "net", self.iteration)

    def dsa(self, config: DSAConfig) -> DSA:
        return DSA(config, derive_seed(self.seed, "dsa", self.iteration), self.device)


@dataclass
class SynState:
    """The synthetic set being learnt (class-major: IPC images of class 0, then class 1, ...)
    and its optimiser: SGD with momentum on the images."""

    images: torch.Tensor
    labels: torch.Tensor
    optimizer: torch.optim.SGD
    ipc: int
    iteration: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.images) // self.ipc

    def grouped(self) -> torch.Tensor:
        """(K, IPC, C, H, W) view of the images."""
        return self.images.view(self.num_classes, self.ipc, *self.images.shape[1:])

    def momentum_buffer(self) -> torch.Tensor | None:
        return self.optimizer.state.get(self.images, {}).get("momentum_buffer")

    def set_momentum_buffer(self, buffer: torch.Tensor) -> None:
        self.optimizer.state[self.images]["momentum_buffer"] = buffer.to(self.images.device).clone()


def new_state(
    images: torch.Tensor, ipc: int, lr_img: float, momentum: float, first_class: int = 0
) -> SynState:
    """The state of `images` (class-major, classes first_class, first_class + 1, ...)."""
    images = images.detach().clone().requires_grad_(True)
    num_classes = len(images) // ipc
    labels = torch.arange(first_class, first_class + num_classes, device=images.device).repeat_interleave(ipc)
    optimizer = torch.optim.SGD([images], lr=lr_img, momentum=momentum)
    return SynState(images, labels, optimizer, ipc)


def initial_images(dataset: ImageDataset, config: DistillConfig, seed: int) -> torch.Tensor:
    """'real': IPC random training images per class; 'noise': standard normal (in the normalised
    space, as the reference does)."""
    gen = generator(seed, "init", device=dataset.device)
    if config.init == "real":
        return dataset.sample_all_classes(config.ipc, gen).flatten(0, 1).clone()
    shape = (dataset.num_classes * config.ipc, dataset.channels, dataset.image_size, dataset.image_size)
    return torch.randn(shape, generator=gen, device=dataset.device)


def real_batch_size(dataset: ImageDataset, batch_real: int) -> int:
    """Real images per class per matching step: batch_real, or the smallest class if that is less
    (all classes are drawn in one call with the same count)."""
    return min(batch_real, min(dataset.class_counts()))


class NetSource:
    """A fresh randomly initialised distillation net per iteration.

    `fresh()` returns the net and `fast`, the callable for its `entry` ("forward" or "embed").
    With `compile`, one module is kept and re-initialised in place (so torch.compile traces it
    once per input shape) and `fast` is the compiled entry; without, `fast` is the plain entry.
    """

    def __init__(self, config: DistillConfig, dataset: ImageDataset, entry: str = "forward"):
        self.arch, self.compile, self.entry = config.arch, config.compile, entry
        self.options = dict(config.net_options)
        self.shape = (dataset.channels, dataset.num_classes, dataset.image_size)
        self.device = dataset.device
        self._net: nn.Module | None = None
        self._fast: Any = None
        try:
            self.batch_statistics = has_batch_statistics(self._build(0))
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"--net-option {self.options} does not fit {self.arch} ({error}); "
                "see `ddz zoo train --help` for the options nets take, e.g. width=32"
            ) from None

    def _build(self, seed: int) -> nn.Module:
        channels, classes, size = self.shape
        net = build_net(self.arch, channels, classes, size, generator_seed=seed, **self.options)
        return device_layout(module_to_device(net, self.device))

    def fresh(self, seed: int, requires_grad: bool = True) -> tuple[nn.Module, Any]:
        if not self.compile:
            net = self._build(seed)
            fast = net if self.entry == "forward" else getattr(net, self.entry)
        else:
            if self._net is None:
                self._net = self._build(seed)
                entry = self._net if self.entry == "forward" else getattr(self._net, self.entry)
                self._fast = torch.compile(entry)
            else:
                self._net.load_state_dict(self._build(seed).state_dict())
            net, fast = self._net, self._fast
        net.train()
        for p in net.parameters():
            p.requires_grad_(requires_grad)
        return net, fast


class Method(Protocol):
    """A distillation method: one step updates the synthetic images once (DM) or `outer_loop`
    times (DC/DSA) and returns the summed loss of the step (a 0-d tensor, not synced).

    A method may carry state of its own beyond the images (MTT: its learnt step size and that
    step size's momentum): `state_tensors` gives it for a checkpoint ({} when there is none),
    `load_state_tensors` restores it, and `learned_lr` is the step size evaluation must train
    with (None: the protocol's)."""

    name: str

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor: ...

    def state_tensors(self) -> dict[str, torch.Tensor]: ...

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None: ...

    @property
    def learned_lr(self) -> float | None: ...


class Stateless:
    """The Method protocol's state for a method whose only state is the synthetic set."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ConfigError(f"this checkpoint holds method state ({', '.join(state)}) that "
                              "this method does not have; pass another --out")

    @property
    def learned_lr(self) -> float | None:
        return None


class ClassMatching(Stateless):
    """What DC/DSA and DM share: the settings, the data, the guidance, the classes this rank
    learns (every class by default) and the real images per class; `prepare` does the rest."""

    def __init__(
        self,
        config: DistillConfig,
        dataset: ImageDataset,
        guidance: Guidance | None = None,
        shard: ClassShard | None = None,
    ):
        self.config, self.dataset, self.guidance = config, dataset, guidance
        self.shard = shard or ClassShard(dataset.num_classes, config.ipc)
        self.n_real = real_batch_size(dataset, config.batch_real)
        self.prepare()

    def prepare(self) -> None:
        """A method's own set-up, after the shared one."""
