"""`ddz eval`: evaluate a saved synthetic set, or the random-real baseline, by the protocol."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from ddz.cli.common import RichProgress, out, settings, write_json
from ddz.cli.main import app
from ddz.data import load_dataset
from ddz.distill.evaluate import EvalConfig, evaluate_synset, random_real
from ddz.distill.report import RunReport
from ddz.errors import ConfigError


def results_table(report: RunReport) -> Table:
    table = Table(title=f"{report.dataset} {report.method} IPC {report.ipc}")
    for column in ("arch", "models", "epochs", "accuracy (%)", "accs"):
        table.add_column(column)
    for arch, result in report.eval.items():
        table.add_row(
            arch,
            str(result.models),
            str(result.epochs),
            f"{100 * result.mean:.2f} ± {100 * result.std:.2f}",
            " ".join(f"{100 * a:.1f}" for a in result.accs),
        )
    return table


@app.command("eval")
def eval_command(
    synset: Path | None = typer.Argument(None, help="A synthetic set saved by `ddz distill`."),
    dataset: str | None = typer.Option(None, "--dataset", help="With --random-real: the data set."),
    random_real_baseline: bool = typer.Option(
        False, "--random-real", help="Evaluate IPC random real images per class instead."
    ),
    ipc: int = typer.Option(10, "--ipc", help="Images per class for --random-real."),
    arch: list[str] = typer.Option(["convnet3"], "--arch", help="Architectures (repeatable)."),
    models: int = typer.Option(5, "--models", help="Fresh nets trained per architecture."),
    epochs: int = typer.Option(1000, "--epochs", help="Training epochs (lr x0.1 at half)."),
    batch_size: int = typer.Option(256, "--batch-size"),
    no_dsa: bool = typer.Option(False, "--no-dsa", help="Train without DSA augmentation."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
) -> None:
    """Evaluate by the protocol: N fresh nets per arch, DSA, SGD, accuracy on the real test set."""
    config = EvalConfig(
        archs=tuple(arch), models=models, epochs=epochs, batch_size=batch_size, dsa=not no_dsa
    )
    config.validate()
    device = settings.torch_device
    if random_real_baseline:
        if dataset is None or synset is not None:
            raise ConfigError("--random-real needs --dataset D (and no SYNSET argument)")
        data = load_dataset(dataset, settings.data_root, device)
        images, labels = random_real(data, ipc, settings.seed)
        method, query, ptms, guidance, alpha, iterations = "random-real", [], [], None, 0.0, 0
        seconds = 0.0
    else:
        if synset is None:
            raise ConfigError("give a SYNSET file, or --random-real --dataset D --ipc K")
        from ddz.distill.synset import load_synset

        saved = load_synset(synset)
        data = load_dataset(saved.dataset, settings.data_root, device)
        images, labels, ipc = saved.images, saved.labels, saved.ipc
        method, query, ptms = saved.method, saved.ptm_query, saved.ptms
        guidance, alpha, iterations = saved.guidance, saved.alpha, saved.iterations
        seconds = saved.seconds_distill
    started = time.perf_counter()
    with RichProgress() as progress:
        results = evaluate_synset(images, labels, data, config, settings.seed, progress)
    report = RunReport(
        dataset=data.name, method=method, ipc=ipc, seed=settings.seed, eval=results,
        ptm_query=query, ptms=ptms, guidance=guidance, alpha=alpha, iterations=iterations,
        seconds_distill=seconds, seconds_eval=time.perf_counter() - started,
        synset=str(synset) if synset else None,
    )
    out.print(results_table(report))
    write_json(json_path, report.to_json())
