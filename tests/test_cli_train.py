"""`mlp train` and `mlp inspect` on the command line, on small synthetic data sets: what the
summary, the epoch table and the saved summary say "best" means, the warning when resuming
with more epochs reshapes a schedule, and run folders named after an overridden network.

`mlp_cli.data.prepare_data` is replaced by the few hundred random inputs of
`test_train.make_splits`, so each run takes well under a second.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pytest
from test_train import make_splits
from typer.testing import CliRunner

from mlp_cli import checkpoint, data
from mlp_cli.cli import app
from mlp_cli.render import TrainDisplay
from mlp_cli.train import Trainer

runner = CliRunner()
WRITE_CURVES = Trainer.write_curves  # the real drawing, for the tests that want curves.png


@pytest.fixture(autouse=True)
def synthetic_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Train on noise (a network can only memorise it, so validation loss and accuracy
    peak at different epochs) and skip drawing curves.png."""
    splits = make_splits(learnable=False)
    monkeypatch.setattr(data, "prepare_data", lambda cfg, progressbar=False: splits)
    monkeypatch.setattr(Trainer, "write_curves", lambda self: None)


def config(tmp_path: Path, name: str = "unit-400-32-10", extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"""
data: {{input_size: 20, validation_size: 48}}
model: {{layers: 400-32-10}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: 12, batch_size: 16}}
output: {{dir: {tmp_path / "runs"}}}
{extra}
"""
    )
    return path


def train_unit(cfg: Path, *args: str) -> tuple[str, Path]:
    """Train the run of `cfg` (a `config`) with `args`: its standard output and run folder."""
    code, out, err = mlp("train", "--config", str(cfg), *args)
    assert code == 0, err
    return out, cfg.parent / "runs" / "unit-400-32-10"


def history_of(run: Path) -> list[dict[str, Any]]:
    """The epochs' records a run's checkpoint.npz holds."""
    history = checkpoint.load(run / "checkpoint.npz", checkpoint=True).meta.history
    assert history is not None
    return history


def mlp(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_settings_that_change_nothing_are_warned_of_and_the_run_goes_on(tmp_path: Path) -> None:
    # One --set switches the schedule; the step schedule's settings stay, and are said unused.
    cfg = config(tmp_path, extra="schedule: {name: step, step_size: 3, gamma: 0.5}")
    switch = ["--set", "schedule.name=cosine", "--set", "training.epochs=1"]
    code, out, err = mlp("train", "--config", str(cfg), *switch, "--json")
    assert code == 0, err
    assert err.splitlines()[:2] == [
        "warning: schedule.step_size is 3, but the cosine schedule does not use it (only step"
        " does), so it changes nothing in this run",
        "warning: schedule.gamma is 0.5, but the cosine schedule does not use it (only step"
        " does), so it changes nothing in this run",
    ]
    assert [json.loads(line)["epoch"] for line in out.splitlines()] == [1]
    code, _, err = mlp("train", "--config", str(cfg), "--set", "training.epochs=1", "--quiet")
    assert code == 0, err
    assert "warning" not in err


# -- what the summary names -------------------------------------------------------------------


def test_the_summary_names_the_curves_it_drew_and_json_stays_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Trainer, "write_curves", WRITE_CURVES)
    runs = tmp_path / "runs"
    for run, flags in (("unit-400-32-10", ()), ("unit-400-32-10-2", ("--quiet",))):
        code, out, err = mlp("train", "--config", str(config(tmp_path)), "--epochs", "2", *flags)
        assert code == 0, err
        assert f"learning curves written to {runs / run / 'curves.png'}\n" in out
        assert (runs / run / "curves.png").is_file()
    code, out, err = mlp("train", "--config", str(config(tmp_path)), "--epochs", "2", "--json")
    assert code == 0, err
    assert [json.loads(line)["epoch"] for line in out.splitlines()] == [1, 2]
    assert (runs / "unit-400-32-10-3" / "curves.png").is_file()


@pytest.mark.parametrize("flag", ["--json", "--quiet"])
def test_a_run_starved_of_cpu_is_reported_on_stderr_with_json_and_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    from mlp_cli import threads, train

    # Every epoch is judged, and the threads waited for a CPU far longer than they ran.
    monkeypatch.setattr(threads, "JUDGED_SECONDS", 0.0)
    waited = iter(range(0, 10**6, 1000))
    monkeypatch.setattr(train, "waiting_seconds", lambda: float(next(waited)))
    monkeypatch.setattr(train, "blas_threads", lambda: 2)
    code, out, err = mlp("train", "--config", str(config(tmp_path)), "--epochs", "2", flag)
    assert code == 0, err
    said = " ".join(err.split())
    assert said.count("other processes are keeping the CPUs busy") == 1, said
    assert "--threads 1" in said
    assert "other processes" not in out
    if flag == "--json":
        assert [json.loads(line)["epoch"] for line in out.splitlines()] == [1, 2]


# -- what "best" means -----------------------------------------------------------------------


def test_the_summary_and_the_table_say_the_best_epoch_has_the_lowest_validation_loss(
    tmp_path: Path,
) -> None:
    code, out, err = mlp("train", "--config", str(config(tmp_path)))
    assert code == 0, err
    history = history_of(tmp_path / "runs" / "unit-400-32-10")
    losses = [r["val_loss"] for r in history]
    accuracies = [r["val_acc"] for r in history]
    best = int(np.argmin(losses)) + 1
    peak = int(np.argmax(accuracies)) + 1
    assert peak != best
    assert max(accuracies) > accuracies[best - 1]

    assert "* new best: lowest validation loss (early_stopping.monitor)" in out
    starred = [int(line.split()[0]) for line in out.splitlines() if line.rstrip().endswith(" *")]
    assert starred == [r["epoch"] for r in history if r["best"]]
    assert starred[-1] == best
    assert (
        f"best epoch {best} (lowest validation loss): validation loss {losses[best - 1]:.4f}, "
        f"accuracy {100 * accuracies[best - 1]:.2f}%; its weights are in model.npz" in out
    )
    assert (
        f"highest validation accuracy {100 * max(accuracies):.2f}% at epoch {peak}; to keep that "
        "epoch instead: --set training.early_stopping.monitor=val_acc" in out
    )

    code, out, _ = mlp("inspect", "--model", str(tmp_path / "runs" / "latest"))
    assert code == 0
    assert re.search(
        rf"best epoch +{best} \(lowest validation loss\): validation loss {losses[best - 1]:.4f}",
        out,
    )


def test_with_min_delta_the_best_epoch_is_described_as_it_was_chosen(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out, run = train_unit(cfg, "--set", "training.early_stopping.min_delta=0.2")
    history = history_of(run)
    losses = [r["val_loss"] for r in history]
    accuracies = [r["val_acc"] for r in history]
    training = checkpoint.load(run / "model.npz").meta.training
    assert training is not None
    assert training.best_epoch
    best = training.best_epoch
    # Later epochs lowered the loss, by less than min_delta: the best is not the lowest.
    assert min(losses) < losses[best - 1]
    means = "lowest validation loss, counting only drops of more than min_delta 0.2"
    assert f"* new best: {means} (early_stopping.monitor)" in out
    assert f"best epoch {best} ({means}): validation loss {losses[best - 1]:.4f}" in out
    code, shown, _ = mlp("inspect", "--model", str(run))
    assert code == 0
    assert re.search(rf"best epoch +{best} \({re.escape(means)}\)", shown)

    # The hint's settings keep the most accurate epoch, as it says.
    peak = int(np.argmax(accuracies)) + 1
    assert max(accuracies) > accuracies[best - 1]
    hint = re.search(rf"at epoch {peak}; to keep that epoch instead: ((?:--set \S+ ?)+)", out)
    assert hint is not None, out
    again = tmp_path / "again"
    sets = hint.group(1).split()
    code, _, err = mlp(
        "train", "--config", str(cfg), "--set", "training.early_stopping.min_delta=0.2",
        "--out", str(again), *sets,
    )  # fmt: skip
    assert code == 0, err
    kept = checkpoint.load(again / "model.npz").meta.training
    assert kept is not None
    assert kept.weights_from_epoch == peak


def test_with_patience_the_hint_promises_only_the_most_accurate_epoch(tmp_path: Path) -> None:
    # Early stopping then follows accuracy, and this run goes on past the epoch named.
    cfg = config(tmp_path)
    stopping = ["--set", "optimizer.lr=0.001", "--set", "training.early_stopping.patience=1"]
    code, out, err = mlp("train", "--config", str(cfg), *stopping)
    assert code == 0, err
    run = tmp_path / "runs" / "unit-400-32-10"
    history = history_of(run)
    accuracies = [r["val_acc"] for r in history]
    peak = int(np.argmax(accuracies)) + 1
    hint = re.search(rf"at epoch {peak}; to keep (.+?): ((?:--set \S+ ?)+)$", out, re.MULTILINE)
    assert hint is not None, out

    again = tmp_path / "again"
    code, _, err = mlp(
        "train", "--config", str(cfg), *stopping, "--out", str(again), *hint[2].split()
    )
    assert code == 0, err
    kept = checkpoint.load(again / "model.npz").meta.training
    rerun = history_of(again)
    assert kept is not None
    assert kept.weights_from_epoch != peak
    assert not hint[1].startswith("that epoch")
    assert hint[1].startswith("the most accurate epoch instead, which with patience can be another")
    assert kept.weights_from_epoch == int(np.argmax([r["val_acc"] for r in rerun])) + 1


def test_monitoring_accuracy_shows_everywhere_best_appears(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out, run = train_unit(cfg, "--set", "training.early_stopping.monitor=val_acc")
    history = history_of(run)
    accuracies = [r["val_acc"] for r in history]
    peak = int(np.argmax(accuracies)) + 1
    assert "* new best: highest validation accuracy (early_stopping.monitor)" in out
    assert f"best epoch {peak} (highest validation accuracy)" in out
    assert "monitor=val_acc" not in out  # no hint to switch: accuracy is monitored
    training = checkpoint.load(run / "model.npz").meta.training
    assert training is not None
    summary = training.model_dump()
    assert (summary["monitor"], summary["best_epoch"]) == ("val_acc", peak)
    code, out, err = mlp("inspect", "--model", str(run))
    assert code == 0, err
    assert re.search(rf"best epoch +{peak} \(highest validation accuracy\)", out)


def test_without_restore_best_the_summary_says_model_npz_holds_the_last_epoch(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path)
    out, run = train_unit(cfg, "--set", "training.early_stopping.restore_best=false")
    training = checkpoint.load(run / "model.npz").meta.training
    assert training is not None
    summary = training.model_dump()
    assert summary["best_epoch"] != 12
    assert f"best epoch {summary['best_epoch']} (lowest validation loss)" in out
    assert "; model.npz holds epoch 12 (restore_best is off)" in out


@pytest.mark.parametrize("epochs", [12, 3])
def test_without_restore_best_the_hint_to_keep_the_most_accurate_epoch_holds(
    tmp_path: Path, epochs: int
) -> None:
    cfg = config(tmp_path)
    code, out, err = mlp(
        "train",
        "--config",
        str(cfg),
        "--epochs",
        str(epochs),
        "--set",
        "training.early_stopping.restore_best=false",
    )
    assert code == 0, err
    history = history_of(tmp_path / "runs" / "unit-400-32-10")
    accuracies = [r["val_acc"] for r in history]
    losses = [r["val_loss"] for r in history]
    peak = int(np.argmax(accuracies)) + 1
    assert max(accuracies) > accuracies[int(np.argmin(losses))]
    line = f"highest validation accuracy {100 * max(accuracies):.2f}% at epoch {peak}; "
    if peak == epochs:  # the last epoch, which model.npz holds already
        assert line + "its weights are in model.npz" in out
    else:  # monitoring accuracy alone would still keep the last epoch
        assert (
            line + "to keep that epoch instead: --set training.early_stopping.monitor=val_acc "
            "--set training.early_stopping.restore_best=true" in out
        )


def test_inspect_says_which_epoch_a_model_npz_without_restore_best_holds(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    code, _, err = mlp(
        "train", "--config", str(cfg), "--set", "training.early_stopping.restore_best=false"
    )
    assert code == 0, err
    run = tmp_path / "runs" / "unit-400-32-10"
    training = checkpoint.load(run / "model.npz").meta.training
    assert training is not None
    assert training.best_epoch != 12
    code, out, _ = mlp("inspect", "--model", str(run))
    assert code == 0
    assert re.search(
        rf"best epoch +{training.best_epoch} \(lowest validation loss\): .*; this file holds epoch "
        r"12's weights",
        " ".join(out.split()),
    )


def test_inspect_says_which_epoch_an_older_model_npz_without_restore_best_holds(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path)
    code, _, err = mlp(
        "train", "--config", str(cfg), "--set", "training.early_stopping.restore_best=false"
    )
    assert code == 0, err
    path = tmp_path / "runs" / "unit-400-32-10" / "model.npz"
    saved = checkpoint.load(path)
    meta = saved.meta.model_dump(exclude_unset=True)
    del meta["training"]["weights_from_epoch"]  # not recorded by older versions of mlp
    checkpoint.save(path, saved.weights, saved.biases, meta)
    assert saved.meta.training is not None
    assert saved.meta.training.best_epoch != 12
    code, out, _ = mlp("inspect", "--model", str(path))
    assert code == 0
    assert re.search(
        rf"best epoch +{saved.meta.training.best_epoch} \(lowest validation loss\): .*; this file "
        r"holds epoch 12's weights",
        " ".join(out.split()),
    )


def test_without_restore_best_an_interrupted_run_does_not_claim_a_model_npz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end_epoch = TrainDisplay.on_epoch_end

    def ctrl_c_after_the_first_epoch(self: TrainDisplay, record: dict[str, object]) -> None:
        end_epoch(self, record)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(TrainDisplay, "on_epoch_end", ctrl_c_after_the_first_epoch)
    cfg = config(tmp_path)
    code, out, err = mlp(
        "train", "--config", str(cfg), "--set", "training.early_stopping.restore_best=false"
    )
    assert code == 130, err
    assert not (tmp_path / "runs" / "unit-400-32-10" / "model.npz").exists()
    assert "best epoch 1 (lowest validation loss)" in out
    assert "its weights are in model.npz" not in out
    assert (
        "; model.npz is saved with the last epoch's weights when training ends (restore_best is "
        "off)" in out
    )


def test_a_loss_too_large_for_its_column_keeps_the_digits_float32_holds(tmp_path: Path) -> None:
    # weights of std 1e6 give losses near 4e13, whose last 7 of 14 digits (and 4 decimals)
    # a float32 loss never held
    code, out, err = mlp(
        "train",
        "--config",
        str(config(tmp_path, extra="")),
        "--set",
        "training.epochs=1",
        "--set",
        "model.init=normal",
        "--set",
        "model.init_scale=1e6",
    )
    assert code == 0, err
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["1"])
    train_loss, val_loss = row[1], row[3]
    assert re.fullmatch(r"\d\.\d{3}e\+\d\d", train_loss), row
    assert re.fullmatch(r"\d\.\d{3}e\+\d\d", val_loss), row
    assert f"validation loss {val_loss}," in " ".join(out.split())


def test_an_unknown_monitor_is_refused(tmp_path: Path) -> None:
    code, _, err = mlp(
        "train", "--config", str(config(tmp_path)), "--set", "training.early_stopping.monitor=acc"
    )
    assert code == 2
    assert "training.early_stopping.monitor" in err
    assert "val_acc" in err
    assert not (tmp_path / "runs").exists()


def test_a_model_file_without_a_monitor_was_picked_by_validation_loss(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    training = {"status": "completed", "epochs_run": 9, "best_epoch": 7}
    training |= {"best_val_accuracy": 0.5, "best_val_loss": 1.25, "seconds": 1.0}
    meta = {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "class_names": [str(d) for d in range(10)],
        "preprocessing": {"input_size": 20, "normalize": None},
        "training": training,  # as files written before the monitor was recorded
    }
    weights = [rng.normal(size=(10, 400)).astype(np.float32)]
    path = checkpoint.save(tmp_path / "old.npz", weights, [np.zeros(10, np.float32)], meta)
    code, out, _ = mlp("inspect", "--model", str(path))
    assert code == 0
    assert re.search(
        r"best epoch +7 \(lowest validation loss\): validation loss 1\.2500, accuracy 50\.00%", out
    )


# -- resuming with more epochs -------------------------------------------------------------------


def test_more_epochs_on_a_finished_cosine_run_warn_that_the_schedule_restarts(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, extra="schedule: {name: cosine}")
    code, _, err = mlp("train", "--config", str(cfg), "--set", "training.epochs=4")
    assert code == 0, err
    run = tmp_path / "runs" / "unit-400-32-10"
    code, _, err = mlp("train", "--resume", str(run), "--set", "training.epochs=6", "--quiet")
    assert code == 0, err
    assert err.startswith("warning: the cosine learning-rate schedule is shaped by training.epochs")
    assert "from 4 to 6" in err
    # Cosine from 0.01: 0 at the end of 4 epochs, 0.01 * (1 + cos(pi * 4/6)) / 2 at epoch 4 of 6.
    assert "after epoch 4 jumps from 0 to 0.0025 " in err
    assert "--set training.epochs=6" in err
    history = history_of(run)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert history[4]["lr"] > history[3]["lr"]  # the saw-tooth the warning announced


def test_more_epochs_on_a_run_that_ended_inside_its_warm_up_do_not_warn(tmp_path: Path) -> None:
    cfg = config(tmp_path, extra="schedule: {name: cosine, warmup_epochs: 2}")
    assert mlp("train", "--config", str(cfg), "--set", "training.epochs=2")[0] == 0
    run = tmp_path / "runs" / "unit-400-32-10"
    code, _, err = mlp("train", "--resume", str(run), "--set", "training.epochs=4", "--quiet")
    assert code == 0, err
    assert "warning" not in err  # its rates so far are those of a 4-epoch run's warm-up
    assert mlp("train", "--config", str(cfg), "--set", "training.epochs=4")[0] == 0
    resumed, whole = (
        checkpoint.load(folder / "checkpoint.npz", checkpoint=True).meta.history
        for folder in (run, tmp_path / "runs" / "unit-400-32-10-2")
    )
    assert resumed is not None
    assert whole is not None
    assert [r["lr"] for r in resumed] == [r["lr"] for r in whole]


@pytest.mark.parametrize("schedule", ["{name: constant}", "{name: step, step_size: 1}"])
def test_more_epochs_on_a_schedule_that_ignores_the_epoch_count_do_not_warn(
    tmp_path: Path, schedule: str
) -> None:
    cfg = config(tmp_path, extra=f"schedule: {schedule}")
    assert mlp("train", "--config", str(cfg), "--set", "training.epochs=2")[0] == 0
    run = tmp_path / "runs" / "unit-400-32-10"
    code, _, err = mlp("train", "--resume", str(run), "--set", "training.epochs=3", "--quiet")
    assert code == 0, err
    assert "warning" not in err


# -- run folders named after the network ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "folder"),
    [
        ("unit-400-32-10", ["model.layers=400-50-10"], "unit-400-50-10"),
        ("unit-400-32-10", ["model.layers=[400, 20, 20, 10]"], "unit-400-20-20-10"),
        ("small", ["model.layers=400-50-10"], "small-400-50-10"),
        ("unit-400-32-10", ["model.layers=400-50-10", "name=mine"], "mine"),
        ("unit-400-32-10", ["training.epochs=1"], "unit-400-32-10"),
    ],
)
def test_the_run_folder_is_named_after_an_overridden_network(
    tmp_path: Path, name: str, overrides: list[str], folder: str
) -> None:
    args = ["train", "--config", str(config(tmp_path, name)), "--set", "training.epochs=1"]
    for override in overrides:
        args += ["--set", override]
    code, out, err = mlp(*args)
    assert code == 0, err
    run = tmp_path / "runs" / folder
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name != "latest"] == [folder]
    assert f"run directory: {run}" in out
    saved = checkpoint.load(run / "model.npz")
    assert saved.meta.config is not None
    assert saved.meta.config.model_dump()["name"] == folder
    assert "-".join(map(str, saved.layers)) in folder or folder == "mine"


def test_a_run_whose_first_checkpoint_cannot_be_saved_leaves_latest_on_the_run_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk, or `ulimit -f`, as the checkpoint before the first step is saved: nothing
    # was trained, so no folder of the run is left, and `mlp evaluate` still finds the last one.
    cfg = str(config(tmp_path))
    code, _, err = mlp("train", "--config", cfg, "--set", "training.epochs=1", "--quiet")
    assert code == 0, err
    runs = tmp_path / "runs"
    before = os.readlink(runs / "latest")

    def too_large(*args: object, **arrays: object) -> None:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(np, "savez", too_large)
    code, _, err = mlp("train", "--config", cfg, "--set", "training.epochs=1", "--quiet")
    assert code == 1
    assert "checkpoint.npz" in err
    assert "`ulimit -f`" in err
    assert sorted(p.name for p in runs.iterdir()) == sorted(["latest", before])
    assert os.readlink(runs / "latest") == before


def _failing_after_epoch_1(code: int) -> Callable[..., None]:
    """`np.savez` failing with OSError ``code`` at the checkpoint after epoch 2 (the third:
    the start's, epoch 1's, then epoch 2's), so that epoch 1's is the last one saved."""
    real, saves = np.savez, []

    def savez(file: IO[bytes], **arrays: npt.NDArray[np.generic]) -> None:
        if any(name.startswith("optimizer/") for name in arrays):
            saves.append(file)
            if len(saves) == 3:
                raise OSError(code, os.strerror(code))
        real(file, **arrays)  # type: ignore[arg-type]  # as checkpoint.save calls it

    return savez


def test_a_run_stopped_by_a_full_disk_says_how_to_resume_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Else it said only "then run the command again", which starts a new run from nothing
    # beside this one, whose first epoch is saved.
    cfg = str(config(tmp_path))
    real = np.savez
    monkeypatch.setattr(np, "savez", _failing_after_epoch_1(errno.ENOSPC))
    code, _, err = mlp("train", "--config", cfg, "--set", "training.epochs=3", "--quiet")
    said = " ".join(err.split())
    run = tmp_path / "runs" / "unit-400-32-10"
    assert code == 1
    assert f"could not write '{run / 'checkpoint.npz'}': the disk is full" in said
    assert said.endswith(
        f"Training stopped; the run resumes from its checkpoint after epoch 1 with: "
        f"mlp train --resume {run}"
    )
    monkeypatch.setattr(np, "savez", real)  # space was freed
    code, _, err = mlp("train", "--resume", str(run), "--quiet")
    assert code == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in run.parent.iterdir()) == ["latest", run.name]


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "Free some space or choose another place, then resume the run."),
        (errno.EFBIG, "Raise the limit on the size of files (`ulimit -f`), then resume the run."),
    ],
)
def test_a_run_stopped_by_a_failed_write_says_to_resume_it_not_to_run_the_command_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, advice: str
) -> None:
    # "then run the command again" starts another run from nothing beside this one, whose
    # first epoch is saved: the advice contradicted the way to resume that follows it.
    cfg = str(config(tmp_path))
    monkeypatch.setattr(np, "savez", _failing_after_epoch_1(code))
    status, _, err = mlp("train", "--config", cfg, "--set", "training.epochs=3", "--quiet")
    said = " ".join(err.split())
    assert status == 1
    assert "run the command again" not in said
    assert f"{advice} Training stopped; the run resumes from its checkpoint after epoch 1" in said


def _full_at_the_end(status: str) -> Callable[..., None]:
    """`np.savez` with the disk full for the model file that saves a run's end as
    ``status`` (its checkpoint, which holds the optimizer, still fits)."""
    real = np.savez

    def savez(file: IO[bytes], **arrays: npt.NDArray[np.generic]) -> None:
        ends = f'"status": "{status}"' in str(arrays[checkpoint.METADATA_KEY])
        if ends and not any(name.startswith("optimizer/") for name in arrays):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(file, **arrays)  # type: ignore[arg-type]  # as checkpoint.save calls it

    return savez


def test_a_run_whose_end_could_not_be_saved_resumes_as_it_says_and_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk full as the last epoch's run end writes model.npz: the error says to resume
    # from the checkpoint after that epoch, which was refused as a run with no epoch left.
    cfg = str(config(tmp_path))
    real = np.savez
    monkeypatch.setattr(np, "savez", _full_at_the_end("completed"))
    code, _, err = mlp("train", "--config", cfg, "--set", "training.epochs=2", "--quiet")
    run = tmp_path / "runs" / "unit-400-32-10"
    assert code == 1
    assert f"checkpoint after epoch 2 with: mlp train --resume {run}" in " ".join(err.split())
    monkeypatch.setattr(np, "savez", real)  # space was freed
    code, _, err = mlp("train", "--resume", str(run), "--quiet")
    assert code == 0, err
    for name in ("model.npz", "checkpoint.npz"):
        training = checkpoint.load(run / name).meta.training
        assert training is not None
        assert (training.status, training.epochs_run) == ("completed", 2)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    code, _, err = mlp("train", "--resume", str(run), "--quiet")  # now it has ended
    assert code == 2
    assert "training.epochs must be more than 2" in " ".join(err.split())


def test_a_run_stopped_early_whose_end_could_not_be_saved_resumes_as_it_says_and_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk full as early stopping's run end writes model.npz: the error says to resume,
    # which was refused as a run that early stopping had ended, its end still unsaved.
    cfg = str(config(tmp_path))
    real = np.savez
    monkeypatch.setattr(np, "savez", _full_at_the_end("early_stopped"))
    patience = ("--set", "training.early_stopping.patience=1")
    code, _, err = mlp("train", "--config", cfg, *patience, "--quiet")
    run = tmp_path / "runs" / "unit-400-32-10"
    assert code == 1
    assert f"with: mlp train --resume {run}" in " ".join(err.split())
    epochs = len((run / "metrics.jsonl").read_text().splitlines())
    assert epochs < 12  # stopped early
    monkeypatch.setattr(np, "savez", real)  # space was freed
    code, _, err = mlp("train", "--resume", str(run), "--quiet")
    assert code == 0, err
    for name in ("model.npz", "checkpoint.npz"):
        training = checkpoint.load(run / name).meta.training
        assert training is not None
        assert (training.status, training.epochs_run) == ("early_stopped", epochs)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == epochs  # none trained
    code, _, err = mlp("train", "--resume", str(run), "--quiet")  # now it has ended
    assert code == 2
    assert f"ended by early stopping after epoch {epochs}" in " ".join(err.split())


def test_a_tilde_in_out_or_output_dir_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    path = str(config(tmp_path))
    code, _, err = mlp("train", "--config", path, "--epochs", "1", "--out=~/x")
    assert code == 0, err
    assert (home / "x" / "model.npz").is_file()
    code, _, err = mlp("train", "--config", path, "--epochs", "1", "--set", "output.dir=~/runs")
    assert code == 0, err
    assert (home / "runs" / "unit-400-32-10" / "model.npz").is_file()
    assert list(here.iterdir()) == []


def test_the_threads_option_is_the_runs_training_threads_and_a_resume_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)  # 2 threads, as set, anywhere
    path = config(tmp_path)
    path.write_text(path.read_text().replace("batch_size: 16}", "batch_size: 16, threads: 1}"))
    code, out, err = mlp("train", "--config", str(path), "--epochs", "1", "--threads", "2")
    assert code == 0, err
    assert "threads: 2 (as set)" in out
    run_dir = tmp_path / "runs" / "unit-400-32-10"
    assert "  threads: 2\n" in (run_dir / "config.yaml").read_text()
    code, out, err = mlp("train", "--resume", str(run_dir), "--epochs", "2")
    assert code == 0, err
    assert "threads: 2 (as set)" in out
