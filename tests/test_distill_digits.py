"""On digits, DM and DSA at IPC 10 beat random real images at the same IPC and evaluation settings."""

from __future__ import annotations

import pytest

from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig

EVAL = EvalConfig(archs=("convnet3",), models=2, epochs=50)
NET = (("width", 32),)


def accuracy(images, labels, dataset) -> float:
    return evaluate_synset(images, labels, dataset, EVAL, seed=0)["convnet3"].mean


@pytest.mark.slow
def test_dm_and_dsa_beat_random_real_on_digits(digits):
    """Settings chosen to fit the CPU test budget, identical for every set evaluated: ConvNet-3
    (width 128) trained 50 epochs by the protocol (DSA, SGD, lr x0.1 at half), mean of 2 models.
    Distillation uses a width-32 ConvNet-3; DM runs 60 iterations, DSA 3 iterations of 10 outer
    steps with 5 inner epochs (the protocol's 1000 iterations x 50 inner epochs cost hours here).

    Measured here (1 and 2 torch threads): random-real 92.5-92.6%, the distillation's own real
    init 92.3%, DM 94.7%, DSA 94.1% (94.2% before CPU micro-batching). Short evaluation training
    is where a distilled set's advantage shows most (with 3 models x 300 epochs, before
    micro-batching: random-real 95.6%, DM 300 iterations 96.6%, DSA 5 iterations 96.3%). The
    test asserts a 1-point margin over both random subsets (measured: DM +2.1, DSA +1.4), a few
    times the 0.2-0.4 point spread between evaluation models.
    """
    baseline = accuracy(*random_real(digits, 10, seed=0), digits)
    start = distill(digits, DistillConfig(method="dm", ipc=10, iterations=0), seed=0)
    init = accuracy(start.images, start.labels, digits)
    dm = distill(digits, DistillConfig(method="dm", ipc=10, iterations=60, net_options=NET), seed=0)
    dsa = distill(
        digits,
        DistillConfig(method="dsa", ipc=10, iterations=3, inner_loop=5, net_options=NET),
        seed=0,
    )
    dm_acc = accuracy(dm.images, dm.labels, digits)
    dsa_acc = accuracy(dsa.images, dsa.labels, digits)
    print(f"random-real {baseline:.4f} init {init:.4f} dm {dm_acc:.4f} dsa {dsa_acc:.4f}")
    for name, acc in (("DM", dm_acc), ("DSA", dsa_acc)):
        assert acc > max(baseline, init) + 0.01, f"{name} {acc:.4f} vs random {baseline:.4f}, init {init:.4f}"
