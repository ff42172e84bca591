"""ZCA whitening as a data transform, as the MTT reference code applies it.

The reference (mtt-distillation utils.get_dataset with --zca) loads images with ToTensor only
(values in [0, 1], no mean/std normalisation), fits kornia's `ZCAWhitening(eps=0.1,
compute_inv=True)` on the whole training split and whitens the training and test splits with it.
Kornia's fit (`zca_mean`, defaults): flatten to (N, D), subtract the mean image, covariance
X^T X / (N - 1), SVD C = U S U^T, transform W = U diag(1 / sqrt(S + eps)) U^T, inverse
U diag(sqrt(S + eps)) U^T; whitening is (x - mean) W. ddz matches that: the data set's normalised
images are first mapped back to [0, 1] (x * std + mean), then fitted and whitened. The fit is
deterministic (float64 SVD), so it is re-done from the data set wherever it is needed
(evaluation, grids) instead of storing the D x D matrices in every file; files record its
`fingerprint`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from ddz.data.base import ImageDataset

EPS = 0.1  # the reference's regularisation


@dataclass(frozen=True)
class ZCA:
    mean: torch.Tensor  # (D,)
    transform: torch.Tensor  # (D, D)
    inverse: torch.Tensor  # (D, D)
    eps: float = EPS

    @classmethod
    def fit(cls, images: torch.Tensor, eps: float = EPS) -> ZCA:
        """Fit on (N, C, H, W) images in [0, 1]."""
        flat = images.reshape(len(images), -1).double()
        mean = flat.mean(0)
        centred = flat - mean
        covariance = centred.T @ centred / (len(flat) - 1)
        u, s, _ = torch.linalg.svd(covariance)
        root = (s + eps).sqrt()
        transform = u @ torch.diag(1 / root) @ u.T
        inverse = u @ torch.diag(root) @ u.T
        dtype = images.dtype
        return cls(mean.to(dtype), transform.to(dtype), inverse.to(dtype), eps)

    def whiten(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(len(images), -1) - self.mean.to(images.device)
        return (flat @ self.transform.to(images.device)).reshape(images.shape)

    def unwhiten(self, images: torch.Tensor) -> torch.Tensor:
        """Back to [0, 1]-space images (for PNG grids)."""
        flat = images.reshape(len(images), -1) @ self.inverse.to(images.device)
        return (flat + self.mean.to(images.device)).reshape(images.shape)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"zca:{self.eps};".encode())
        digest.update(self.transform.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()


def to_unit_range(images: torch.Tensor, dataset: ImageDataset) -> torch.Tensor:
    mean = torch.tensor(dataset.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, device=images.device).view(1, -1, 1, 1)
    return images * std + mean


def whitened(dataset: ImageDataset, eps: float = EPS) -> tuple[ImageDataset, ZCA]:
    """The data set with both splits ZCA-whitened by a fit on its training split. Its `mean`
    and `std` become (0, 1) per channel: the images are already in the space the nets see."""
    zca = ZCA.fit(to_unit_range(dataset.train_images, dataset), eps)
    channels = dataset.channels
    out = replace(
        dataset,
        train_images=zca.whiten(to_unit_range(dataset.train_images, dataset)),
        test_images=zca.whiten(to_unit_range(dataset.test_images, dataset)),
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        _class_indices=None,
        _class_table=None,
        zca=zca,
    )
    return out, zca
