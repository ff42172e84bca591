"""N independent copies of one architecture as one module.

Every stacked parameter and buffer is the copies' tensors concatenated along dim 0, under the
name it has in one net, so stacking and unstacking is `torch.cat` / `torch.chunk` on state
dicts, and each copy's initial weights are exactly those its own seed builds. Two ways to run it:

- On a GPU, one module of grouped layers (`body`): copy n owns channels [n*C, (n+1)*C) of every
  activation; a conv is one grouped conv (groups = N), a GroupNorm or BatchNorm over N*C channels
  normalises each copy with its own statistics, a Linear is one batched matmul. One kernel launch
  serves all copies.
- On a CPU, copy by copy: the single-net module runs N times (`torch.func.functional_call`) on
  views of the stacked tensors. A 2-core CPU is busy with one copy's arithmetic already, and this
  keeps each copy's cache-sized micro-batches and gives it the exact bits it gets alone.

Input: (B, N*C, H, W), copy n's images in channels [n*C, (n+1)*C); or (B, C, H, W), the same
images for every copy (test-set accuracy). Output: (B, K, N) logits, classes in dim 1 as
`F.cross_entropy` takes them, so the summed loss of all copies gives each copy its own gradient.

Why not torch.func.vmap for the GPU path: vmap lowers a batched conv to the same grouped conv,
cannot update BatchNorm's running statistics in place, and a module tree whose state_dict matches
the single net's keeps snapshots, checkpoints and resume unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddz.nets.models import DDNet

# Layers without parameters or state that act on each channel (or each image) alone.
# An empty nn.Sequential is the identity (ResNet's plain shortcut).
CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity, nn.Flatten, nn.Sequential)


class NotStackable(TypeError):
    """A layer that cannot be split into independent copies by channel."""


class StackedConv2d(nn.Conv2d):
    """`copies` Conv2d as one grouped conv; a copy-shared input (C channels) is broadcast."""

    def __init__(self, conv: nn.Conv2d, copies: int):
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise NotStackable(f"a Conv2d with groups={conv.groups}, padding_mode={conv.padding_mode}")
        super().__init__(
            conv.in_channels * copies, conv.out_channels * copies, conv.kernel_size, conv.stride,
            conv.padding, conv.dilation, groups=copies, bias=conv.bias is not None,
            device="meta", dtype=conv.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = 1 if x.shape[1] == self.in_channels // self.groups else self.groups
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, groups)


class StackedAvgPool2d(nn.AvgPool2d):
    """2x2 average pooling as a reshape and a mean, whose backward is a broadcast (the avg_pool2d
    backward kernel took a fifth of a stacked ConvNet-3 step on an H200)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            return super().forward(x)
        return x.view(b, c, h // 2, 2, w // 2, 2).mean((3, 5))


class StackedLinear(nn.Module):
    """`copies` Linear layers: (B, N*in) -> (B, K, N). weight is (N*out, in), the copies' stacked."""

    def __init__(self, linear: nn.Linear, copies: int):
        super().__init__()
        self.copies = copies
        meta = {"device": "meta", "dtype": linear.weight.dtype}
        rows = copies * linear.out_features
        self.weight = nn.Parameter(torch.empty(rows, linear.in_features, **meta))
        self.bias = nn.Parameter(torch.empty(rows, **meta)) if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.copies
        weight = self.weight.view(n, -1, self.weight.shape[1])  # (N, out, in)
        inputs = x.view(x.shape[0], n, -1).transpose(0, 1)  # (N, B, in)
        out = torch.bmm(inputs, weight.transpose(1, 2))  # (N, B, out)
        if self.bias is not None:
            out = out + self.bias.view(n, 1, -1)
        return out.permute(1, 2, 0)  # (B, out, N)


class StackedLayerNorm(nn.Module):
    """`copies` LayerNorm([C, H, W]) on (B, N*C, H, W); weight is (N*C, H, W)."""

    def __init__(self, norm: nn.LayerNorm, copies: int):
        super().__init__()
        self.copies, self.shape, self.eps = copies, tuple(norm.normalized_shape), norm.eps
        if len(self.shape) != 3:
            raise NotStackable(f"a LayerNorm over {len(self.shape)} dims (stacking needs [C, H, W])")
        if norm.elementwise_affine:
            shape = (copies * self.shape[0], *self.shape[1:])
            self.weight = nn.Parameter(torch.empty(shape, device="meta", dtype=norm.weight.dtype))
            self.bias = nn.Parameter(torch.empty(shape, device="meta", dtype=norm.weight.dtype))
        else:
            self.weight = self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_copy = x.view(x.shape[0], self.copies, *self.shape)
        out = F.layer_norm(per_copy, self.shape, None, None, self.eps).view_as(x)
        return out * self.weight + self.bias if self.weight is not None else out


def stack_layer(layer: nn.Module, copies: int) -> nn.Module:
    """The N-copy form of one leaf layer, on the meta device: its values come from the copies'
    state dicts. Building it leaves the global RNG untouched (layer init draws even on meta)."""
    with torch.random.fork_rng(devices=[]):
        return _stack_layer(layer, copies)


def _stack_layer(layer: nn.Module, copies: int) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        return StackedConv2d(layer, copies)
    if isinstance(layer, nn.Linear):
        return StackedLinear(layer, copies)
    if isinstance(layer, nn.GroupNorm):
        return nn.GroupNorm(
            layer.num_groups * copies, layer.num_channels * copies, layer.eps, layer.affine, device="meta"
        )
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            layer.num_features * copies, layer.eps, layer.momentum, layer.affine, layer.track_running_stats,
            device="meta",
        )
    if isinstance(layer, nn.LayerNorm):
        return StackedLayerNorm(layer, copies)
    if isinstance(layer, nn.AvgPool2d) and layer.kernel_size in (2, (2, 2)) and layer.stride in (2, (2, 2)) \
            and layer.padding in (0, (0, 0)) and not layer.ceil_mode:
        return StackedAvgPool2d(2, 2)
    if isinstance(layer, CHANNELWISE):
        return layer
    raise NotStackable(f"layer {type(layer).__name__}")


def stack_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The copies' state dicts as one: concatenated along dim 0 (0-d counters are shared)."""
    return {
        key: torch.cat([s[key] for s in states]) if value.dim() else value.clone()
        for key, value in states[0].items()
    }


def unstack_state(state: dict[str, torch.Tensor], copies: int) -> list[dict[str, torch.Tensor]]:
    """The inverse of `stack_states`: one state dict per copy."""
    return [
        {k: v.chunk(copies)[n].clone() if v.dim() else v.clone() for k, v in state.items()}
        for n in range(copies)
    ]


class StackedNets(nn.Module):
    """N nets of one architecture trained as one module; `nets()` gives them back."""

    def __init__(self, nets: list[DDNet]):
        super().__init__()
        if not nets:
            raise ValueError("StackedNets needs at least one net")
        self.copies = len(nets)
        self.in_channels = nets[0].config["in_channels"]
        device = next(nets[0].parameters()).device
        # The single net, run on views of the stacked tensors on CPU; in a list, so that its own
        # parameters are not registered here.
        self._single = [copy.deepcopy(nets[0])]
        body = copy.deepcopy(nets[0])
        for name, layer in list(body.named_modules()):
            if name and not any(True for _ in layer.children()):
                body.set_submodule(name, stack_layer(layer, self.copies))
        self.body = body.to_empty(device=device)
        self.body.load_state_dict(stack_states([net.state_dict() for net in nets]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return self.body(x)
        parts = [x] * self.copies if x.shape[1] == self.in_channels else x.chunk(self.copies, 1)
        forwards = self.copy_forwards()
        return torch.stack([f(part.contiguous()) for f, part in zip(forwards, parts, strict=True)], 2)

    def copy_forwards(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The CPU path: one forward per copy, the single net computing with copy n's slices of
        the stacked tensors. Its parameters are leaves that share the stacked storage, and their
        `.grad` is their slice of the stacked `.grad`, so each copy's backward accumulates its
        gradient in place, exactly as the copy alone does, and the optimiser steps the stacked
        tensors."""
        n, single = self.copies, self._single[0].train(self.training)
        own: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
        for name, param in self.body.named_parameters():
            track = param.requires_grad and torch.is_grad_enabled()
            if track and param.grad is None:
                param.grad = torch.zeros_like(param)
            for i, view in enumerate(param.detach().chunk(n)):
                own[i][name] = view.requires_grad_(track)
                if track:
                    own[i][name].grad = param.grad.chunk(n)[i]
        for name, buffer in self.body.named_buffers():
            for i in range(n):
                # A 0-d buffer (BatchNorm's batch count) is one for all copies: copy 0 counts.
                own[i][name] = buffer.chunk(n)[i] if buffer.dim() else (buffer if i == 0 else buffer.clone())
        return [lambda x, tensors=tensors: functional_call(single, tensors, (x,)) for tensors in own]

    def compile(self, *args, **kwargs) -> None:
        """torch.compile in place both ways of running: the grouped body and the single net."""
        self.body.compile(*args, **kwargs)
        self._single[0].compile(*args, **kwargs)

    def nets(self) -> list[DDNet]:
        """Each copy as an ordinary net (new modules, the current weights and buffers)."""
        out = []
        for state in unstack_state(self.body.state_dict(), self.copies):
            net = copy.deepcopy(self._single[0]).to(state[next(iter(state))].device)
            net.load_state_dict(state)
            out.append(net.train(self.training))
        return out


def stackable(net: nn.Module) -> str | None:
    """None when `net` can be stacked, else why not (one phrase)."""
    try:
        for layer in net.modules():
            if not any(True for _ in layer.children()):
                stack_layer(layer, 1)
    except NotStackable as error:
        return str(error)
    return None
