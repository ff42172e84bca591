"""MTT's hyper-parameters by (data set, IPC).

The MTT README gives its full table only as an image; the table here is the per-setting commands
that DC-Bench lists as "provided by the author" (justincui03/dc_benchmark, methods/tm/readme.md).
Its CIFAR-100 IPC 1 row is also the mtt-distillation README's example command (syn_steps 20,
expert_epochs 3, max_start_epoch 20, lr_img 1000, lr_lr 1e-5, lr_teacher 0.01, ZCA). Tiny
ImageNet IPC 50 uses a depth-4 ConvNet there. A data set
the table lacks (e.g. digits) takes the reference distill.py's argparse defaults: syn_steps 20,
expert_epochs 3, max_start_epoch 25, lr_img 1000, lr_lr 1e-5, lr_teacher 0.01, batch_syn = all
images, 5000 iterations.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MTTSettings:
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 25
    lr_img: float = 1000.0
    lr_lr: float = 1e-5
    lr_teacher: float = 0.01
    batch_syn: int | None = None  # None: every synthetic image in each student step
    zca: bool | None = False  # whether the table's run whitened the data (then its experts must have)


# Outside the table no setting was tuned, with or without ZCA: no opinion (None).
REFERENCE = MTTSettings(zca=None)
TABLE: dict[tuple[str, int], MTTSettings] = {
    ("cifar10", 1): MTTSettings(50, 2, 2, 100.0, 1e-7, 0.01, zca=True),
    ("cifar10", 10): MTTSettings(30, 2, 20, 100.0, 1e-5, 0.001, zca=True),
    ("cifar10", 50): MTTSettings(30, 2, 40, 1000.0, 1e-5, 0.001),
    ("cifar100", 1): MTTSettings(20, 3, 20, 1000.0, 1e-5, 0.01, zca=True),
    ("cifar100", 10): MTTSettings(20, 2, 20, 1000.0, 1e-5, 0.01),
    ("cifar100", 50): MTTSettings(80, 2, 40, 1000.0, 1e-5, 0.01, batch_syn=125, zca=True),
    ("tinyimagenet", 1): MTTSettings(10, 2, 10, 10000.0, 1e-4, 0.01),
    ("tinyimagenet", 10): MTTSettings(20, 2, 40, 10000.0, 1e-4, 0.01, batch_syn=200),
    ("tinyimagenet", 50): MTTSettings(20, 2, 40, 10000.0, 1e-4, 0.01, batch_syn=300),
}


def mtt_settings(dataset: str | None, ipc: int) -> MTTSettings:
    return TABLE.get((dataset or "", ipc), REFERENCE)
