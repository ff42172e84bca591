"""`ddz distill`: learn a synthetic set with DC, DSA or DM, optionally guided by PTMs, then
evaluate it by the protocol. Re-running the same command resumes (or reloads) the run."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import typer

from ddz.cli.common import RichProgress, console, out, settings, write_json
from ddz.cli.eval import results_table
from ddz.cli.main import app
from ddz.errors import ConfigError


def default_out(dataset: str, method: str, ipc: int, seed: int, guidance=None) -> Path:
    """runs/<dataset>-<method>-ipc<K>-seed<S>; a guided run adds -<guidance>-<8 hex digits of its
    PTMs and alpha>, so that guided and unguided runs of one setting do not share a folder."""
    name = Path(dataset.partition(":")[2]).stem if ":" in dataset else dataset
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    folder = f"{name}-{method}-ipc{ipc}-seed{seed}"
    if guidance is not None:
        key = ",".join(p["sha256"] for p in guidance.describe()) + f"|{guidance.alpha}"
        folder += f"-{guidance.kind}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return Path("runs") / folder


@app.command("distill")
def distill_command(
    dataset: str = typer.Option(..., "--dataset", help="Data set name or npz:FILE / folder:DIR."),
    method: str = typer.Option(..., "--method", help="dc | dsa | dm"),
    ipc: int = typer.Option(..., "--ipc", help="Synthetic images per class."),
    ptm: list[str] = typer.Option([], "--ptm", help="PTM query or @lockfile (repeatable)."),
    guidance: str = typer.Option(
        "auto", "--guidance", help="auto | clom | cclom | none (auto: CLoM for PTMs of the target's classes)."
    ),
    alpha: float | None = typer.Option(None, "--alpha", help="Guidance weight (default per method)."),
    iterations: int | None = typer.Option(None, "--iterations", help="Default: DC/DSA 1000, DM 20000."),
    batch_real: int = typer.Option(256, "--batch-real", help="Real images per class per step."),
    lr_img: float | None = typer.Option(None, "--lr-img", help="Default: DC/DSA 0.1, DM 1 (10 at IPC>=100)."),
    init: str = typer.Option("real", "--init", help="real | noise"),
    arch: str = typer.Option("convnet3", "--arch", help="Distillation architecture."),
    net_option: list[str] = typer.Option(
        [], "--net-option", help="KEY=VALUE for the distillation net, e.g. width=32 (repeatable)."
    ),
    distance: str = typer.Option("ours", "--distance", help="DC/DSA gradient distance: ours | mse | cos"),
    cclom_batch: int = typer.Option(1024, "--cclom-batch", help="Real target images per CCLoM call."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Run folder (default runs/<dataset>-<method>-ipc<K>-seed<S>)."
    ),
    checkpoint_every: int = typer.Option(
        100, "--checkpoint-every", help="Iterations between checkpoints (0: only at the end)."
    ),
    eval_models: int = typer.Option(5, "--eval-models", help="Fresh nets per eval arch (0: no evaluation)."),
    eval_epochs: int = typer.Option(1000, "--eval-epochs", help="Evaluation training epochs."),
    eval_arch: list[str] = typer.Option([], "--eval-arch", help="Evaluation archs (default: --arch)."),
    compile_nets: bool = typer.Option(False, "--compile", help="torch.compile the distillation net."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the run report as JSON here."),
) -> None:
    """Distil a data set into IPC images per class, then evaluate the synthetic set."""
    from ddz.data import check_dataset_name, load_dataset
    from ddz.distill.evaluate import EvalConfig, check_ipc, evaluate_synset
    from ddz.distill.guidance import Guidance, GuidanceConfig
    from ddz.distill.loop import distill
    from ddz.distill.methods import DistillConfig
    from ddz.distill.report import RunReport
    from ddz.distill.synset import GRID_FILE, SYNSET_FILE
    from ddz.zoo.train import parse_net_options

    config = DistillConfig(
        method=method, ipc=ipc, iterations=iterations, lr_img=lr_img, batch_real=batch_real, init=init,
        arch=arch, net_options=parse_net_options(net_option), distance=distance, compile=compile_nets,
    ).resolved()
    guide_config = GuidanceConfig(kind=guidance, alpha=alpha, cclom_batch=cclom_batch)
    guide_config.validate()
    if guidance == "none" and ptm:
        raise ConfigError("--guidance none with --ptm: drop --ptm, or choose --guidance auto|clom|cclom")
    if guidance in ("clom", "cclom") and not ptm:
        raise ConfigError(
            f"--guidance {guidance} needs PTMs: add --ptm QUERY (e.g. --ptm 'cifar10/convnet3/*@last')"
        )
    if eval_models < 0:
        raise ConfigError(f"--eval-models must be >= 0, got {eval_models}")
    eval_config = EvalConfig(archs=tuple(eval_arch or [arch]), models=max(eval_models, 1), epochs=eval_epochs)
    eval_config.validate()
    check_dataset_name(dataset)

    device = settings.torch_device
    data = load_dataset(dataset, settings.data_root, device)
    check_ipc(data, ipc)
    guide = None
    if ptm:
        from ddz.zoo.registry import load_ptms

        guide = Guidance(load_ptms(ptm, device), data, guide_config, config.method)
    out_dir = out_dir or default_out(dataset, config.method, ipc, settings.seed, guide)

    with RichProgress() as progress:
        synset = distill(
            data, config, settings.seed, guide, out_dir, checkpoint_every, progress,
            dataset_name=dataset, ptm_query=ptm,
        )
        console.print(
            f"synthetic set: {out_dir / SYNSET_FILE}\ngrid: {out_dir / GRID_FILE}",
            markup=False, highlight=False, soft_wrap=True,
        )
        started = time.perf_counter()
        results = {}
        if eval_models > 0:
            results = evaluate_synset(
                synset.images, synset.labels, data, eval_config, settings.seed, progress
            )
    report = RunReport(
        dataset=dataset, method=synset.method, ipc=synset.ipc, seed=settings.seed, eval=results,
        ptm_query=list(synset.ptm_query), ptms=list(synset.ptms), guidance=synset.guidance,
        alpha=synset.alpha, iterations=synset.iterations, seconds_distill=synset.seconds_distill,
        seconds_eval=time.perf_counter() - started, synset=str(out_dir / SYNSET_FILE),
    )
    if results:
        out.print(results_table(report))
    write_json(json_path, report.to_json())
