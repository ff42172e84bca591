"""`ddz distill`: learn a synthetic set with DC, DSA or DM, optionally guided by PTMs, then
evaluate it by the protocol. Re-running the same command resumes (or reloads) the run."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import replace
from pathlib import Path

import typer

from ddz.cli.common import RichProgress, console, out, settings, write_json
from ddz.cli.eval import results_table
from ddz.cli.main import app
from ddz.cli.ranks import NPROC_HELP, TIMEOUT_HELP, LineProgress, RankOptions, start_or_join
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


def run_folders(
    base: Path | None, dataset: str, method: str, ipc: int, seeds: list[int], guidance=None
) -> list[Path]:
    """One folder per run: --out DIR itself for one run, DIR/seed<S> for several; by default each
    run's own default folder (so `--runs 2` reuses what `--seed 1` alone would have written)."""
    if base is None:
        return [default_out(dataset, method, ipc, seed, guidance) for seed in seeds]
    if len(seeds) == 1:
        return [base]
    return [base / f"seed{seed}" for seed in seeds]


@app.command("distill")
def distill_command(
    dataset: str = typer.Option(..., "--dataset", help="Data set name or npz:FILE / folder:DIR."),
    method: str = typer.Option(..., "--method", help="dc | dsa | dm | mtt"),
    ipc: int = typer.Option(..., "--ipc", help="Synthetic images per class."),
    ptm: list[str] = typer.Option([], "--ptm", help="PTM query or @lockfile (repeatable)."),
    guidance: str = typer.Option(
        "auto", "--guidance", help="auto | clom | cclom | none (auto: CLoM for PTMs of the target's classes)."
    ),
    alpha: list[str] = typer.Option(
        [], "--alpha",
        help="Guidance weight: VALUE for every architecture, or ARCH=VALUE (repeatable). "
        "Default: the authors' table by data set, method and IPC (docs/distill.md).",
    ),
    runs: int = typer.Option(1, "--runs", help="Synthetic sets to distil (seeds S..S+N-1), each evaluated."),
    iterations: int | None = typer.Option(None, "--iterations", help="Default: DC/DSA 1000, DM 20000."),
    batch_real: int = typer.Option(256, "--batch-real", help="Real images per class per step."),
    lr_img: float | None = typer.Option(
        None, "--lr-img", help="Default: DC/DSA 0.1, DM 1 (10 on CIFAR-10 at IPC>=100)."
    ),
    init: str | None = typer.Option(None, "--init", help="real | noise (default: DC noise, DSA/DM real)."),
    arch: str = typer.Option("convnet3", "--arch", help="Distillation architecture."),
    net_option: list[str] = typer.Option(
        [], "--net-option", help="KEY=VALUE for the distillation net, e.g. width=32 (repeatable)."
    ),
    distance: str = typer.Option("ours", "--distance", help="DC/DSA gradient distance: ours | mse | cos"),
    cclom_batch: int = typer.Option(1024, "--cclom-batch", help="Real target images per CCLoM call."),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Image side in pixels (default: the data set's; ImageNet subsets 224)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out",
        help="Run folder (default runs/<dataset>-<method>-ipc<K>-seed<S>); with --runs: DIR/seed<S>.",
    ),
    checkpoint_every: int = typer.Option(
        100, "--checkpoint-every", help="Iterations between checkpoints (0: only at the end)."
    ),
    eval_models: int = typer.Option(5, "--eval-models", help="Fresh nets per eval arch (0: no evaluation)."),
    eval_epochs: int | None = typer.Option(
        None, "--eval-epochs", help="Evaluation training epochs (default 1000; 300 without augmentation)."
    ),
    eval_arch: list[str] = typer.Option([], "--eval-arch", help="Evaluation archs (default: --arch)."),
    eval_augment: str = typer.Option(
        "dsa", "--eval-augment", help="dsa | dc (the DC reference's rule) | none: augmentation in evaluation."
    ),
    eval_batched: bool = typer.Option(
        True, "--batched/--sequential", help="Train an eval arch's models as one batched model (same nets)."
    ),
    eval_compile: bool = typer.Option(False, "--eval-compile", help="torch.compile the evaluation nets."),
    compile_nets: bool = typer.Option(False, "--compile", help="torch.compile the distillation net."),
    experts: list[str] = typer.Option(
        [], "--experts", help="MTT: expert snapshots, a zoo query (e.g. 'digits/convnet3/*') or @lockfile."
    ),
    syn_steps: int | None = typer.Option(None, "--syn-steps", help="MTT: student steps per iteration."),
    expert_epochs: int | None = typer.Option(None, "--expert-epochs", help="MTT: expert epochs to match."),
    max_start_epoch: int | None = typer.Option(
        None, "--max-start-epoch", help="MTT: start epochs are drawn below it."),
    lr_lr: float | None = typer.Option(None, "--lr-lr", help="MTT: learning rate of the learned step size."),
    lr_teacher: float | None = typer.Option(None, "--lr-teacher", help="MTT: initial student step size."),
    batch_syn: int | None = typer.Option(
        None, "--batch-syn", help="MTT: images per student step (default all)."),
    memory: str = typer.Option(
        "unrolled", "--memory", help="MTT: unrolled (keep the graph) | constant (one step's graph at a time)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the run report as JSON here."),
    nproc: int = typer.Option(1, "--nproc", help=NPROC_HELP),
    dist_timeout: float = typer.Option(300.0, "--dist-timeout", help=TIMEOUT_HELP),
    launcher: str = typer.Option(
        "local", "--launcher", help="local (--nproc ranks here) | slurm (one job of --nodes x tasks)."
    ),
    nodes: int = typer.Option(1, "--nodes", help="slurm: nodes."),
    gpus_per_node: int = typer.Option(
        0, "--gpus-per-node", help="slurm: GPUs per node, one rank each (0: --nproc CPU ranks per node)."
    ),
    partition: str | None = typer.Option(None, "--partition", help="slurm: partition."),
    time_limit: int = typer.Option(240, "--time", help="slurm: job time limit in minutes."),
    mem_gb: float | None = typer.Option(None, "--mem-gb", help="slurm: memory per node in GB."),
    cpus_per_task: int | None = typer.Option(None, "--cpus-per-task", help="slurm: CPUs (threads) per rank."),
) -> None:
    """Distil a data set into IPC images per class, then evaluate the synthetic set(s).

    Over several ranks (--nproc N, --launcher slurm, or torchrun --nproc-per-node N -m ddz
    distill ...) the classes are sharded over the ranks and rank 0 writes every file."""
    from ddz.cli.parsing import parse_net_options
    from ddz.data import check_dataset_name, load_dataset
    from ddz.data.zca import whitened
    from ddz.distill.alphas import parse_alpha_options
    from ddz.distill.evaluate import EVAL_CACHE_FILE, EvalConfig, check_ipc, evaluate_cached
    from ddz.distill.experts import ExpertBuffer
    from ddz.distill.guidance import Guidance, GuidanceConfig
    from ddz.distill.loop import distill
    from ddz.distill.methods import DistillConfig
    from ddz.distill.report import RunReport
    from ddz.distill.synset import GRID_FILE, SYNSET_FILE

    config = DistillConfig(
        method=method, ipc=ipc, iterations=iterations, lr_img=lr_img, batch_real=batch_real, init=init,
        arch=arch, net_options=parse_net_options(net_option), distance=distance, compile=compile_nets,
        syn_steps=syn_steps, expert_epochs=expert_epochs, max_start_epoch=max_start_epoch, lr_lr=lr_lr,
        lr_teacher=lr_teacher, batch_syn=batch_syn, memory=memory,
    ).resolved(dataset)
    if experts and config.method != "mtt":
        raise ConfigError(f"--experts are MTT's: use --method mtt, or drop --experts for {config.method}")
    alpha_all, alpha_per_arch = parse_alpha_options(alpha)
    guide_config = GuidanceConfig(guidance, alpha_all, tuple(alpha_per_arch.items()), cclom_batch)
    if guidance == "none" and ptm:
        raise ConfigError("--guidance none with --ptm: drop --ptm, or choose --guidance auto|clom|cclom")
    if guidance in ("clom", "cclom") and not ptm:
        raise ConfigError(
            f"--guidance {guidance} needs PTMs: add --ptm QUERY (e.g. --ptm 'cifar10/convnet3/*@last')"
        )
    if alpha and not ptm:
        raise ConfigError("--alpha weights PTM guidance: add --ptm QUERY, or drop --alpha")
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    if eval_models < 0:
        raise ConfigError(f"--eval-models must be >= 0, got {eval_models}")
    eval_config = EvalConfig(
        archs=tuple(eval_arch or [arch]), models=max(eval_models, 1), epochs=eval_epochs,
        augment=eval_augment, batched=eval_batched, compile=eval_compile,
    )
    check_dataset_name(dataset)
    ranks = start_or_join(RankOptions(
        nproc, dist_timeout, launcher, nodes, gpus_per_node, partition, time_limit, mem_gb, cpus_per_task,
    ))
    if ranks is None:
        return  # the ranks this process started have done the work
    say = console.print if ranks.is_main else (lambda *args, **kwargs: None)

    device = settings.torch_device
    data = load_dataset(dataset, settings.data_root, device, resolution)
    check_ipc(data, ipc)
    buffer = None
    if config.method == "mtt":
        if not experts:
            raise ConfigError("--method mtt needs expert trajectories: add --experts 'DATASET/ARCH/*' "
                              "(train them with `ddz zoo train --recipe mtt-expert --snapshots every`)")
        zoo = settings.zoo()
        rows = zoo.resolve_all(experts)
        buffer = ExpertBuffer(rows, zoo.files(rows))
        if buffer.zca:  # experts trained on whitened data: distil (and evaluate) in that space
            data = whitened(data)[0]
    guide = None
    if ptm:
        guide = Guidance(settings.zoo().load_ptms(ptm, device), data, guide_config, config.method, ipc)
        say(f"guidance: {guide.kind}, alpha {guide.alpha} ({guide.alpha_source})",
            markup=False, highlight=False, soft_wrap=True)
    seeds = [settings.seed + k for k in range(runs)]
    folders = run_folders(out_dir, dataset, config.method, ipc, seeds, guide)

    synsets, per_run, seconds_eval, notes = [], [], 0.0, []
    with RichProgress() if ranks.is_main else LineProgress(ranks.rank) as progress:
        for seed, folder in zip(seeds, folders, strict=True):
            synset = distill(
                data, config, seed, guide, folder, checkpoint_every, progress,
                dataset_name=dataset, ptm_query=ptm, experts=buffer, ranks=ranks,
            )
            synsets.append(synset)
            say(
                f"synthetic set: {folder / SYNSET_FILE}\ngrid: {folder / GRID_FILE}",
                markup=False, highlight=False, soft_wrap=True,
            )
            if eval_models > 0:
                started = time.perf_counter()
                # MTT's synthetic set comes with the step size it learnt: its evaluation trains with it
                run_eval = replace(eval_config, lr=synset.lr) if synset.lr is not None else eval_config
                per_run.append(evaluate_cached(
                    synset.images, synset.labels, data, run_eval, seed, folder / EVAL_CACHE_FILE, progress,
                    notes, ranks,
                ))
                seconds_eval += time.perf_counter() - started
    if not ranks.is_main:
        return
    for note in dict.fromkeys(notes):
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    files = [str(folder / SYNSET_FILE) for folder in folders]
    report = RunReport.from_runs(dataset, settings.seed, synsets, files, per_run, seconds_eval, ranks.world)
    if report.eval:
        out.print(results_table(report))
    write_json(json_path, report.to_json())
