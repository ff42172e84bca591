"""Data sets by name: `load_dataset("cifar10", root)`, `npz:FILE`, `folder:DIR`, `digits`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ddz.data import formats
from ddz.data.base import ImageDataset
from ddz.data.digits import RESOLUTION, load_digits_dataset
from ddz.errors import DataError, unknown_name

Loader = Callable[[Path, int | None], ImageDataset]


def _digits(root: Path, resolution: int | None) -> ImageDataset:
    return load_digits_dataset(resolution or RESOLUTION)


def _formats(name: str) -> Loader:
    def load(root: Path, resolution: int | None) -> ImageDataset:
        return formats.LOADERS[name](root, resolution)

    return load


NAMED_DATASETS: dict[str, Loader] = {
    "digits": _digits,
    **{
        name: _formats(name)
        for name in (
            "cifar10",
            "cifar100",
            "mnist",
            "fashionmnist",
            "svhn",
            "imagenet32",
            "pathmnist",
            "imagenette",
            "imagefruit",
        )
    },
}
PATH_FORMS = ("npz:", "folder:")


def dataset_names() -> list[str]:
    return sorted(NAMED_DATASETS)


def check_dataset_name(name: str) -> None:
    if name.startswith(PATH_FORMS) or name in NAMED_DATASETS:
        return
    raise DataError(unknown_name("data set", name, [*dataset_names(), "npz:FILE", "folder:DIR"]))


def check_data_reachable(name: str, root: str | Path) -> None:
    """Fail early, in one line, when the data set cannot be where it is looked for."""
    check_dataset_name(name)
    kind, sep, rest = name.partition(":")
    if sep and kind in ("npz", "folder"):
        if not Path(rest).exists():
            raise DataError(f"{kind} data set {rest!r} does not exist; check the path after '{kind}:'")
    elif name != "digits" and not Path(root).is_dir():
        raise DataError(
            f"data root {str(root)!r} is not a folder, so {name} cannot be read from it; "
            "pass --data-root DIR (or set DDZ_DATA_ROOT)"
        )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    device: str = "cpu",
    resolution: int | None = None,
) -> ImageDataset:
    """Load a whole data set (train and test splits) onto `device`."""
    check_dataset_name(name)
    if resolution is not None and resolution < 1:
        raise DataError(f"resolution must be a positive number of pixels, not {resolution}")
    root = Path(root) if root is not None else Path("data")
    if name.startswith(PATH_FORMS):
        kind, _, path = name.partition(":")
        loader = formats.load_npz if kind == "npz" else formats.load_folder
        dataset = loader(Path(path), resolution)
    else:
        dataset = NAMED_DATASETS[name](root, resolution)
    return dataset.to(device)
