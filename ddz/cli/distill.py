"""`ddz distill`: build a RunRequest from the options (and --config FILE), run it, print.
Re-running the same command resumes (or reloads) the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ddz.cli.cluster import CpusPerJob, GpusPerJob, Memory, Partition, TimeLimit, cluster_options
from ddz.cli.common import RichProgress, console, out, settings, write_json
from ddz.cli.eval import (
    LABELS_PANEL,
    Ars,
    KdLoss,
    Mix,
    Scores,
    ScoreWeight,
    SoftLabels,
    Temperature,
    results_table,
)
from ddz.cli.main import app
from ddz.cli.ranks import NPROC_HELP, TIMEOUT_HELP, LineProgress, RankOptions, start_or_join

METHOD, GUIDE, MTT, EVAL, RUN, CLUSTER = "Method", "Guidance", "MTT", "Evaluation", "Run", "Cluster"
TEACHER = "RDED / SRe2L"


def _opt(default: Any, *names: str, panel: str, help: str) -> Any:  # noqa: A002 - typer's word
    return typer.Option(default, *names, help=help, rich_help_panel=panel)


@app.command("distill")
def distill_command(
    dataset: str = _opt(None, "--dataset", panel=METHOD, help="Data set name or npz:FILE / folder:DIR."),
    method: str = _opt(None, "--method", panel=METHOD, help="dc | dsa | dm | mtt | rded | sre2l"),
    ipc: int = _opt(None, "--ipc", panel=METHOD, help="Synthetic images per class."),
    iterations: int = _opt(None, "--iterations", panel=METHOD, help="Default: DC/DSA 1000, DM 20000, "
                          "MTT 5000, SRe2L 1000 (RDED selects once)."),
    batch_real: int = _opt(None, "--batch-real", panel=METHOD, help="Real images per class per step (256)."),
    lr_img: float = _opt(None, "--lr-img", panel=METHOD, help="Default: DC/DSA 0.1, DM 1 (10 on CIFAR-10 "
                         "at IPC>=100), MTT by its table, SRe2L 0.25 (Adam)."),
    init: str = _opt(None, "--init", panel=METHOD, help="real | noise (default: DC noise, others real)."),
    arch: str = _opt(None, "--arch", panel=METHOD, help="Distillation architecture (convnet3)."),
    net_option: list[str] = _opt([], "--net-option", panel=METHOD, help="KEY=VALUE for the net, e.g. "
                                   "width=32."),
    distance: str = _opt(None, "--distance", panel=METHOD, help="DC/DSA gradient distance: ours | mse | cos"),
    compile_nets: bool = _opt(None, "--compile", panel=METHOD, help="torch.compile the distillation net."),
    amp: str = _opt(None, "--amp", panel=METHOD, help="none | bf16: the distillation net's forwards under "
                    "autocast (off by default; docs/distill.md, Speed)."),
    resolution: int = _opt(None, "--resolution", panel=METHOD, help="Image side (default: the data set's)."),
    ptm: list[str] = _opt([], "--ptm", panel=GUIDE, help="PTM query or @lockfile (repeatable)."),
    guidance: str = _opt(None, "--guidance", panel=GUIDE,
                         help="auto | clom | cclom | none (auto: CLoM for PTMs of the target's classes)."),
    alpha: list[str] = _opt([], "--alpha", panel=GUIDE, help="VALUE, or ARCH=VALUE (repeatable). Default: "
                            "the authors' table by data set, method and IPC (docs/distill.md)."),
    cclom_batch: int = _opt(None, "--cclom-batch", panel=GUIDE, help="Real target images per CCLoM "
                            "call (1024)."),
    experts: list[str] = _opt([], "--experts", panel=MTT, help="Expert snapshots: a zoo query or @lockfile."),
    syn_steps: int = _opt(None, "--syn-steps", panel=MTT, help="Student steps per iteration."),
    expert_epochs: int = _opt(None, "--expert-epochs", panel=MTT, help="Expert epochs to match."),
    max_start_epoch: int = _opt(None, "--max-start-epoch", panel=MTT, help="Start epochs are drawn below "
                                "it."),
    lr_lr: float = _opt(None, "--lr-lr", panel=MTT, help="Learning rate of the learnt step size."),
    lr_teacher: float = _opt(None, "--lr-teacher", panel=MTT, help="Initial student step size."),
    batch_syn: int = _opt(None, "--batch-syn", panel=MTT, help="Images per student step (default all)."),
    memory: str = _opt(None, "--memory", panel=MTT, help="unrolled | constant (one step's graph at a time)."),
    factor: int = _opt(None, "--factor", panel=TEACHER, help="RDED: factor x factor patches per image "
                       "(1 up to 64px, 2 above)."),
    crops: int = _opt(None, "--crops", panel=TEACHER, help="RDED: random crops scored per candidate (5)."),
    candidates: int = _opt(None, "--candidates", panel=TEACHER,
                           help="RDED: real candidates per class (300)."),
    min_scale: float = _opt(None, "--min-scale", panel=TEACHER,
                            help="RDED: smallest crop area share (0.08)."),
    r_bn: float = _opt(None, "--r-bn", panel=TEACHER, help="SRe2L: weight of the BatchNorm loss (0.01)."),
    first_bn_multiplier: float = _opt(None, "--first-bn-multiplier", panel=TEACHER,
                                      help="SRe2L: extra weight of the first BatchNorm layer (10)."),
    jitter: int = _opt(None, "--jitter", panel=TEACHER, help="SRe2L: random roll in pixels (4 up to 64px, "
                       "32 above)."),
    flip: bool = _opt(None, "--flip/--no-flip", panel=TEACHER, help="SRe2L: random horizontal flip (off up "
                      "to 64px, on above)."),
    sre2l_batch: int = _opt(None, "--sre2l-batch", panel=TEACHER, help="SRe2L: classes per BatchNorm batch "
                            "(100)."),
    eval_models: int = _opt(None, "--eval-models", panel=EVAL, help="Fresh nets per eval arch (5; 0: none)."),
    eval_epochs: int = _opt(None, "--eval-epochs", panel=EVAL, help="Default 1000; 300 without "
                           "augmentation."),
    eval_arch: list[str] = _opt([], "--eval-arch", panel=EVAL, help="Evaluation archs (default: --arch)."),
    eval_augment: str = _opt(None, "--eval-augment", panel=EVAL, help="dsa | dc | rded | none (dsa)."),
    eval_crop_factor: int = _opt(None, "--eval-crop-factor", panel=EVAL, help="--eval-augment rded: patches "
                                 "per side (default: an RDED run's --factor, else 1)."),
    eval_batched: bool = _opt(None, "--batched/--sequential", panel=EVAL,
                              help="Train an arch's models as one batched model (same nets)."),
    eval_compile: bool = _opt(None, "--eval-compile", panel=EVAL, help="torch.compile the evaluation nets."),
    eval_cuda_graph: bool = _opt(None, "--eval-cuda-graph", panel=EVAL, help="Replay each training step "
                                 "from a CUDA graph on a GPU (same nets)."),
    eval_amp: str = _opt(None, "--eval-amp", panel=EVAL, help="none | bf16: the evaluation nets' forwards "
                         "under autocast (off by default)."),
    eval_labels: str = _opt(None, "--eval-labels", panel=LABELS_PANEL, help="hard | soft (soft: from "
                            "--teacher, by knowledge distillation; DD-Ranking's protocol)."),
    teacher: list[str] = _opt([], "--teacher", panel=LABELS_PANEL, help="Soft labels' teacher: a zoo query "
                              "or @lockfile (several PTMs: their logits averaged); for rded / sre2l also "
                              "the distillation teacher (soft labels from it unless --eval-labels hard)."),
    kd_loss: KdLoss = None,
    temperature: Temperature = None,
    soft_labels: SoftLabels = None,
    mix: Mix = None,
    scores: Scores = None,
    score_weight: ScoreWeight = None,
    ars: Ars = None,
    eval_every: int = _opt(None, "--eval-every", panel=EVAL, help="Also evaluate every N iterations: the "
                           "accuracy curve and its best in the JSON (the final set stays the headline)."),
    config_file: Path = _opt(None, "--config", panel=RUN, help="A request (YAML) or a report.json to rerun; "
                             "options given here override it."),
    runs: int = _opt(None, "--runs", panel=RUN, help="Synthetic sets to distil (seeds S..S+N-1)."),
    out_dir: Path = _opt(None, "--out", panel=RUN, help="Run folder (default runs/<dataset>-<method>-ipc<K>-"
                         "seed<S>); with --runs: DIR/seed<S>."),
    checkpoint_every: int = _opt(None, "--checkpoint-every", panel=RUN, help="Iterations between checkpoints "
                                 "(100; 0: only at the end)."),
    json_path: Path = _opt(None, "--json", panel=RUN, help="Write the run report as JSON here."),
    nproc: int = _opt(1, "--nproc", panel=CLUSTER, help=NPROC_HELP),
    dist_timeout: float = _opt(300.0, "--dist-timeout", panel=CLUSTER, help=TIMEOUT_HELP),
    launcher: str = _opt("local", "--launcher", panel=CLUSTER,
                         help="local (--nproc ranks here) | slurm (one job of --nodes x tasks)."),
    nodes: int = _opt(1, "--nodes", panel=CLUSTER, help="slurm: nodes."),
    partition: Partition = None,
    gpus_per_job: GpusPerJob = None,
    cpus_per_job: CpusPerJob = None,
    time_limit: TimeLimit = "240",
    mem: Memory = None,
) -> None:
    """Distil a data set into IPC images per class, then evaluate the synthetic set(s).

    Over several ranks (--nproc N, --launcher slurm, or torchrun --nproc-per-node N -m ddz
    distill ...) the classes are sharded over the ranks and rank 0 writes every file. With
    --launcher slurm the run is one job of --nodes nodes; --gpus-per-job GPUs on each node (one
    rank each; none: --nproc CPU ranks per node) and --cpus-per-job threads per rank."""
    from ddz.cli.request_options import apply_overrides, request_base
    from ddz.distill.baselines import BASELINES_FOLDER
    from ddz.distill.run import RunContext, run

    options = {k: v for k, v in locals().items() if k not in ("config_file", "json_path")}
    request = apply_overrides(request_base(config_file), options,
                              settings.seed if settings.seed_given else None)
    cluster = cluster_options(partition, gpus_per_job, cpus_per_job, time_limit, mem)
    ranks = start_or_join(RankOptions(nproc, dist_timeout, launcher, nodes, cluster.gpus_per_job or 0,
                                      cluster.partition, cluster.time_min, cluster.mem_gb,
                                      cluster.cpus_per_job))
    if ranks is None:
        return  # the ranks this process started have done the work

    def say(line: str) -> None:
        if ranks.is_main:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

    with RichProgress() if ranks.is_main else LineProgress(ranks.rank) as progress:
        zoo = settings.zoo()
        context = RunContext(zoo, settings.data_root, settings.torch_device, progress, ranks, say,
                             cache=zoo.paths.home / "cache" / BASELINES_FOLDER)
        report = run(request, context)
    if not ranks.is_main:
        return
    for note in report.notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    if report.eval:
        out.print(results_table(report))
    write_json(json_path, report.to_json())
