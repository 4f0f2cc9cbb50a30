"""The `mlp` command line: parse arguments, call the library, render the result.

Every command is a thin layer over the library.  Library errors (`MLPError`) become one
paragraph on stderr and the error's exit code (2 for usage and config mistakes, 1 for
failures at run time); a traceback appears only with ``--debug`` or ``MLP_DEBUG=1``.

Heavy modules (NumPy, pooch, Pillow, matplotlib) are imported inside the commands that need
them, so ``mlp --help`` and shell completion stay fast.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from mlp_cli import __version__
from mlp_cli.errors import MLPError

if TYPE_CHECKING:
    from mlp_cli.config import Config
    from mlp_cli.train import Splits

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
DEFAULT_CONFIG = "configs/mnist-400-25-10.yaml"

app = typer.Typer(
    name="mlp",
    help="Train, evaluate and inspect NumPy multilayer perceptrons on handwritten digits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Download, import and inspect the MNIST dataset.", no_args_is_help=True)
config_app = typer.Typer(help="Show resolved configs and the config schema.", no_args_is_help=True)
show_app = typer.Typer(help="Draw what a trained network has learned.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(show_app, name="show")

console = Console()
err_console = Console(stderr=True)
_debug = {"on": False}

F = TypeVar("F", bound=Callable[..., Any])


def _debugging() -> bool:
    return _debug["on"] or os.environ.get("MLP_DEBUG", "") not in ("", "0")


def handle_errors(command: F) -> F:
    """Turn library errors into a message on stderr and their exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MLPError as exc:
            if _debugging():
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if _debugging():
                raise
            err_console.print("interrupted", style="yellow")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"mlp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (or set MLP_DEBUG=1).")
    ] = False,
) -> None:
    """Train, evaluate and inspect NumPy multilayer perceptrons on handwritten digits."""
    _debug["on"] = debug


ConfigArg = Annotated[
    Path, typer.Option("--config", "-c", help="YAML config file.", show_default=True)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a config key, e.g. --set optimizer.lr=1e-3 (repeatable)."
    ),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="A .npz model or a run directory [default: runs/latest]."),
]


# -- train -----------------------------------------------------------------------------------


@contextmanager
def _stop_on_sigint() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C asks the loop to stop after the current step; a second one aborts."""
    requested = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        if requested["stop"]:
            raise KeyboardInterrupt
        requested["stop"] = True
        err_console.print(
            "[yellow]stopping after this step and saving a checkpoint "
            "(press Ctrl-C again to abort without saving)[/]"
        )

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. inside some test runners)
        yield lambda: False
        return
    try:
        yield lambda: requested["stop"]
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _blas_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _load_training_data(cfg: Config, quiet: bool) -> Splits:
    from mlp_cli.render import DownloadBar
    from mlp_cli.train import prepare_data

    bar = DownloadBar(err_console) if not quiet else None
    try:
        return prepare_data(cfg, progressbar=bar or False)
    finally:
        if bar is not None:
            bar.stop()


@app.command()
@handle_errors
def train(
    config: ConfigArg = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory [default: runs/<name>].")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the run in this directory from its checkpoint."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Limit BLAS threads (config key too).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON object per epoch on stdout, nothing else.")
    ] = False,
) -> None:
    """Train a network from a YAML config; writes a run directory with the model."""
    from mlp_cli import train as training
    from mlp_cli.config import load_config
    from mlp_cli.render import JsonLines, TrainDisplay

    overrides = list(set_ or [])
    if resume is not None:
        cfg = training.resume_config(resume, overrides)
    else:
        cfg = load_config(config, overrides)
    threads = threads or cfg.training.threads
    with _blas_threads(threads):
        data = _load_training_data(cfg, quiet or json_)
        trainer = (
            training.resume(resume, cfg, data)
            if resume is not None
            else training.start(cfg, data, out)
        )
        display: training.Callbacks
        if json_:
            display = JsonLines(console)
        elif quiet:
            display = training.Callbacks()
        else:
            display = TrainDisplay(err_console if json_ else console, cfg)
        with _stop_on_sigint() as should_stop:
            try:
                result = trainer.run(display, should_stop)
            finally:
                if isinstance(display, TrainDisplay):
                    display.close()
    if not json_:
        from mlp_cli.render import print_train_summary

        print_train_summary(console, result)
    if result.status == "interrupted":
        err_console.print(
            f"training interrupted; checkpoint saved. Resume with: "
            f"mlp train --resume {result.run_dir}",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)


# -- gradcheck -------------------------------------------------------------------------------


@app.command()
@handle_errors
def gradcheck(
    config: ConfigArg = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="Examples in the random batch.")] = 8,
    entries: Annotated[
        int, typer.Option(min=1, help="Entries checked per parameter array at most.")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed for the random network and batch.")] = 0,
) -> None:
    """Check backpropagation against central differences (float64) for a config's network."""
    from rich.table import Table

    from mlp_cli.config import load_config
    from mlp_cli.gradcheck import TOLERANCE
    from mlp_cli.gradcheck import gradcheck as check

    cfg = load_config(config, list(set_ or []))
    results = check(
        cfg.model.layers,
        cfg.model.hidden_activation,
        cfg.model.output_activation,
        cfg.loss,
        l1=cfg.regularization.l1,
        l2=cfg.regularization.l2,
        batch=batch,
        max_entries=entries,
        seed=seed,
    )
    table = Table(title=f"gradient check: {'-'.join(map(str, cfg.model.layers))}, float64")
    for column in ("array", "checked", "relative error", "result"):
        table.add_column(column, justify="right" if column != "array" else "left")
    for r in results:
        verdict = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
        table.add_row(r.name, f"{r.checked}/{r.size}", f"{r.rel_error:.2e}", verdict)
    console.print(table)
    console.print(f"tolerance: relative error < {TOLERANCE:g}")
    if not all(r.passed for r in results):
        raise typer.Exit(1)


# -- data ------------------------------------------------------------------------------------


@data_app.command("fetch")
@handle_errors
def data_fetch(
    mirror: Annotated[
        str | None, typer.Option(help="Base URL tried before the built-in mirrors.")
    ] = None,
) -> None:
    """Download MNIST (if not cached), verify it and cache it."""
    from mlp_cli import data
    from mlp_cli.render import DownloadBar

    bar = DownloadBar(err_console)
    try:
        files = data.fetch_mnist(mirror=mirror, progressbar=bar)
    finally:
        bar.stop()
    console.print(f"MNIST is ready in {data.data_dir()} ({len(files)} files verified)")


@data_app.command("import")
@handle_errors
def data_import(
    directory: Annotated[Path, typer.Argument(help="Folder with the four MNIST files.")],
) -> None:
    """Install an offline copy of MNIST (.gz or raw IDX files), verified."""
    from mlp_cli import data

    files = data.import_mnist(directory)
    console.print(f"imported {len(files)} files into {data.data_dir()}")


@data_app.command("info")
@handle_errors
def data_info(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show where MNIST is cached and whether each file is present and verified."""
    from rich.table import Table

    from mlp_cli import data

    info = data.mnist_info()
    if json_:
        console.print_json(
            json.dumps({"data_dir": str(data.data_dir()), "files": info}, default=str)
        )
        return
    table = Table(title=f"MNIST cache: {data.data_dir()}")
    for column in ("file", "present", "verified", "bytes"):
        table.add_column(column)
    for row in info:
        table.add_row(
            str(row.get("name")),
            "yes" if row.get("present") else "[red]no[/]",
            "yes" if row.get("verified") else "[red]no[/]",
            f"{row['bytes']:,}" if row.get("bytes") else "",
        )
    console.print(table)


@data_app.command("path")
@handle_errors
def data_path() -> None:
    """Print the cache folder (MLP_DATA_DIR or the OS cache)."""
    from mlp_cli import data

    typer.echo(str(data.data_dir()))


# -- config ----------------------------------------------------------------------------------


@config_app.command("show")
@handle_errors
def config_show(
    file: Annotated[Path, typer.Argument(help="YAML config file.")] = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
) -> None:
    """Print the resolved config: the file with defaults filled in and overrides applied."""
    from mlp_cli.config import dump_config, load_config

    typer.echo(dump_config(load_config(file, list(set_ or []))), nl=False)


@config_app.command("schema")
@handle_errors
def config_schema() -> None:
    """Print the config's JSON schema (for editor completion and validation)."""
    from mlp_cli.config import config_schema as schema

    typer.echo(json.dumps(schema(), indent=2))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
