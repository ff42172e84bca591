"""MTT (trajectory matching, Cazenavette et al. 2022), its experts the zoo's snapshots.

Each iteration, as the reference distill.py:
- draw an expert trajectory and a start epoch s < max_start_epoch; start from its parameters
  after s epochs, target those after s + expert_epochs;
- take syn_steps SGD steps of a student (the expert's net, parameters as one flat vector) on
  minibatches of batch_syn synthetic images (a random permutation cut into chunks, taken from the
  end; a new permutation when it runs out), DSA on every batch, with the learnable step size
  syn_lr (initialised to lr_teacher);
- loss = ||p_N - p_target||^2 / ||p_start - p_target||^2 (the reference also divides both by the
  parameter count, which cancels);
- update the images (SGD lr_img, momentum 0.5) and syn_lr (SGD lr_lr, momentum 0.5).

`memory="constant"` computes the same gradient without keeping the unrolled graph: a forward
sweep keeps only the parameter vectors p_0..p_N (as TESLA, Cui et al. 2023, does), then a
backward sweep rebuilds one step's graph at a time from the stored p_k, batch and DSA draw and
carries the adjoint a_k = dL/dp_k back: a_k = a_{k+1} - lr * H_k a_{k+1}, dL/dX += -lr (dg_k/dX)^T
a_{k+1}, dL/dlr += -g_k . a_{k+1}. TESLA's published code keeps only the first term of the image
gradient (it treats each p_k as a constant); this is the exact adjoint, one Hessian-vector
product per step more, and equal to the unrolled gradient (tests/test_mtt.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddz.data.augment import DSA, DSAParams
from ddz.data.base import ImageDataset
from ddz.devices import autocast_forward, host_values, to_device
from ddz.distill.experts import ExpertBuffer
from ddz.distill.guidance import Guidance
from ddz.distill.methods.base import IterationRNG, SynState
from ddz.nets import build_from_config

if TYPE_CHECKING:
    from ddz.distill.methods.config import DistillConfig

LR_MOMENTUM = 0.5  # the reference's optimizer_lr


class Student:
    """A net evaluated at a flat parameter vector (the reference's ReparamModule)."""

    def __init__(self, net: nn.Module, amp: torch.dtype | None = None):
        self.net, self.amp = net.train(), amp
        self.names = [name for name, _ in net.named_parameters()]
        self.shapes = [p.shape for _, p in net.named_parameters()]
        self.sizes = [p.numel() for _, p in net.named_parameters()]
        self.buffers = dict(net.named_buffers())

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, self.sizes)
        params = {n: p.view(s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}
        forward = autocast_forward(lambda x: functional_call(self.net, {**params, **self.buffers}, (x,)),
                                   self.amp)
        return forward(x)


@dataclass
class StepPlan:
    """What student step k uses: its images and their DSA draw (kept so a backward sweep can
    rebuild exactly the same step)."""

    indices: torch.Tensor
    dsa: DSAParams | None


def plan_steps(n_images: int, steps: int, batch: int, generator: torch.Generator, dsa: DSA | None,
               device: torch.device) -> list[StepPlan]:
    plans, chunks = [], []
    for _ in range(steps):
        if not chunks:
            order = to_device(torch.randperm(n_images, generator=generator), device)
            chunks = list(torch.split(order, batch))
        indices = chunks.pop()
        plans.append(StepPlan(indices, dsa.per_sample(len(indices)) if dsa is not None else None))
    return plans


def _step_loss(student: Student, flat: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
               plan: StepPlan, dsa: DSA | None) -> torch.Tensor:
    x = images[plan.indices]
    if dsa is not None:
        x = dsa(x, plan.dsa)
    return F.cross_entropy(student(flat, x), labels[plan.indices])


def unrolled_loss(student: Student, start: torch.Tensor, target: torch.Tensor, images: torch.Tensor,
                  labels: torch.Tensor, lr: torch.Tensor, plans: list[StepPlan], dsa: DSA | None
                  ) -> torch.Tensor:
    """The normalised parameter distance after the student's steps, with the whole graph kept
    (backward reaches the images and lr)."""
    flat = start.detach().requires_grad_(True)
    for plan in plans:
        loss = _step_loss(student, flat, images, labels, plan, dsa)
        (grad,) = torch.autograd.grad(loss, flat, create_graph=True)
        flat = flat - lr * grad
    return ((flat - target) ** 2).sum() / ((start - target) ** 2).sum()


def constant_memory_gradients(student: Student, start: torch.Tensor, target: torch.Tensor,
                              images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
                              plans: list[StepPlan], dsa: DSA | None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dL/dimages, dL/dlr) of `unrolled_loss`, one step's graph at a time."""
    step = lr.detach()
    params = [start.detach()]
    for plan in plans:
        flat = params[-1].requires_grad_(True)
        loss = _step_loss(student, flat, images.detach(), labels, plan, dsa)
        (grad,) = torch.autograd.grad(loss, flat)
        params.append((flat - step * grad).detach())
    denominator = ((start - target) ** 2).sum()
    loss = ((params[-1] - target) ** 2).sum() / denominator
    adjoint = 2 * (params[-1] - target) / denominator
    image_grad = torch.zeros_like(images)
    lr_grad = torch.zeros((), device=images.device, dtype=images.dtype)
    for k in reversed(range(len(plans))):
        flat = params[k].detach().requires_grad_(True)
        leaf = images.detach().requires_grad_(True)
        step_loss = _step_loss(student, flat, leaf, labels, plans[k], dsa)
        (grad,) = torch.autograd.grad(step_loss, flat, create_graph=True)
        hessian_adjoint, image_part = torch.autograd.grad(grad, (flat, leaf), grad_outputs=adjoint)
        lr_grad -= (grad.detach() * adjoint).sum()
        image_grad -= step * image_part
        adjoint = adjoint - step * hessian_adjoint
    return loss.detach(), image_grad, lr_grad


class TrajectoryMatching:
    name = "mtt"

    def __init__(self, config: DistillConfig, dataset: ImageDataset, guidance: Guidance | None,
                 experts: ExpertBuffer):
        self.config, self.dataset, self.guidance, self.experts = config, dataset, guidance, experts
        device = dataset.device
        self.student = Student(build_from_config(experts.net_config).to(device), config.amp_dtype)
        self.syn_lr = torch.tensor(float(config.mtt.lr_teacher), device=device, requires_grad=True)
        self.lr_optimizer = torch.optim.SGD([self.syn_lr], lr=config.mtt.lr_lr, momentum=LR_MOMENTUM)

    @property
    def learned_lr(self) -> float:
        return float(self.syn_lr.detach())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint needs beyond the images: the step size and its momentum."""
        state = {"syn_lr": self.syn_lr.detach().reshape(1)}
        buffer = self.lr_optimizer.state.get(self.syn_lr, {}).get("momentum_buffer")
        if buffer is not None:
            state["syn_lr_momentum"] = buffer.reshape(1)
        return state

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].reshape(()))
        if "syn_lr_momentum" in state:
            self.lr_optimizer.state[self.syn_lr]["momentum_buffer"] = (
                state["syn_lr_momentum"].reshape(()).to(self.syn_lr.device).clone())

    def step(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        config, device = self.config, self.dataset.device
        pick = rng.generator("mtt-expert", device="cpu")
        (expert,) = host_values(torch.randint(len(self.experts), (1,), generator=pick))
        (start_epoch,) = host_values(torch.randint(config.mtt.max_start_epoch, (1,), generator=pick))
        names = self.student.names
        start = self.experts.parameters(expert, start_epoch, names, device)
        target = self.experts.parameters(expert, start_epoch + config.mtt.expert_epochs, names, device)
        dsa = rng.dsa(config.dsa) if config.augment else None
        batch = config.mtt.batch_syn or len(state.images)
        plans = plan_steps(len(state.images), config.mtt.syn_steps, batch,
                           rng.generator("mtt-batches", "cpu"), dsa, device)
        state.optimizer.zero_grad(set_to_none=True)
        self.lr_optimizer.zero_grad(set_to_none=True)
        if config.mtt.memory == "unrolled":
            loss = unrolled_loss(self.student, start, target, state.images, state.labels, self.syn_lr,
                                 plans, dsa)
            total = loss + self._guidance(state, rng)
            total.backward()
        else:
            loss, image_grad, lr_grad = constant_memory_gradients(
                self.student, start, target, state.images, state.labels, self.syn_lr, plans, dsa)
            state.images.grad, self.syn_lr.grad = image_grad, lr_grad
            guided = self._guidance(state, rng)
            if guided.requires_grad:
                guided.backward()
        state.optimizer.step()
        self.lr_optimizer.step()
        return loss.detach()

    def _guidance(self, state: SynState, rng: IterationRNG) -> torch.Tensor:
        """CLoM / CCLoM once per iteration, on all synthetic images (the paper's appendix)."""
        if self.guidance is None:
            return torch.zeros((), device=state.images.device)
        return self.guidance.loss(state.images, state.labels, rng.generator("guidance-pick", device="cpu"),
                                  rng.generator("guidance-data"))
