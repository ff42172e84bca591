"""The zoo store: names, safetensors snapshots with metadata, manifests, sha256 checks."""

from __future__ import annotations

import json

import pytest
import torch

from ddz.errors import IntegrityError, QueryError
from ddz.nets import build_net
from ddz.zoo.store import (
    SNAPSHOT_FORMAT,
    SnapshotName,
    ZooStore,
    dataset_slug,
    load_snapshot_file,
    read_metadata,
    write_snapshot,
)


def tiny_net(seed: int = 0):
    return build_net("convnet3bn", 1, 10, 16, generator_seed=seed, width=4)


def metadata() -> dict[str, object]:
    return {
        "classes": [str(c) for c in range(10)],
        "mean": [0.3],
        "std": [0.3],
        "metrics": {"train_loss": 1.5, "train_acc": 0.5, "test_acc": 0.625},
        "recipe_hash": "abc",
    }


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
    net = tiny_net()
    path = tmp_path / "snap.safetensors"
    sha = write_snapshot(
        path,
        net,
        {
            **metadata(),
            "name": "digits/convnet3bn/seed0@epoch1",
            "net_config": net.config,
            "image_size": 16,
            "in_channels": 1,
        },
    )
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    meta = read_metadata(path)
    assert meta["ddz.format"] == SNAPSHOT_FORMAT
    assert meta["metrics"]["test_acc"] == 0.625 and meta["net_config"]["width"] == 4
    ptm = load_snapshot_file(path, sha)
    assert ptm.sha256 == sha and ptm.in_channels == 1 and ptm.image_size == 16 and ptm.mean == (0.3,)
    for key, value in net.state_dict().items():
        assert torch.equal(ptm.net.state_dict()[key], value)


def test_same_content_gives_same_bytes(tmp_path, monkeypatch):
    # safetensors writes metadata in hash-map order; the store canonicalises it.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = ZooStore(tmp_path / "a"), ZooStore(tmp_path / "b")
    name = SnapshotName("digits", "convnet3bn", 0, 1)
    ra, rb = a.save(name, tiny_net(), metadata()), b.save(name, tiny_net(), metadata())
    assert ra.sha256 == rb.sha256
    assert read_metadata(ra.path)["created"] == "2023-11-14T22:13:20Z"


def test_tampered_file_is_refused_with_one_line(tmp_path):
    store = ZooStore(tmp_path)
    name = SnapshotName("digits", "convnet3bn", 0, 1)
    record = store.save(name, tiny_net(), metadata())
    data = bytearray(record.path.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit pattern in the last weight
    record.path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as caught:
        store.load(name)
    message = str(caught.value)
    assert "\n" not in message
    assert str(record.path) in message and record.sha256 in message and "delete it" in message


def test_manifest_records_and_natural_sort(tmp_path):
    store = ZooStore(tmp_path)
    for seed, epoch in [(10, 1), (2, 4), (2, 1), (0, 1)]:
        store.save(SnapshotName("digits", "convnet3bn", seed, epoch), tiny_net(seed), metadata())
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
    store = ZooStore(tmp_path)
    store.save(SnapshotName("digits", "convnet3bn", 0, 1), tiny_net(), metadata())
    with pytest.raises(QueryError, match="seed0@epoch1"):
        store.load("digits/convnet3bn/seed0@epoch9")
