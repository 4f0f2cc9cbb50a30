"""The training loop, its run directory, and resuming.

A run directory holds everything about one training run:

    config.yaml      the resolved configuration (what `--resume` reads back)
    metrics.jsonl    one JSON object per finished epoch
    model.npz        the best epoch's weights (`training.early_stopping.monitor`: lowest
                     validation loss or highest validation accuracy; the last epoch's
                     without validation)
    checkpoint.npz   the latest weights with optimizer and RNG state, for `--resume`
    curves.png       learning curves, drawn when training ends
    .mlp.lock        there while a process trains the run (or `mlp plot` draws its
                     curves.png): a second one is refused (see `lock_run`)

Randomness comes from three generators spawned from the config's seed (initialisation,
shuffling, dropout/augmentation), so the same config and seed give bit-identical weights on
the same machine and thread count, and a resumed run continues exactly where it stopped.

The loop reports progress through a `Callbacks` object and asks ``should_stop()`` before
every step (the command line sets it on Ctrl-C); it never prints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mlp_cli import __version__, checkpoint, outputs
from mlp_cli.callbacks import Callbacks as Callbacks  # its home; re-exported for its users
from mlp_cli.checkpoint import CHECKPOINT_FILE as CHECKPOINT_FILE  # its home; re-exported
from mlp_cli.checkpoint import LATEST, MODEL_FILE
from mlp_cli.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MLPError,
    OutputError,
    TrainingError,
    UsageError,
)
from mlp_cli.limits import (
    MAX_EPOCHS,
    counted,
    format_bytes,
    json_values_at_most,
    layers_text,
    read_regular,
)
from mlp_cli.model import MLP
from mlp_cli.optim import OPTIMIZERS, Optimizer, Schedule, compiled_kernels
from mlp_cli.plain import command, shown
from mlp_cli.preprocess import normalize_inputs
from mlp_cli.threads import blas_threads, slowdown, waiting_seconds

if TYPE_CHECKING:  # the config stack (pydantic, yaml) loads only when a run starts
    from mlp_cli.config import Config
    from mlp_cli.data import Splits

Array = NDArray[np.float32]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
LOCK_FILE = ".mlp.lock"  # the run's `lock_run`; a sweep folder's lock has the same name
# One line of about 300 bytes per epoch, for at most MAX_EPOCHS epochs; the records read
# from a file this size take a few hundred MB at most.
MAX_METRICS_BYTES = 32 * 2**20
# A record holds 9 values: no more values than that per epoch, or a file of empty lists
# (some 64 bytes of memory for every 3 of the file) would take gigabytes.
MAX_METRICS_VALUES = 16 * MAX_EPOCHS
# The text chunk of a PNG matplotlib drew: how curves.png of runs from before pictures were
# marked as mlp's looks (see `legacy_curves`).
MATPLOTLIB_PNG = b"Software\x00Matplotlib"
# The pixel size of the curves figure (14 x 4.8 inches at viz.DPI, 120), from before the mark too.
_CURVES_PIXELS = (1680, 576)


# -- run directories -----------------------------------------------------------------------


def _refuse_taken(path: Path) -> None:
    """Refuse an --out that is a file, or a folder that already holds something."""
    if path.name == LATEST:
        raise UsageError(
            f"--out '{shown(path)}' ends in '{LATEST}', the name mlp keeps for the link to the "
            "newest run; choose another folder name"
        )
    if os.path.lexists(path) and not os.path.isdir(path):
        kind = outputs.special_kind(path) or "a file"
        raise UsageError(
            f"--out '{shown(path)}' is {kind}, not a folder: --out names the folder a new run is "
            "written to (one that does not exist yet, or an empty one); choose another path"
        )
    try:  # a lock file alone is mlp's: left by a run that was killed as it started
        taken = os.path.isdir(path) and any(p.name != LOCK_FILE for p in path.iterdir())
    except OSError as exc:
        raise UsageError(
            f"cannot read the output folder '{shown(path)}': {outputs.reason(exc)}"
        ) from None
    if not taken:
        return
    if (path / CHECKPOINT_FILE).is_file() and (path / CONFIG_FILE).is_file():
        raise UsageError(
            f"the output folder '{shown(path)}' already holds a run; choose another --out, or "
            f"continue that run with `{command('mlp train --resume', path)}`"
        )
    raise UsageError(
        f"the output folder '{shown(path)}' already exists and is not empty, and mlp writes a new "
        "run only into a new or empty folder; choose another --out (to continue a run, use "
        "`mlp train --resume RUN_DIR`)"
    )


def _latest_is_ours(link: Path) -> bool:
    """Whether ``link`` is absent, or what `update_latest` makes: a symlink to a sibling run
    folder (one holding config.yaml) or to a sibling that is gone (a deleted run:
    replacing the link loses nothing), or where symlinks are not available a small plain
    file naming a run folder. A user's link to anything else (a file, a folder, a path
    elsewhere, itself) is not ours."""
    try:
        if not os.path.lexists(link):
            return True
        symlink = link.is_symlink()
        if symlink:
            name = os.readlink(link)
            if os.path.isabs(name) and Path(name).parent == link.parent.resolve():
                name = Path(name).name  # a sibling named by its absolute path
        elif (target := checkpoint.latest_file_target(link)) is not None:
            name = target
        else:
            return False
        run = link.parent / name
        if not checkpoint.is_plain_name(name, one_line=not symlink) or name == LATEST:
            return False
        if symlink and not os.path.lexists(run):  # a file naming nothing may be a user's notes
            return True
        return run.is_dir() and (run / CONFIG_FILE).is_file()
    except OSError:
        return False


def check_latest(
    parent: Path,
    name: str = LATEST,
    elsewhere: str = "or put the run elsewhere (--out, or --set output.dir=DIR)",
) -> None:
    """Refuse a ``<parent>/latest`` (or `name`) that mlp did not make: only its own link is
    replaced. `elsewhere` ends the refusal with what else can be done."""
    link = Path(parent) / name
    if _latest_is_ours(link):
        return
    kind = "link" if link.is_symlink() else "folder" if link.is_dir() else "file"
    what = f"a {kind} that mlp did not make"
    if kind == "link":
        where = "something other than a run folder beside it" if link.exists() else "nowhere"
        what = f"a link to {where}"
    elif kind == "file" and (target := checkpoint.latest_file_target(link)) is not None:
        # mlp's own plain-file link looks just like this once its run is deleted.
        what = (
            f"a file naming '{shown(target)}', which is no run folder beside it (a file that "
            "mlp did not make, or its link to a run deleted since)"
        )
    raise UsageError(
        f"'{shown(link)}' is {what}. mlp keeps '{name}' there as a link to the "
        f"{'newest run' if name == LATEST else 'best trial of a sweep'} "
        f"and never replaces anything else; rename or move that {kind}, {elsewhere}"
    )


def _out_path(out: str | Path) -> Path:
    """``out`` as given, or absolute where it ends in ``.`` or ``..`` (its parent is then
    the real parent folder, where ``latest`` goes)."""
    path = Path(out)
    return path if path.name not in ("", ".", "..") else Path(os.path.abspath(path))


def lock_run(run_dir: Path, otherwise: str = "") -> outputs.FolderLock:
    """The lock that keeps a second process from training the run in `run_dir` while this
    one does (`start` and `resume` take it, and the trainer holds it until `Trainer.run`
    ends; a caller may take it earlier, e.g. before reading the checkpoint), or from
    drawing its curves.png meanwhile (`mlp plot`). `otherwise` ends the refusal of a second
    process with what else it can do."""
    return outputs.FolderLock(
        run_dir / LOCK_FILE, "run folder", "training that run or drawing its curves", otherwise
    )


def check_run_destination(cfg: Config, out: str | Path | None = None) -> None:
    """Refuse, before data is loaded or anything is written, a run folder that could not be
    made or written, and a ``latest`` beside it that is not mlp's to replace."""
    if out is not None:
        path = _out_path(out)
        _refuse_taken(path)
        outputs.check_folder(path, "run folder")
        parent = path.parent
    else:
        parent = Path(cfg.output.dir)
        name = cfg.name or "run"  # a folder name: the config's schema refuses any other
        if name == LATEST:
            raise UsageError(
                f"the run name '{LATEST}' is the name mlp keeps for the link to the newest run; "
                "set `name` in the config, or --set name=NAME, to another name"
            )
        first = parent / name
        outputs.check_folder(parent if os.path.lexists(first) else first, "run folder")
    check_latest(parent)
    # The link goes beside the run: its folder must take new entries too.
    outputs.check_folder(parent, f"folder for the '{LATEST}' link")


def check_resume_destination(run_dir: str | Path) -> None:
    """Refuse, before anything is loaded, a run folder that cannot be written to again."""
    run_dir = _out_path(run_dir)
    outputs.check_folder(run_dir, "run folder")
    for name in (CONFIG_FILE, METRICS_FILE, MODEL_FILE, CHECKPOINT_FILE):
        outputs.check_replaceable(  # each is saved by a rename
            run_dir / name,
            "run's file",
            f"mlp saves the run's {name} at that name, so move it away (a link: put a copy of "
            "the file it links to in its place), then resume the run again",
        )
    curves = run_dir / CURVES_FILE
    outputs.check_picture(
        curves,
        "learning curves",
        also=legacy_curves(curves),
        fix=f"mlp draws the run's {CURVES_FILE} at that name, so move it away, then resume the "
        "run again",
    )
    if run_dir.name != LATEST:  # resuming through the link leaves it as it is
        check_latest(run_dir.parent, elsewhere="then resume the run again")
        outputs.check_folder(run_dir.parent, f"folder for the '{LATEST}' link")


def legacy_curves(path: Path) -> tuple[bytes, ...]:
    """The marks that make `path` a run's own curves.png besides mlp's picture mark:
    matplotlib's, but only for a PNG of the curves figure's exact pixel size inside a run
    folder (config.yaml and metrics.jsonl beside it), as mlp drew it before pictures were
    marked; a user's own chart saved there is not replaced."""
    folder = path.parent
    if not ((folder / CONFIG_FILE).is_file() and (folder / METRICS_FILE).is_file()):
        return ()
    try:  # a regular file only: opening a named pipe would wait for a writer
        head = read_regular(path, 24)  # signature, IHDR length and type, width, height
    except OSError:
        return ()
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return ()
    size = (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    return (MATPLOTLIB_PNG,) if size == _CURVES_PIXELS else ()


def find_metrics(run_dir: str | Path) -> Path:
    """The ``metrics.jsonl`` of the run folder ``run_dir`` (followed through a ``latest``
    link), or ``run_dir`` itself when it names such a file rather than its folder."""
    fix = "Give a run folder made by `mlp train`, such as runs/latest for the newest run."
    path = checkpoint.through_latest(Path(run_dir), fix)
    if path.name == METRICS_FILE and not os.path.isdir(path):
        return path
    if not os.path.lexists(path):
        if path.name == LATEST:
            raise checkpoint.no_model(path, "give the run folder of an earlier training")
        raise UsageError(f"The run folder {shown(path)} does not exist. {fix}")
    if not os.path.isdir(path):
        raise UsageError(f"{shown(path)} is not a folder. {fix}")
    return path / METRICS_FILE


def run_config(run_dir: Path) -> Config | None:
    """The config of the run in ``run_dir``, from its config.yaml, for its loss and what
    made its best epoch best; None when the folder has no config.yaml (a metrics.jsonl
    kept on its own) or one this mlp cannot validate (an older run's): the curves are
    drawn either way, under a plain "loss" and an unqualified "best epoch"."""
    if not (run_dir / CONFIG_FILE).exists():
        return None
    from mlp_cli.config import load_config

    try:
        return load_config(run_dir / CONFIG_FILE)
    except ConfigError:
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` history: one JSON object per line, blank lines ignored."""
    path = Path(path)
    if os.path.isdir(path) or not os.path.lexists(path):  # other kinds: read_regular says
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise UsageError(
            f"The metrics file {shown(path)} {what}. `mlp train` writes metrics.jsonl into its run "
            "folder as it trains; give the run folder of a training that got through an epoch."
        )
    try:
        raw = read_regular(path, MAX_METRICS_BYTES)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read the metrics file {shown(path)}: {e}.") from e
    if len(raw) > MAX_METRICS_BYTES:
        raise DataError(
            f"The metrics file {shown(path)} is larger than {format_bytes(MAX_METRICS_BYTES)}, far "
            "more than a run writes (one line of about 300 bytes per epoch). Check that it is a "
            "run's metrics.jsonl."
        )
    if json_values_at_most(raw) > MAX_METRICS_VALUES:
        raise DataError(
            f"The metrics file {shown(path)} holds more JSON values than {MAX_METRICS_VALUES:,}, "
            f"far more than a run writes (9 a record, for at most {MAX_EPOCHS:,} epochs). Check "
            "that it is a run's metrics.jsonl."
        )
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:  # ValueError: an integer too long to convert
            why = (
                # some of json's messages end in "at", awaiting the position
                f"{e.msg.removesuffix(' at')} at column {e.colno}"
                if isinstance(e, json.JSONDecodeError)
                else "nested too deeply"
                if isinstance(e, RecursionError)
                else f"a number of more than {sys.get_int_max_str_digits()} digits"
            )
            raise DataError(
                f"{shown(path)}, line {lineno}: not valid JSON ({why}). Each "
                "line of a metrics file must be one JSON object; a run that was interrupted "
                "while writing can leave a cut-off last line. Delete or repair that line."
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"{shown(path)}, line {lineno}: expected a JSON object such as "
                f'{{"epoch": 1, "train_loss": 0.5, ...}}, found a {type(obj).__name__}. '
                "Delete or repair that line."
            )
        records.append(obj)
    if not records:
        raise DataError(
            f"The metrics file {shown(path)} holds no records (it is empty). A run writes one line "
            "per finished epoch; train for at least one epoch first."
        )
    return records


def new_run_dir(cfg: Config, out: str | Path | None = None) -> Path:
    """A fresh run directory: ``out`` if given, else ``<output.dir>/<name>``, with ``-2``,
    ``-3``... appended when that one exists (after `check_run_destination`)."""
    if out is not None:
        path = _out_path(out)
        with outputs.writing(path, "the run folder"):
            path.mkdir(parents=True, exist_ok=True)
        return path
    parent = Path(cfg.output.dir)
    name = cfg.name or "run"
    for n in range(1, 10_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        with outputs.writing(path, "the run folder"), contextlib.suppress(FileExistsError):
            path.mkdir(parents=True)  # taken: try the next number
            return path
    raise UsageError(f"too many runs named '{name}' in '{parent}'")


_LAYERS_TEXT = re.compile(r"\d+(?:-\d+)+")  # "400-25-10" inside a run name


def name_for_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """``cfg`` named after the network it trains when ``--set model.layers=...`` changed it
    (and ``--set name=...`` did not): the layers in the name are replaced, or appended when
    the name holds none, so ``mnist-400-25-10`` with 400-50-10 trains in ``mnist-400-50-10``.
    """
    from mlp_cli.config import config_from_dict, parse_override

    keys = {".".join(parse_override(text)[0]) for text in overrides}
    if "model.layers" not in keys or "name" in keys or cfg.name is None:
        return cfg
    layers = layers_text(cfg.model.layers)
    found = list(_LAYERS_TEXT.finditer(cfg.name))
    if found:
        last = found[-1]
        name = cfg.name[: last.start()] + layers + cfg.name[last.end() :]
    else:
        name = f"{cfg.name}-{layers}"
    # Validated as a config's name is: longer layers can make it too long a name, which
    # the run's config.yaml would then hold and --resume refuse.
    source = "the run name made of name and the new model.layers (choose one with --set name=)"
    return config_from_dict({**cfg.model_dump(), "name": name}, source)


def update_latest(run_dir: Path, name: str = LATEST) -> None:
    """Point ``<parent>/latest`` (or another link `name`, a sweep's ``best``) at ``run_dir``
    (a symlink, replaced atomically).

    Only mlp's own link is ever replaced (see `check_latest`)."""
    run_dir = _out_path(run_dir)
    if run_dir.name == name:  # resumed through the link: it points at this run already
        return
    parent = run_dir.parent
    check_latest(parent, name)
    link = parent / name
    # The run's name beside the link: relative, so the runs folder can move.
    target = run_dir.name
    tmp = outputs.temp_path(parent)
    with outputs.writing(
        link, "the link to the newest run" if name == LATEST else f"the link '{name}'"
    ):
        try:
            tmp.symlink_to(target, target_is_directory=True)
        except OSError:
            # No symlinks here (some Windows setups): a plain file naming the run instead.
            checkpoint.atomic_write(link, lambda f: f.write(target.encode()))
            return
        try:
            os.replace(tmp, link)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


# -- the loop --------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything besides weights and optimizer state that resuming needs."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in the current epoch
    loss_sum: float = 0.0  # running sums over the current epoch's batches
    correct: int = 0
    seen: int = 0
    epoch_time: float = 0.0  # seconds spent in the current epoch so far
    best_loss: float | None = None  # validation loss of the best epoch (None before one)
    best_epoch: int = 0
    best_accuracy: float | None = None
    bad_epochs: int = 0
    elapsed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "completed", "early_stopped" or "interrupted"
    history: list[dict[str, Any]]
    best_epoch: int  # 0 when no epoch had a validation score
    best_accuracy: float | None  # validation accuracy of the best epoch
    elapsed: float
    monitor: str = "val_loss"  # what picked the best epoch: "val_loss" or "val_acc"
    best_loss: float | None = None  # validation loss of the best epoch
    model_epoch: int = 0  # the epoch whose weights model.npz holds (0: none saved yet)
    restore_best: bool = True  # model.npz keeps the best epoch (false: the last one)
    min_delta: float = 0.0  # a new best epoch improved on the last by more than this
    # seconds of the epoch an interrupted run stopped inside, which `elapsed` gets at its end
    unfinished: float = 0.0
    patience: int | None = None  # early stopping's, which the monitored metric drives
    curves: Path | None = None  # the learning curves drawn at the end, if any were


class Trainer:
    """One training run in ``run_dir`` (see the module docstring)."""

    def __init__(self, cfg: Config, run_dir: Path, data: Splits) -> None:
        self.cfg, self.run_dir, self.data = cfg, run_dir, data
        m = cfg.model
        self.model = MLP(m.layers, m.hidden_activation, m.output_activation)
        seeds = np.random.SeedSequence(cfg.training.seed).spawn(3)
        # A scale beyond float32's range draws weights that are not finite; the first loss
        # says so, naming the setting (`_diverged`), so NumPy's warnings would only be noise.
        with np.errstate(over="ignore", invalid="ignore"):
            self.model.initialize(m.init, np.random.default_rng(seeds[0]), m.init_scale)
        self.shuffle_rng = np.random.default_rng(seeds[1])
        self.noise_rng = np.random.default_rng(seeds[2])
        opt = cfg.optimizer
        hyper = opt.model_dump(exclude={"name"})  # lr too, which bounds AdamW's weight_decay
        self.threads = blas_threads()  # the update's threads follow --threads too
        self.optimizer: Optimizer = OPTIMIZERS[opt.name](
            self.model.params.size,
            self.model.dtype,
            self.model.n_weights,
            threads=self.threads,
            **hyper,
        )
        self.model.use_kernels(compiled_kernels())  # numba's loops, where it is installed
        self.schedule = Schedule.from_config(cfg.schedule, opt.lr, cfg.training.epochs)
        self.steps = math.ceil(len(data.train_idx) / cfg.training.batch_size)  # per epoch
        self.dropout = m.dropout_rates if any(m.dropout_rates) else None
        self.augment: Callable[[Array, np.random.Generator], None] | None = None
        if cfg.augment.enabled:
            from mlp_cli.augment import Augmenter

            # Pixels outside a moved digit take the value a blank (0) pixel has as input.
            blank = normalize_inputs(np.zeros(1, np.float32), data.preprocessing)[0]
            self.augment = Augmenter(cfg.augment, cfg.data.input_size, float(blank))
        self.state = TrainState()
        from mlp_cli.config import unused_settings

        # for the caller to show before the run starts: settings that change nothing, ...
        self.warnings: list[str] = unused_settings(cfg)
        self.perm: NDArray[np.int64] | None = None
        # The best epoch's weights (W_1..W_L, b_1..b_L) while model.npz holds them, so the
        # run's end rewrites model.npz from memory.
        self.best: tuple[list[Array], list[Array]] | None = None
        self.ended: str | None = None  # the status the run's end was saved with, once it was
        self.saved_at = (0, 0)  # (epochs, steps) done when the checkpoint was last saved
        self.started = False  # whether the checkpoint before the first step was saved
        self._batch: dict[int, Array] = {}
        self._val: tuple[Array, NDArray[np.uint8]] | None = None
        self.lock: outputs.FolderLock | None = None  # from `start`/`resume`, until `run` ends

    # -- persistence -----------------------------------------------------------------

    def metadata(self, status: str) -> dict[str, Any]:
        from mlp_cli.data import CLASS_NAMES

        cfg, st = self.cfg, self.state
        return {
            "hidden_activation": cfg.model.hidden_activation,
            "output_activation": cfg.model.output_activation,
            "loss": cfg.loss,
            "preprocessing": self.data.preprocessing,
            "class_names": CLASS_NAMES,
            "config": cfg.model_dump(mode="json"),
            "package_version": __version__,
            "data_hashes": self.data.data_hashes,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "training": {
                "status": status,
                "epochs_run": st.epoch,
                "best_epoch": st.best_epoch,
                "best_val_accuracy": st.best_accuracy,
                "best_val_loss": st.best_loss,
                "monitor": cfg.training.early_stopping.monitor,  # what "best" means
                # with the steps of an epoch stopped inside, which `elapsed` gets at its end
                "seconds": round(st.elapsed + st.epoch_time, 3),
                "threads": self.threads,
            },
        }

    def save_model(self, status: str, final: bool = False) -> None:
        """model.npz; at the run's end (``final``) the best epoch's weights where they are
        kept (`best`), else the current ones."""
        meta, weights = self.metadata(status), (self.model.W, self.model.b)
        meta["training"]["weights_from_epoch"] = self.state.epoch
        if final and self.best is not None:
            meta["training"]["weights_from_epoch"] = self.state.best_epoch
            weights = self.best
        checkpoint.save(self.run_dir / MODEL_FILE, *weights, meta)

    def save_start(self) -> None:
        """The checkpoint of a run before its first step.  There is always one to go back
        to, saved before any callback runs: one that fails (standard output on a full disk)
        leaves a run that resumes."""
        self.save_checkpoint("started")
        self.started = True

    def save_checkpoint(self, status: str) -> None:
        m, st = self.model, self.state
        meta = self.metadata(status)
        if st.step == 0:  # an epoch's last weights; inside an epoch they are no epoch's
            meta["training"]["weights_from_epoch"] = st.epoch
        resume = {k: v for k, v in vars(st).items() if k != "history"}
        resume["shuffle_rng"] = self.shuffle_rng.bit_generator.state
        resume["noise_rng"] = self.noise_rng.bit_generator.state
        meta["resume"] = resume
        meta["history"] = st.history
        extras: dict[str, NDArray[np.generic]] = {
            f"optimizer/{k}": v for k, v in self.optimizer.state_dict().items()
        }
        if self.perm is not None:
            extras["resume/perm"] = self.perm
        checkpoint.save(self.run_dir / CHECKPOINT_FILE, m.W, m.b, meta, extras)
        self.saved_at = (st.epoch, st.step)

    def write_metrics(self) -> None:
        lines = "".join(json.dumps(r) + "\n" for r in self.state.history)
        path = self.run_dir / METRICS_FILE
        with outputs.writing(path, "the metrics file"):
            checkpoint.atomic_write(path, lambda f: f.write(lines.encode()))

    def write_curves(self) -> Path | None:
        """Learning curves of the epochs so far, as ``curves.png`` (written last: the
        weights are already safe when plotting starts); the picture's path, or None
        before the first epoch has ended."""
        if not self.state.history:
            return None
        from mlp_cli.viz import plot_curves

        curves = self.run_dir / CURVES_FILE
        try:
            outputs.check_picture(curves, "learning curves", also=legacy_curves(curves))
            stopping = self.cfg.training.early_stopping
            plot_curves(
                self.state.history,
                curves,
                title=self.run_dir.name,
                loss=self.cfg.loss,
                monitor=stopping.monitor,
                min_delta=stopping.min_delta,
            )
        except MLPError as exc:
            text = str(exc).rstrip()
            stop = "" if text.endswith((".", "!", "?")) else "."
            raise OutputError(
                f"{text}{stop} The weights are safe: everything else in '{shown(self.run_dir)}' "
                "was saved before drawing started; draw the curves later with "
                f"`{command('mlp plot', self.run_dir)}`."
            ) from None
        return curves

    def restore(self, saved: checkpoint.SavedModel | None = None) -> Config:
        """Load weights, optimizer and loop state from ``run_dir/checkpoint.npz`` (``saved``,
        when the caller has loaded it already), and the best epoch's weights from model.npz
        where the run keeps them.  Returns the config the checkpoint was saved with.

        Everything is checked before the trainer is changed: a checkpoint saved by another
        run (another config) or with damaged resume state raises `CheckpointError` naming
        the file, a config.yaml edited since the checkpoint `ConfigError`, and nothing on
        disk is touched."""
        path = self.run_dir / CHECKPOINT_FILE
        saved = saved or load_checkpoint(self.run_dir)
        saved_cfg = self._check_same_run(saved.meta.config, path)
        self._check_network(saved, path)
        if saved.meta.resume is None:
            raise checkpoint.damaged_resume(
                path, "it holds weights but no 'resume' entry: it is a model file, not a checkpoint"
            )
        n_train, steps = len(self.data.train_idx), self.steps
        history = saved.meta.history
        resume = checkpoint.read_resume(path, saved.meta.resume, history)
        perm = saved.extras.get("resume/perm")
        problem = _loop_problem(resume, perm, n_train, steps, self.cfg.training.batch_size)
        if problem is not None:
            raise checkpoint.damaged_resume(path, problem)
        best = self._best_so_far(resume.best_epoch, resume.epoch)
        prefix = "optimizer/"
        try:
            self.optimizer.load_state_dict(
                {k.removeprefix(prefix): v for k, v in saved.extras.items() if k.startswith(prefix)}
            )
        except CheckpointError as exc:
            raise checkpoint.damaged_resume(path, str(exc)) from None
        done = resume.epoch * steps + resume.step
        if self.optimizer.t != done:
            raise checkpoint.damaged_resume(
                path,
                f"the optimizer counted {self.optimizer.t} steps, but the loop state says "
                f"{done} (epoch {resume.epoch}, step {resume.step}, {steps} per epoch)",
            )
        self.shuffle_rng.bit_generator.state = resume.shuffle_rng.model_dump()
        self.noise_rng.bit_generator.state = resume.noise_rng.model_dump()
        loop = resume.model_dump(exclude={"shuffle_rng", "noise_rng"})
        self.state = TrainState(**loop, history=list(history or []))
        self.model.set_weights(saved.weights, saved.biases)
        self.perm = None if perm is None else perm.astype(np.int64)
        self.best = best
        self.saved_at = (self.state.epoch, self.state.step)
        return saved_cfg

    def _check_network(self, saved: checkpoint.SavedModel, path: Path) -> None:
        if saved.layers != self.model.sizes:
            raise CheckpointError(
                f"'{shown(path)}' holds a {layers_text(saved.layers)} network, but the run's "
                f"config.yaml describes {layers_text(self.model.sizes)}"
            )

    def _best_so_far(self, best_epoch: int, epoch: int) -> tuple[list[Array], list[Array]] | None:
        """The weights model.npz holds for the run's best epoch so far, if it keeps them
        (``epoch``: the epochs the checkpoint has done)."""
        path = self.run_dir / MODEL_FILE
        keeps = self.cfg.training.early_stopping.restore_best and self.data.val_idx.size
        if not (keeps and best_epoch):
            return None
        if not os.path.lexists(path):
            raise CheckpointError(
                f"'{shown(path)}', which holds the weights of the run's best epoch "
                f"({best_epoch}), is missing: resuming would end the run with another epoch's "
                f"weights in it. Put back the run's own {MODEL_FILE}, or start a new run."
            )
        saved = checkpoint.load(path)
        self._check_network(saved, path)
        keep = f"Resuming would keep its weights as this run's best epoch (epoch {best_epoch})"

        def unmatched(path: Path, problem: str) -> CheckpointError:  # a model: no resume state
            return CheckpointError(
                f"'{shown(path)}' cannot be matched to the run: {problem}. {keep}. Put back this "
                f"run's own {MODEL_FILE}, or start a new run."
            )

        # Its config against the run's: another run's weights would end up as this run's best.
        stored = _stored_config(saved.meta.config, path, unmatched)
        if differ := _frozen_changes(stored, self.cfg):
            listed = "; ".join(f"{k} is {a} there, {b} in {CONFIG_FILE}" for k, a, b in differ)
            raise CheckpointError(
                f"'{shown(path)}' was saved by another run, not the one "
                f"'{shown(self.run_dir / CONFIG_FILE)}' describes: {listed}. {keep}. Put back "
                f"this run's own {MODEL_FILE}, or resume the other run from its own folder."
            )
        # Older files say which epoch's weights they hold only as their best_epoch.
        training = saved.meta.training
        held = training and (training.weights_from_epoch or training.best_epoch)
        if held and held > epoch and saved.meta.resume is None:
            # Saved at an epoch's end just before a crash could save the checkpoint: the
            # resumed run trains that epoch again and saves its weights anew.
            return None
        if saved.meta.resume is not None or (held and held != best_epoch):
            # A checkpoint holds its last step's weights, whatever its best_epoch says.
            what = "a checkpoint's" if saved.meta.resume is not None else f"epoch {held}'s"
            raise CheckpointError(
                f"'{shown(path)}' holds {what} weights, not those of the run's best "
                f"epoch {best_epoch}, which resuming would keep as that epoch's and the finished "
                f"run's. Put back the {MODEL_FILE} that holds epoch {best_epoch}, or start a "
                "new run."
            )
        return [w.astype(np.float32) for w in saved.weights], [
            b.astype(np.float32) for b in saved.biases
        ]

    def _check_same_run(self, stored: checkpoint.SavedConfig | None, path: Path) -> Config:
        """The checkpoint's config, refused where it differs from the run's in a key that
        resuming cannot change (another seed, another learning rate...): it belongs to
        another run."""
        saved_cfg = _stored_config(stored, path)
        if differ := _frozen_changes(saved_cfg, self.cfg):
            config = self.run_dir / CONFIG_FILE
            if _edited_after(config, path):
                listed = "; ".join(f"{k} is {b} there, {a} in training" for k, a, b in differ)
                # The user's own edit, as `--set` of the same key would be: a configuration
                # mistake (exit code 2), not a damaged or foreign checkpoint.
                raise ConfigError(
                    f"'{shown(config)}' was edited after the run saved '{shown(path)}': {listed}. "
                    "A run resumes with the settings it was trained with, but for "
                    f"{_RESUMABLE_TEXT} (which --set changes). Put back the trained values "
                    f"in {CONFIG_FILE} to resume the run, or train a new run with the edited "
                    f"settings: `{command('mlp train --config', config)}`."
                )
            listed = "; ".join(f"{k} is {a} there, {b} in {CONFIG_FILE}" for k, a, b in differ)
            raise CheckpointError(
                f"'{shown(path)}' was saved by another run, not the one "
                f"'{shown(self.run_dir / CONFIG_FILE)}' describes: {listed}. Resuming it would "
                f"continue a different training. Put back this run's own {CHECKPOINT_FILE}, or "
                "resume the other run from its own folder."
            )
        return saved_cfg

    # -- the loop ----------------------------------------------------------------------

    def _gather(self, idx: NDArray[np.int64]) -> Array:
        # A buffer for each batch size a run has: the batch, and the epoch's last, shorter one.
        if (buf := self._batch.get(len(idx))) is None:
            buf = self._batch[len(idx)] = np.empty((len(idx), self.data.X.shape[1]), np.float32)
        # The indices are valid, so "clip" changes nothing but lets take write straight
        # into `buf`; the default mode ("raise") copies through a buffer first.
        return np.take(self.data.X, idx, axis=0, out=buf, mode="clip")

    def run(
        self,
        callbacks: Callbacks | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> TrainResult:
        """Train until the configured epochs are done, early stopping ends the run, or
        ``should_stop()`` answers True (then a checkpoint is saved to resume from)."""
        # A diverging step overflows; the loop sees it (a non-finite loss or weights end the
        # run with a TrainingError that says what to change), so NumPy's own warnings about
        # it would only be noise printed before that message.
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._run(callbacks, should_stop)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _run(self, callbacks: Callbacks | None, should_stop: Callable[[], bool]) -> TrainResult:
        cb = callbacks or Callbacks()
        cfg, st, data, model = self.cfg, self.state, self.data, self.model
        epochs, batch = cfg.training.epochs, cfg.training.batch_size
        n_train, steps = len(data.train_idx), self.steps
        reg = cfg.regularization
        patience = cfg.training.early_stopping.patience
        if st.epoch == 0 and st.step == 0 and self.perm is None and not self.started:
            self.save_start()
        cb.on_train_start(
            {
                "run_dir": self.run_dir,
                "epochs": epochs,
                "start_epoch": st.epoch,
                "steps_per_epoch": steps,
                "n_train": n_train,
                "n_val": len(data.val_idx),
                "parameters": model.params.size,
                "threads": self.threads,
            }
        )
        status = "completed"
        if st.epoch and st.step == 0 and patience is not None and st.bad_epochs >= patience:
            # Stopped early, but its end was never saved (model.npz on a full disk): `resume`
            # lets such a run through for that end alone, saved below with no epoch trained.
            status = "early_stopped"
        session_times: list[float] = []  # this session's epochs, for noticing a slowdown
        warned = False
        while st.epoch < epochs and status != "early_stopped":
            if self.perm is None:
                self.perm = self.shuffle_rng.permutation(n_train)
            cb.on_epoch_start(st.epoch + 1, steps, st.step)
            waited = None if warned else waiting_seconds()  # the slow-run check, said once
            started = time.perf_counter() - st.epoch_time
            while st.step < steps:
                if should_stop():
                    if not np.isfinite(model.params).all():
                        # The last step overflowed: keep the checkpoint saved before it.
                        problem = "the step left weights that are not finite numbers"
                        raise self._diverged(problem, st.step)
                    st.epoch_time = time.perf_counter() - started  # added to elapsed later
                    self.save_checkpoint("interrupted")
                    return self._result("interrupted", self.write_curves())
                chunk = self.perm[st.step * batch : (st.step + 1) * batch]
                idx = data.train_idx[chunk]
                xb, yb = self._gather(idx), data.y[idx]
                if self.augment is not None:
                    self.augment(xb, self.noise_rng)  # in place, on the gathered copy only
                model.forward(xb, dropout=self.dropout, rng=self.noise_rng)
                loss = model.backward(yb, cfg.loss, l1=reg.l1, l2=reg.l2)
                if not math.isfinite(loss):
                    raise self._diverged(f"the loss became {loss} (not a finite number)")
                lr = self.schedule(st.epoch + st.step / steps)
                self.optimizer.step(model.params, model.grads, lr)
                if cfg.model.max_norm:
                    model.apply_max_norm(cfg.model.max_norm)
                st.loss_sum += loss * len(idx)
                st.correct += model.count_correct(yb)
                st.seen += len(idx)
                st.step += 1
                cb.on_step(st.step, loss)
            train_time = time.perf_counter() - started
            waiting = None if warned else _share(waited, train_time, self.threads)
            record = self._end_epoch(train_time, n_train, lr)
            st.elapsed += time.perf_counter() - started - train_time  # validating, saving
            if patience is not None and st.bad_epochs >= patience:
                status = "early_stopped"
            if status == "early_stopped" or st.epoch >= epochs:
                # Saved before the callbacks report the epoch: one that fails (standard
                # output on a full disk) leaves a finished run, not one that cannot resume.
                self.save_end(status)
            cb.on_epoch_end(record)
            session_times.append(train_time)
            if not warned:
                slow = slowdown(st.epoch, session_times, waiting, self.threads)
                if slow is not None:
                    cb.on_slow_run(slow)
                    warned = True
            if status == "early_stopped":
                break
        if self.ended is None:  # no epoch was left to train
            self.save_end(status)
        return self._result(status, self.write_curves())

    def save_end(self, status: str) -> None:
        """The run's end: the final model.npz and the checkpoint saved with `status`."""
        self.save_model(status, final=True)
        self.save_checkpoint(status)
        self.ended = status

    def _end_epoch(self, train_time: float, n_train: int, lr: float) -> dict[str, Any]:
        cfg, st, data = self.cfg, self.state, self.data
        if not np.isfinite(self.model.params).all():
            # The epoch's last step overflowed: its loss was fine, the weights are not.
            raise self._diverged("the step left weights that are not finite numbers", st.step)
        val_loss: float | None = None
        val_acc: float | None = None
        if data.val_idx.size:
            if self._val is None:  # gathered once: 10,000 rows, not the training set
                self._val = (data.X[data.val_idx], data.y[data.val_idx])
            val_loss, val_acc = self.model.evaluate(*self._val, cfg.loss)
            if not math.isfinite(val_loss):  # finite weights whose outputs overflow
                raise self._diverged(
                    f"the validation loss after it became {val_loss} (not a finite number)", st.step
                )
        st.epoch += 1
        st.elapsed += train_time  # before the files that say it are saved
        improved = self._improved(val_loss, val_acc)
        if improved and val_loss is not None:
            st.best_loss, st.best_epoch, st.best_accuracy = val_loss, st.epoch, val_acc
            st.bad_epochs = 0
        else:
            st.bad_epochs += 1
        record = {
            "epoch": st.epoch,
            "train_loss": st.loss_sum / max(st.seen, 1),
            "train_acc": st.correct / max(st.seen, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "time": round(train_time, 4),
            "samples_per_sec": round(n_train / train_time, 1) if train_time > 0 else None,
            "best": improved,
        }
        st.history.append(record)
        st.step, st.loss_sum, st.correct, st.seen, st.epoch_time = 0, 0.0, 0, 0, 0.0
        self.perm = None
        self.write_metrics()
        if improved and cfg.training.early_stopping.restore_best:
            self.best = ([W.copy() for W in self.model.W], [b.copy() for b in self.model.b])
            self.save_model("running")
        self.save_checkpoint("running")
        return record

    def _improved(self, val_loss: float | None, val_acc: float | None) -> bool:
        """Whether this epoch beats the best one on the monitored metric (by min_delta);
        a tie keeps the earlier epoch."""
        stopping, st = self.cfg.training.early_stopping, self.state
        if val_loss is None or val_acc is None:
            return False
        if stopping.monitor == "val_acc":
            return st.best_accuracy is None or val_acc > st.best_accuracy + stopping.min_delta
        return st.best_loss is None or val_loss < st.best_loss - stopping.min_delta

    def _diverged(self, what: str, step: int | None = None) -> TrainingError:
        """The error for `what` stopped being finite (a loss, the weights) at ``step``
        (1-based; by default the step being taken)."""
        st, opt, m = self.state, self.cfg.optimizer, self.cfg.model
        step = st.step + 1 if step is None else step
        if self.optimizer.t == 0:  # the weights as drawn: no learning rate has touched them
            scale = "" if m.init_scale is None else f" with model.init_scale = {m.init_scale:g}"
            return TrainingError(
                f"training stopped at epoch 1, step {step}: {what} before any step changed the "
                f"weights, so the learning rate is not the cause: model.init {m.init}{scale} "
                "draws weights so large that the network's outputs overflow float32. Lower "
                "model.init_scale, or remove it for the default. Nothing was trained in "
                f"'{shown(self.run_dir)}'; start a new run."
            )
        # Only remedies the run does not follow already.
        warmup = self.cfg.schedule.warmup_epochs
        remedies = [
            f"--set optimizer.lr={opt.lr / 10:g}",
            f"a longer warm-up (schedule.warmup_epochs is {warmup:g})"
            if warmup
            else "a warm-up (schedule.warmup_epochs)",
        ]
        if self.cfg.data.normalize == "none":
            remedies.append("standardized inputs (data.normalize: standardize)")
        remedy = ", ".join(remedies[:-1]) + " or " + remedies[-1]
        return TrainingError(
            f"training stopped at epoch {st.epoch + 1}, step {step}: {what}. The most likely "
            f"cause is a learning rate too large for {opt.name} (optimizer.lr = {opt.lr:g}); "
            f"try {remedy}. The last good checkpoint ({self.saved_where()}) is kept in "
            f"'{shown(self.run_dir / CHECKPOINT_FILE)}'; nothing after it was saved."
        )

    def saved_where(self) -> str:
        """Where the run stood when its checkpoint was last saved: "after epoch 3", or
        "at epoch 4, step 120" for one saved inside an epoch."""
        epochs, steps = self.saved_at
        return f"after epoch {epochs}" if not steps else f"at epoch {epochs + 1}, step {steps}"

    def _result(self, status: str, curves: Path | None) -> TrainResult:
        st, cfg = self.state, self.cfg
        kept_best = st.best_epoch and cfg.training.early_stopping.restore_best
        return TrainResult(
            self.run_dir,
            status,
            st.history,
            st.best_epoch,
            st.best_accuracy,
            st.elapsed,
            monitor=cfg.training.early_stopping.monitor,
            best_loss=st.best_loss,
            # Without a best epoch kept, model.npz is saved only at the run's end.
            model_epoch=st.best_epoch if kept_best else st.epoch if self.ended else 0,
            restore_best=cfg.training.early_stopping.restore_best,
            min_delta=cfg.training.early_stopping.min_delta,
            unfinished=st.epoch_time,
            patience=cfg.training.early_stopping.patience,
            curves=curves,
        )


def _stored_config(
    stored: checkpoint.SavedConfig | None,
    path: Path,
    refuse: Callable[[Path, str], CheckpointError] = checkpoint.damaged_resume,
) -> Config:
    """The config a model file or checkpoint at ``path`` was saved with; one it lacks or
    that is invalid raises ``refuse(path, problem)`` (a checkpoint's: damaged resume state)."""
    from mlp_cli.config import config_from_dict

    if stored is None:
        raise refuse(path, "its metadata holds no 'config' describing the run")
    try:
        return config_from_dict(
            stored.model_dump(mode="json", exclude_unset=True),
            f"{shown(path)} (metadata 'config')",
        )
    except ConfigError as exc:
        # the config's message is a sentence; here it ends a clause
        raise refuse(path, f"its stored config is invalid: {str(exc).rstrip('.')}") from None


def _share(waited_before: float | None, seconds: float, threads: int) -> float | None:
    """The share of ``seconds`` that ``threads`` threads spent waiting for a CPU since
    `waiting_seconds` said ``waited_before``, or None where that is not known."""
    waited_after = waiting_seconds()
    if waited_before is None or waited_after is None or seconds <= 0:
        return None
    return max(0.0, waited_after - waited_before) / (seconds * threads)


def _loop_problem(
    state: checkpoint.ResumeState,
    perm: NDArray[np.generic] | None,
    n_train: int,
    steps: int,
    batch: int,
) -> str | None:
    """What is wrong with a checkpoint's loop state beyond its schema, or None: counts
    consistent with ``steps`` of ``batch`` examples an epoch, and the shuffling order a
    permutation of the ``n_train`` training examples."""
    step = state.step
    if step >= steps:
        return f"resume.step is {step}, but an epoch has only {steps} steps"
    if state.seen != step * batch or state.correct > state.seen:
        return (
            f"resume.seen and resume.correct ({state.seen}, {state.correct}) do not "
            f"match {step} steps of {batch} examples"
        )
    if perm is None:
        if step > 0:
            return f"'resume/perm' is missing, but the run stopped at step {step} of an epoch"
        return None
    if perm.shape != (n_train,) or perm.dtype.kind not in "iu":
        return (
            f"'resume/perm' is a {perm.dtype} array of shape {perm.shape}, expected the "
            f"order of the {n_train} training examples, shape ({n_train},)"
        )
    if not np.array_equal(np.sort(perm), np.arange(n_train)):
        return f"'resume/perm' is not an ordering of the {n_train} training examples"
    return None


def start(
    cfg: Config, data: Splits, out: str | Path | None = None, *, link: bool = True
) -> Trainer:
    """A trainer in a new run directory holding the resolved config; `link`: point the
    ``latest`` link beside it at the run (a sweep's trials leave it alone). The trainer
    holds the run's lock (see `lock_run`) until its `Trainer.run` ends."""
    from mlp_cli.config import dump_config

    check_run_destination(cfg, out)
    existed = out is not None and os.path.isdir(out)
    run_dir = new_run_dir(cfg, out)
    config = run_dir / CONFIG_FILE
    claimed = False
    lock = lock_run(run_dir)
    try:
        lock.acquire()
        # The network and its compiled loops first: a stop (or a failure) while they are
        # built must find no config in the folder and the link where it was.
        trainer = Trainer(cfg, run_dir, data)
        with outputs.writing(config, "the run's config"):
            try:
                # Created exclusively, empty: it claims the folder, so of two runs started
                # into one folder at once only one goes on; then the config in one replace.
                open(config, "xb").close()
                claimed = True
            except FileExistsError:
                raise UsageError(
                    f"the run folder '{shown(run_dir)}' was taken by another run started at the "
                    f"same time (its {CONFIG_FILE} appeared while this one was starting); this "
                    "run wrote nothing there. Choose another --out"
                ) from None
            checkpoint.atomic_write(config, lambda f: f.write(dump_config(cfg).encode()))
        # Before the link moves: a run that cannot save its first checkpoint (a full disk)
        # is removed below, and `latest` still names the run before it, not an empty one.
        trainer.save_start()
        if link:
            update_latest(run_dir)
    except BaseException:
        # Nothing has run yet: leave no half run folder behind.
        if claimed:
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
            config.unlink(missing_ok=True)
        lock.release()  # (removes the lock file only if this process held it)
        if not existed:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    trainer.lock = lock
    return trainer


# Config keys a resumed run may change. None of the saved state depends on them: the
# learning rate is recomputed from the schedule at every step, early stopping only reads the
# validation losses kept in the state, and threads and the mirror do not change a result.
# Everything else (layers, seed, batch size, validation split, optimizer, ...) shapes the
# weights, the optimizer state or the shuffling order the checkpoint holds.
RESUMABLE_KEYS = (
    "training.epochs",
    "schedule",
    "training.early_stopping.patience",
    "training.early_stopping.min_delta",
    "training.threads",
    "data.mirror",
)
_RESUMABLE_TEXT = ", ".join(k if "." in k else f"{k}.*" for k in RESUMABLE_KEYS)  # in messages


def resumable_key(key: str) -> bool:
    """Whether the dotted config ``key`` may change when a run is resumed."""
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def _flat_config(cfg: Config) -> dict[str, Any]:
    """``cfg`` as {dotted key: value}, e.g. {"training.seed": 0, ...}."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value

    walk("", cfg.model_dump(mode="json"))
    return flat


def _frozen_changes(before: Config, after: Config) -> list[tuple[str, str, str]]:
    """The settings resuming cannot change that differ: (dotted key, value before, value
    after), each value as JSON or ``absent`` (a key one optimizer has and another lacks)."""
    old, new = _flat_config(before), _flat_config(after)

    def show(flat: dict[str, Any], key: str) -> str:
        return json.dumps(flat[key]) if key in flat else "absent"

    return [
        (k, show(old, k), show(new, k))
        for k in sorted(old.keys() | new.keys())
        if (k in old, old.get(k)) != (k in new, new.get(k)) and not resumable_key(k)
    ]


def load_checkpoint(run_dir: str | Path) -> checkpoint.SavedModel:
    """The checkpoint of the run in ``run_dir``, read once for both `threads_so_far` and
    `resume`."""
    return checkpoint.load(Path(run_dir) / CHECKPOINT_FILE, checkpoint=True)


def threads_so_far(saved: checkpoint.SavedModel) -> int | None:
    """The BLAS threads a run trained on, as its checkpoint records them (None when it does
    not say)."""
    return saved.meta.training.threads if saved.meta.training else None


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The config of the run in ``run_dir``, with ``overrides`` (e.g. more epochs).

    Overrides may only change `RESUMABLE_KEYS`; any other change raises `UsageError`
    before anything is read beyond the config or written."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).is_file() and not os.path.lexists(run_dir / CHECKPOINT_FILE):
        # What `start` leaves when the process is killed before the first checkpoint.
        raise UsageError(
            f"the run in '{shown(run_dir)}' was stopped before it saved its first checkpoint "
            f"({CHECKPOINT_FILE}), so it has nothing to continue from; train it again with "
            f"`{command('mlp train --config', run_dir / CONFIG_FILE)} --out NEW_DIR`, or "
            "remove the folder"
        )
    if not (run_dir / CHECKPOINT_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
        raise UsageError(
            f"'{shown(run_dir)}' is not a run directory with {CONFIG_FILE} and {CHECKPOINT_FILE}; "
            "pass the folder `mlp train` printed when it started"
        )
    from mlp_cli.config import load_config_variants, parse_override

    configs = load_config_variants(run_dir / CONFIG_FILE, [(), overrides])  # one read
    base = next(configs)
    if not overrides:
        return base
    keys = [".".join(parse_override(text)[0]) for text in overrides]
    try:
        cfg = next(configs)
    except ConfigError:
        # An override the run's config cannot even take (optimizer.name=sgd on an Adam
        # run): when it names a setting resuming cannot change anyway, say that instead
        # (a key the config does not have keeps the config's own message).
        settings = _flat_config(base)
        named = [k for k in keys if any(s == k or s.startswith(f"{k}.") for s in settings)]
        if frozen := [k for k in named if not resumable_key(k)]:
            raise _not_resumable(run_dir, ", ".join(frozen)) from None
        raise
    if changes := _frozen_changes(base, cfg):
        raise _not_resumable(run_dir, ", ".join(f"{k} ({a} -> {b})" for k, a, b in changes))
    return cfg


def _edited_after(config: Path, checkpoint_path: Path) -> bool:
    """Whether the run's config.yaml was written after its checkpoint: mlp writes the config
    first, so a config that disagrees with a checkpoint older than itself was edited, while
    a newer checkpoint was put there (copied from another run)."""
    try:
        return config.stat().st_mtime_ns >= checkpoint_path.stat().st_mtime_ns
    except OSError:
        return False


def _not_resumable(run_dir: Path, changes: str) -> UsageError:
    return UsageError(
        f"--resume cannot change {changes}: the checkpoint in '{shown(run_dir)}' holds weights, "
        "optimizer state and a shuffling order made with the run's settings. A resumed "
        f"run can change only {_RESUMABLE_TEXT}. To train with other settings, start a new run, "
        f"e.g. `{command('mlp train --config', run_dir / CONFIG_FILE)} --set ...`. Nothing was "
        "written."
    )


def resume(
    run_dir: str | Path,
    cfg: Config,
    data: Splits,
    saved: checkpoint.SavedModel | None = None,
    *,
    link: bool = True,
) -> Trainer:
    """A trainer that continues the run in ``run_dir`` (config from `resume_config`; its
    checkpoint ``saved``, when the caller has loaded it already, holding `lock_run` then so
    that no other process moves the run on meanwhile; `link` as for `start`). The trainer
    holds the run's lock until its `Trainer.run` ends."""
    run_dir = Path(run_dir)
    lock = lock_run(run_dir).acquire()  # before anything is written
    try:
        trainer = Trainer(cfg, run_dir, data)
        saved = saved or load_checkpoint(run_dir)
        before = trainer.restore(saved)
        st, done = trainer.state, trainer.state.epoch
        patience = cfg.training.early_stopping.patience
        # Its last epoch trained (or its patience spent) but its end not saved (model.npz on
        # a full disk): `run` saves that end, with no epoch left to train.
        status = saved.meta.training.status if saved.meta.training else None
        unsaved_end = done == before.training.epochs and status == "running"
        unsaved_stop = status == "running" and patience == before.training.early_stopping.patience
        if patience is not None and st.step == 0 and st.bad_epochs >= patience and not unsaved_stop:
            raise _ended_by_early_stopping(run_dir, st, patience, cfg.training.epochs, before)
        if done > cfg.training.epochs or (done == cfg.training.epochs and not unsaved_end):
            asked = "" if done == cfg.training.epochs else f", not {cfg.training.epochs}"
            raise UsageError(
                f"the run in '{shown(run_dir)}' has run {counted(done, 'epoch')}, so "
                f"training.epochs must be more than {done}{asked}; to train it longer, add "
                f"--set training.epochs=N with N > {done}"
            )
        if (warning := schedule_change(before, trainer)) is not None:
            trainer.warnings.append(warning)
        if cfg != before:
            from mlp_cli.config import dump_config

            config = run_dir / CONFIG_FILE
            with outputs.writing(config, "the run's config"):
                checkpoint.atomic_write(config, lambda f: f.write(dump_config(cfg).encode()))
        if link:
            update_latest(run_dir)
    except BaseException:
        lock.release()
        raise
    trainer.lock = lock
    return trainer


def _ended_by_early_stopping(
    run_dir: Path, st: TrainState, patience: int, epochs: int, before: Config
) -> UsageError:
    """The refusal to resume a run whose patience is spent: its next epoch would end it
    again, whatever it learned. ``before``: the config it was trained with, whose patience
    either ended it or (a patience first set on resume) did not."""
    more = f" and --set training.epochs=N with N > {st.epoch}" if st.epoch >= epochs else ""
    had = before.training.early_stopping.patience
    ended = (
        f"ended by early stopping after epoch {st.epoch}"
        if had is not None and st.bad_epochs >= had
        else f"did not stop early, but the patience now set would have ended it after epoch "
        f"{st.epoch}"
    )
    return UsageError(
        f"the run in '{shown(run_dir)}' {ended}: the "
        f"monitored metric last improved at epoch {st.best_epoch}, {st.bad_epochs} epoch(s) "
        f"before, and its patience "
        f"(training.early_stopping.patience) is {patience}. To train it on, raise the "
        f"patience, e.g. --set training.early_stopping.patience={st.bad_epochs + patience}"
        f"{more}. Nothing was written."
    )


def schedule_change(before: Config, trainer: Trainer) -> str | None:
    """What changing ``training.epochs`` on resume does to a schedule shaped by the number
    of epochs (cosine, onecycle), or None when the learning rates stay as they were."""
    new = trainer.schedule
    old = Schedule.from_config(before.schedule, before.optimizer.lr, before.training.epochs)
    if old.epochs == new.epochs:
        return None
    st = trainer.state
    done = st.epoch + st.step / trainer.steps
    # The rates so far and the next one: where they agree (constant and step, or a run that
    # ended inside its warm-up) the run is the one the new epochs train from the start.
    # Quarter epochs are finer than any schedule's shape.
    grid = [i / 4 for i in range(math.floor(4 * done) + 1)] + [done]
    if all(old(x) == new(x) for x in grid):
        return None
    where = f"after epoch {st.epoch}" if not st.step else f"at epoch {done:.2f}"
    return (
        f"the {new.name} learning-rate schedule is shaped by training.epochs, which changes "
        f"from {old.epochs} to {new.epochs}: the remaining epochs follow the {new.epochs}-epoch "
        f"schedule, so the learning rate {where} jumps from {old(done):.3g} to "
        f"{new(done):.3g} instead of going on from where it was (a saw-tooth in curves.png). "
        f"That is not the run a {new.epochs}-epoch config trains from the start; for that, "
        f"start a new run with --set training.epochs={new.epochs}."
    )
