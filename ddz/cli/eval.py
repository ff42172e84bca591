"""`ddz eval`: evaluate a saved synthetic set, or the random-real baseline, by the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ddz.cli.common import RichProgress, out, settings, write_json
from ddz.cli.main import app
from ddz.cli.ranks import NPROC_HELP, TIMEOUT_HELP, LineProgress, RankOptions, start_or_join

if TYPE_CHECKING:
    from ddz.distill.report import RunReport


# The soft-label and score options `ddz eval` and `ddz distill` share (each command gives its own
# default: eval the protocol's values, distill None, which keeps a --config file's or the default).
LABELS_PANEL = "Labels and scores"


def _labels_option(name: str, help: str) -> typer.models.OptionInfo:  # noqa: A002 - typer's word
    return typer.Option(name, help=help, rich_help_panel=LABELS_PANEL)


KdLoss = Annotated[str | None, _labels_option("--kd-loss", "kl | sce | mse_gt: DD-Ranking's losses (kl).")]
Temperature = Annotated[float | None, _labels_option("--temperature", "KD temperature (DD-Ranking's 1.2).")]
SoftLabels = Annotated[str | None, _labels_option(
    "--soft-labels", "regenerate (per augmented batch) | stored (one per image); regenerate by default.")]
Mix = Annotated[str | None, _labels_option(
    "--mix", "none | cutmix | mixup (default: cutmix with soft labels, none with hard).")]
Scores = Annotated[bool | None, _labels_option(
    "--scores/--no-scores", "HLR, IOR, LRS beside a random subset and the full data (cached under "
    "DDZ_HOME/cache); default: with soft labels only.")]
ScoreWeight = Annotated[float | None, _labels_option("--score-weight", "LRS's w (0.5).")]
Ars = Annotated[bool | None, _labels_option("--ars", "Also evaluate without augmentation: DD-Ranking's ARS.")]


def results_table(report: RunReport) -> Table:
    table = Table(title=f"{report.dataset} {report.method} IPC {report.ipc}")
    columns = ["arch", "runs x models", "epochs", "accuracy (%)", "run means" if report.runs else "accs"]
    if report.scores:
        columns += ["random (%)", "full (%)", "HLR", "IOR", "LRS"]
    for column in columns:
        table.add_column(column)
    for arch, result in report.eval.items():
        shown = result.run_means if report.runs else result.accs
        row = [arch, f"{result.runs} x {result.models}", str(result.epochs),
               f"{100 * result.mean:.2f} ± {100 * result.std:.2f}", " ".join(f"{100 * a:.1f}" for a in shown)]
        if report.scores:
            score = report.scores[arch]
            inputs = score["inputs"]
            row += [f"{100 * inputs['random_acc']:.2f}", f"{100 * inputs['full_acc']:.2f}",
                    f"{score['hlr']:+.4f}", f"{score['ior']:+.4f}", f"{score['lrs']:.4f}"]
        table.add_row(*row)
    if report.labels and report.labels.get("regime") == "soft":
        table.caption = f"soft labels: {', '.join(t['name'] for t in report.labels['teacher'])}"
    return table


@app.command("eval")
def eval_command(
    synsets: list[Path] = typer.Argument(
        None, help="Synthetic sets saved by `ddz distill` (files or run folders); several: one summary."
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="With --random-real: the data set."),
    random_real_baseline: bool = typer.Option(
        False, "--random-real", help="Evaluate IPC random real images per class instead."
    ),
    ipc: int = typer.Option(10, "--ipc", help="Images per class for --random-real."),
    runs: int = typer.Option(1, "--runs", help="With --random-real: draws (seeds S..S+N-1)."),
    resolution: int | None = typer.Option(
        None, "--resolution", help="With --random-real: image side in pixels (default: the data set's)."
    ),
    arch: list[str] = typer.Option(["convnet3"], "--arch", help="Architectures (repeatable)."),
    models: int = typer.Option(5, "--models", help="Fresh nets trained per architecture."),
    epochs: int | None = typer.Option(
        None, "--epochs",
        help="Training epochs E (E+1 run, lr x0.1 after E//2+1); default 1000, 300 unaugmented.",
    ),
    batch_size: int = typer.Option(256, "--batch-size"),
    augment: str = typer.Option(
        "dsa", "--augment",
        help="dsa | dc (the DC reference's rule) | rded (RDED's patch shuffle, crops, flip) | none",
    ),
    crop_factor: int | None = typer.Option(
        None, "--crop-factor", help="--augment rded: patches per side of the stitched images (RDED's factor)."
    ),
    no_dsa: bool = typer.Option(False, "--no-dsa", help="Same as --augment none."),
    batched: bool = typer.Option(
        True, "--batched/--sequential", help="Train an arch's models as one batched model (same results)."
    ),
    compile_nets: bool = typer.Option(
        False, "--compile", help="torch.compile the nets: pays on a GPU for long runs (compiles for seconds)."
    ),
    cuda_graph: bool = typer.Option(
        False, "--cuda-graph", help="Replay each training step from a CUDA graph on a GPU (same nets)."
    ),
    amp: str = typer.Option("none", "--amp", help="none | bf16: the nets' forwards under autocast (off by "
                            "default; docs/distill.md, Speed)."),
    labels: str = typer.Option("hard", "--labels", help="hard | soft (from --teacher, by knowledge "
                               "distillation).", rich_help_panel=LABELS_PANEL),
    teacher: list[str] = typer.Option([], "--teacher", help="Soft labels' teacher: a zoo query or @lockfile "
                                      "(several PTMs: their logits averaged).", rich_help_panel=LABELS_PANEL),
    kd_loss: KdLoss = "kl",
    temperature: Temperature = 1.2,
    soft_labels: SoftLabels = "regenerate",
    mix: Mix = None,
    mix_beta: float = typer.Option(1.0, "--mix-beta", help="Beta(beta, beta) of the mixing ratio.",
                                   rich_help_panel=LABELS_PANEL),
    scores: Scores = None,
    score_weight: ScoreWeight = 0.5,
    ars: Ars = False,
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    nproc: int = typer.Option(1, "--nproc", help=NPROC_HELP),
    dist_timeout: float = typer.Option(300.0, "--dist-timeout", help=TIMEOUT_HELP),
) -> None:
    """Evaluate by the protocol: N fresh nets per arch, SGD, accuracy on the real test set.

    Several synthetic sets (or --random-real --runs N) are evaluated one after another, set k with
    seed S+k, and summarised as the reference does: mean and std over all sets x models. A set
    that learnt its step size (MTT) trains with its own."""
    from ddz.data.mix import MixConfig
    from ddz.distill.baselines import BASELINES_FOLDER
    from ddz.distill.evaluate import EvalConfig
    from ddz.distill.labels import LabelConfig
    from ddz.distill.request import EvalRequest
    from ddz.distill.run import RunContext, evaluate

    config = EvalConfig(
        archs=tuple(arch), models=models, epochs=epochs, batch_size=batch_size,
        augment="none" if no_dsa else augment, crop_factor=crop_factor, batched=batched, compile=compile_nets,
        cuda_graph=cuda_graph, amp=amp,
        labels=LabelConfig(labels, tuple(teacher), kd_loss, temperature, soft_labels),
        mix=MixConfig(mix, mix_beta) if mix is not None else None,
    )
    request = EvalRequest(tuple(str(p) for p in synsets or ()), config, settings.seed, random_real_baseline,
                          dataset, ipc, runs, resolution, scores, score_weight, ars)
    ranks = start_or_join(RankOptions(nproc, dist_timeout))
    if ranks is None:
        return  # the ranks this process started have done the work
    try:
        with RichProgress() if ranks.is_main else LineProgress(ranks.rank) as progress:
            zoo = settings.zoo()
            context = RunContext(zoo, settings.data_root, settings.torch_device, progress, ranks,
                                 cache=zoo.paths.home / "cache" / BASELINES_FOLDER)
            report = evaluate(request, context)
    finally:
        ranks.close()
    if not ranks.is_main:
        return
    for note in report.notes:
        out.print(note)
    out.print(results_table(report))
    write_json(json_path, report.to_json())
