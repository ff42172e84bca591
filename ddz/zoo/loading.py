"""Verified files to frozen PTMs: a zoo snapshot's net rebuilt from its recorded config, or an
external model built by its library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ddz.errors import IntegrityError, first_line
from ddz.io import WatchedFile, file_stamp
from ddz.nets import build_from_config
from ddz.zoo.external_models import load_external
from ddz.zoo.ptm import PTM
from ddz.zoo.records import Resolved
from ddz.zoo.sources.local import read_snapshot


def load_snapshot(path: str | Path, expected_sha256: str | None, device: str | torch.device = "cpu") -> PTM:
    """Verify the file's sha256, rebuild its net from the recorded config and return a PTM."""
    stamp = file_stamp(path)  # before the read, so that a change made during it shows later
    tensors, meta, actual = read_snapshot(path, expected_sha256)
    net = build_from_config(dict(meta.net_config))
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        why = first_line(error)
        raise IntegrityError(f"{path}: weights do not fit the recorded net_config ({why})") from None
    return PTM(name=str(meta.name), sha256=actual, net=net.to(device).eval(), classes=list(meta.classes),
               mean=meta.mean, std=meta.std, image_size=meta.image_size, in_channels=meta.in_channels,
               arch=meta.name.arch, zca=bool(meta.recipe.get("zca", False)),
               file=WatchedFile(Path(path), actual, stamp))


def load_ptms(rows: Sequence[Resolved], files: Mapping[str, Path], hf_cache: Path,
              device: str | torch.device = "cpu", offline: bool = False) -> list[PTM]:
    """Frozen PTMs for resolved rows, zoo rows from their verified `files`."""
    ptms = []
    for row in rows:
        if row.source == "external":
            ptm = load_external(row, hf_cache, device, offline)
        else:
            ptm = load_snapshot(files[row.name], row.sha256, device)
        ptms.append(ptm.freeze(device))
    return ptms
