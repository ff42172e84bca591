"""The local zoo: names, snapshot files with typed metadata, manifests, sha256 checks."""

from __future__ import annotations

import json

import pytest
import torch
from olah_server import save_snapshot

from ddz.errors import IntegrityError, NotFoundError, QueryError
from ddz.io import read_header, read_tensors, write_tensors
from ddz.nets import build_net
from ddz.zoo.loading import load_snapshot
from ddz.zoo.records import SNAPSHOT_FORMAT, SnapshotMeta, SnapshotName, dataset_slug
from ddz.zoo.sources.local import LocalZoo, read_snapshot_meta

METRICS = {"train_loss": 1.5, "train_acc": 0.5, "test_acc": 0.625}


def tiny_net(seed: int = 0):
    return build_net("convnet3bn", 1, 10, 16, generator_seed=seed, width=4)


def load(store: LocalZoo, name: str):
    record = store.record(name)
    return load_snapshot(record.path, record.sha256)


def test_name_round_trip_and_relpath():
    name = SnapshotName.parse("cifar10/convnet3/seed3@epoch4")
    assert name == SnapshotName("cifar10", "convnet3", 3, 4)
    assert str(name) == "cifar10/convnet3/seed3@epoch4"
    assert name.relpath.as_posix() == "cifar10/convnet3/seed3/epoch4.safetensors"


@pytest.mark.parametrize(
    "text",
    [
        "cifar10/convnet3/seed3",
        "cifar10/convnet3@epoch4",
        "a/b/seedx@epoch1",
        "a/b/c/seed1@epoch1",
        "../b/seed1@epoch1",
    ],
)
def test_bad_names_are_query_errors(text):
    with pytest.raises(QueryError, match="DATASET/ARCH/seedN@epochE"):
        SnapshotName.parse(text)


def test_dataset_slug_for_path_forms():
    assert dataset_slug("digits") == "digits"
    assert dataset_slug("npz:/data/PathMNIST.npz") == "pathmnist"
    assert dataset_slug("folder:/data/image nette 2/") == "image-nette-2"


def test_snapshot_file_metadata_and_load(tmp_path):
    store = LocalZoo(tmp_path)
    net = tiny_net()
    name = SnapshotName("digits", "convnet3bn", 0, 1)
    record = save_snapshot(store, name, net, METRICS, mean=0.3, std=0.3)
    assert record.path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    header = read_header(record.path)
    assert header["ddz.format"] == SNAPSHOT_FORMAT
    assert header["seed"] == "0" and header["arch"] == "convnet3bn"
    meta = read_snapshot_meta(record.path)
    assert meta.metrics["test_acc"] == 0.625 and meta.net_config["width"] == 4 and meta.image_size == 16
    assert SnapshotMeta.decode(meta.encode()) == meta  # each field knows its own encoding
    ptm = load(store, "digits/convnet3bn/seed0@epoch1")
    assert ptm.sha256 == record.sha256 and ptm.in_channels == 1 and ptm.image_size == 16
    assert ptm.mean == (0.3,) and ptm.arch == "convnet3bn"
    for key, value in net.state_dict().items():
        assert torch.equal(ptm.net.state_dict()[key], value)


def test_unknown_header_keys_are_kept_and_missing_ones_named(tmp_path):
    store = LocalZoo(tmp_path)
    record = save_snapshot(store, SnapshotName("digits", "convnet3bn", 0, 1), tiny_net(), METRICS)
    header = read_header(record.path)
    header.pop("ddz.format"), header.pop("ddz.content_sha256")
    meta = SnapshotMeta.decode({**header, "weights_sha256": "ab" * 32})
    assert meta.extra == {"weights_sha256": "ab" * 32} and meta.encode()["weights_sha256"] == "ab" * 32
    del header["net_config"]
    with pytest.raises(IntegrityError, match="lacks valid ddz snapshot metadata .key 'net_config'"):
        SnapshotMeta.decode(header, "x.safetensors")


def test_same_content_gives_same_bytes(tmp_path):
    # safetensors writes metadata in hash-map order; ddz.io canonicalises it.
    a, b = LocalZoo(tmp_path / "a"), LocalZoo(tmp_path / "b")
    name = SnapshotName("digits", "convnet3bn", 0, 1)
    ra, rb = save_snapshot(a, name, tiny_net(), METRICS), save_snapshot(b, name, tiny_net(), METRICS)
    assert ra.sha256 == rb.sha256 and ra.path.read_bytes() == rb.path.read_bytes()


def test_tampered_file_is_refused_with_one_line(tmp_path):
    store = LocalZoo(tmp_path)
    name = SnapshotName("digits", "convnet3bn", 0, 1)
    record = save_snapshot(store, name, tiny_net(), METRICS)
    data = bytearray(record.path.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit pattern in the last weight
    record.path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as caught:
        load(store, str(name))
    message = str(caught.value)
    assert "\n" not in message
    assert str(record.path) in message and record.sha256 in message and "delete it" in message
    assert caught.value.expected == record.sha256 and caught.value.actual != record.sha256


def test_tensor_files_check_their_format_and_content(tmp_path):
    path = tmp_path / "t.safetensors"
    sha = write_tensors(path, {"x": torch.arange(4.0)}, "ddz.test/1", {"note": "n"})
    read = read_tensors(path, "ddz.test/1", sha)
    assert read.metadata == {"note": "n"} and torch.equal(read.tensors["x"], torch.arange(4.0))
    with pytest.raises(IntegrityError, match="is not a ddz.snapshot/1 file"):
        read_tensors(path, SNAPSHOT_FORMAT)
    # a header that still parses but whose tensors changed: refused by the content sha256
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="tensors do not match their recorded sha256"):
        read_tensors(path, "ddz.test/1")


def test_manifest_records_and_natural_sort(tmp_path):
    store = LocalZoo(tmp_path)
    for seed, epoch in [(10, 1), (2, 4), (2, 1), (0, 1)]:
        save_snapshot(store, SnapshotName("digits", "convnet3bn", seed, epoch), tiny_net(seed), METRICS)
    names = [str(r.name) for r in store.records()]
    assert names == [
        "digits/convnet3bn/seed0@epoch1",
        "digits/convnet3bn/seed2@epoch1",
        "digits/convnet3bn/seed2@epoch4",
        "digits/convnet3bn/seed10@epoch1",
    ]
    assert [str(r.name) for r in store.records("*@epoch4")] == ["digits/convnet3bn/seed2@epoch4"]
    assert len(store.records("digits/convnet3bn/seed2")) == 2
    manifest = json.loads(store.manifest_path("digits", "convnet3bn").read_text())
    assert manifest["format"] == "ddz.manifest/1" and manifest["arch"] == "convnet3bn"
    entry = manifest["snapshots"]["seed2/epoch4.safetensors"]
    assert entry["name"] == "digits/convnet3bn/seed2@epoch4" and entry["epoch"] == 4
    assert entry["metrics"]["test_acc"] == 0.625
    assert entry["sha256"] == store.records("*seed2@epoch4")[0].sha256
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_snapshot_names_what_is_there(tmp_path):
    store = LocalZoo(tmp_path)
    save_snapshot(store, SnapshotName("digits", "convnet3bn", 0, 1), tiny_net(), METRICS)
    with pytest.raises(NotFoundError, match="seed0@epoch1") as caught:
        store.record("digits/convnet3bn/seed0@epoch9")
    assert caught.value.asked == "digits/convnet3bn/seed0@epoch9"
    assert caught.value.available == ["digits/convnet3bn/seed0@epoch1"]
