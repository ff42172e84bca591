"""Readers for the formats users already have on disk; nothing here downloads anything.

Every loader takes (root, resolution) and returns a normalised ImageDataset. A missing or malformed
file raises DataError with one line naming the expected path, its layout, and where to get it.
Pickled batches (CIFAR, ImageNet-32) are read with an unpickler that can only rebuild plain
containers and numpy arrays, never call anything else.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ddz.data.base import ImageDataset, normalised, uint8_to_float
from ddz.errors import DataError

Loader = Callable[[Path, int | None], ImageDataset]

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR100_STATS = ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_STATS = ((0.1307,), (0.3081,))
FASHIONMNIST_STATS = ((0.2861,), (0.3530,))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

FASHIONMNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
PATHMNIST_CLASSES = [
    "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
    "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium",
]
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")
IMAGENET_SUBSET_RESOLUTION = 224  # the paper runs ImageNette and ImageFruit at 224 x 224
FOLDER_FALLBACK_RESOLUTION = 32


# --- safe unpickling -------------------------------------------------------------------------


def _numpy_global(module: str, name: str) -> object:
    # numpy 2 moved numpy.core to numpy._core; old pickles name the old module.
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"{module}.{name} is not available")


_ALLOWED_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}
_ALLOWED_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "int", "float", "str", "bytes", "bytearray"}


class _DataUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, numbers, strings and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_NUMPY:
            return _numpy_global(module, name)
        if module in ("builtins", "__builtin__") and name in _ALLOWED_BUILTINS:
            return getattr(__import__("builtins"), name)
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not plain array data")


def _unpickle_batch(path: Path, what: str, howto: str) -> dict[str, object]:
    """A pickled dict batch, keys as str (Python 2 pickles give bytes or latin-1 str keys)."""
    try:
        with open(path, "rb") as handle:
            obj = _DataUnpickler(handle, encoding="latin1").load()
    except OSError as error:
        raise DataError(f"cannot read {what} file {path}: {error.strerror or error}; {howto}") from error
    except Exception as error:  # any corruption surfaces as one of many exception types
        raise DataError(f"malformed {what} file {path}: {_reason(error)}; {howto}") from error
    if not isinstance(obj, dict):
        raise DataError(f"malformed {what} file {path}: expected a pickled dict; {howto}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())[:120]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _require_files(folder: Path, names: Sequence[str], what: str, layout: str, howto: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DataError(f"expected {what} at {folder}/ ({layout}; missing {shown}); {howto}")


# --- shared conversion ----------------------------------------------------------------------


def _planar_batches(
    batches: list[tuple[Path, dict[str, object]]], label_key: str, num_classes: int, what: str,
    howto: str, label_offset: int = 0, size: int = 32,
) -> tuple[torch.Tensor, np.ndarray]:
    """Channel-planar rows (N, 3*size*size uint8) from several batches -> one float (N,3,s,s) tensor.

    The float tensor is allocated once and filled batch by batch (ImageNet-32 is 16 GB as float).
    """
    arrays: list[np.ndarray | None] = []
    labels = []
    for path, batch in batches:
        data, raw = batch.pop("data", None), batch.get(label_key)
        if (
            not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * size * size
        ):
            raise DataError(
                f"malformed {what} file {path}: 'data' must be an N x {3 * size * size} uint8 array; {howto}"
            )
        if raw is None:
            raise DataError(f"malformed {what} file {path}: no {label_key!r} entry; {howto}")
        try:
            y = np.asarray(raw).reshape(-1).astype(np.int64) - label_offset
        except (TypeError, ValueError) as error:
            raise DataError(
                f"malformed {what} file {path}: {label_key!r} are not integers; {howto}"
            ) from error
        _check_labels(y, num_classes, path, what, howto, label_offset)
        if len(y) != len(data):
            raise DataError(
                f"malformed {what} file {path}: {len(data)} images but {len(y)} labels; {howto}"
            )
        arrays.append(data)
        labels.append(y)
    total = sum(len(a) for a in arrays)
    out = torch.empty((total, 3, size, size), dtype=torch.float32)
    start = 0
    for i in range(len(arrays)):
        data, arrays[i] = arrays[i], None  # let each uint8 batch go as soon as it is copied
        n = len(data)
        data = np.ascontiguousarray(data) if data.flags.writeable else data.copy()
        rows = torch.from_numpy(data).view(n, 3, size, size)
        out[start : start + n].copy_(rows).div_(255.0)
        start += n
    return out, np.concatenate(labels)


def _check_labels(
    labels: np.ndarray, num_classes: int, source: Path, what: str, howto: str, offset: int = 0
) -> None:
    """Labels must lie in 0..K-1 (in `offset`..K-1+offset as stored on disk)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"malformed {what} file {source}: labels span {labels.min() + offset}..{labels.max() + offset}, "
            f"expected {offset}..{num_classes - 1 + offset}; {howto}"
        )


def _resize(images: torch.Tensor, resolution: int | None, chunk: int = 4096) -> torch.Tensor:
    """Bilinear (antialiased) resize of float (N,C,H,W) to resolution x resolution, if it differs."""
    if resolution is None or images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    parts = [
        F.interpolate(images[i : i + chunk], size=(resolution, resolution), mode="bilinear",
                      antialias=True, align_corners=False)
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(parts) if parts else images.new_empty((0, images.shape[1], resolution, resolution))


def _dataset(
    name: str, train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor,
    test_labels: np.ndarray, classes: list[str], stats: tuple | None, resolution: int | None,
) -> ImageDataset:
    mean, std = stats if stats is not None else (None, None)
    train, test = _resize(train, resolution), _resize(test, resolution)
    return normalised(name, train, train_labels, test, test_labels, classes, mean, std, inplace=True)


# --- CIFAR ----------------------------------------------------------------------------------


def _cifar(
    root: Path, resolution: int | None, *, name: str, folder: str, train_files: Sequence[str],
    test_file: str, meta_file: str, label_key: str, names_key: str, stats: tuple, archive: str,
    layout: str,
) -> ImageDataset:
    directory = root / folder
    what = f"{'CIFAR-10' if name == 'cifar10' else 'CIFAR-100'} python batches"
    howto = (
        f"download {archive} from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
        f"under --data-root"
    )
    _require_files(directory, [*train_files, test_file, meta_file], what, layout, howto)
    meta = _unpickle_batch(directory / meta_file, what, howto)
    names = meta.get(names_key)
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"malformed {what} file {directory / meta_file}: no {names_key!r} list; {howto}")
    classes = [_text(n) for n in names]
    train, train_y = _planar_batches(
        [(directory / f, _unpickle_batch(directory / f, what, howto)) for f in train_files],
        label_key, len(classes), what, howto,
    )
    test, test_y = _planar_batches(
        [(directory / test_file, _unpickle_batch(directory / test_file, what, howto))],
        label_key, len(classes), what, howto,
    )
    return _dataset(name, train, train_y, test, test_y, classes, stats, resolution)


def load_cifar10(root: Path, resolution: int | None = None) -> ImageDataset:
    return _cifar(
        root, resolution, name="cifar10", folder="cifar-10-batches-py",
        train_files=[f"data_batch_{i}" for i in range(1, 6)], test_file="test_batch",
        meta_file="batches.meta", label_key="labels", names_key="label_names",
        stats=CIFAR10_STATS, archive="cifar-10-python.tar.gz",
        layout="data_batch_1..5, test_batch, batches.meta",
    )


def load_cifar100(root: Path, resolution: int | None = None) -> ImageDataset:
    return _cifar(
        root, resolution, name="cifar100", folder="cifar-100-python", train_files=["train"],
        test_file="test", meta_file="meta", label_key="fine_labels", names_key="fine_label_names",
        stats=CIFAR100_STATS, archive="cifar-100-python.tar.gz", layout="train, test, meta",
    )


# --- MNIST family (idx files) ---------------------------------------------------------------

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_idx(path: Path, dims: int, what: str, howto: str) -> np.ndarray:
    """An idx file of unsigned bytes: magic 0x0000_08_<dims>, big-endian sizes, then the data."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"malformed {what} file {path}: {_reason(error)}; {howto}") from error
    header = 4 + 4 * dims
    if len(raw) < header or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != dims:
        raise DataError(
            f"malformed {what} file {path}: not an idx{dims}-ubyte file (bad magic number); {howto}"
        )
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">u4"))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(
            f"malformed {what} file {path}: header says {shape} but holds {len(raw) - header} bytes; {howto}"
        )
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)


def _idx_dataset(
    root: Path, resolution: int | None, *, name: str, folder: str, what: str, howto: str,
    classes: list[str], stats: tuple,
) -> ImageDataset:
    directory = root / folder / "raw"
    paths: dict[str, Path] = {}
    missing = []
    for key, stem in _IDX_FILES.items():
        plain, packed = directory / stem, directory / f"{stem}.gz"
        if plain.is_file():
            paths[key] = plain
        elif packed.is_file():
            paths[key] = packed
        else:
            missing.append(stem)
    if missing:
        raise DataError(
            f"expected {what} idx files at {directory}/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, or .gz; missing {', '.join(missing)}); {howto}"
        )
    arrays = {
        key: _read_idx(path, 3 if key.endswith("images") else 1, what, howto)
        for key, path in paths.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"malformed {what} files in {directory}: {split} has {len(images)} images but "
                f"{len(labels)} labels; {howto}"
            )
        _check_labels(labels.astype(np.int64), len(classes), paths[f"{split}_labels"], what, howto)
    return _dataset(
        name,
        uint8_to_float(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
        uint8_to_float(arrays["test_images"]), arrays["test_labels"].astype(np.int64),
        classes, stats, resolution,
    )


def load_mnist(root: Path, resolution: int | None = None) -> ImageDataset:
    return _idx_dataset(
        root, resolution, name="mnist", folder="MNIST", what="MNIST",
        howto="get the four MNIST idx files (e.g. from a torchvision MNIST download) and put them there",
        classes=[str(i) for i in range(10)], stats=MNIST_STATS,
    )


def load_fashionmnist(root: Path, resolution: int | None = None) -> ImageDataset:
    return _idx_dataset(
        root, resolution, name="fashionmnist", folder="FashionMNIST", what="Fashion-MNIST",
        howto="download the four idx .gz files from https://github.com/zalandoresearch/fashion-mnist "
        "and put them there",
        classes=FASHIONMNIST_CLASSES, stats=FASHIONMNIST_STATS,
    )


# --- SVHN (MATLAB .mat) ---------------------------------------------------------------------


def load_svhn(root: Path, resolution: int | None = None) -> ImageDataset:
    directory = root / "svhn"
    what = "SVHN cropped digits"
    howto = "download train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/"
    files = ("train_32x32.mat", "test_32x32.mat")
    _require_files(directory, files, what, "train_32x32.mat, test_32x32.mat", howto)
    from scipy.io import loadmat

    splits = []
    for file in files:
        path = directory / file
        try:
            mat = loadmat(path, variable_names=["X", "y"])
        except Exception as error:  # scipy raises many types for a bad .mat
            raise DataError(f"malformed {what} file {path}: {_reason(error)}; {howto}") from error
        images, labels = mat.get("X"), mat.get("y")
        if (
            not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[2] != 3
            or images.dtype != np.uint8 or labels is None or labels.size != images.shape[3]
        ):
            raise DataError(
                f"malformed {what} file {path}: expected X (32, 32, 3, N) uint8 and y (N, 1); {howto}"
            )
        y = labels.reshape(-1).astype(np.int64)
        y[y == 10] = 0  # SVHN stores the digit 0 as label 10
        _check_labels(y, 10, path, what, howto)
        splits.append((uint8_to_float(images.transpose(3, 0, 1, 2)), y))
    (train, train_y), (test, test_y) = splits
    return _dataset(
        "svhn", train, train_y, test, test_y, [str(i) for i in range(10)], SVHN_STATS, resolution
    )


# --- ImageNet-32 (downsampled ImageNet, pickled batches) ------------------------------------


def load_imagenet32(root: Path, resolution: int | None = None) -> ImageDataset:
    directory = root / "imagenet32"
    what = "ImageNet-32 batches"
    howto = (
        "download Imagenet32_train.zip and Imagenet32_val.zip (pickle format) from "
        "https://image-net.org/download-images and extract them there"
    )
    train_files = [f"train_data_batch_{i}" for i in range(1, 11)]
    _require_files(directory, [*train_files, "val_data"], what, "train_data_batch_1..10, val_data", howto)
    classes = _imagenet_classes(directory / "map_clsloc.txt", what, howto)
    train, train_y = _planar_batches(
        [(directory / f, _unpickle_batch(directory / f, what, howto)) for f in train_files],
        "labels", len(classes), what, howto, label_offset=1,
    )
    test, test_y = _planar_batches(
        [(directory / "val_data", _unpickle_batch(directory / "val_data", what, howto))],
        "labels", len(classes), what, howto, label_offset=1,
    )
    return _dataset("imagenet32", train, train_y, test, test_y, classes, IMAGENET_STATS, resolution)


def _imagenet_classes(path: Path, what: str, howto: str) -> list[str]:
    """WordNet ids from the ILSVRC devkit's map_clsloc.txt ("n02119789 1 kit_fox") if present."""
    if not path.is_file():
        return [f"class{i:04d}" for i in range(1000)]
    by_index: dict[int, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            by_index[int(parts[1])] = parts[0]
    if sorted(by_index) != list(range(1, 1001)):
        raise DataError(
            f"malformed {what} file {path}: expected lines 'WNID INDEX NAME' for 1..1000; {howto}"
        )
    return [by_index[i] for i in range(1, 1001)]


# --- MedMNIST npz ---------------------------------------------------------------------------


def load_npz(path: Path, resolution: int | None = None, *, name: str | None = None,
             classes: list[str] | None = None) -> ImageDataset:
    """MedMNIST layout: train_images (N,H,W) or (N,H,W,3) uint8, train_labels (N,) or (N,1),
    test_* (val_* if there is no test split)."""
    path = Path(path)
    what = "MedMNIST-style npz"
    howto = (
        "the npz needs train_images/train_labels and test_images/test_labels (or val_*), "
        "as MedMNIST's files from https://medmnist.com have"
    )
    if not path.is_file():
        raise DataError(f"expected a {what} file at {path} ({howto})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # zip, format and pickle-refusal errors all mean "malformed"
        raise DataError(f"malformed {what} file {path}: {_reason(error)}; {howto}") from error
    test_split = "test" if "test_images" in arrays else "val"
    wanted = ["train_images", "train_labels", f"{test_split}_images", f"{test_split}_labels"]
    missing = [key for key in wanted if key not in arrays]
    if missing:
        raise DataError(f"malformed {what} file {path}: no {', '.join(missing)}; {howto}")
    splits = []
    for split in ("train", test_split):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        colour_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)
        if images.dtype != np.uint8 or not colour_ok:
            raise DataError(
                f"malformed {what} file {path}: {split}_images must be uint8 (N,H,W) or (N,H,W,3), "
                f"not {images.dtype} {images.shape}; {howto}"
            )
        if labels.ndim == 2 and labels.shape[1] != 1:
            raise DataError(
                f"malformed {what} file {path}: {split}_labels has {labels.shape[1]} columns; only "
                f"single-label classification sets are supported; {howto}"
            )
        y = labels.reshape(-1).astype(np.int64)
        if len(y) != len(images):
            raise DataError(
                f"malformed {what} file {path}: {len(images)} {split} images but {len(y)} labels; {howto}"
            )
        splits.append((images, y))
    (train, train_y), (test, test_y) = splits
    if classes is None:
        classes = [str(i) for i in range(int(max(train_y.max(initial=0), test_y.max(initial=0))) + 1)]
    _check_labels(train_y, len(classes), path, what, howto)
    _check_labels(test_y, len(classes), path, what, howto)
    return _dataset(
        name or f"npz:{path}", uint8_to_float(train), train_y, uint8_to_float(test), test_y,
        classes, None, resolution,
    )


def load_pathmnist(root: Path, resolution: int | None = None) -> ImageDataset:
    path = root / "pathmnist.npz"
    if not path.is_file():
        raise DataError(
            f"expected PathMNIST at {path} (MedMNIST npz: train/val/test _images (N,28,28,3) and "
            f"_labels (N,1)); download pathmnist.npz from https://medmnist.com (Zenodo) into --data-root"
        )
    return load_npz(path, resolution, name="pathmnist", classes=PATHMNIST_CLASSES)


# --- image folders --------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _read_image(path: Path, resolution: int, mode: str, what: str, howto: str) -> np.ndarray:
    """Resize the shorter side to `resolution`, centre-crop a square, return uint8 (H,W[,C])."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft(mode, (resolution, resolution))  # JPEG: decode at a reduced scale, fast
            image = image.convert(mode)
            w, h = image.size
            scale = resolution / min(w, h)
            size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
            if size != (w, h):
                image = image.resize(size, Image.Resampling.BILINEAR)
            left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
            image = image.crop((left, top, left + resolution, top + resolution))
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"malformed {what} image {path}: {_reason(error)}; {howto}") from error


def _folder_split(
    directory: Path, resolution: int, mode: str, classes: list[str] | None, what: str, howto: str,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    found = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"malformed {what} at {directory}: class folder(s) {', '.join(unknown[:3])} are not among "
            f"the training classes; {howto}"
        )
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        if (directory / name).is_dir():
            members = _image_files(directory / name)
            files += members
            labels += [index] * len(members)
    if not files:
        raise DataError(f"expected {what} images in class folders under {directory}/; {howto}")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(lambda p: _read_image(p, resolution, mode, what, howto), files))
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def _folder_dataset(
    name: str, directory: Path, test_names: Sequence[str], resolution: int, mode: str,
    stats: tuple | None, what: str, layout: str, howto: str,
) -> ImageDataset:
    test_dir = next((directory / t for t in test_names if (directory / t).is_dir()), None)
    if not (directory / "train").is_dir() or test_dir is None:
        raise DataError(f"expected {what} at {directory}/ ({layout}); {howto}")
    train, train_y, classes = _folder_split(directory / "train", resolution, mode, None, what, howto)
    test, test_y, _ = _folder_split(test_dir, resolution, mode, classes, what, howto)
    return _dataset(
        name, uint8_to_float(train), train_y, uint8_to_float(test), test_y, classes, stats, None
    )


def _imagenet_subset(key: str, title: str, howto: str) -> Loader:
    def load(root: Path, resolution: int | None = None) -> ImageDataset:
        return _folder_dataset(
            key, root / key, ("val",), resolution or IMAGENET_SUBSET_RESOLUTION, "RGB",
            IMAGENET_STATS, title, "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG", howto,
        )

    load.__name__ = f"load_{key}"
    return load


load_imagenette = _imagenet_subset(
    "imagenette", "ImageNette",
    "download imagenette2 (or imagenette2-320) from https://github.com/fastai/imagenette and "
    "extract it as imagenette/ under --data-root",
)
load_imagefruit = _imagenet_subset(
    "imagefruit", "ImageFruit",
    "build it from ImageNet's train and val images of the 10 ImageFruit classes (as listed by the "
    "MTT paper) as imagefruit/train/<wnid>/ and imagefruit/val/<wnid>/ under --data-root",
)


_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "F"}


def load_folder(path: Path, resolution: int | None = None) -> ImageDataset:
    """DIR/train/<class>/* and DIR/test/<class>/* (or DIR/val/): grey if the first image is grey,
    at the first image's size if it is square (else 32 px) unless `resolution` says otherwise."""
    from PIL import Image, UnidentifiedImageError

    directory = Path(path)
    what = "image folder data set"
    layout = "train/<class>/<image> and test/<class>/<image> (or val/)"
    howto = "arrange the images as class folders under train/ and test/"
    first = None
    if (directory / "train").is_dir():
        for class_dir in sorted(p for p in (directory / "train").iterdir() if p.is_dir()):
            members = _image_files(class_dir)
            if members:
                first = members[0]
                break
    if first is None:
        raise DataError(f"expected an {what} at {directory}/ ({layout}); {howto}")
    try:
        with Image.open(first) as image:
            mode = "L" if image.mode in _GREY_MODES else "RGB"
            w, h = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"malformed {what} image {first}: {_reason(error)}; {howto}") from error
    size = resolution or (w if w == h else FOLDER_FALLBACK_RESOLUTION)
    return _folder_dataset(
        f"folder:{directory}", directory, ("test", "val"), size, mode, None, what, layout, howto
    )


LOADERS: dict[str, Loader] = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "mnist": load_mnist,
    "fashionmnist": load_fashionmnist,
    "svhn": load_svhn,
    "imagenet32": load_imagenet32,
    "pathmnist": load_pathmnist,
    "imagenette": load_imagenette,
    "imagefruit": load_imagefruit,
}

__all__ = ["LOADERS", "load_folder", "load_npz"]
