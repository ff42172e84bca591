"""Synthetic sets and checkpoints on disk: round trips, sha256 checks, the PNG grid, resume rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddz.distill.grid import MIN_CELL, PAD, grid_array
from ddz.distill.loop import distill
from ddz.distill.methods import DistillConfig
from ddz.distill.synset import (
    CHECKPOINT_FILE,
    GRID_FILE,
    SYNSET_FILE,
    Checkpoint,
    SynSet,
    load_checkpoint,
    load_synset,
    save_checkpoint,
    save_synset,
)
from ddz.errors import ConfigError, DataError, IntegrityError
from ddz.io import write_tensors


def make_synset(ipc=2, classes=3, channels=1, size=4) -> SynSet:
    gen = torch.Generator().manual_seed(0)
    return SynSet(
        images=torch.randn(classes * ipc, channels, size, size, generator=gen),
        labels=torch.arange(classes).repeat_interleave(ipc),
        dataset="npz:/data/x.npz", method="dm", ipc=ipc, seed=3, config={"method": "dm"},
        classes=[str(c) for c in range(classes)], mean=(0.5,) * channels, std=(0.25,) * channels,
        ptm_query=["digits/convnet3/*@last"],
        ptms=[{"name": "digits/convnet3/seed0@last", "sha256": "ab" * 32}],
        guidance="clom", alpha=10.0, iterations=7, seconds_distill=1.5,
    )


def test_synset_round_trip_keeps_everything(tmp_path):
    synset = make_synset()
    save_synset(tmp_path / "s.safetensors", synset)
    loaded = load_synset(tmp_path / "s.safetensors")
    assert torch.equal(loaded.images, synset.images) and torch.equal(loaded.labels, synset.labels)
    assert loaded.metadata() == synset.metadata()
    # the run folder works too
    save_synset(tmp_path / "run" / SYNSET_FILE, synset)
    assert load_synset(tmp_path / "run").dataset == "npz:/data/x.npz"


def test_synsets_written_with_the_earlier_format_tag_still_load(tmp_path):
    synset = make_synset()
    path = tmp_path / "old.safetensors"
    tensors = {"images": synset.images, "labels": synset.labels}
    write_tensors(path, tensors, "ddz-synset-1", {"ddz.metadata": json.dumps(synset.metadata())})
    assert load_synset(path).metadata() == synset.metadata()
    write_tensors(path, tensors, "ddz-something-else", {"ddz.metadata": json.dumps(synset.metadata())})
    with pytest.raises(IntegrityError, match="is not a ddz.synset/1 file"):
        load_synset(path)


def test_a_changed_byte_is_caught(tmp_path):
    path = tmp_path / "s.safetensors"
    save_synset(path, make_synset())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load_synset(path)


def test_missing_synset_is_one_line(tmp_path):
    with pytest.raises(DataError) as error:
        load_synset(tmp_path / "nothing")
    assert "\n" not in str(error.value)


def test_checkpoint_round_trip(tmp_path):
    run = {"seed": 1, "config": {"a": [1]}}
    ck = Checkpoint(torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2), 12, 3.5, run)
    save_checkpoint(tmp_path / "c.safetensors", ck)
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(back.images, ck.images) and torch.equal(back.momentum, ck.momentum)
    assert (back.iteration, back.seconds, back.run) == (12, 3.5, ck.run)


def test_grid_is_classes_by_ipc_and_denormalised():
    synset = make_synset(ipc=2, classes=3, size=4)
    synset.images[0] = (1.0 - 0.5) / 0.25  # class 0, first image: white after de-normalising
    synset.images[1] = (0.0 - 0.5) / 0.25  # class 0, second image: black
    array = grid_array(synset.images, synset.ipc, synset.mean, synset.std)
    cell = MIN_CELL  # 4px images are enlarged 8x
    assert array.shape == (3 * (cell + PAD) + PAD, 2 * (cell + PAD) + PAD)
    assert (array[PAD : PAD + cell, PAD : PAD + cell] == 255).all()
    left = PAD + cell + PAD
    assert (array[PAD : PAD + cell, left : left + cell] == 0).all()
    rgb = grid_array(torch.zeros(2, 3, 32, 32), 1, (0.1, 0.2, 0.3), (1.0, 1.0, 1.0))
    assert rgb.shape == (2 * 33 + 1, 34, 3)
    assert tuple(rgb[1, 1]) == (26, 51, 76)


def test_distill_writes_synset_grid_and_checkpoint_and_reloads(tmp_path, digits):
    config = DistillConfig(method="dm", ipc=2, iterations=3, net_options=(("width", 8),), batch_real=32)
    first = distill(digits, config, seed=0, out_dir=tmp_path, checkpoint_every=1, dataset_name="digits")
    for name in (SYNSET_FILE, GRID_FILE, CHECKPOINT_FILE):
        assert (tmp_path / name).is_file()
    with Image.open(tmp_path / GRID_FILE) as image:
        assert image.mode == "L" and image.size == (2 * (32 + PAD) + PAD, 10 * (32 + PAD) + PAD)
    saved = load_synset(tmp_path)
    assert torch.equal(saved.images, first.images) and saved.iterations == 3 and saved.dataset == "digits"
    assert saved.config["iterations"] == 3 and saved.seconds_distill > 0
    # a finished run is loaded again, not recomputed
    again = distill(digits, config, seed=0, out_dir=tmp_path)
    assert torch.equal(again.images, first.images) and again.seconds_distill == saved.seconds_distill
    # continuing to more iterations equals one longer run
    longer = DistillConfig(method="dm", ipc=2, iterations=5, net_options=(("width", 8),), batch_real=32)
    continued = distill(digits, longer, seed=0, out_dir=tmp_path)
    straight = distill(digits, longer, seed=0)
    assert torch.equal(continued.images, straight.images)
    # other settings in the same folder: one line, what differs
    with pytest.raises(ConfigError) as error:
        distill(digits, DistillConfig(method="dm", ipc=2, iterations=5, lr_img=2.0,
                                      net_options=(("width", 8),), batch_real=32), seed=0, out_dir=tmp_path)
    assert "lr_img" in str(error.value) and "\n" not in str(error.value)
    assert np.isfinite(continued.images.numpy()).all()
