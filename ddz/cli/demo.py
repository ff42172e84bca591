"""`ddz demo`: the whole flow on the embedded data set, with a results table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ddz.cli.common import RichProgress, console, out, settings
from ddz.cli.main import app


@app.command("demo")
def demo_command(
    out_dir: Path = typer.Option(
        Path("runs/demo"), "--out", help="Folder for the zoo, hub, runs and report."
    ),
    quick: bool = typer.Option(False, "--quick", help="Smaller stages (the test suite's setting)."),
) -> None:
    """Train a zoo on digits, publish and pull it, distil with DM without and with CLoM, evaluate."""
    from ddz.demo import DemoConfig, guidance_sentence, run_demo

    config = DemoConfig.quick() if quick else DemoConfig()
    with RichProgress() as progress:
        settings.use_threads()
        report = run_demo(out_dir, config, settings.seed, settings.torch_device, progress)
    table = Table(title=f"ddz demo: digits, DM, IPC {config.ipc}")
    for column in ("method", "PTM query", "labels", "accuracy (%)", "LRS", "seconds"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(
            row.method,
            row.ptm_query,
            row.labels,
            f"{100 * row.result.mean:.2f} ± {100 * row.result.std:.2f}",
            f"{row.scores['lrs']:.4f}" if row.scores else "-",
            f"{row.seconds:.1f}",
        )
    out.print(table)
    out.print(guidance_sentence(report), markup=False, highlight=False)
    console.print(f"report: {out_dir / 'report.md'}")
