"""Rich terminal rendering for the command line: download bars, live training progress.

Only `mlp_cli.cli` uses this module; the library reports through callbacks and return
values and never renders anything itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from mlp_cli.plain import plain
from mlp_cli.train import Callbacks, TrainResult

if TYPE_CHECKING:
    from mlp_cli.checkpoint import SavedModel
    from mlp_cli.config import Config
    from mlp_cli.evaluate import Evaluation
    from mlp_cli.predict import Prediction


def _duration(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02.0f}s"
    return f"{secs:.1f}s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class DownloadBar:
    """The tqdm-like object pooch's downloader drives (``total``, ``update``, ``reset``,
    ``close``), drawn as one rich progress row per file."""

    def __init__(self, console: Console) -> None:
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
        self._started = False

    def set_description(self, text: str) -> None:
        self._description = text

    @property
    def total(self) -> float | None:
        return None if self._task is None else self._progress.tasks[self._task].total

    @total.setter
    def total(self, value: float | None) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        self._task = self._progress.add_task(self._description, total=value or None)

    def update(self, n: float) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def reset(self) -> None:
        if self._task is not None:
            self._progress.reset(self._task)

    def close(self) -> None:
        """pooch calls this when one file is done; the bar stays until `stop`."""
        if self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, completed=task.total or task.completed)
            self._task = None

    def write(self, text: str) -> None:
        """A notice from the data layer (e.g. a damaged cache file was removed)."""
        self._progress.console.print(plain(text, "yellow"), highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False

    def __bool__(self) -> bool:
        return True


class DataNotices:
    """The data layer's notices without a progress bar, for quiet output: falsy, so no
    download progress is drawn, but ``write`` still reaches the user."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> None:
        self._console.print(plain(text, "yellow"), highlight=False, soft_wrap=True)

    def __bool__(self) -> bool:
        return False


HEADER = (
    f"{'epoch':>7} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} "
    f"{'lr':>9} {'time':>7} {'samples/s':>10}"
)


class TrainDisplay(Callbacks):
    """A progress bar with the live loss during each epoch, and a table row per epoch."""

    def __init__(self, console: Console, cfg: Config) -> None:
        self.console = console
        self.cfg = cfg
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
        layers = "-".join(map(str, m.layers))
        self.console.print(
            f"[bold]{cfg.name}[/]: {layers} ({m.hidden_activation} hidden, "
            f"{m.output_activation} output, {cfg.loss}), {info['parameters']:,} parameters, "
            f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g}, batch {cfg.training.batch_size}",
            highlight=False,
        )
        self.console.print(
            f"{info['n_train']:,} training / {info['n_val']:,} validation images; "
            f"run directory: {info['run_dir']}",
            highlight=False,
        )
        if info["start_epoch"]:
            self.console.print(f"resuming after epoch {info['start_epoch']}")
        self.console.print(f"[dim]{HEADER}[/]", highlight=False)
        self.progress.start()

    def on_epoch_start(self, epoch: int, steps: int, start_step: int) -> None:
        self._smoothed = None
        self.task = self.progress.add_task(
            f"epoch {epoch}/{self.epochs}", total=steps, completed=start_step, loss="…"
        )

    def on_step(self, step: int, loss: float) -> None:
        if self.task is None:
            return
        # An exponential moving average: the raw batch loss jumps too much to read.
        self._smoothed = loss if self._smoothed is None else 0.95 * self._smoothed + 0.05 * loss
        self.progress.update(self.task, completed=step, loss=f"{self._smoothed:.4f}")

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


class JsonLines(Callbacks):
    """One JSON object per epoch on stdout, for scripts."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        print(json.dumps(record), flush=True)


def print_train_summary(console: Console, result: TrainResult) -> None:
    ran = len(result.history)
    words = {
        "completed": "finished",
        "early_stopped": "stopped early (no validation improvement)",
        "interrupted": "interrupted",
    }
    console.print(
        f"{words.get(result.status, result.status)} after {ran} epoch{'s' * (ran != 1)} "
        f"in {_duration(result.elapsed)}",
        highlight=False,
    )
    if result.best_accuracy is not None:
        console.print(
            f"best validation accuracy {_pct(result.best_accuracy)} (epoch {result.best_epoch})",
            highlight=False,
        )
    if result.status != "interrupted":
        console.print(
            f"model: {result.run_dir / 'model.npz'}   next: mlp evaluate --model {result.run_dir}",
            highlight=False,
        )


# -- evaluate ------------------------------------------------------------------------------


def print_evaluation(console: Console, result: Evaluation, model_path: Path) -> None:
    """Accuracy and loss, per-class metrics, a coloured confusion matrix, top confusions."""
    console.print(
        f"[bold]{model_path}[/] on the {result.split} split: accuracy "
        f"[bold]{_pct(result.accuracy)}[/] ({round(result.accuracy * result.n):,}/"
        f"{result.n:,}), loss {result.loss:.4f}, {result.seconds:.2f}s",
        highlight=False,
    )
    per_class = Table(title="per class", title_justify="left")
    for column in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right")
    for row in result.per_class():
        per_class.add_row(
            row["class"],
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["f1"]),
            f"{row['support']:,}",
        )
    console.print(per_class)
    console.print(confusion_table(result))
    pairs = result.top_confusions()
    if pairs:
        text = ", ".join(f"{p['true']}→{p['predicted']} ({p['count']})" for p in pairs)
        console.print(f"most frequent confusions (true→predicted): {text}", highlight=False)


def confusion_table(result: Evaluation) -> Table:
    """Rows are true classes, columns predicted; the diagonal green, mistakes red by count."""
    cm = result.confusion
    names = result.class_names
    table = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("", style="bold", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    worst = max(int(cm.max(initial=0, where=~np.eye(len(cm), dtype=bool))), 1)
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            count = int(cm[i, j])
            if i == j:
                cells.append(f"[bold green]{count}[/]")
            elif count == 0:
                cells.append("[dim]·[/]")
            else:
                level = count / worst
                style = "bold red" if level > 0.5 else "red" if level > 0.15 else "yellow"
                cells.append(f"[{style}]{count}[/]")
        table.add_row(name, *cells)
    return table


# -- predict -------------------------------------------------------------------------------


def probability_bars(probabilities: list[float], names: list[str], width: int = 30) -> str:
    lines = []
    best = int(np.argmax(probabilities))
    for i, (name, p) in enumerate(zip(names, probabilities, strict=True)):
        bar = "█" * round(p * width)
        style = "bold green" if i == best else "cyan"
        lines.append(f"  {name} [{style}]{bar:<{width}}[/] {100 * p:5.1f}%")
    return "\n".join(lines)


def digit_halfblocks(image: NDArray[np.float32]) -> Text:
    """A (28, 28) image in [0, 1] as 14 terminal rows of half blocks (grey levels)."""
    text = Text()
    rows = image.shape[0] - image.shape[0] % 2
    for r in range(0, rows, 2):
        for c in range(image.shape[1]):
            top = round(255 * float(image[r, c]))
            bottom = round(255 * float(image[r + 1, c]))
            text.append("▀", style=f"rgb({top},{top},{top}) on rgb({bottom},{bottom},{bottom})")
        text.append("\n")
    return text


def print_prediction(console: Console, p: Prediction, names: list[str], show: bool) -> None:
    top = ", ".join(f"{d} {100 * q:.1f}%" for d, q in p.top(3))
    console.print(
        f"[bold]{p.file}[/]: [bold green]{p.digit}[/] ({100 * p.probability:.1f}%)   top 3: {top}",
        highlight=False,
    )
    if show:
        console.print(digit_halfblocks(p.image), end="")
    console.print(probability_bars(p.probabilities, names), highlight=False)


# -- inspect -------------------------------------------------------------------------------


def print_model_summary(console: Console, saved: SavedModel) -> None:
    meta = saved.metadata
    layers = saved.layers
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    training = meta.get("training") or {}
    prep = meta.get("preprocessing") or {}
    norm = prep.get("normalize")
    rows = [
        ("file", str(saved.path)),
        ("format", f"{meta.get('format')} v{meta.get('format_version')}"),
        ("architecture", "-".join(map(str, layers))),
        (
            "activations",
            f"{meta.get('hidden_activation')} hidden, {meta.get('output_activation')} output",
        ),
        ("loss", str(meta.get("loss"))),
        (
            "input",
            f"{prep.get('input_size')}x{prep.get('input_size')} pixels in [0, 1]"
            + (f", standardized (mean {norm['mean']:.4f}, std {norm['std']:.4f})" if norm else ""),
        ),
        ("classes", ", ".join(meta.get("class_names") or [])),
        (
            "training",
            f"{training.get('status')}, {training.get('epochs_run')} epochs in "
            f"{_duration(float(training.get('seconds') or 0))}",
        ),
        (
            "best validation",
            f"{_pct(training.get('best_val_accuracy'))} (epoch {training.get('best_epoch')})",
        ),
        ("written by", f"mlp {meta.get('package_version')} on {meta.get('created')}"),
    ]
    for key, value in rows:
        header.add_row(key, value)
    console.print(header, highlight=False)
    layers_table = Table(title="layers", title_justify="left")
    for column in ("layer", "weights", "biases", "parameters", "activation"):
        layers_table.add_column(column, justify="right" if column != "activation" else "left")
    total = 0
    for i, (w, b) in enumerate(zip(saved.weights, saved.biases, strict=True), start=1):
        count = w.size + b.size
        total += count
        act = (
            meta.get("output_activation")
            if i == len(saved.weights)
            else meta.get("hidden_activation")
        )
        layers_table.add_row(
            f"{i}", f"{w.shape[0]}x{w.shape[1]}", f"{b.shape[0]}", f"{count:,}", str(act)
        )
    layers_table.add_row("total", "", "", f"{total:,}", "", style="bold")
    console.print(layers_table)
    hashes = meta.get("data_hashes") or {}
    if hashes:
        data_table = Table(
            title="trained on (sha256 of the decompressed MNIST files)", title_justify="left"
        )
        data_table.add_column("file")
        data_table.add_column("sha256")
        for name, digest in hashes.items():
            data_table.add_row(name, digest)
        console.print(data_table)
