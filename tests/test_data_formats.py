"""Every on-disk format, written tiny in its exact layout, loaded back through load_dataset."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ddz.data import load_dataset
from ddz.data.formats import (
    CIFAR10_STATS,
    FASHIONMNIST_CLASSES,
    IMAGENET_STATS,
    MNIST_STATS,
    PATHMNIST_CLASSES,
    SVHN_STATS,
)
from ddz.errors import DataError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def planar_rows(ids: list[int]) -> np.ndarray:
    """N x 3072 uint8 rows, channel-planar: image k has R = id, G = id + 50, B = id + 100 except
    pixel (0, 1) of R, which is 255 (so that row-major order within a plane is checked too)."""
    rows = np.zeros((len(ids), 3, 32, 32), dtype=np.uint8)
    for k, i in enumerate(ids):
        rows[k, 0], rows[k, 1], rows[k, 2] = i, i + 50, i + 100
        rows[k, 0, 0, 1] = 255
    return rows.reshape(len(ids), 3072)


def py2_pickle(path: Path, obj: dict) -> None:
    """Bytes keys at protocol 2: what the CIFAR python batches decode to with encoding='bytes'."""
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(root: Path, per_batch: int = 3, test: int = 4) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        ids = [(b - 1) * per_batch + k for k in range(per_batch)]
        py2_pickle(
            folder / f"data_batch_{b}",
            {
                b"batch_label": b"training batch",
                b"labels": [i % 10 for i in ids],
                b"data": planar_rows(ids),
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    py2_pickle(
        folder / "test_batch",
        {b"labels": [9 - k for k in range(test)], b"data": planar_rows(list(range(test)))},
    )
    py2_pickle(
        folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
    )
    return folder


def pixel(value: float, channel: int, stats: tuple) -> float:
    mean, std = stats
    return (value / 255.0 - mean[channel]) / std[channel]


def test_cifar10_batches(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert data.name == "cifar10"
    assert data.train_images.shape == (15, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    assert data.train_labels.tolist() == [i % 10 for i in range(15)]
    assert data.test_labels.tolist() == [9, 8, 7, 6]
    assert data.classes == CIFAR10_NAMES
    assert data.mean == CIFAR10_STATS[0] and data.std == CIFAR10_STATS[1]
    image = data.train_images[7]  # id 7, from data_batch_3
    assert image[0, 5, 5].item() == pytest.approx(pixel(7, 0, CIFAR10_STATS), abs=1e-5)
    assert image[1, 5, 5].item() == pytest.approx(pixel(57, 1, CIFAR10_STATS), abs=1e-5)
    assert image[2, 31, 0].item() == pytest.approx(pixel(107, 2, CIFAR10_STATS), abs=1e-5)
    assert image[0, 0, 1].item() == pytest.approx(pixel(255, 0, CIFAR10_STATS), abs=1e-5)
    assert image[0, 1, 0].item() == pytest.approx(pixel(7, 0, CIFAR10_STATS), abs=1e-5)


def test_cifar10_str_keys_and_resize(tmp_path: Path) -> None:
    """Batches re-saved by Python 3 (str keys, highest protocol) load too; resolution resizes."""
    folder = write_cifar10(tmp_path)
    batch = {"labels": np.arange(3) % 10, "data": planar_rows([0, 1, 2])}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    data = load_dataset("cifar10", tmp_path, resolution=16)
    assert data.train_images.shape == (15, 3, 16, 16)
    assert data.train_labels[3:6].tolist() == [0, 1, 2]


def test_cifar100_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"fine{i}".encode() for i in range(100)]
    py2_pickle(
        folder / "train",
        {b"fine_labels": [0, 99, 42], b"coarse_labels": [0, 1, 2], b"data": planar_rows([1, 2, 3])},
    )
    py2_pickle(
        folder / "test", {b"fine_labels": [5, 6], b"coarse_labels": [0, 0], b"data": planar_rows([4, 5])}
    )
    py2_pickle(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    data = load_dataset("cifar100", tmp_path)
    assert data.num_classes == 100 and data.classes[42] == "fine42"
    assert data.train_labels.tolist() == [0, 99, 42] and data.test_labels.tolist() == [5, 6]
    assert data.mean == (0.5071, 0.4866, 0.4409) and data.std == (0.2673, 0.2564, 0.2762)
    assert data.train_images.shape == (3, 3, 32, 32)


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as missing:
        load_dataset("cifar10", tmp_path)
    message = str(missing.value)
    assert "cifar-10-batches-py" in message and "cifar-10-python.tar.gz" in message and "\n" not in message

    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00garbage")
    with pytest.raises(DataError, match=r"malformed .*data_batch_3"):
        load_dataset("cifar10", tmp_path)

    py2_pickle(folder / "data_batch_3", {b"labels": [0, 1], b"data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(DataError, match=r"data_batch_3.*N x 3072 uint8"):
        load_dataset("cifar10", tmp_path)

    py2_pickle(folder / "data_batch_3", {b"labels": [0, 10], b"data": planar_rows([0, 1])})
    with pytest.raises(DataError, match=r"data_batch_3: labels span 0\.\.10, expected 0\.\.9"):
        load_dataset("cifar10", tmp_path)

    py2_pickle(folder / "data_batch_3", {b"labels": ["cat", "dog"], b"data": planar_rows([0, 1])})
    with pytest.raises(DataError, match=r"data_batch_3: 'labels' are not integers"):
        load_dataset("cifar10", tmp_path)

    (folder / "batches.meta").unlink()
    with pytest.raises(DataError, match="missing batches.meta"):
        load_dataset("cifar10", tmp_path)


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_cannot_call_functions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Exploit(), "labels": []}))
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        load_dataset("cifar10", tmp_path)
    assert "never run" not in capsys.readouterr().out


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, train: int = 6, test: int = 3, compress_train: bool = True) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(test) + 3) % 10,
    }
    arrays["train-images-idx3-ubyte"][2, 4, 5] = 200
    for name, array in arrays.items():
        if compress_train and name.startswith("train"):
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / name).write_bytes(idx_bytes(array))


def test_mnist_idx_files(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "MNIST" / "raw")
    data = load_dataset("mnist", tmp_path)
    assert data.train_images.shape == (6, 1, 28, 28) and data.test_images.shape == (3, 1, 28, 28)
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4, 5] and data.test_labels.tolist() == [3, 4, 5]
    assert data.classes == [str(i) for i in range(10)]
    assert data.mean == MNIST_STATS[0] and data.std == MNIST_STATS[1]
    assert data.train_images[2, 0, 4, 5].item() == pytest.approx(pixel(200, 0, MNIST_STATS), abs=1e-5)
    assert load_dataset("mnist", tmp_path, resolution=32).train_images.shape == (6, 1, 32, 32)


def test_fashionmnist_idx_files(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "FashionMNIST" / "raw", compress_train=False)
    data = load_dataset("fashionmnist", tmp_path)
    assert data.classes == FASHIONMNIST_CLASSES and data.classes[9] == "Ankle boot"
    assert data.mean == (0.2861,) and data.std == (0.3530,)
    assert data.train_images.shape == (6, 1, 28, 28)


def test_idx_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MNIST/raw.*t10k-labels-idx1-ubyte") as missing:
        load_dataset("mnist", tmp_path)
    assert "\n" not in str(missing.value)
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, compress_train=False)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    with pytest.raises(DataError, match="bad magic number"):
        load_dataset("mnist", tmp_path)
    images = raw / "train-images-idx3-ubyte"
    write_idx = idx_bytes(np.zeros((6, 28, 28), np.uint8))
    labels.write_bytes(idx_bytes(np.arange(3)))
    images.write_bytes(write_idx[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: header says \(6, 28, 28\)"):
        load_dataset("mnist", tmp_path)
    images.write_bytes(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    with pytest.raises(DataError, match="train has 5 images but 6 labels"):
        load_dataset("mnist", tmp_path)


def write_svhn(root: Path) -> None:
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir()
    for name, labels in (("train_32x32.mat", [10, 1, 5, 10]), ("test_32x32.mat", [3, 10])):
        x = np.zeros((32, 32, 3, len(labels)), dtype=np.uint8)
        for k in range(len(labels)):
            x[:, :, 0, k], x[:, :, 1, k], x[:, :, 2, k] = 10 * k, 100, 200
        x[1, 2, 0, 1] = 255  # row 1, column 2, red, image 1
        savemat(folder / name, {"X": x, "y": np.asarray(labels, dtype=np.uint8)[:, None]})


def test_svhn_mat_files(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    data = load_dataset("svhn", tmp_path)
    assert data.train_labels.tolist() == [0, 1, 5, 0] and data.test_labels.tolist() == [3, 0]
    assert data.train_images.shape == (4, 3, 32, 32) and data.test_images.shape == (2, 3, 32, 32)
    assert data.mean == SVHN_STATS[0] and data.std == SVHN_STATS[1]
    assert data.train_images[3, 0, 9, 9].item() == pytest.approx(pixel(30, 0, SVHN_STATS), abs=1e-5)
    assert data.train_images[0, 2, 9, 9].item() == pytest.approx(pixel(200, 2, SVHN_STATS), abs=1e-5)
    assert data.train_images[1, 0, 1, 2].item() == pytest.approx(pixel(255, 0, SVHN_STATS), abs=1e-5)
    assert data.classes == [str(i) for i in range(10)]


def test_svhn_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"svhn.*train_32x32\.mat.*ufldl"):
        load_dataset("svhn", tmp_path)
    write_svhn(tmp_path)
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match=r"malformed SVHN .*test_32x32\.mat"):
        load_dataset("svhn", tmp_path)


def write_imagenet32(root: Path, with_map: bool = False) -> Path:
    folder = root / "imagenet32"
    folder.mkdir()
    for b in range(1, 11):
        labels = [1, 1000] if b == 1 else [b, b + 100]
        batch = {"data": planar_rows([b, b + 1]), "labels": labels, "mean": np.zeros(3072)}
        (folder / f"train_data_batch_{b}").write_bytes(pickle.dumps(batch))
    (folder / "val_data").write_bytes(pickle.dumps({"data": planar_rows([7]), "labels": [500]}))
    if with_map:
        lines = [f"n{10000000 + i} {i} name_{i}" for i in range(1, 1001)]
        (folder / "map_clsloc.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_imagenet32_batches(tmp_path: Path) -> None:
    write_imagenet32(tmp_path)
    data = load_dataset("imagenet32", tmp_path)
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (1, 3, 32, 32)
    assert data.train_labels[:4].tolist() == [0, 999, 1, 101]  # 1-based on disk
    assert data.test_labels.tolist() == [499]
    assert data.num_classes == 1000 and data.classes[0] == "class0000"
    assert data.mean == IMAGENET_STATS[0] and data.std == IMAGENET_STATS[1]
    assert data.test_images[0, 1, 3, 3].item() == pytest.approx(pixel(57, 1, IMAGENET_STATS), abs=1e-5)


def test_imagenet32_class_map_and_errors(tmp_path: Path) -> None:
    folder = write_imagenet32(tmp_path, with_map=True)
    assert load_dataset("imagenet32", tmp_path).classes[999] == "n10001000"
    (folder / "train_data_batch_7").unlink()
    with pytest.raises(
        DataError, match=r"imagenet32/ \(train_data_batch_1\.\.10, val_data; missing train_data_batch_7\)"
    ):
        load_dataset("imagenet32", tmp_path)
    (folder / "train_data_batch_7").write_bytes(pickle.dumps({"data": planar_rows([1]), "labels": [0]}))
    with pytest.raises(DataError, match=r"train_data_batch_7: labels span 0\.\.0, expected 1\.\.1000"):
        load_dataset("imagenet32", tmp_path)


def medmnist_arrays(colour: bool, size: int = 28) -> dict[str, np.ndarray]:
    shape = (size, size, 3) if colour else (size, size)
    arrays = {}
    for split, n in (("train", 9), ("val", 2), ("test", 4)):
        images = np.zeros((n, *shape), dtype=np.uint8)
        images[:, ...] = np.arange(n, dtype=np.uint8).reshape(n, *([1] * len(shape))) * 20
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = (np.arange(n) % 9).reshape(n, 1).astype(np.uint8)
    return arrays


def test_pathmnist_npz(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "pathmnist.npz", **medmnist_arrays(colour=True))
    data = load_dataset("pathmnist", tmp_path)
    assert data.name == "pathmnist" and data.classes == PATHMNIST_CLASSES
    assert data.train_images.shape == (9, 3, 28, 28) and data.test_images.shape == (4, 3, 28, 28)
    assert data.train_labels.tolist() == list(range(9)) and data.test_labels.tolist() == [0, 1, 2, 3]
    # no standard constants: the train split's own statistics
    values = torch.arange(9, dtype=torch.float32) * 20 / 255
    assert data.mean[0] == pytest.approx(values.mean().item(), abs=1e-5)
    assert data.std[0] == pytest.approx(values.std(correction=0).item(), abs=1e-4)
    assert data.train_images.mean().item() == pytest.approx(0.0, abs=1e-5)


def test_npz_path_form_grey(tmp_path: Path) -> None:
    arrays = medmnist_arrays(colour=False, size=20)
    del arrays["test_images"], arrays["test_labels"]
    np.savez(tmp_path / "organs.npz", **arrays)
    data = load_dataset(f"npz:{tmp_path / 'organs.npz'}", resolution=16)
    assert data.name == f"npz:{tmp_path / 'organs.npz'}"
    assert data.train_images.shape == (9, 1, 16, 16)
    assert data.test_labels.tolist() == [0, 1]  # the val split stands in for a missing test split
    assert data.num_classes == 9


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pathmnist\.npz.*medmnist"):
        load_dataset("pathmnist", tmp_path)
    (tmp_path / "pathmnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="malformed MedMNIST-style npz"):
        load_dataset("pathmnist", tmp_path)
    arrays = medmnist_arrays(colour=True)
    arrays["train_labels"] = np.zeros((9, 14), np.uint8)
    np.savez(tmp_path / "chest.npz", **arrays)
    with pytest.raises(DataError, match="14 columns; only single-label"):
        load_dataset(f"npz:{tmp_path / 'chest.npz'}")
    np.savez(tmp_path / "half.npz", train_images=arrays["train_images"])
    with pytest.raises(DataError, match="no train_labels, val_images, val_labels"):
        load_dataset(f"npz:{tmp_path / 'half.npz'}")
    np.savez(tmp_path / "objects.npz", **{**arrays, "train_labels": np.array([None] * 9, dtype=object)})
    with pytest.raises(DataError, match="malformed"):
        load_dataset(f"npz:{tmp_path / 'objects.npz'}")


def save_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_imagenette_folders(tmp_path: Path) -> None:
    wnids = ["n01440764", "n02102040", "n02979186"]
    red_blue = np.zeros((30, 60, 3), dtype=np.uint8)  # 60 wide, 30 high
    red_blue[:, :30, 0] = 255
    red_blue[:, 30:, 2] = 255
    for c, wnid in enumerate(wnids):
        for k in range(2):
            save_image(tmp_path / "imagenette" / "train" / wnid / f"{wnid}_{k}.JPEG", red_blue)
        if c != 1:
            save_image(tmp_path / "imagenette" / "val" / wnid / f"ILSVRC_val_{c}.JPEG", red_blue)
    (tmp_path / "imagenette" / "train" / wnids[0] / "notes.txt").write_text("not an image")
    data = load_dataset("imagenette", tmp_path, resolution=16)
    assert data.classes == wnids
    assert data.train_images.shape == (6, 3, 16, 16) and data.test_images.shape == (2, 3, 16, 16)
    assert data.train_labels.tolist() == [0, 0, 1, 1, 2, 2] and data.test_labels.tolist() == [0, 2]
    assert data.mean == IMAGENET_STATS[0]
    # shorter side 30 -> 16 (32x16), centre crop keeps columns 8..24: red left half, blue right half
    rgb = data.train_images[0] * torch.tensor(IMAGENET_STATS[1])[:, None, None]
    rgb = rgb + torch.tensor(IMAGENET_STATS[0])[:, None, None]
    assert rgb[0, 8, 2].item() > 0.9 and rgb[2, 8, 2].item() < 0.1
    assert rgb[2, 8, 13].item() > 0.9 and rgb[0, 8, 13].item() < 0.1
    assert load_dataset("imagenette", tmp_path).image_size == 224  # the paper's resolution


def test_imagefruit_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"imagefruit/ \(train/<wnid>/\*\.JPEG and val/<wnid>/\*\.JPEG\)"):
        load_dataset("imagefruit", tmp_path)
    save_image(tmp_path / "imagefruit" / "train" / "n07753592" / "a.JPEG", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "imagefruit" / "val" / "n07753592").mkdir(parents=True)
    (tmp_path / "imagefruit" / "val" / "n07753592" / "b.JPEG").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"malformed ImageFruit image .*b\.JPEG"):
        load_dataset("imagefruit", tmp_path, resolution=8)
    save_image(tmp_path / "imagefruit" / "val" / "n07753592" / "b.JPEG", np.zeros((8, 8, 3), np.uint8))
    save_image(tmp_path / "imagefruit" / "val" / "n99999999" / "c.JPEG", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="n99999999 are not among the training classes"):
        load_dataset("imagefruit", tmp_path, resolution=8)


def test_folder_path_form(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("val", 1)):
        for c, name in enumerate(["circle", "square"]):
            for k in range(count):
                save_image(
                    tmp_path / "shapes" / split / name / f"{k}.png", np.full((12, 12), 40 * c + k, np.uint8)
                )
    data = load_dataset(f"folder:{tmp_path / 'shapes'}")
    assert data.name == f"folder:{tmp_path / 'shapes'}"
    assert data.train_images.shape == (6, 1, 12, 12)  # grey, at the square images' own size
    assert data.classes == ["circle", "square"] and data.test_labels.tolist() == [0, 1]
    values = torch.tensor([0.0, 1, 2, 40, 41, 42]) / 255
    assert data.mean[0] == pytest.approx(values.mean().item(), abs=1e-5)
    save_image(tmp_path / "wide" / "train" / "a" / "0.png", np.zeros((10, 20, 3), np.uint8))
    save_image(tmp_path / "wide" / "test" / "a" / "0.png", np.zeros((10, 20, 3), np.uint8))
    assert load_dataset(f"folder:{tmp_path / 'wide'}").train_images.shape == (1, 3, 32, 32)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"expected an image folder data set at .*nothing/"):
        load_dataset(f"folder:{tmp_path / 'nothing'}")
    save_image(tmp_path / "only" / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"test/<class>/<image> \(or val/\)"):
        load_dataset(f"folder:{tmp_path / 'only'}")


def test_resolution_must_be_positive() -> None:
    with pytest.raises(DataError, match="resolution must be a positive number of pixels, not 0"):
        load_dataset("digits", resolution=0)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(DataError) as error:
        load_dataset("cifar-10")
    message = str(error.value)
    assert (
        message.startswith("unknown data set 'cifar-10'") and "cifar10" in message and "npz:FILE" in message
    )
