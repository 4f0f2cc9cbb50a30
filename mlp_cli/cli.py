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
from rich.text import Text

from mlp_cli import __version__
from mlp_cli.errors import MLPError
from mlp_cli.plain import plain
from mlp_cli.threads import let_blas_workers_sleep

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
            err_console.print(
                Text.assemble(("error: ", "bold red"), plain(exc)), highlight=False, soft_wrap=True
            )
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
        int | None,
        typer.Option("--threads", min=1, help="Limit BLAS and update threads (config key too)."),
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


# -- evaluate / predict ----------------------------------------------------------------------


def _load_model(model: Path | None) -> tuple[Path, Any]:
    from mlp_cli import checkpoint

    path = checkpoint.find_model(model)
    return path, checkpoint.load(path)


@app.command()
@handle_errors
def evaluate(
    model: ModelOpt = None,
    split: Annotated[
        str, typer.Option(help="Which images: test, val (held out in training) or train.")
    ] = "test",
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    misclassified: Annotated[
        Path | None,
        typer.Option(help="Write the worst mistakes as PNGs (and a gallery) into this folder."),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="How many mistakes to write.")] = 50,
    plot: Annotated[
        Path | None, typer.Option(help="Write a confusion-matrix heatmap (PNG) here.")
    ] = None,
) -> None:
    """Score a trained model on an MNIST split: accuracy, loss, per-class metrics, confusions."""
    from mlp_cli.errors import UsageError
    from mlp_cli.evaluate import evaluate as run_evaluation
    from mlp_cli.evaluate import split_images

    if split not in ("test", "val", "train"):
        raise UsageError(f"--split must be test, val or train, not {split!r}")
    path, saved = _load_model(model)
    images, labels = split_images(saved, split)  # type: ignore[arg-type]
    result = run_evaluation(saved, images, labels, split)
    if misclassified is not None:
        _write_mistakes(result, images, misclassified, count)
    if plot is not None:
        from mlp_cli.viz import plot_confusion

        plot_confusion(
            result.confusion,
            plot,
            class_names=result.class_names,
            title=f"{path.parent.name or path.name}: {split} split, accuracy "
            f"{100 * result.accuracy:.2f}%",
        )
    if json_:
        typer.echo(json.dumps(result.to_json()))
        return
    from mlp_cli.render import print_evaluation

    print_evaluation(console, result, path)
    if misclassified is not None:
        console.print(f"worst mistakes written to {misclassified}/", highlight=False)
    if plot is not None:
        console.print(f"confusion heatmap written to {plot}", highlight=False)


def _write_mistakes(result: Any, images: Any, folder: Path, count: int) -> None:
    from PIL import Image

    from mlp_cli.viz import save_gallery

    folder.mkdir(parents=True, exist_ok=True)
    worst = result.worst_mistakes(count)
    names = result.class_names
    for rank, i in enumerate(worst, start=1):
        true, pred = names[result.labels[i]], names[result.predictions[i]]
        name = f"{rank:03d}-index{i}-true{true}-pred{pred}.png"
        Image.fromarray(images[i]).save(folder / name)
    if len(worst):
        save_gallery(
            images[worst] / 255.0,
            [int(result.labels[i]) for i in worst],
            [int(result.predictions[i]) for i in worst],
            [float(result.probabilities[i, result.predictions[i]]) for i in worst],
            folder / "gallery.png",
        )


@app.command()
@handle_errors
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    model: ModelOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    show: Annotated[
        bool, typer.Option("--show", help="Draw the 28x28 input the network sees.")
    ] = False,
    save_input: Annotated[
        Path | None, typer.Option(help="Write each 28x28 network input as a PNG here.")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Images are already MNIST-style: skip preprocessing.")
    ] = False,
) -> None:
    """Predict the digit in each image (PNG, JPEG, BMP, GIF, TIFF, WebP)."""
    from mlp_cli.predict import predict_files

    _, saved = _load_model(model)
    predictions, failures = predict_files(saved, paths, raw=raw)
    names = list(saved.meta.class_names)
    if save_input is not None:
        _save_inputs(predictions, save_input)
    if json_:
        rows = [p.to_json(names) for p in predictions] + [f.to_json() for f in failures]
        typer.echo(json.dumps(rows))
    else:
        from mlp_cli.render import print_prediction

        for p in predictions:
            print_prediction(console, p, names, show)
    for failure in failures:
        err_console.print(
            Text.assemble(("error: ", "bold red"), plain(failure.message)), highlight=False
        )
    if failures:
        raise typer.Exit(1)


def _save_inputs(predictions: Any, folder: Path) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for p in predictions:
        pixels = np.clip(np.rint(p.image * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{Path(p.file).stem}-input.png")


# -- looking inside ----------------------------------------------------------------------------


@app.command()
@handle_errors
def inspect(model: ModelOpt = None) -> None:
    """Summarise a saved model: layers, parameters, preprocessing, training, data hashes."""
    from mlp_cli.render import print_model_summary

    _, saved = _load_model(model)
    print_model_summary(console, saved)


@show_app.command("hidden")
@handle_errors
def show_hidden(
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("hidden.png"),
    layer: Annotated[int, typer.Option(min=1, help="Which hidden layer (1 = first).")] = 1,
    terminal: Annotated[
        bool, typer.Option(help="Also draw the units in the terminal (up to 36 units).")
    ] = True,
) -> None:
    """Draw each hidden unit's incoming weights as a picture (PNG, and in the terminal)."""
    from mlp_cli.viz import render_hidden_terminal, save_hidden_png, unit_patterns

    _, saved = _load_model(model)
    side = saved.meta.preprocessing.input_size
    patterns, note = unit_patterns(saved.weights, layer)
    save_hidden_png(saved.weights, side, out, layer=layer)
    if terminal:
        console.print(render_hidden_terminal(patterns, side, width=min(console.width, 120)))
    console.print(note, highlight=False)
    console.print(f"{len(patterns)} units drawn to {out}", highlight=False)


@app.command()
@handle_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (with metrics.jsonl).")] = Path(
        "runs/latest"
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="PNG to write [default: RUN_DIR/curves.png].")
    ] = None,
) -> None:
    """Draw learning curves (loss, accuracy, learning rate) of a training run."""
    from mlp_cli.viz import plot_curves, read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    target = out or run_dir / "curves.png"
    plot_curves(records, target, title=run_dir.resolve().name)
    console.print(f"learning curves written to {target}", highlight=False)


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
    let_blas_workers_sleep()  # before any command loads NumPy
    app()


if __name__ == "__main__":
    main()
