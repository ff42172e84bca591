"""A distillation iteration never waits for the device: one iteration of DM, DC, DSA and MTT
(both memory modes) calls no `.item()`, `.tolist()`, `.cpu()`, `.numpy()` and no `float()`,
`int()` or `bool()` of a tensor. The counts are real calls, made by patching torch.Tensor for the
iteration. Two readers are allowed, both of host tensors by construction, never a device sync:
`ddz.devices.host_values` (draws from CPU generators) and `ddz.io.read_tensors` (MTT's expert
snapshots, parsed from file bytes and checked against their sha256 on the host before the
non-blocking copy to the device). The loop's logging (every LOG_EVERY iterations) is outside the
iteration. On a GPU, bench/gpu.py runs the same iterations under torch.cuda.set_sync_debug_mode."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ddz.data.base import ImageDataset
from ddz.devices import host_values
from ddz.distill.experts import ExpertBuffer
from ddz.distill.methods import DistillConfig, IterationRNG, MTTConfig, build_method
from ddz.distill.methods.base import initial_images, new_state
from ddz.io import read_tensors
from ddz.nets import build_net
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths
from ddz.zoo.records import SnapshotMeta, SnapshotName

READERS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
K, C, SIZE, WIDTH = 4, 1, 16, 8


HOST_READERS = (host_values.__code__, read_tensors.__code__)


def from_host_reader(frame, depth: int = 6) -> bool:
    while frame is not None and depth > 0:
        if frame.f_code in HOST_READERS:
            return True
        frame, depth = frame.f_back, depth - 1
    return False


@contextmanager
def counting_reads():
    """Every call of a READER on a tensor while the block runs, with its stack (not the ones
    `host_values` makes)."""
    calls: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in READERS}

    def wrap(name: str, original: Callable):
        def reader(self, *args, **kwargs):
            if not from_host_reader(sys._getframe(1)):
                calls.append(f"Tensor.{name}\n" + "".join(traceback.format_stack(limit=8)[:-1]))
            return original(self, *args, **kwargs)
        return reader

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def small_dataset() -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(K * 12, C, SIZE, SIZE, generator=gen)
    labels = torch.arange(K).repeat_interleave(12)
    return ImageDataset("random", train, labels, train[:K], labels[:K], [str(c) for c in range(K)],
                        (0.0,), (1.0,))


def random_experts(folder: Path) -> ExpertBuffer:
    zoo = Zoo(ZooPaths.under(folder))
    for seed in range(2):
        net = build_net("convnet3", C, K, SIZE, generator_seed=seed, width=WIDTH)
        for epoch in range(3):
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.01)
            meta = SnapshotMeta(SnapshotName("random", "convnet3", seed, epoch), "random", dict(net.config),
                                tuple(str(c) for c in range(K)), (0.0,), (1.0,), {}, {"name": "test"},
                                "test", "test", "test", "test")
            zoo.local.save(meta, net.state_dict())
    rows = zoo.resolve("random/convnet3/*")
    return ExpertBuffer(rows, zoo.files(rows))


CONFIGS = {
    "dm": DistillConfig(method="dm", ipc=2, batch_real=8, net_options=(("width", WIDTH),)),
    "dc": DistillConfig(method="dc", ipc=2, batch_real=8, outer_loop=2, inner_loop=1,
                        net_options=(("width", WIDTH),)),
    "dsa": DistillConfig(method="dsa", ipc=2, batch_real=8, outer_loop=2, inner_loop=1,
                         net_options=(("width", WIDTH),)),
    "mtt-unrolled": DistillConfig(method="mtt", ipc=2, lr_img=10.0, mtt=MTTConfig(
        syn_steps=3, expert_epochs=1, max_start_epoch=1, batch_syn=4, lr_lr=1e-5, lr_teacher=0.01)),
    "mtt-constant": DistillConfig(method="mtt", ipc=2, lr_img=10.0, mtt=MTTConfig(
        syn_steps=3, expert_epochs=1, max_start_epoch=1, batch_syn=4, lr_lr=1e-5, lr_teacher=0.01,
        memory="constant")),
}
CONFIGS.update({f"{name}-bf16": replace(CONFIGS[name], amp="bf16") for name in ("dm", "dsa", "mtt-constant")})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_iteration_reads_nothing_back_from_the_device(name, tmp_path):
    data = small_dataset()
    config = CONFIGS[name].resolved()
    experts = random_experts(tmp_path) if config.method == "mtt" else None
    method = build_method(config, data, None, experts)
    state = new_state(initial_images(data, config, 0), config.ipc, config.lr_img, config.momentum)
    before = state.images.detach().clone()
    with counting_reads() as calls:
        loss = method.step(state, IterationRNG(0, 0, data.device))
    assert calls == [], f"{len(calls)} reads in one {name} iteration; the first:\n{calls[0]}"
    # the iteration did its work: a finite loss, and the images moved
    assert torch.isfinite(loss) and not torch.equal(before, state.images.detach())


def test_the_counter_sees_a_read():
    """The patch is live: a plain .item() in the block is counted, host_values is not."""
    with counting_reads() as calls:
        torch.ones(2).sum().item()
        host_values(torch.arange(3))
    assert len(calls) == 1 and calls[0].startswith("Tensor.item")


@pytest.mark.parametrize("method", ["dm", "dc"])
def test_amp_changes_the_arithmetic_not_the_step(method):
    """--amp bf16 runs the forwards in bfloat16: a loss near the float32 one, not equal to it."""
    data = small_dataset()
    losses = []
    for amp in ("none", "bf16"):
        config = replace(CONFIGS[method], amp=amp).resolved()
        state = new_state(initial_images(data, config, 0), config.ipc, config.lr_img, config.momentum)
        losses.append(float(build_method(config, data).step(state, IterationRNG(0, 0, data.device))))
    assert losses[0] != losses[1] and losses[1] == pytest.approx(losses[0], rel=0.1)
