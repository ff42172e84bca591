"""Command-line options -> RunRequest: a base (a request file, or nothing) and the options given
on the command line on top of it. An option left out (None, or an empty list) keeps the base's
value, so `ddz distill --config runs/X/report.json` reruns X as it was and `--runs 3` on top
changes only that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddz.cli.parsing import parse_net_options
from ddz.distill.alphas import parse_alpha_options
from ddz.distill.methods import METHODS
from ddz.distill.request import RunRequest, read_request_file
from ddz.errors import ConfigError

# option name -> where it goes in the request's JSON
PATHS: dict[str, str] = {
    "dataset": "dataset", "resolution": "resolution", "runs": "runs", "out_dir": "out",
    "checkpoint_every": "checkpoint_every", "eval_every": "eval_every", "ptm": "ptm", "experts": "experts",
    "method": "distill.method", "ipc": "distill.ipc", "iterations": "distill.iterations",
    "batch_real": "distill.batch_real", "lr_img": "distill.lr_img", "init": "distill.init",
    "arch": "distill.arch", "distance": "distill.distance", "compile_nets": "distill.compile",
    "amp": "distill.amp",
    "syn_steps": "distill.mtt.syn_steps", "expert_epochs": "distill.mtt.expert_epochs",
    "max_start_epoch": "distill.mtt.max_start_epoch", "lr_lr": "distill.mtt.lr_lr",
    "lr_teacher": "distill.mtt.lr_teacher", "batch_syn": "distill.mtt.batch_syn",
    "memory": "distill.mtt.memory",
    "factor": "distill.rded.factor", "crops": "distill.rded.crops", "candidates": "distill.rded.candidates",
    "min_scale": "distill.rded.min_scale",
    "r_bn": "distill.sre2l.r_bn", "first_bn_multiplier": "distill.sre2l.first_bn_multiplier",
    "jitter": "distill.sre2l.jitter", "flip": "distill.sre2l.flip", "sre2l_batch": "distill.sre2l.batch",
    "guidance": "guidance.kind", "cclom_batch": "guidance.cclom_batch",
    "eval_models": "evaluation.models", "eval_epochs": "evaluation.epochs", "eval_arch": "evaluation.archs",
    "eval_augment": "evaluation.augment", "eval_crop_factor": "evaluation.crop_factor",
    "eval_batched": "evaluation.batched",
    "eval_compile": "evaluation.compile", "eval_cuda_graph": "evaluation.cuda_graph",
    "eval_amp": "evaluation.amp", "eval_labels": "evaluation.labels.labels",
    "teacher": "evaluation.labels.teacher", "kd_loss": "evaluation.labels.loss",
    "temperature": "evaluation.labels.temperature", "soft_labels": "evaluation.labels.soft_mode",
    "mix": "evaluation.mix.kind", "scores": "scores", "score_weight": "score_weight",
    "ars": "ars",
}


def request_base(config_file: Path | None) -> dict[str, Any]:
    return read_request_file(config_file) if config_file is not None else {}


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    tree[leaf] = value


def _given(value: Any) -> bool:
    return value is not None and value != []


def apply_overrides(base: dict[str, Any], options: dict[str, Any], seed: int | None) -> RunRequest:
    """The request: `base` with every option that was given on top. `--arch` alone also sets the
    evaluation archs of a request built from options only (the protocol evaluates on the
    distillation arch); `--eval-models 0` turns evaluation off. For RDED and SRe2L, `--teacher`
    is the distillation teacher, and also the soft labels' unless `--eval-labels hard`."""
    values = dict(options)
    if not base:
        missing = [f"--{name}" for name in ("dataset", "method", "ipc") if not _given(values.get(name))]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)}: give them, or --config FILE (a request or "
                              "a report.json)")
    tree = dict(base)
    if _given(values.get("net_option")):
        _set(tree, "distill.net_options", [list(pair) for pair in parse_net_options(values["net_option"])])
    if _given(values.get("alpha")):
        everyone, per_arch = parse_alpha_options(values["alpha"])
        _set(tree, "guidance.alpha", everyone)
        _set(tree, "guidance.arch_alphas", [[arch, value] for arch, value in per_arch.items()])
    if not base and _given(values.get("arch")) and not _given(values.get("eval_arch")):
        values["eval_arch"] = [values["arch"]]
    method = values.get("method") or (base.get("distill") or {}).get("method")
    if method in METHODS and METHODS[method].needs_teacher and _given(values.get("teacher")):
        teacher = values.pop("teacher")
        _set(tree, "teacher", teacher)
        if values.get("eval_labels") != "hard":
            values["eval_labels"] = "soft"
            _set(tree, "evaluation.labels.teacher", teacher)
    off = values.get("eval_models") == 0
    if off:
        values["eval_models"] = None
    for name, path in PATHS.items():
        value = values.get(name)
        if _given(value):
            _set(tree, path, str(value) if isinstance(value, Path) else value)
    if seed is not None:
        tree["seed"] = seed
    if off:
        tree["evaluation"] = None
    return RunRequest.from_json(tree)
