"""`ddz eval`: evaluate a saved synthetic set, or the random-real baseline, by the protocol."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ddz.cli.common import RichProgress, out, settings, write_json
from ddz.cli.main import app
from ddz.cli.ranks import NPROC_HELP, TIMEOUT_HELP, LineProgress, RankOptions, start_or_join
from ddz.errors import ConfigError

if TYPE_CHECKING:
    from ddz.distill.report import RunReport


def results_table(report: RunReport) -> Table:
    table = Table(title=f"{report.dataset} {report.method} IPC {report.ipc}")
    for column in ("arch", "runs x models", "epochs", "accuracy (%)", "run means" if report.runs else "accs"):
        table.add_column(column)
    for arch, result in report.eval.items():
        shown = result.run_means if report.runs else result.accs
        table.add_row(
            arch,
            f"{result.runs} x {result.models}",
            str(result.epochs),
            f"{100 * result.mean:.2f} ± {100 * result.std:.2f}",
            " ".join(f"{100 * a:.1f}" for a in shown),
        )
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
    augment: str = typer.Option("dsa", "--augment", help="dsa | dc (the DC reference's rule) | none"),
    no_dsa: bool = typer.Option(False, "--no-dsa", help="Same as --augment none."),
    batched: bool = typer.Option(
        True, "--batched/--sequential", help="Train an arch's models as one batched model (same results)."
    ),
    compile_nets: bool = typer.Option(
        False, "--compile", help="torch.compile the nets: pays on a GPU for long runs (compiles for seconds)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    nproc: int = typer.Option(1, "--nproc", help=NPROC_HELP),
    dist_timeout: float = typer.Option(300.0, "--dist-timeout", help=TIMEOUT_HELP),
) -> None:
    """Evaluate by the protocol: N fresh nets per arch, SGD, accuracy on the real test set.

    Several synthetic sets (or --random-real --runs N) are evaluated one after another, set k with
    seed S+k, and summarised as the reference does: mean and std over all sets x models."""
    from ddz.distill.evaluate import EvalConfig

    config = EvalConfig(
        archs=tuple(arch), models=models, epochs=epochs, batch_size=batch_size,
        augment="none" if no_dsa else augment, batched=batched, compile=compile_nets,
    )
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    ranks = start_or_join(RankOptions(nproc, dist_timeout))
    if ranks is None:
        return  # the ranks this process started have done the work
    try:
        _evaluate_on_ranks(
            ranks, config, synsets, dataset, random_real_baseline, ipc, runs, resolution, json_path
        )
    finally:
        ranks.close()


def _evaluate_on_ranks(
    ranks, config, synsets, dataset, random_real_baseline, ipc, runs, resolution, json_path
) -> None:
    """The command's work in one rank (or the only process): the models are dealt out over the
    ranks; rank 0 prints and writes."""
    from ddz.data import load_dataset
    from ddz.data.zca import whitened
    from ddz.distill.evaluate import combine_runs, evaluate_synset, random_real
    from ddz.distill.report import RunReport, run_record
    from ddz.distill.synset import load_synset

    device = settings.torch_device
    seeds = [settings.seed + k for k in range(runs if random_real_baseline else len(synsets or [1]))]
    per_run = []
    if random_real_baseline:
        if dataset is None or synsets:
            raise ConfigError("--random-real needs --dataset D (and no SYNSET argument)")
        data = load_dataset(dataset, settings.data_root, device, resolution)
        sets = [(*random_real(data, ipc, seed), seed) for seed in seeds]
        meta = dict(method="random-real", ptm_query=[], ptms=[], guidance=None, alpha=0.0,
                    alpha_source=None, iterations=0, seconds_distill=0.0)
        names: list[str | None] = [None] * len(sets)
    else:
        if not synsets:
            raise ConfigError("give one or more SYNSET files, or --random-real --dataset D --ipc K")
        saved = [load_synset(path) for path in synsets]
        first = saved[0]
        for path, other in zip(synsets[1:], saved[1:], strict=True):
            if (other.dataset, other.ipc, other.classes) != (first.dataset, first.ipc, first.classes):
                raise ConfigError(
                    f"{path} is {other.dataset} IPC {other.ipc} but {synsets[0]} is {first.dataset} "
                    f"IPC {first.ipc}; evaluate synthetic sets of one setting together"
                )
        data = load_dataset(first.dataset, settings.data_root, device, first.images.shape[-1])
        if first.zca:  # the set lives in the whitened space its distillation used
            data = whitened(data)[0]
        if first.lr is not None:  # MTT: train with the step size the set learnt
            config = replace(config, lr=first.lr)
        ipc = first.ipc
        sets = [(s.images, s.labels, seed) for s, seed in zip(saved, seeds, strict=True)]
        meta = dict(method=first.method, ptm_query=first.ptm_query, ptms=first.ptms, guidance=first.guidance,
                    alpha=first.alpha, alpha_source=first.alpha_source, iterations=first.iterations,
                    seconds_distill=sum(s.seconds_distill for s in saved))
        names = [str(path) for path in synsets]
    started = time.perf_counter()
    notes: list[str] = []
    with RichProgress() if ranks.is_main else LineProgress(ranks.rank) as progress:
        for images, labels, seed in sets:
            per_run.append(evaluate_synset(images, labels, data, config, seed, progress, notes, ranks))
    if not ranks.is_main:
        return
    for note in dict.fromkeys(notes):
        out.print(note)
    several = len(sets) > 1
    report = RunReport(
        dataset=data.name, ipc=ipc, seed=settings.seed, eval=combine_runs(per_run),
        seconds_eval=time.perf_counter() - started, world_size=ranks.world,
        synset=None if several else names[0],
        runs=[
            run_record(seed, name, result)
            for (_, _, seed), name, result in zip(sets, names, per_run, strict=True)
        ] if several else None,
        **meta,
    )
    out.print(results_table(report))
    write_json(json_path, report.to_json())
