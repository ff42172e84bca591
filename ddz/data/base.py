"""The in-memory form of every data set: whole splits as normalised tensors on one device."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddz.devices import to_device


@dataclass
class ImageDataset:
    """Train and test splits, normalised with the data set's own channel mean/std.

    Images are float32 (N, C, H, W) on `device`; labels are int64 (N,).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    _class_indices: list[torch.Tensor] | None = field(default=None, repr=False)
    _class_table: tuple[torch.Tensor, torch.Tensor, int] | None = field(default=None, repr=False)
    # Set by ddz.data.zca.whitened: the images are ZCA-whitened, `zca.unwhiten` maps them back to [0, 1].
    zca: Any = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def to(self, device: str | torch.device) -> ImageDataset:
        return ImageDataset(
            self.name,
            self.train_images.to(device),
            self.train_labels.to(device),
            self.test_images.to(device),
            self.test_labels.to(device),
            list(self.classes),
            self.mean,
            self.std,
            zca=self.zca,
        )

    def class_indices(self) -> list[torch.Tensor]:
        """Per class, the indices of its training images (on the data's device)."""
        if self._class_indices is None:
            order = torch.argsort(self.train_labels, stable=True)
            counts = torch.bincount(self.train_labels, minlength=self.num_classes).tolist()
            self._class_indices = list(torch.split(order, counts))
        return self._class_indices

    def class_table(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(class sizes on the device, (K, largest) class indices padded with 0, the largest class
        size as a host int), computed once: a draw reads them without waiting for the device."""
        if self._class_table is None:
            per_class = self.class_indices()
            counts = [len(i) for i in per_class]
            sizes = to_device(torch.tensor(counts), self.device)
            padded = torch.nn.utils.rnn.pad_sequence(per_class, batch_first=True)
            self._class_table = (sizes, padded, max(counts))
        return self._class_table

    def class_counts(self) -> list[int]:
        return [len(idx) for idx in self.class_indices()]

    def sample_all_classes(
        self, n: int, generator: torch.Generator, classes: range | None = None
    ) -> torch.Tensor:
        """(K, n, C, H, W): n random images of every class, drawn on the device, no host sync.

        Needs every class to have at least n images (use min(n, min(class_counts()))). With
        `classes`, only those rows (len(classes), n, C, H, W), but the same images they get in a
        draw of every class: the generator advances alike, so ranks that each take their own
        classes together draw what one process draws.
        """
        sizes, padded, largest = self.class_table()
        keys = torch.rand(
            (self.num_classes, largest), generator=generator, device=generator.device
        ).to(self.device)
        keys = torch.where(
            torch.arange(keys.shape[1], device=self.device)[None, :] < sizes[:, None], keys, 2.0
        )
        if classes is not None:
            keys, padded = keys[classes.start : classes.stop], padded[classes.start : classes.stop]
        local = torch.argsort(keys, dim=1)[:, :n]
        global_idx = torch.gather(padded, 1, local)
        return self.train_images[global_idx]

    def fingerprint(self) -> str:
        """sha256 over the training images and labels: identifies the data a model saw."""
        digest = hashlib.sha256()
        digest.update(self.name.encode())
        digest.update(self.train_images.detach().cpu().contiguous().numpy().tobytes())
        digest.update(self.train_labels.detach().cpu().numpy().astype(np.int64).tobytes())
        return digest.hexdigest()


def uint8_to_float(images: np.ndarray, channels_last: bool = True) -> torch.Tensor:
    """uint8 (N,H,W), (N,H,W,C) or (N,C,H,W) -> float32 (N,C,H,W) in [0, 1], in one allocation."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # torch refuses to wrap read-only memory without a warning
        images = images.copy()
    x = torch.from_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    elif channels_last:
        x = x.permute(0, 3, 1, 2)
    out = torch.empty(x.shape, dtype=torch.float32)
    out.copy_(x)
    return out.div_(255.0)


def normalised(
    name: str,
    train: torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test: torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    classes: list[str],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    *,
    inplace: bool = False,
) -> ImageDataset:
    """Normalise [0,1] float images with the given channel statistics (default: the train split's).

    `inplace=True` normalises `train` and `test` in their own memory (for large splits the caller
    owns; ImageNet-32 as float32 is 16 GB, a second copy would not fit many machines).
    """
    if mean is None or std is None:
        mean = tuple(round(float(m), 6) for m in train.mean(dim=(0, 2, 3)))
        std = tuple(round(max(float(s), 1e-6), 6) for s in train.std(dim=(0, 2, 3)))
    m = torch.tensor(mean)[None, :, None, None]
    s = torch.tensor(std)[None, :, None, None]
    if inplace:
        train = train.contiguous().sub_(m).div_(s)
        test = test.contiguous().sub_(m).div_(s)
    else:
        train = ((train - m) / s).contiguous()
        test = ((test - m) / s).contiguous()
    return ImageDataset(
        name=name,
        train_images=train,
        train_labels=torch.as_tensor(np.asarray(train_labels), dtype=torch.int64),
        test_images=test,
        test_labels=torch.as_tensor(np.asarray(test_labels), dtype=torch.int64),
        classes=list(classes),
        mean=tuple(mean),
        std=tuple(std),
    )
