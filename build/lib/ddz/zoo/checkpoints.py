"""A zoo run's resumable checkpoint, and SGD state for many nets as one.

    checkpoint.json                      sidecar: epoch, optimiser scalars, history, sha256 of ...
    checkpoint-epoch<e>.safetensors      ... the tensors: model, optimiser buffers, generator state

The tensors go to a new file, then the sidecar that names it (atomic rename), then old files go:
a kill at any point leaves either the previous or the new checkpoint complete. Optimiser state is
split into tensors and JSON scalars, so no pickle is needed. `stack_optimizer_states` and
`unstack_optimizer_state` turn N nets' SGD states into their StackedNets' and back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddz.errors import IntegrityError
from ddz.io import atomic_write_json, read_tensors, write_tensors
from ddz.zoo.records import utc_now
from ddz.zoo.runs import RunProgress, TrainJob, read_json

CHECKPOINT_FORMAT = "ddz.checkpoint/1"


def _optimizer_split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser state dict as (tensors, JSON scalars), so that no pickle is needed."""
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], saved: dict[str, Any], device: str) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value.to(device)
    for name, value in saved["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": saved["param_groups"]}


def save_checkpoint(job: TrainJob, net: torch.nn.Module, optimizer_state: dict[str, Any],
                    order: torch.Generator, progress: RunProgress) -> None:
    """Tensors to a new file, then the sidecar that names it (atomic rename), then old files go.

    A kill at any point leaves either the previous or the new checkpoint complete."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    optim_tensors, optim_json = _optimizer_split(optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng.order"] = order.get_state()
    file_name = f"checkpoint-epoch{progress.epoch}.safetensors"
    sha = write_tensors(job.run_dir / file_name, tensors, CHECKPOINT_FORMAT, {"epoch": str(progress.epoch)})
    atomic_write_json(
        job.run_dir / "checkpoint.json",
        {
            "format": CHECKPOINT_FORMAT,
            "name": job.run_name,
            "epoch": progress.epoch,
            "tensors": file_name,
            "sha256": sha,
            "recipe_hash": job.recipe.hash(),
            "recipe": job.recipe.to_json(),
            "data_fingerprint": job.data_fingerprint,
            "optimizer": optim_json,
            "progress": progress.to_json(),
            "history": progress.history,  # read by the launchers' progress view
            "updated": utc_now(),
        },
    )
    for old in job.run_dir.glob("checkpoint-epoch*.safetensors"):
        if old.name != file_name:
            old.unlink(missing_ok=True)


def load_checkpoint(job: TrainJob, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    order: torch.Generator, device: str) -> RunProgress:
    """Restore net, optimiser and generator from the run's checkpoint, if it has one."""
    sidecar = read_json(job.run_dir / "checkpoint.json")
    if sidecar is None:
        return RunProgress()
    if sidecar.get("format") != CHECKPOINT_FORMAT:
        raise IntegrityError(
            f"{job.run_dir / 'checkpoint.json'} has an unknown format; delete it to restart this seed"
        )
    try:
        tensors = read_tensors(job.run_dir / sidecar["tensors"], CHECKPOINT_FORMAT, sidecar["sha256"]).tensors
    except IntegrityError as error:
        raise IntegrityError(
            f"the checkpoint of {job.run_name} is damaged ({str(error).split(';')[0]}); "
            f"delete {job.run_dir / 'checkpoint.json'} to restart this seed from epoch 0"
        ) from error
    net.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True
    )
    optimizer.load_state_dict(_optimizer_join(tensors, sidecar["optimizer"], device))
    order.set_state(tensors["rng.order"])
    progress = RunProgress.from_json(sidecar.get("progress", sidecar))  # older sidecars kept it flat
    progress.resumed_from = progress.epoch
    return progress


def clean_partial_files(run_dir: Path) -> None:
    """Temp files left by a kill during an atomic write (this run holds the run lock)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)



def drop_checkpoint(run_dir: Path) -> None:
    """A finished run's checkpoint goes: the sidecar first, then its tensors."""
    (run_dir / "checkpoint.json").unlink(missing_ok=True)
    for old in run_dir.glob("checkpoint-epoch*.safetensors"):
        old.unlink(missing_ok=True)


def stack_optimizer_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """SGD states of N copies as the state of their StackedNets (buffers concatenated)."""
    return {
        "state": {
            index: {key: torch.cat([s["state"][index][key] for s in states]) for key in entry}
            for index, entry in states[0]["state"].items()
        },
        "param_groups": states[0]["param_groups"],
    }


def unstack_optimizer_state(state: dict[str, Any], copies: int) -> list[dict[str, Any]]:
    return [
        {
            "state": {
                index: {key: value.chunk(copies)[n] for key, value in entry.items()}
                for index, entry in state["state"].items()
            },
            "param_groups": state["param_groups"],
        }
        for n in range(copies)
    ]

