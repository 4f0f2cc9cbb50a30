"""Rich terminal rendering for the command line: download bars, live training progress.

Only `mlp_cli.cli` uses this module; the library reports through callbacks and return
values and never renders anything itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

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

from mlp_cli.train import Callbacks, TrainResult

if TYPE_CHECKING:
    from mlp_cli.config import Config


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

    def stop(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False

    def __bool__(self) -> bool:
        return True


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
