"""Distances between real and synthetic gradients (DC/DSA), over a stack of classes at once.

Every gradient tensor carries a leading class axis: (K, *parameter_shape). The result is the sum
over classes of the per-class distance, as the reference sums `match_loss` over classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-6


def layer_distance(g_syn: torch.Tensor, g_real: torch.Tensor) -> torch.Tensor:
    """'ours' for one parameter: per output node, 1 - cos between the real and synthetic gradient
    rows (conv: out x in*h*w, linear: out x in, layernorm: C x h*w), summed over nodes and classes.
    1-D parameters (biases, norm weights) give 0."""
    if g_real.dim() <= 2:  # (K,) or (K, n): a scalar or 1-D parameter per class
        return g_real.new_zeros(())
    s = g_syn.flatten(2)
    r = g_real.flatten(2)
    cos = (s * r).sum(-1) / (s.norm(dim=-1) * r.norm(dim=-1) + EPS)
    return (1 - cos).sum()


def gradient_distance(
    g_syn: Sequence[torch.Tensor], g_real: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """'ours' (layer-wise, per output node), 'mse' (squared L2 of the concatenated gradients) or
    'cos' (1 - cos of the concatenated gradients), summed over the leading class axis."""
    if metric == "ours":
        return sum((layer_distance(s, r) for s, r in zip(g_syn, g_real, strict=True)),
                   g_real[0].new_zeros(()))
    syn = torch.cat([g.flatten(1) for g in g_syn], dim=1)
    real = torch.cat([g.flatten(1) for g in g_real], dim=1)
    if metric == "mse":
        return ((syn - real) ** 2).sum()
    if metric == "cos":
        cos = (syn * real).sum(-1) / (syn.norm(dim=-1) * real.norm(dim=-1) + EPS)
        return (1 - cos).sum()
    raise ValueError(f"unknown gradient distance {metric!r}; valid: ours, mse, cos")


def matched_parameters(params: Sequence[torch.Tensor], metric: str) -> list[int]:
    """Indices of the parameters whose gradients the distance uses: for 'ours' the 1-D ones add
    0, so their gradients need not be computed at all."""
    if metric == "ours":
        return [i for i, p in enumerate(params) if p.dim() > 1]
    return list(range(len(params)))
