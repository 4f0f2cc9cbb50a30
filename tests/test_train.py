"""Tests for `mlp_cli.train`: the loop on small synthetic data sets, reproducibility, exact
resuming, divergence, early stopping, the run directory, and Ctrl-C on the real command line.

Most tests build a `Splits` of a few hundred random 400-pixel inputs and skip drawing
curves.png (matplotlib dominates the run time of such tiny runs); one test checks the real
plot.  The Ctrl-C test trains on the real MNIST copy in a subprocess and is marked slow.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import require_real_mnist
from numpy.typing import NDArray
from PIL import Image
from signals import signal_when
from threadpoolctl import threadpool_limits

from mlp_cli import checkpoint, data, optim, threads, train
from mlp_cli.checkpoint import SavedModel
from mlp_cli.config import Config, config_from_dict, load_config
from mlp_cli.data import Splits
from mlp_cli.errors import DataError, TrainingError, UsageError
from mlp_cli.train import Trainer

N_TRAIN, N_VAL = 96, 48
TIMING_KEYS = {"time", "samples_per_sec"}
RECORD_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", *TIMING_KEYS}


def make_splits(
    n_train: int = N_TRAIN, n_val: int = N_VAL, *, seed: int = 0, learnable: bool = True
) -> Splits:
    """400-pixel float32 inputs in [0, 1]; with ``learnable`` each class has a prototype,
    otherwise inputs and labels are independent noise (anything learned is overfitting)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = rng.integers(0, 10, n).astype(np.uint8)
    X = rng.random((n, 400), dtype=np.float32)
    if learnable:
        prototypes = rng.random((10, 400), dtype=np.float32)
        X = 0.5 * X + 0.5 * prototypes[y]
    order = rng.permutation(n).astype(np.int64)
    preprocessing = {"input_size": 20, "source": "synthetic test data", "normalize": None}
    return Splits(
        X, y, np.sort(order[n_val:]), np.sort(order[:n_val]), preprocessing, {"synthetic": "0"}
    )


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def make_config(tmp_path: Path, **changes: Any) -> Config:
    settings: dict[str, Any] = {
        "name": "unit",
        "data": {"input_size": 20, "validation_size": N_VAL},
        "model": {"layers": [400, 16, 10]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"epochs": 3, "batch_size": 16, "seed": 0},
        "output": {"dir": str(tmp_path / "runs")},
    }
    return config_from_dict(merge(settings, changes))


@pytest.fixture
def no_curves(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Skip drawing curves.png (about a second per run); returns the runs that asked."""
    asked: list[Path] = []
    monkeypatch.setattr(Trainer, "write_curves", lambda self: asked.append(self.run_dir))
    return asked


def arrays_of(path: Path) -> dict[str, bytes]:
    """Every array of an .npz (weights, optimizer and resume state) as raw bytes."""
    with np.load(path, allow_pickle=False) as npz:
        return {n: npz[n].tobytes() for n in npz.files if n != checkpoint.METADATA_KEY}


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / train.METRICS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


def reference_outputs(saved: SavedModel, X: NDArray[np.float32]) -> NDArray[np.float64]:
    """Softmax outputs of a ReLU network from the file's arrays, in float64."""
    A = X.astype(np.float64)
    for l, (W, b) in enumerate(zip(saved.weights, saved.biases, strict=True)):
        Z = A @ W.T.astype(np.float64) + b
        A = np.maximum(Z, 0.0) if l < len(saved.weights) - 1 else Z
    E = np.exp(A - A.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def reference_loss_and_accuracy(
    saved: SavedModel, X: NDArray[np.float32], y: NDArray[np.uint8]
) -> tuple[float, float]:
    P = reference_outputs(saved, X)
    loss = -float(np.mean(np.log(P[np.arange(len(y)), y])))
    return loss, float(np.mean(P.argmax(axis=1) == y))


class Recorder(train.Callbacks):
    """Keeps the weights after every epoch and where the loop was at every step."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.after_epoch: dict[int, NDArray[np.float32]] = {}
        self.epoch = 0
        self.steps: list[tuple[int, int]] = []  # (epoch, step) of every finished step

    def on_epoch_start(self, epoch: int, steps: int, start_step: int) -> None:
        self.epoch = epoch

    def on_step(self, step: int, loss: float) -> None:
        self.steps.append((self.epoch, step))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.after_epoch[record["epoch"]] = self.trainer.model.params.copy()


# -- learning ---------------------------------------------------------------------------------


def test_small_network_overfits_64_samples(tmp_path: Path, no_curves: list[Path]) -> None:
    splits = make_splits(64, 0, seed=1, learnable=False)  # random labels: pure memorisation
    cfg = make_config(
        tmp_path,
        data={"validation_size": 0},
        model={"layers": [400, 32, 10]},
        training={"epochs": 25, "batch_size": 16},
    )
    result = train.start(cfg, splits).run()
    assert result.status == "completed"
    assert len(result.history) == 25
    assert all(r["val_loss"] is None for r in result.history)
    saved = checkpoint.load(result.run_dir / checkpoint.MODEL_FILE)
    _, accuracy = reference_loss_and_accuracy(saved, splits.X, splits.y)
    assert accuracy == 1.0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 10


def test_same_seed_gives_the_same_bits_and_another_seed_does_not(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits()
    runs = [
        train.start(
            make_config(tmp_path, model={"dropout": 0.3}, training={"epochs": 2, "seed": seed}),
            splits,
        ).run()
        for seed in (5, 5, 6)
    ]
    for name in (checkpoint.MODEL_FILE, train.CHECKPOINT_FILE):
        first, again, other = (arrays_of(r.run_dir / name) for r in runs)
        assert first == again
        assert first["W1"] != other["W1"]
        assert first["W2"] != other["W2"]
    assert without_timing(runs[0].history) == without_timing(runs[1].history)


def test_the_update_runs_on_the_blas_threads_and_gives_the_same_bits(
    tmp_path: Path, no_curves: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A minimum this small lets the 6,576 parameters of 400-16-10 be shared among threads.
    monkeypatch.setattr(optim, "THREAD_MIN", 1024)
    splits = make_splits()
    with threadpool_limits(limits=1, user_api="blas"):  # the products alike in both runs
        alone = train.start(make_config(tmp_path / "alone"), splits)
        monkeypatch.setattr(train, "blas_threads", lambda: 3)
        shared = train.start(make_config(tmp_path / "shared"), splits)
        assert (alone.optimizer.threads, shared.optimizer.threads) == (1, 3)
        runs = [alone.run(), shared.run()]
    for name in (checkpoint.MODEL_FILE, train.CHECKPOINT_FILE):
        assert arrays_of(runs[0].run_dir / name) == arrays_of(runs[1].run_dir / name)


class SlowRuns(train.Callbacks):
    def __init__(self) -> None:
        self.reports: list[threads.Slowdown] = []

    def on_slow_run(self, slow: threads.Slowdown) -> None:
        self.reports.append(slow)


def test_a_starved_run_is_reported_once_through_the_callbacks(
    tmp_path: Path, no_curves: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every epoch is judged, and the threads waited for a CPU far longer than they ran.
    monkeypatch.setattr(threads, "JUDGED_SECONDS", 0.0)
    waited = iter(range(0, 10**6, 1000))
    monkeypatch.setattr(train, "waiting_seconds", lambda: float(next(waited)))
    monkeypatch.setattr(train, "blas_threads", lambda: 2)
    trainer = train.start(make_config(tmp_path), make_splits())
    callbacks = SlowRuns()
    trainer.run(callbacks)
    assert [(s.epoch, s.threads, s.suggest) for s in callbacks.reports] == [(1, 2, 1)]
    assert callbacks.reports[0].waiting is not None
    assert callbacks.reports[0].waiting > threads.WAITING_SHARE


def test_a_run_whose_threads_never_wait_is_not_reported(
    tmp_path: Path, no_curves: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "JUDGED_SECONDS", 0.0)
    monkeypatch.setattr(threads, "SLOW_FACTOR", 1e9)  # epoch times alone never count
    monkeypatch.setattr(train, "waiting_seconds", lambda: 5.0)
    callbacks = SlowRuns()
    train.start(make_config(tmp_path), make_splits()).run(callbacks)
    assert callbacks.reports == []


# -- resuming ---------------------------------------------------------------------------------

STEPS_PER_EPOCH = N_TRAIN // 16  # 6


@pytest.mark.parametrize(
    "stop_after", [0, 4, STEPS_PER_EPOCH, STEPS_PER_EPOCH + 3], ids=lambda k: f"{k}-steps"
)
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, no_curves: list[Path], stop_after: int
) -> None:
    splits = make_splits()
    changes: dict[str, Any] = {
        "model": {"layers": [400, 12, 10], "dropout": 0.2},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
        "training": {"epochs": 3, "early_stopping": {"patience": 5}},
    }
    whole = train.start(make_config(tmp_path, **changes), splits, tmp_path / "A").run()

    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_after  # asked before every step: True before step k + 1

    cfg = make_config(tmp_path, **changes)
    stopped = train.start(cfg, splits, tmp_path / "B").run(should_stop=stop)
    assert stopped.status == "interrupted"
    assert no_curves == [tmp_path / "A", tmp_path / "B"]  # drawn at the end and on Ctrl-C
    state = checkpoint.load(tmp_path / "B" / train.CHECKPOINT_FILE, checkpoint=True)
    assert state.meta.training is not None
    assert state.meta.training.status == "interrupted"
    resume_state = state.meta.resume
    assert resume_state is not None
    assert (resume_state["epoch"], resume_state["step"]) == divmod(stop_after, STEPS_PER_EPOCH)

    resumed_cfg = train.resume_config(tmp_path / "B")
    assert resumed_cfg == cfg
    resumed = train.resume(tmp_path / "B", resumed_cfg, splits).run()
    assert resumed.status == "completed"
    for name in (checkpoint.MODEL_FILE, train.CHECKPOINT_FILE):
        assert arrays_of(tmp_path / "A" / name) == arrays_of(tmp_path / "B" / name), name
    assert without_timing(metrics(tmp_path / "A")) == without_timing(metrics(tmp_path / "B"))
    assert without_timing(resumed.history) == without_timing(whole.history)
    assert resumed.best_epoch == whole.best_epoch
    assert resumed.best_accuracy == whole.best_accuracy


def test_the_files_saved_at_an_epochs_end_count_that_epochs_time(
    tmp_path: Path, no_curves: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = itertools.count(0.0, 1.0)  # every reading one second after the last
    monkeypatch.setattr(train, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    trainer = train.start(make_config(tmp_path), make_splits())
    saved: list[tuple[SavedModel, float]] = []

    class Reader(train.Callbacks):
        def on_epoch_end(self, record: dict[str, Any]) -> None:
            files = [train.CHECKPOINT_FILE] + [checkpoint.MODEL_FILE] * record["best"]
            for name in files:  # model.npz is saved with the epoch that beats the others
                saved.append((checkpoint.load(trainer.run_dir / name), record["time"]))

    trainer.run(Reader())
    assert len(saved) > 3
    for file, epoch_time in saved:
        assert file.meta.training is not None
        assert file.meta.training.seconds is not None
        assert file.meta.training.seconds >= epoch_time


def test_resuming_a_finished_run_asks_for_more_epochs(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits()
    cfg = make_config(tmp_path, training={"epochs": 2})
    run_dir = train.start(cfg, splits).run().run_dir
    with pytest.raises(UsageError, match=r"training\.epochs=N with N > 2"):
        train.resume(run_dir, train.resume_config(run_dir), splits)
    longer = train.resume_config(run_dir, ["training.epochs=3"])
    result = train.resume(run_dir, longer, splits).run()
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2, 3]
    assert load_config(run_dir / train.CONFIG_FILE).training.epochs == 3


def test_resume_needs_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=re.escape(str(tmp_path))):
        train.resume_config(tmp_path)


# -- divergence -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [8, N_TRAIN], ids=["mid-epoch", "one-step-epochs"])
def test_huge_learning_rate_stops_with_the_epoch_and_step_and_a_loadable_checkpoint(
    tmp_path: Path, no_curves: list[Path], batch_size: int
) -> None:
    splits = make_splits()
    cfg = make_config(
        tmp_path,
        model={"layers": [400, 64, 64, 64, 10], "hidden_activation": "relu"},
        optimizer={"name": "sgd", "lr": 1e6},
        training={"epochs": 8, "batch_size": batch_size},
    )
    trainer = train.start(cfg, splits)
    recorder = Recorder(trainer)
    with pytest.raises(TrainingError) as info, np.errstate(all="ignore"):
        trainer.run(recorder)
    epoch = recorder.epoch
    done = [s for e, s in recorder.steps if e == epoch]
    # the step that overflowed, or the epoch's last one when what followed it did
    step = done[-1] if len(done) == trainer.steps else (done[-1] if done else 0) + 1
    message = str(info.value)
    assert f"epoch {epoch}, step {step}:" in message
    assert step <= trainer.steps
    assert "optimizer.lr" in message
    path = trainer.run_dir / train.CHECKPOINT_FILE
    assert str(path) in message
    saved = checkpoint.load(path, checkpoint=True)
    assert saved.meta.resume is not None
    assert saved.meta.resume["epoch"] == epoch - 1
    assert all(np.all(np.isfinite(w)) for w in saved.weights)


def test_a_stop_after_a_step_that_overflowed_keeps_the_last_good_checkpoint(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    cfg = make_config(tmp_path, optimizer={"name": "sgd", "lr": 1e39})  # overflows at once
    trainer = train.start(cfg, make_splits())
    stops = iter([False, True])  # Ctrl-C during the first step
    with pytest.raises(TrainingError) as info:
        trainer.run(should_stop=lambda: next(stops))
    assert "epoch 1, step 1: the step left weights that are not finite numbers" in str(info.value)
    saved = checkpoint.load(trainer.run_dir / train.CHECKPOINT_FILE, checkpoint=True)
    assert saved.meta.resume is not None
    assert saved.meta.resume["step"] == 0


def test_divergence_after_a_resume_inside_an_epoch_names_the_checkpoint_it_keeps(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    changes: dict[str, Any] = {
        "model": {"layers": [400, 64, 64, 64, 10]},
        "optimizer": {"name": "sgd", "lr": 1e6},
        "schedule": {"warmup_epochs": 1e30},  # a rate too small to diverge, until resumed
    }
    stops = iter([False, False, True])  # Ctrl-C during epoch 1's second step
    train.start(make_config(tmp_path, **changes), make_splits()).run(
        should_stop=lambda: next(stops)
    )
    run_dir = tmp_path / "runs" / "unit"
    cfg = train.resume_config(run_dir, ["schedule.warmup_epochs=0"])
    with pytest.raises(TrainingError) as info, np.errstate(all="ignore"):
        train.resume(run_dir, cfg, make_splits()).run()
    assert "The last good checkpoint (at epoch 1, step 2) is kept" in str(info.value)


def test_divergence_advice_leaves_out_what_the_run_does_already(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    cfg = make_config(
        tmp_path,
        data={"normalize": "standardize"},
        model={"layers": [400, 64, 64, 64, 10]},
        optimizer={"name": "sgd", "lr": 1e6},
        schedule={"warmup_epochs": 0.5},
    )
    trainer = train.start(cfg, make_splits())
    with pytest.raises(TrainingError) as info, np.errstate(all="ignore"):
        trainer.run()
    message = str(info.value)
    assert "try --set optimizer.lr=100000 or a longer warm-up (schedule.warmup_epochs is 0.5)." in (
        message
    )
    assert "standardized inputs" not in message


def test_weights_that_overflow_on_an_epochs_last_step_are_not_checkpointed(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits()
    cfg = make_config(
        tmp_path,
        optimizer={"name": "sgd", "lr": 1e39},  # lr * gradient overflows float32 at once
        training={"epochs": 3, "batch_size": N_TRAIN},  # one step per epoch
    )
    trainer = train.start(cfg, splits)
    with pytest.raises(TrainingError), np.errstate(all="ignore"):
        trainer.run()
    checkpoint.load(trainer.run_dir / train.CHECKPOINT_FILE, checkpoint=True)


def test_a_validation_loss_that_overflows_is_named_at_the_epochs_last_step(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits()
    splits.X[splits.val_idx] *= 1e38  # outputs overflow on the validation images only
    cfg = make_config(tmp_path, training={"batch_size": 16})
    trainer = train.start(cfg, splits)
    with pytest.raises(TrainingError) as info:
        trainer.run()
    message = str(info.value)
    assert message.startswith(f"training stopped at epoch 1, step {trainer.steps}: the validation")
    assert f"epoch 1, step {trainer.steps + 1}" not in message


@pytest.mark.parametrize("init", ["normal", "uniform"])
@pytest.mark.parametrize("scale", [1e30, 1e308])  # the outputs overflow; the weights too
def test_initial_weights_that_overflow_are_blamed_not_the_learning_rate(
    tmp_path: Path, no_curves: list[Path], init: str, scale: float
) -> None:
    cfg = make_config(tmp_path, model={"init": init, "init_scale": scale})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy warning before the message
        trainer = train.start(cfg, make_splits())
        with pytest.raises(TrainingError) as info:
            trainer.run()
    message = str(info.value)
    assert message.startswith("training stopped at epoch 1, step 1:")
    assert f"model.init_scale = {scale:g}" in message
    assert "before any step" in message
    assert "optimizer.lr" not in message


def test_adamw_takes_the_weight_decay_its_learning_rate_allows(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    # lr * weight_decay is 0.01; at the default lr of 0.001 it would be 10, and refused
    cfg = make_config(tmp_path, optimizer={"name": "adamw", "lr": 1e-6, "weight_decay": 1e4})
    result = train.start(cfg, make_splits()).run()
    assert result.status == "completed"


def test_train_loss_and_accuracy_are_the_means_over_every_training_example(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    # A learning rate too small to change a float32 weight: the epoch's running figures are
    # those of the initial network over all 96 examples, the last batch of 16 counted as 16.
    splits = make_splits()
    cfg = make_config(
        tmp_path,
        optimizer={"name": "sgd", "lr": 1e-30},
        training={"epochs": 1, "batch_size": 20},
    )
    trainer = train.start(cfg, splits)
    # Every other label is the initial network's answer, so that every batch has some right.
    guesses = trainer.model.predict_proba(splits.X[splits.train_idx]).argmax(axis=1)
    splits.y[splits.train_idx[::2]] = guesses[::2]
    result = trainer.run()
    saved = checkpoint.load(result.run_dir / checkpoint.MODEL_FILE)
    X, y = splits.X[splits.train_idx], splits.y[splits.train_idx]
    loss, accuracy = reference_loss_and_accuracy(saved, X, y)
    (record,) = result.history
    assert record["train_loss"] == pytest.approx(loss, rel=1e-5)
    assert record["train_acc"] == accuracy


def test_each_step_takes_the_scheduled_rate_at_its_fraction_of_an_epoch(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    # Cosine from 0.1 to 0.01 over 3 epochs of 6 steps: step k of epoch e (both from 0)
    # takes lr(e + k / 6), and an epoch's record holds the rate of its last step.
    cfg = make_config(
        tmp_path,
        optimizer={"name": "sgd", "lr": 0.1},
        schedule={"name": "cosine", "min_lr": 0.01},
    )
    trainer = train.start(cfg, make_splits())
    rates: list[float] = []
    step = trainer.optimizer.step

    def recording_step(params: Any, grads: Any, lr: float) -> None:
        rates.append(lr)
        step(params, grads, lr)

    trainer.optimizer.step = recording_step  # type: ignore[method-assign]
    result = trainer.run()
    progress = [epoch + k / STEPS_PER_EPOCH for epoch in range(3) for k in range(STEPS_PER_EPOCH)]
    want = [0.01 + 0.5 * (0.1 - 0.01) * (1 + math.cos(math.pi * p / 3)) for p in progress]
    assert rates == pytest.approx(want, rel=1e-12)
    assert [r["lr"] for r in result.history] == rates[STEPS_PER_EPOCH - 1 :: STEPS_PER_EPOCH]


# -- early stopping ---------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_epochs_weights(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits(learnable=False)  # validation loss rises as soon as it memorises
    cfg = make_config(
        tmp_path,
        model={"layers": [400, 32, 10]},
        training={"epochs": 30, "early_stopping": {"patience": 1}},
    )
    trainer = train.start(cfg, splits)
    recorder = Recorder(trainer)
    result = trainer.run(recorder)
    assert result.status == "early_stopped"
    epochs_run = len(result.history)
    assert epochs_run < 30
    val_losses = [r["val_loss"] for r in result.history]
    best = int(np.argmin(val_losses)) + 1
    assert best == epochs_run - 1  # patience 1: the first epoch that does not improve stops
    assert result.best_epoch == best
    assert val_losses[-1] >= val_losses[best - 1]

    model = checkpoint.load(trainer.run_dir / checkpoint.MODEL_FILE)
    flat = np.concatenate([w.ravel() for w in model.weights] + list(model.biases))
    assert flat.tobytes() == recorder.after_epoch[best].tobytes()
    assert model.meta.training is not None
    assert model.meta.training.status == "early_stopped"
    assert model.meta.training.weights_from_epoch == best
    X_val, y_val = splits.X[splits.val_idx], splits.y[splits.val_idx]
    loss, accuracy = reference_loss_and_accuracy(model, X_val, y_val)
    assert loss == pytest.approx(val_losses[best - 1], rel=1e-5)
    assert accuracy == result.best_accuracy

    last = checkpoint.load(trainer.run_dir / train.CHECKPOINT_FILE, checkpoint=True)
    last_flat = np.concatenate([w.ravel() for w in last.weights] + list(last.biases))
    assert last_flat.tobytes() == recorder.after_epoch[epochs_run].tobytes()
    assert last.meta.training is not None  # its weights are the last epoch's, and it says so
    assert last.meta.training.weights_from_epoch == epochs_run


def _running_best(values: list[float], better: Any) -> list[bool]:
    """Which epochs beat every earlier one (ties keep the earlier epoch)."""
    flags, best = [], None
    for v in values:
        flags.append(best is None or better(v, best))
        best = v if flags[-1] else best
    return flags


def test_monitor_val_acc_keeps_the_epoch_with_the_highest_validation_accuracy(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits(learnable=False)  # memorising: loss and accuracy peak apart
    changes: dict[str, Any] = {"model": {"layers": [400, 32, 10]}, "training": {"epochs": 12}}
    by_loss = train.start(make_config(tmp_path, **changes), splits, tmp_path / "loss").run()
    changes["training"]["early_stopping"] = {"monitor": "val_acc"}
    trainer = train.start(make_config(tmp_path, **changes), splits, tmp_path / "acc")
    recorder = Recorder(trainer)
    by_acc = trainer.run(recorder)

    # The same epochs either way: only what "best" means differs.
    assert without_timing(by_acc.history) != without_timing(by_loss.history)  # "best" flags
    losses = [r["val_loss"] for r in by_acc.history]
    accuracies = [r["val_acc"] for r in by_acc.history]
    assert losses == [r["val_loss"] for r in by_loss.history]
    best_acc = int(np.argmax(accuracies)) + 1  # the first epoch with the highest accuracy
    best_loss = int(np.argmin(losses)) + 1
    assert best_acc != best_loss  # the case the monitor exists for
    assert (by_acc.best_epoch, by_loss.best_epoch) == (best_acc, best_loss)
    assert by_acc.best_accuracy == max(accuracies)
    assert by_acc.best_loss == losses[best_acc - 1]
    assert (by_acc.monitor, by_loss.monitor) == ("val_acc", "val_loss")
    assert [r["best"] for r in by_acc.history] == _running_best(accuracies, float.__gt__)
    assert [r["best"] for r in by_loss.history] == _running_best(losses, float.__lt__)

    model = checkpoint.load(trainer.run_dir / checkpoint.MODEL_FILE)
    flat = np.concatenate([w.ravel() for w in model.weights] + list(model.biases))
    assert flat.tobytes() == recorder.after_epoch[best_acc].tobytes()
    training = model.meta.training
    assert training is not None
    summary = training.model_dump()
    assert summary["monitor"] == "val_acc"
    assert (summary["best_epoch"], summary["weights_from_epoch"]) == (best_acc, best_acc)
    assert summary["best_val_accuracy"] == max(accuracies)
    loss_training = checkpoint.load(tmp_path / "loss" / checkpoint.MODEL_FILE).meta.training
    assert loss_training is not None
    loss_summary = loss_training.model_dump()
    assert (loss_summary["monitor"], loss_summary["best_epoch"]) == ("val_loss", best_loss)


def test_early_stopping_patience_counts_epochs_without_a_higher_accuracy(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    cfg = make_config(
        tmp_path,
        model={"layers": [400, 32, 10]},
        training={"epochs": 40, "early_stopping": {"monitor": "val_acc", "patience": 3}},
    )
    result = train.start(cfg, make_splits(learnable=False)).run()
    assert result.status == "early_stopped"
    accuracies = [r["val_acc"] for r in result.history]
    assert result.best_epoch == int(np.argmax(accuracies)) + 1
    assert len(result.history) == result.best_epoch + 3  # three epochs no higher, then stop
    assert [r["best"] for r in result.history] == _running_best(accuracies, float.__gt__)


def test_a_resumed_run_keeps_the_best_epoch_from_before_the_resume(
    tmp_path: Path, no_curves: list[Path]
) -> None:
    splits = make_splits(learnable=False)  # validation loss rises as soon as it memorises
    cfg = make_config(tmp_path, model={"layers": [400, 32, 10]}, training={"epochs": 5})
    trainer = train.start(cfg, splits)
    recorder = Recorder(trainer)
    best = trainer.run(recorder).best_epoch
    assert 0 < best < 5
    run_dir = trainer.run_dir
    longer = train.resume_config(run_dir, ["training.epochs=7"])
    result = train.resume(run_dir, longer, splits).run()

    assert result.best_epoch == best  # the later epochs overfit further
    model = checkpoint.load(run_dir / checkpoint.MODEL_FILE)
    flat = np.concatenate([w.ravel() for w in model.weights] + list(model.biases))
    assert flat.tobytes() == recorder.after_epoch[best].tobytes()
    assert model.meta.training is not None
    assert (model.meta.training.epochs_run, model.meta.training.weights_from_epoch) == (7, best)


def test_resume_is_exact_when_monitoring_accuracy(tmp_path: Path, no_curves: list[Path]) -> None:
    splits = make_splits(learnable=False)
    changes: dict[str, Any] = {
        "model": {"layers": [400, 16, 10]},
        "training": {"epochs": 5, "early_stopping": {"monitor": "val_acc", "patience": 3}},
    }
    whole = train.start(make_config(tmp_path, **changes), splits, tmp_path / "A").run()
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2 * STEPS_PER_EPOCH + 1

    train.start(make_config(tmp_path, **changes), splits, tmp_path / "B").run(should_stop=stop)
    resumed = train.resume(tmp_path / "B", train.resume_config(tmp_path / "B"), splits).run()
    for name in (checkpoint.MODEL_FILE, train.CHECKPOINT_FILE):
        assert arrays_of(tmp_path / "A" / name) == arrays_of(tmp_path / "B" / name), name
    assert without_timing(resumed.history) == without_timing(whole.history)
    assert (resumed.best_epoch, resumed.status) == (whole.best_epoch, whole.status)


class ScriptedValidation:
    """Validation scores (loss, accuracy), epoch by epoch, in place of the model's own."""

    def __init__(self, scores: list[tuple[float, float]]) -> None:
        self.scores = iter(scores)

    def __call__(self, *args: Any) -> tuple[float, float]:
        return next(self.scores)


@pytest.mark.parametrize(
    ("monitor", "min_delta", "scores"),
    [
        ("val_loss", 0.1, [(1.0, 0.5), (0.95, 0.5), (0.85, 0.5), (0.8, 0.5), (0.76, 0.5)]),
        ("val_loss", 0.0, [(1.0, 0.5), (1.0, 0.5), (0.9, 0.5), (0.9, 0.5), (0.9, 0.5)]),
        ("val_acc", 0.1, [(1.0, 0.3), (1.0, 0.35), (1.0, 0.45), (1.0, 0.5), (1.0, 0.54)]),
        ("val_acc", 0.0, [(1.0, 0.3), (1.0, 0.3), (1.0, 0.4), (1.0, 0.4), (1.0, 0.4)]),
    ],
)
def test_an_epoch_improves_only_by_more_than_min_delta_and_patience_counts_from_the_best(
    tmp_path: Path,
    no_curves: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    monitor: str,
    min_delta: float,
    scores: list[tuple[float, float]],
) -> None:
    # Epochs 2, 4 and 5 gain min_delta or less on the best (a tie, without one): epoch 3 is
    # the best, and with patience 2 the run stops after epoch 5, two epochs after it.
    stopping = {"monitor": monitor, "min_delta": min_delta, "patience": 2}
    cfg = make_config(tmp_path, training={"epochs": 10, "early_stopping": stopping})
    trainer = train.start(cfg, make_splits())
    monkeypatch.setattr(trainer.model, "evaluate", ScriptedValidation(scores))
    result = trainer.run()
    assert [r["best"] for r in result.history] == [True, False, True, False, False]
    assert (result.status, result.best_epoch) == ("early_stopped", 3)
    assert (result.best_loss, result.best_accuracy) == scores[2]


# -- the run directory ------------------------------------------------------------------------


def test_run_directory_holds_config_metrics_models_and_curves(tmp_path: Path) -> None:
    yaml_path = tmp_path / "small.yaml"
    yaml_path.write_text(
        f"""
name: small
data: {{input_size: 20, validation_size: {N_VAL}}}
model: {{layers: 400-16-10, hidden_activation: relu}}
optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}
schedule: {{name: step, step_size: 1, gamma: 0.5}}
training: {{epochs: 2, batch_size: 32, seed: 3}}
output: {{dir: {tmp_path / "runs"}}}
"""
    )
    cfg = load_config(yaml_path)
    splits = make_splits()
    trainer = train.start(cfg, splits)
    result = trainer.run()
    run_dir = result.run_dir
    assert run_dir == tmp_path / "runs" / "small"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [
            train.CONFIG_FILE,
            train.METRICS_FILE,
            checkpoint.MODEL_FILE,
            train.CHECKPOINT_FILE,
            train.CURVES_FILE,
        ]
    )
    assert (tmp_path / "runs" / checkpoint.LATEST).is_symlink()
    assert (tmp_path / "runs" / checkpoint.LATEST).resolve() == run_dir.resolve()
    assert load_config(run_dir / train.CONFIG_FILE) == cfg

    records = metrics(run_dir)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records == result.history
    for r in records:
        assert set(r) >= RECORD_KEYS
        assert 0.0 <= r["train_acc"] <= 1.0
        assert r["time"] >= 0.0
    assert [r["lr"] for r in records] == [0.1, 0.05]  # step schedule: halved after epoch 1

    last = checkpoint.load(run_dir / train.CHECKPOINT_FILE, checkpoint=True)
    X_val, y_val = splits.X[splits.val_idx], splits.y[splits.val_idx]
    loss, accuracy = reference_loss_and_accuracy(last, X_val, y_val)
    assert loss == pytest.approx(records[-1]["val_loss"], rel=1e-5)
    assert accuracy == records[-1]["val_acc"]
    assert last.meta.training is not None
    assert last.meta.training.status == "completed"
    assert last.meta.history is not None
    assert last.meta.history == records
    assert set(last.extras) >= {"optimizer/t", "optimizer/velocity"}
    assert int(last.extras["optimizer/t"]) == 2 * math.ceil(N_TRAIN / 32)

    model = checkpoint.load(run_dir / checkpoint.MODEL_FILE)
    assert model.layers == [400, 16, 10]
    assert model.meta.hidden_activation == "relu"
    assert model.meta.preprocessing.model_dump() == splits.preprocessing
    assert model.meta.config is not None
    assert model.meta.config.model_dump(mode="json") == cfg.model_dump(mode="json")
    assert model.meta.class_names == [str(d) for d in range(10)]

    with Image.open(run_dir / train.CURVES_FILE) as image:
        assert image.format == "PNG"
        assert image.width > 100
        assert image.height > 100

    second = train.start(cfg, splits)
    assert second.run_dir == tmp_path / "runs" / "small-2"
    assert (tmp_path / "runs" / checkpoint.LATEST).resolve() == second.run_dir.resolve()


def test_output_folder_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(UsageError, match="--resume"):
        train.start(make_config(tmp_path), make_splits(), tmp_path / "taken")


@pytest.mark.parametrize("name", ["same", "sa\nme"])
def test_a_run_started_into_a_folder_another_run_just_took_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Two `mlp train --out SAME` at once both find the folder empty; the other one writes
    # its config.yaml while this one builds its network.
    out = tmp_path / name
    other = "name: the other run\n"
    build = train.Trainer.__init__

    def built_while_the_other_run_starts(self: Trainer, *args: Any) -> None:
        build(self, *args)
        (out / train.CONFIG_FILE).write_text(other)

    monkeypatch.setattr(train.Trainer, "__init__", built_while_the_other_run_starts)
    with pytest.raises(UsageError, match="taken by another run") as refused:
        train.start(make_config(tmp_path), make_splits(), out)
    assert "\n" not in str(refused.value)  # a name's line break is shown as \\n
    assert [p.name for p in out.iterdir()] == [train.CONFIG_FILE]
    assert (out / train.CONFIG_FILE).read_text() == other


# -- Ctrl-C on the command line -----------------------------------------------------------------


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding MNIST imported from the real copy found here (never downloaded)."""
    source = next(iter(require_real_mnist().values())).parent
    cache = tmp_path_factory.mktemp("mnist-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(data.DATA_DIR_ENV, str(cache))
        data.import_mnist(source)
    return cache


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path: Path, mnist_cache: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        """
name: tiny
data: {input_size: 28, validation_size: 1000}
model: {layers: 784-10, init: normal}
optimizer: {name: sgd, lr: 0.05}
training: {epochs: 50, batch_size: 32}
"""
    )
    run_dir = tmp_path / "run"
    env = {**os.environ, data.DATA_DIR_ENV: str(mnist_cache), "COLUMNS": "300"}
    for name in ("MLP_DEBUG", data.MIRROR_ENV):
        env.pop(name, None)
    code, stdout, stderr = signal_when(
        ["train", "--config", str(config), "--out", str(run_dir), "--quiet"],
        lambda: (run_dir / train.CHECKPOINT_FILE).exists(),
        signal.SIGINT,
        cwd=tmp_path,
        env=env,
        settle=1.0,  # let it train for a while
        waiting_for="training's first checkpoint",
    )
    assert code == 130, stderr
    assert "--resume" in stderr
    assert str(run_dir) in stderr
    assert "Traceback" not in stderr + stdout
    saved = checkpoint.load(run_dir / train.CHECKPOINT_FILE, checkpoint=True)
    assert saved.meta.training is not None
    assert saved.meta.training.status == "interrupted"
    assert saved.layers == [784, 10]
    assert "interrupted" in stdout


# A suite started with the stop signals ignored (nohup, a shell's `&` without job control), then
# sent each of them, as a terminal that closes does; prints which of them a child ignores.
SUITE_STARTED_IGNORING_THEM = """
import os, signal, subprocess, sys
import conftest

conftest.pytest_configure(None)
for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    os.kill(os.getpid(), number)
child = "import signal as s; print([s.getsignal(n) == s.SIG_IGN for n in (2, 15, 1)])"
subprocess.run([sys.executable, "-c", child], check=True)
"""


def test_a_suite_started_ignoring_stop_signals_still_ignores_them_but_not_in_its_children(
    tmp_path: Path,
) -> None:
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def ignore() -> None:
        for number in numbers:
            signal.signal(number, signal.SIG_IGN)

    suite = subprocess.run(
        [sys.executable, "-c", SUITE_STARTED_IGNORING_THEM],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=ignore,
    )
    assert suite.returncode == 0, suite.stderr  # the suite lives on, as its starter chose
    assert suite.stdout == "[False, False, False]\n"  # as a terminal gives them


def test_read_metrics_errors_name_the_file_and_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UsageError, match="does not exist") as missing_err:
        train.read_metrics(missing)
    assert str(missing) in str(missing_err.value)

    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"epoch": 1}\n\n{"epoch": 2, "train_loss": \n')
    with pytest.raises(DataError, match="line 3") as err:
        train.read_metrics(bad)
    assert str(bad) in str(err.value)

    bad.write_text('{"epoch": 1}\n{"epoch": 2, "train_lo')  # cut off inside a key
    with pytest.raises(
        DataError, match=r"line 2: not valid JSON \(Unterminated string starting at column 14\)"
    ):
        train.read_metrics(bad)

    bad.write_text('{"epoch": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"line 2.*JSON object"):
        train.read_metrics(bad)

    bad.write_text("\n \n")
    with pytest.raises(DataError, match="no records"):
        train.read_metrics(bad)


def test_a_metrics_line_with_a_number_too_long_to_read_names_the_file_and_line(
    tmp_path: Path,
) -> None:
    # json.loads raises a plain ValueError, not a JSONDecodeError, for an integer of more
    # digits than Python converts.
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"epoch": 1}\n{"epoch": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"line 2: not valid JSON \(a number of more than") as err:
        train.read_metrics(bad)
    assert str(bad) in str(err.value)


def test_a_stop_while_the_trainer_is_built_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Building the network compiles its loops (a noticeable moment): a Ctrl-C there must not
    # leave a folder with a config and no checkpoint, nor move the latest link to it.
    cfg = make_config(tmp_path)
    first = train.start(cfg, make_splits())
    latest = first.run_dir.parent / "latest"
    before = os.readlink(latest)

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.Trainer, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.start(cfg, make_splits())
    assert sorted(p.name for p in first.run_dir.parent.iterdir()) == ["latest", first.run_dir.name]
    assert os.readlink(latest) == before
