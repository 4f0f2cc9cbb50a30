"""Rich terminal rendering for the command line: download bars, live training progress,
tables, and pictures drawn with half-block characters (a digit, hidden units).

Only `mlp_cli.cli` uses this module; the library reports through callbacks and return
values and never renders anything itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from rich import box
from rich.color import Color
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment, Segments
from rich.style import Style
from rich.table import Table
from rich.text import Text

from mlp_cli.callbacks import Callbacks
from mlp_cli.checkpoint import MODEL_FILE
from mlp_cli.limits import counted, layers_text, percent
from mlp_cli.plain import command, json_text, plain, plain_name

# Progress bars, the trainer and the pictures' colours are imported where they are used:
# `mlp predict` and `mlp inspect` render here too, and should start fast.
if TYPE_CHECKING:
    from rich.progress import TaskID

    from mlp_cli.checkpoint import SavedModel, TrainingSummary
    from mlp_cli.config import Config
    from mlp_cli.evaluate import Evaluation
    from mlp_cli.predict import Prediction
    from mlp_cli.sweep import Sweep
    from mlp_cli.threads import Slowdown, ThreadChoice
    from mlp_cli.train import TrainResult


def _duration(seconds: float) -> str:
    if seconds < 59.95:  # shown to a tenth below a minute; whole seconds above
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes >= 60:  # to the nearest minute, as below an hour to the nearest second
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def _hidden_words(n_layers: int, activation: object) -> str:
    """'relu hidden', or 'no hidden layer' for a network of inputs and outputs only."""
    return f"{activation} hidden" if n_layers > 2 else "no hidden layer"


def _pct(value: float | None) -> str:
    return "-" if value is None else percent(value)


def _num(value: float | None) -> str:
    # Four decimals below 10,000, four significant digits beyond: a loss is a float32 of
    # about seven, and the training table's columns hold nine or ten characters.
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


# Each `training.early_stopping.monitor`'s name (what "best" means for it: `viz.monitored`).
METRIC = {"val_loss": "validation loss", "val_acc": "validation accuracy"}


class DataNotices:
    """The data layer's notices without a progress bar, for quiet output: falsy, so no
    download progress is drawn, but ``write`` still reaches the user."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> None:
        """A notice from the data layer (e.g. a cache file that is not MNIST's was moved aside)."""
        self._console.print(plain(text, "yellow"), highlight=False, soft_wrap=True)

    def __bool__(self) -> bool:
        return False


class DownloadBar(DataNotices):
    """The tqdm-like object the data layer's downloader drives (``total``, ``update``,
    ``reset``, ``close``), drawn as one rich progress row per file."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        super().__init__(console)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._description = "download"

    def set_description(self, text: str) -> None:
        self._description = text

    @property
    def total(self) -> float | None:
        return None if self._task is None else self._progress.tasks[self._task].total

    @total.setter
    def total(self, value: float | None) -> None:
        self._progress.start()  # once: a started display ignores it
        self._task = self._progress.add_task(self._description, total=value or None)

    def update(self, n: float) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def reset(self) -> None:
        if self._task is not None:
            self._progress.reset(self._task)

    def close(self) -> None:
        """One file is done, its bar filled by the downloader; the bar stays until `stop`."""
        self._task = None

    def stop(self) -> None:
        if self._progress.live.is_started:  # stopping prints a blank line off a terminal
            self._progress.stop()

    def __bool__(self) -> bool:
        return True


HEADER = (
    f"{'epoch':>7} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} "
    f"{'lr':>9} {'time':>7} {'samples/s':>10}"
)


# Characters our output uses beyond ASCII, spelled in ASCII for a console whose encoding
# lacks them (PYTHONIOENCODING=ascii, LANG=C), where rich draws its own boxes and bars so too.
_ASCII = str.maketrans({"…": "...", "→": "->", "·": ".", "█": "#"})


def _spelled(console: Console, text: str) -> str:
    """`text` of our own as `console` can print it (see `_ASCII`)."""
    return text.translate(_ASCII) if console.options.ascii_only else text


class Notices(Callbacks):
    """The notice of a run starved of CPU, on ``console``: all that `--quiet` and `--json`
    (standard error) keep of the training display, which adds its bar and table."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.run_dir: Path | str = "RUN"

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.run_dir = info["run_dir"]

    def on_slow_run(self, slow: Slowdown) -> None:
        self.console.print(plain(slow_run_message(slow, self.run_dir), style="yellow"))


class TrainDisplay(Notices):
    """A progress bar with the live loss during each epoch, and a table row per epoch."""

    def __init__(self, console: Console, cfg: Config, threads: ThreadChoice | None = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(console)
        self.cfg = cfg
        self.threads = threads
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.epochs = 0
        self._smoothed: float | None = None

    def on_train_start(self, info: dict[str, Any]) -> None:
        cfg = self.cfg
        m = cfg.model
        self.epochs = info["epochs"]
        self.run_dir = info["run_dir"]
        layers = layers_text(m.layers)
        hidden = _hidden_words(len(m.layers), m.hidden_activation)
        self.console.print(
            Text.assemble(
                plain(cfg.name, "bold"),
                f": {layers} ({hidden}, "
                f"{m.output_activation} output, {cfg.loss}), {info['parameters']:,} parameters, "
                f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g}, batch {cfg.training.batch_size}",
            ),
            highlight=False,
        )
        self.console.print(
            Text.assemble(
                f"{info['n_train']:,} training / {info['n_val']:,} validation images; "
                "run directory: ",
                plain_name(info["run_dir"]),
            ),
            highlight=False,
            soft_wrap=True,
        )
        if self.threads is not None:
            count = self.threads.threads or info.get("threads", "-")
            self.console.print(plain(f"threads: {count} ({self.threads.reason})"))
        if info["start_epoch"]:
            self.console.print(f"resuming after epoch {info['start_epoch']}")
        self.console.print(f"[dim]{HEADER}[/]", highlight=False)
        if info["n_val"]:
            from mlp_cli.viz import monitored

            stopping = cfg.training.early_stopping
            self.console.print(
                f"[dim]{'':>7} * new best: {monitored(stopping.monitor, stopping.min_delta)} "
                "(early_stopping.monitor)[/]",
                highlight=False,
            )
        self.progress.start()

    def on_epoch_start(self, epoch: int, steps: int, start_step: int) -> None:
        self._smoothed = None
        self.task = self.progress.add_task(
            f"epoch {epoch}/{self.epochs}",
            total=steps,
            completed=start_step,
            loss=_spelled(self.console, "…"),
        )

    def on_step(self, step: int, loss: float) -> None:
        if self.task is None:
            return
        # An exponential moving average: the raw batch loss jumps too much to read.
        self._smoothed = loss if self._smoothed is None else 0.95 * self._smoothed + 0.05 * loss
        self.progress.update(self.task, completed=step, loss=_num(self._smoothed))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        best = " [green]*[/]" if record.get("best") else ""
        rate = record.get("samples_per_sec")
        self.console.print(
            f"{record['epoch']:>7} {_num(record['train_loss']):>10} "
            f"{_pct(record['train_acc']):>9} {_num(record['val_loss']):>9} "
            f"{_pct(record['val_acc']):>8} {record['lr']:>9.3g} "
            f"{_duration(record['time']):>7} {(f'{rate:,.0f}' if rate else '-'):>10}{best}",
            highlight=False,
        )

    def close(self) -> None:
        self.progress.stop()


def slow_run_message(slow: Slowdown, run_dir: Path | str) -> str:
    """What a `Slowdown` means and what to try, in one paragraph."""
    text = f"epoch {slow.epoch} took {_duration(slow.seconds)}"
    if slow.usual is not None:
        text += (
            f", {slow.seconds / slow.usual:.1f}x the {_duration(slow.usual)} of an earlier epoch"
        )
    if slow.waiting is not None:
        threads = f"{slow.threads} threads" if slow.threads > 1 else "thread"
        text += f"; training's {threads} waited for a CPU {100 * slow.waiting:.0f}% of the time"
    text += ": other processes are keeping the CPUs busy."
    if slow.suggest is None:
        return f"{text} Training uses one thread already; it speeds up when they finish."
    return (
        f"{text} Fewer threads wait less for each other: press Ctrl-C and continue with "
        f"{command('mlp train --resume', run_dir)} --threads {slow.suggest}"
    )


class JsonLines(Notices):
    """One JSON object per epoch on stdout, for scripts; notices on standard error."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        print(json_text(record), flush=True)


def print_train_summary(console: Console, result: TrainResult) -> None:
    from mlp_cli.viz import monitored

    ran = len(result.history)
    best_means = monitored(result.monitor, result.min_delta)
    words = {
        "completed": "finished",
        "early_stopped": f"stopped early ({METRIC[result.monitor]} stopped improving)",
        "interrupted": "interrupted",
    }
    console.print(
        f"{words.get(result.status, result.status)} after {counted(ran, 'epoch')} "
        f"in {_duration(result.elapsed + result.unfinished)}",
        highlight=False,
    )
    if result.best_epoch:
        kept = (
            f"its weights are in {MODEL_FILE}"
            if result.model_epoch == result.best_epoch
            else f"{MODEL_FILE} holds epoch {result.model_epoch} (restore_best is off)"
            if result.model_epoch
            else f"{MODEL_FILE} is saved with the last epoch's weights when training ends "
            "(restore_best is off)"
        )
        console.print(
            f"best epoch {result.best_epoch} ({best_means}): validation loss "
            f"{_num(result.best_loss)}, accuracy {_pct(result.best_accuracy)}; {kept}",
            highlight=False,
        )
        scored = [r for r in result.history if r.get("val_acc") is not None]
        peak = max(scored, key=lambda r: float(r["val_acc"]), default=None)
        if (
            result.monitor == "val_loss"
            and peak is not None
            and result.best_accuracy is not None
            and peak["val_acc"] > result.best_accuracy
        ):
            # Without restore_best, model.npz keeps the last epoch whatever is monitored; a
            # min_delta would apply to accuracy too, and could pass over the peak.
            switch = " ".join(
                f"--set training.early_stopping.{setting}"
                for setting, needed in (
                    ("monitor=val_acc", True),
                    ("min_delta=0", result.min_delta > 0),
                    ("restore_best=true", not result.restore_best),
                )
                if needed
            )
            # With patience, early stopping follows accuracy too: the run can end before
            # that epoch, or go on past it to a more accurate one.
            which = (
                "that epoch instead"
                if result.patience is None
                else "the most accurate epoch instead, which with patience can be another one "
                "(early stopping then follows accuracy too)"
            )
            hint = (
                f"its weights are in {MODEL_FILE}"
                if peak["epoch"] == result.model_epoch
                else f"to keep {which}: {switch}"
            )
            console.print(
                f"highest validation accuracy {_pct(peak['val_acc'])} at epoch {peak['epoch']}; "
                f"{hint}",
                highlight=False,
                soft_wrap=True,  # settings to copy: never broken across lines
            )
    if result.curves is not None:
        console.print(
            Text.assemble("learning curves written to ", plain_name(result.curves)),
            highlight=False,
            soft_wrap=True,  # a path to copy
        )
    if result.status != "interrupted":
        console.print(
            Text.assemble(
                "model: ",
                plain_name(result.run_dir / MODEL_FILE),
                "   next: ",
                command("mlp evaluate --model", result.run_dir),
            ),
            highlight=False,
            soft_wrap=True,  # a command to copy: never broken across lines
        )


# -- evaluate ------------------------------------------------------------------------------


def print_evaluation(console: Console, result: Evaluation, model_path: Path) -> None:
    """Accuracy and loss, per-class metrics, a coloured confusion matrix, top confusions."""
    console.print(
        Text.assemble(
            plain_name(model_path, "bold"),
            f" on the {result.split} split: accuracy ",
            (_pct(result.accuracy), "bold"),
            f" ({round(result.accuracy * result.n):,}/{result.n:,}), loss {_num(result.loss)}, "
            f"{result.seconds:.2f}s",
        ),
        highlight=False,
        soft_wrap=True,
    )
    per_class = Table(title="per class", title_justify="left")
    # Folded where a console is too narrow, never cut: "1…" would read as another number,
    # and an ASCII console cannot print "…".
    for column in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right", overflow="fold")
    for row in result.per_class():
        per_class.add_row(
            plain_name(row["class"]),
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["f1"]),
            f"{row['support']:,}",
        )
    console.print(per_class)
    reasons = {"precision": "never predicted", "recall": "no examples"}
    undefined = [
        f"the {rate} of {', '.join(names)} ({reasons[rate]})"
        for rate, names in result.undefined().items()
        if names
    ]
    if undefined:
        note = "0/0 is shown as 0, as scikit-learn does: " + " and ".join(undefined)
        console.print(plain_name(note), highlight=False)
    console.print(confusion_table(result, empty=_spelled(console, "·")))
    pairs = result.top_confusions()
    if pairs:
        arrow = _spelled(console, "→")
        text = ", ".join(f"{p['true']}{arrow}{p['predicted']} ({p['count']:,})" for p in pairs)
        console.print(
            Text.assemble(f"most frequent confusions (true{arrow}predicted): ", plain_name(text)),
            highlight=False,
        )


def confusion_table(result: Evaluation, empty: str = "·") -> Table:
    """Rows are true classes, columns predicted; the diagonal green, mistakes red by count,
    and `empty` where there are none."""
    cm = result.confusion
    names = result.class_names
    table = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("", style="bold", justify="right", overflow="fold")  # as per class
    for name in names:
        table.add_column(plain_name(name), justify="right", overflow="fold")
    worst = max((pair["count"] for pair in result.top_confusions(1)), default=1)
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            count = int(cm[i, j])
            if i == j:
                cells.append(f"[bold green]{count:,}[/]")
            elif count == 0:
                cells.append(f"[dim]{empty}[/]")
            else:
                level = count / worst
                style = "bold red" if level > 0.5 else "red" if level > 0.15 else "yellow"
                cells.append(f"[{style}]{count:,}[/]")
        table.add_row(plain_name(name), *cells)
    return table


# -- predict -------------------------------------------------------------------------------


DETAILED_MAX = 3  # more predictions than this are a table, one row each, unless --verbose
BAR_WIDTH = 30  # characters of a probability bar at 100%, where the console is wide enough


def probability_bars(
    probabilities: list[float], names: list[str], columns: int | None = None, block: str = "█"
) -> Text:
    """One line per class: its name (from the model file, so plain text), a bar of `block`
    characters, a percentage. Bars are `BAR_WIDTH` long at 100%, or shorter where a console
    of `columns` leaves less room: a line that wrapped would put its percentage on a line of
    its own."""
    width = BAR_WIDTH
    if columns is not None:  # "  name bar  12.3%": the name's cells and 10 more beside the bar
        width = max(1, min(width, columns - max(plain_name(n).cell_len for n in names) - 10))
    lines = Text()
    best = int(np.argmax(probabilities))
    for i, (name, p) in enumerate(zip(names, probabilities, strict=True)):
        bar = block * round(p * width)
        style = "bold green" if i == best else "cyan"
        if i:
            lines.append("\n")
        lines.append_text(Text.assemble("  ", plain_name(name), " ", (f"{bar:<{width}}", style)))
        lines.append(f" {percent(p, 1):>6}")
    return lines


def print_prediction(
    console: Console, p: Prediction, names: list[str], show: bool, input_size: int | None = None
) -> None:
    """One image in detail: the answer, the top 3 and a bar per class; with `show`, the
    28x28 picture the input is made from, and a note when the model's `input_size` (its
    side) is another, so that the picture is not taken for the input itself."""
    top = ", ".join(f"{names[d]} {percent(q, 1)}" for d, q in p.top(3))
    console.print(
        Text.assemble(
            plain_name(p.file, "bold"),
            ": ",
            plain_name(names[p.digit], "bold green"),
            f" ({percent(p.probability, 1)})   top 3: ",
            plain_name(top),
        ),
        highlight=False,
    )
    if show:
        grey = np.round(255 * p.image.astype(np.float64)).astype(np.uint8)  # (28, 28)
        ink: NDArray[np.floating[Any]] = p.image
        if (side := console.width) < grey.shape[1]:  # a narrower console: shrunk, not cut
            grey = _shrunk(grey, side)  # (side, side)
            ink = grey / 255.0
        console.print(picture(np.repeat(grey[..., None], 3, axis=2), ink))
        if input_size is not None and input_size != p.image.shape[1]:
            made = p.image.shape[1]  # 28, as MNIST's digits: the picture before any shrinking
            console.print(
                f"[dim]the network sees this {made}x{made} picture area-averaged to "
                f"{input_size}x{input_size} pixels, its input size[/]",
                highlight=False,
            )
    bars = probability_bars(p.probabilities, names, console.width, block=_spelled(console, "█"))
    console.print(bars, highlight=False)


def _prediction_columns(show_header: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=show_header)
    # Folded where a console is too narrow, never cut with an ellipsis ("…"), which an
    # ASCII console cannot print.
    table.add_column("file", overflow="fold")
    table.add_column("digit", justify="right", style="bold green", overflow="fold")
    table.add_column("probability", justify="right", overflow="fold")
    table.add_column("runner-up", justify="right", overflow="fold")
    table.add_column("probability", justify="right", overflow="fold")
    return table


class PredictionRows:
    """Many images, one row each: the answer and the runner-up with their probabilities,
    printed as the predictions come a batch at a time: the header with the first batch,
    then each batch's rows.

    A table's columns are as wide as their widest cells, so each batch is laid out with one
    more row of the widest cells the whole table can hold (the longest of ``files``, the
    widest class name, 100.00%), which is not printed: every batch gets the widths of one
    table of all rows."""

    def __init__(self, console: Console, names: list[str], files: Sequence[str | Path]) -> None:
        self.console = console
        self.names = names
        name = max((plain_name(n) for n in names), key=lambda text: text.cell_len)
        file = max((plain_name(f) for f in files), key=lambda text: text.cell_len)
        columns = _prediction_columns(show_header=False)
        cells = (file, name, Text(_pct(1.0)), name, Text(_pct(1.0)))
        # The headers count too, though batches after the first are printed without them.
        self.widest = [
            max(cell, Text(str(column.header)), key=lambda text: text.cell_len)
            for cell, column in zip(cells, columns.columns, strict=True)
        ]
        self.widest_height = len(self._lines(columns))
        self.started = False

    def _lines(self, table: Table) -> list[list[Segment]]:
        """`table`'s lines with the row of widest cells added at its end."""
        table.add_row(*self.widest)
        return self.console.render_lines(table, self.console.options, pad=False)

    def print(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        table = _prediction_columns(show_header=not self.started)
        self.started = True
        for p in predictions:
            # the answer's name and probability, and the runner-up's unless there is one class
            top = [(plain_name(self.names[d]), _pct(q)) for d, q in p.top(2)]
            table.add_row(plain_name(p.file), *top[0], *(top[1] if len(top) > 1 else ("", "")))
        lines = self._lines(table)[: -self.widest_height]
        self.console.print(
            Segments(segment for line in lines for segment in [*line, Segment.line()])
        )


def prediction_summary(predicted: int, failed: int, seconds: float) -> str:
    return (
        f"{counted(predicted, 'image')} predicted, {failed:,} failed"
        f"{' (errors below)' if failed else ''}, in {_duration(seconds)}"
    )


# -- pictures ------------------------------------------------------------------------------


TERMINAL_GAP = 1  # columns between tiles in `render_hidden_terminal`


def _shrunk(image: NDArray[Any], side: int) -> NDArray[Any]:
    """A (rows, columns) image (uint8 or float32) as (side, side) of the same dtype, by area
    averaging, which keeps thin strokes visible where nearest neighbour would drop them."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BOX))


@functools.lru_cache(maxsize=4096)  # a picture repeats few colour pairs
def _block(upper: tuple[int, ...], lower: tuple[int, ...] | None) -> Style:
    return Style(
        color=Color.from_rgb(*upper), bgcolor=None if lower is None else Color.from_rgb(*lower)
    )


def halfblocks(image: NDArray[np.uint8]) -> Text:
    """An RGB image, (rows, columns, 3) uint8, as text: each character is ``▀`` with the
    upper pixel as foreground and the lower pixel as background colour, so one text row
    shows two pixel rows and pixels stay square (an odd last row has no background)."""
    text = Text(no_wrap=True, overflow="crop")
    height = image.shape[0]
    for y in range(0, height, 2):  # one text row = pixel rows y (upper) and y + 1 (lower)
        if y:
            text.append("\n")
        for x in range(image.shape[1]):
            lower = tuple(map(int, image[y + 1, x])) if y + 1 < height else None
            text.append("▀", style=_block(tuple(map(int, image[y, x])), lower))
    return text


RAMP = " .:-=+*#%@"  # characters from no ink to full ink, for consoles without colour


def ramp(ink: NDArray[np.floating[Any]]) -> Text:
    """Ink in [0, 1], (rows, columns), as text: one `RAMP` character per cell, each text
    row the mean of two pixel rows as in `halfblocks`, so the picture keeps its shape."""
    height = ink.shape[0]
    rows = [ink[y : y + 2].mean(axis=0) for y in range(0, height, 2)]  # (columns,) each
    top = len(RAMP) - 1
    lines = ["".join(RAMP[i] for i in np.clip(np.rint(r * top), 0, top).astype(int)) for r in rows]
    return Text("\n".join(lines), no_wrap=True, overflow="crop")


class ByColour:
    """One renderable on a console that shows colour and another on one that does not
    (piped, redirected, NO_COLOR or a dumb terminal), as rich has judged that console; an
    encoding without the half block (``PYTHONIOENCODING=ascii``) gets the other one too."""

    def __init__(self, coloured: RenderableType, plain: RenderableType) -> None:
        self.coloured = coloured
        self.plain = plain

    def _choice(self, console: Console, options: ConsoleOptions) -> RenderableType:
        colourless = console.no_color or console.color_system is None
        return self.plain if colourless or options.ascii_only else self.coloured

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._choice(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self._choice(console, options))


def picture(image: NDArray[np.uint8], ink: NDArray[np.floating[Any]]) -> ByColour:
    """An RGB image (rows, columns, 3) as `halfblocks`, or where there is no colour (a
    picture of identical half blocks) as a `ramp` of ``ink``, (rows, columns) in [0, 1]."""
    return ByColour(halfblocks(image), ramp(ink))


def render_hidden_terminal(
    patterns: np.ndarray, side: int, *, max_units: int = 36, width: int = 80
) -> Group:
    """Unit patterns (see `viz.unit_patterns`) as half blocks (see `halfblocks`) within
    `width` columns. Tiles are downsampled (box filter) only as far as needed for a
    near-square grid to fit in `width`; each tile's index is written above it. Only the
    first `max_units` units are drawn, and the caption says so when there were more."""
    from rich.columns import Columns
    from rich.constrain import Constrain

    from mlp_cli.viz import check_patterns, grid_cols, unit_colours

    P = check_patterns(patterns, side)
    n_total = P.shape[0]
    P = P[:max_units]
    n = P.shape[0]
    fits = (width + TERMINAL_GAP) // grid_cols(n) - TERMINAL_GAP  # widest near-square tiles
    t = max(min(side, 3), min(side, fits))
    # each tile is drawn scaled to its own largest |weight|: scaling first keeps weights
    # beyond float32's range (a deep layer's product) finite through the float32 resize
    peak = np.max(np.abs(P), axis=1, keepdims=True)  # (n, 1)
    tiles = (P / np.where(peak > 0, peak, 1.0)).reshape(n, side, side)
    if t != side:
        tiles = np.stack([_shrunk(tile.astype(np.float32), t) for tile in tiles]).astype(np.float64)
    rgb = unit_colours(tiles.reshape(n, t * t)).reshape(n, t, t, 3)
    peak = np.max(np.abs(tiles), axis=(1, 2), keepdims=True)  # (n, 1, 1), as unit_colours
    ink = np.abs(tiles) / np.where(peak > 0, peak, 1.0)  # (n, t, t) in [0, 1]
    # an index wider than its tile (of one pixel) widens its column rather than lose digits
    labelled = [Group(Text(str(i), style="bold"), picture(rgb[i], ink[i])) for i in range(n)]
    shown = f"showing the first {n} of {n_total:,} units; " if n_total > n else ""
    scale = "; each tile scaled to its own largest |weight|"
    if t != side:
        scale += f"; tiles shrunk from {side}x{side} to {t}x{t} pixels"
    caption = ByColour(
        Text(f"{shown}red = positive weight, blue = negative, white = 0{scale}.", style="dim"),
        Text(f"{shown}denser characters = larger |weight|, either sign{scale}.", style="dim"),
    )
    grid = Columns(labelled, padding=(0, TERMINAL_GAP))  # as many tiles a row as fit
    return Group(Constrain(grid, width), caption)


# -- inspect -------------------------------------------------------------------------------


def _training_words(training: TrainingSummary) -> str:
    """'completed, 12 epochs in 3.4s', saying which of these the file does not record."""
    ran = training.epochs_run
    epochs = "(epochs not recorded)" if ran is None else counted(ran, "epoch")
    took = "" if training.seconds is None else f" in {_duration(training.seconds)}"
    return f"{training.status or '(status not recorded)'}, {epochs}{took}"


def print_model_summary(console: Console, saved: SavedModel) -> None:
    from mlp_cli.checkpoint import TrainingSummary
    from mlp_cli.viz import monitored

    meta = saved.meta
    layers = saved.layers
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column(overflow="fold")  # a long file name is folded, never cut
    training = meta.training or TrainingSummary()
    prep = meta.preprocessing
    norm = prep.normalize
    monitor = training.monitor or "val_loss"  # older files picked the best epoch by the loss
    min_delta = meta.config.training.early_stopping.min_delta if meta.config else 0.0
    best = (
        f"{training.best_epoch} ({monitored(monitor, min_delta)}): validation loss "
        f"{_num(training.best_val_loss)}, accuracy {_pct(training.best_val_accuracy)}"
        if training.best_epoch
        else "none (no validation scores)"
    )
    held = meta.weights_epoch()
    if training.best_epoch and held not in (None, training.best_epoch):
        best += f"; this file holds epoch {held}'s weights"
    elif training.best_epoch and meta.resume and meta.resume.get("step"):
        # a checkpoint saved inside an epoch (Ctrl-C) records no epoch: its weights are none's
        inside = "an epoch" if training.epochs_run is None else f"epoch {training.epochs_run + 1}"
        best += f"; this file holds weights from inside {inside}"
    rows: list[tuple[str, str]] = [
        ("file", str(saved.path)),
        ("format", f"{meta.format} v{meta.format_version}"),
        ("architecture", layers_text(layers)),
        (
            "activations",
            f"{_hidden_words(len(layers), meta.hidden_activation)}, "
            f"{meta.output_activation} output",
        ),
        ("loss", meta.loss),
        (
            "input",
            f"{prep.input_size}x{prep.input_size} pixels in [0, 1]"
            + (f", standardized (mean {norm.mean:.4f}, std {norm.std:.4f})" if norm else ""),
        ),
        ("classes", ", ".join(meta.class_names)),
        ("training", _training_words(training) if meta.training else "not recorded in the file"),
        ("best epoch", best),
        (
            "written by",
            f"mlp {meta.package_version or '(version not recorded)'} on "
            f"{meta.created or '(date not recorded)'}",
        ),
    ]
    for key, value in rows:
        header.add_row(key, plain_name(value))  # the values come from the file, each a line
    console.print(header, highlight=False)
    layers_table = Table(title="layers", title_justify="left")
    for column in ("layer", "weights", "biases", "parameters", "activation"):
        layers_table.add_column(
            column, justify="right" if column != "activation" else "left", overflow="fold"
        )  # folded as the digests below
    total = 0
    for i, (w, b) in enumerate(zip(saved.weights, saved.biases, strict=True), start=1):
        count = w.size + b.size
        total += count
        act = meta.output_activation if i == len(saved.weights) else meta.hidden_activation
        layers_table.add_row(
            f"{i}", f"{w.shape[0]}x{w.shape[1]}", f"{b.shape[0]}", f"{count:,}", plain(act)
        )
    layers_table.add_row("total", "", "", f"{total:,}", "", style="bold")
    console.print(layers_table)
    hashes = meta.data_hashes
    if hashes:
        data_table = Table(
            title="trained on (sha256 of the decompressed MNIST files)", title_justify="left"
        )
        # folded, not cut short with an ellipsis: the whole name and digest, in ASCII on any
        # console
        data_table.add_column("file", overflow="fold")
        data_table.add_column("sha256", overflow="fold")
        for name, digest in hashes.items():
            data_table.add_row(plain(name), plain(digest))
        console.print(data_table)


# -- sweeps ----------------------------------------------------------------------------------

_STATUS_STYLE = {
    "running": "cyan",
    "completed": "green",
    "early_stopped": "green",
    "pruned": "yellow",
    "failed": "bold red",
    "interrupted": "magenta",
}


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Column names for swept settings: the last part of each dotted key, unless two share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: name if last.count(name) == 1 else key for key, name in zip(keys, last, strict=True)
    }


# Characters of the ranked trials table besides the settings, at their widest cells
# ("early_stopped", "200/200", "98.12% (171)" best and test, "1h40m") and with the three
# characters between columns: a constant, so that a live table keeps its layout as its
# cells fill in.  Each setting's column adds its widest cell and three more.
_SWEEP_COLUMNS_WIDTH = 73
_SWEEP_COLUMN_GAP = 3


def sweep_table(
    sweep: Sweep, *, ranked: bool = False, width: int = 80, height: int | None = None
) -> Table:
    """The trials of a sweep: settings, status, epochs, the metric now and at its best, time;
    `ranked`: best first, with the best trial's test accuracy. The settings get a column
    each where `width` allows, else share one column of ``key=value`` lines. With `height`
    (a live view), a sweep of more trials than fit shows the running ones and the best."""
    from mlp_cli.sweep import ENDED

    metric = sweep.metric
    show = _pct if metric.endswith("_acc") else _num
    keys = sweep.varied_keys()
    names = _short_keys(keys)
    texts = {key: [t.setting(key) for t in sweep.trials] for key in keys}
    wide = sum(max(len(names[k]), *map(len, texts[k])) + _SWEEP_COLUMN_GAP for k in keys)
    apart = wide + _SWEEP_COLUMNS_WIDTH <= width
    done = sum(t.status in ENDED for t in sweep.trials)
    title = f"sweep {sweep.name}: {done}/{len(sweep.trials)} trials ended, ranked by {metric}"
    # A live view keeps each trial to the lines `height` counts; the final table folds what
    # a narrow console cannot hold, never cutting a number to "9…" ("\u2026" in ASCII).
    live = height is not None
    fit: dict[str, Any] = {"no_wrap": True} if live else {"overflow": "fold"}
    table = Table(
        title=plain(title),
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
        show_edge=False,
    )
    if ranked:
        table.add_column("#", justify="right", **fit)
    table.add_column("trial", **fit)
    for key in keys if apart else []:
        table.add_column(plain(names[key]))
    if keys and not apart:
        longest = max(len(f"{names[k]}={v}") for k in keys for v in texts[k])
        table.add_column("settings", overflow="fold", min_width=min(longest, 24) if live else None)
    table.add_column("status", **fit)
    table.add_column("epoch", justify="right", **fit)
    if not ranked:
        table.add_column(metric, justify="right")
    table.add_column("best (epoch)", justify="right", **fit)
    timed = apart or not ranked  # a narrow ranked table leaves the time to results.csv
    if timed:
        table.add_column("time", justify="right", **fit)
    if ranked:
        table.add_column("test (epoch)", justify="right", **fit)
    trials = sweep.ranked() if ranked else sweep.trials
    rows = None if height is None else max(4, height - 8) // (1 if apart else len(keys) or 1)
    if rows is not None and len(trials) > rows:
        running = [t for t in trials if t.status == "running"]
        leaders = [t for t in sweep.ranked() if t.status in ENDED and t.best is not None]
        shown = set(map(id, running + leaders[: max(0, rows - len(running))]))
        trials = [t for t in trials if id(t) in shown]
        more = len(sweep.trials) - len(trials)
        table.caption = f"{counted(more, 'more trial')}: mlp sweep show DIR"
    for rank, trial in enumerate(trials, start=1):
        row: list[str | Text] = [str(rank)] if ranked else []
        row.append(trial.id)
        settings = [trial.setting(k) for k in keys]
        if apart:
            row += [plain(text) for text in settings]
        elif keys:
            row.append(
                plain("\n".join(f"{names[k]}={v}" for k, v in zip(keys, settings, strict=True)))
            )
        row.append(Text(trial.status, style=_STATUS_STYLE.get(trial.status, "")))
        row.append(f"{trial.epoch}/{trial.epochs}")
        if not ranked:
            row.append(show(trial.last))
        best = show(trial.best)
        row.append(f"{best} ({trial.best_epoch})" if trial.best is not None else best)
        if timed:
            row.append(_duration(trial.seconds) if trial.seconds else "-")
        if ranked:
            test = "" if trial.test_acc is None else _pct(trial.test_acc)
            row.append(f"{test} ({trial.test_epoch})" if trial.test_epoch and test else test)
        table.add_row(*row)
    return table


def sweep_reasons(sweep: Sweep) -> list[Text]:
    """One line per failed or interrupted trial, and one for the trials a dead worker left
    never started: why (text from the trial, shown plain)."""
    lines = [
        Text.assemble((f"{t.id} {t.status}: ", _STATUS_STYLE[t.status]), plain(t.reason))
        for t in sweep.trials
        if t.reason and t.status in ("failed", "interrupted")
    ]
    # one line for them all: with one worker, every trial after the one it died in
    if unstarted := [t.reason for t in sweep.trials if t.reason and t.status == "pending"]:
        lines.append(
            Text(f"{counted(len(unstarted), 'trial')} not started: ") + plain(unstarted[0])
        )
    return lines


def plan_table(sweep: Sweep) -> Table:
    """`mlp sweep plan`: every trial's settings, nothing run."""
    keys = sweep.keys()
    names = _short_keys(keys)
    trials = counted(len(sweep.trials), "trial")
    title = f"sweep {sweep.name}: {trials} ({sweep.method}), into {sweep.dir}"
    table = Table(title=plain(title), box=box.SIMPLE_HEAD, title_justify="left")
    # folded where a console is too narrow, never cut: "784-…" names no network, and an
    # ASCII console cannot print "…"
    table.add_column("trial", overflow="fold")
    for key in keys:
        table.add_column(plain(names[key]), overflow="fold")
    swept_epochs = "training.epochs" in keys  # then its column says it already
    if not swept_epochs:
        table.add_column("epochs", justify="right", overflow="fold")
    for trial in sweep.trials:
        settings = [plain(trial.setting(k)) for k in keys]
        table.add_row(trial.id, *settings, *([] if swept_epochs else [str(trial.epochs)]))
    return table
