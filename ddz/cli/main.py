"""The `ddz` command: global options, sub-commands, and one-line errors with exit status 2."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer
from rich.markup import escape

from ddz import __version__
from ddz.cli.common import console, follow_terminal, settings
from ddz.errors import DDZError

app = typer.Typer(
    name="ddz",
    help="Dataset distillation guided by pre-trained models: a PTM zoo, DC/DSA/DM, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module registers its commands on `app` (or on a sub-app it adds) when imported.
COMMAND_MODULES = (
    "ddz.cli.eval", "ddz.cli.zoo", "ddz.cli.zoo_hub", "ddz.cli.distill", "ddz.cli.demo", "ddz.cli.repro",
)


@app.callback()
def global_options(
    data_root: Path = typer.Option(
        Path("data"), "--data-root", envvar="DDZ_DATA_ROOT", help="Folder holding the data sets."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    seed: int = typer.Option(None, "--seed", help="Fixes every random choice of the run (default 0)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    threads: int = typer.Option(
        None, "--threads", help="torch CPU threads of each computing process (default: the cores it may "
        "use: affinity and cgroup quota, or OMP_NUM_THREADS; per rank with --nproc). CPU results are "
        "bit-identical for a given count.",
    ),
) -> None:
    from ddz.threads import check_threads

    check_threads(threads)
    settings.data_root, settings.device, settings.debug, settings.threads = data_root, device, debug, threads
    settings.seed, settings.seed_given = (0, False) if seed is None else (seed, True)


@app.command()
def version() -> None:
    """Print the ddz version."""
    typer.echo(__version__)


for _module in COMMAND_MODULES:
    importlib.import_module(_module)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; usage errors are Typer's (exit 2), DDZErrors print one line (exit 2)."""
    settings.argv = tuple(sys.argv[1:] if argv is None else argv)
    follow_terminal()
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except DDZError as error:
        if settings.debug:
            console.print_exception()
        console.print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def entrypoint() -> None:
    sys.exit(main())
