"""`mlp train --resume` through the command line: what may change on resume, checkpoints
that belong to another run, damaged resume state, and options that make no sense with it.

Every refusal must come before anything is written: the run folder stays byte for byte as
it was, and a plain `--resume` afterwards still continues the run.  Training data is the
small synthetic set of `test_train`, handed to the command in place of MNIST.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import locks
import numpy as np
import pytest
from signals import signal_when
from test_train import make_config, make_splits, mnist_cache, without_timing  # noqa: F401
from typer.testing import CliRunner

from mlp_cli import checkpoint, cli, data, train
from mlp_cli.config import load_config
from mlp_cli.errors import CheckpointError
from mlp_cli.train import Trainer

runner = CliRunner()


@pytest.fixture(autouse=True)
def synthetic_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command trains on `make_splits()` instead of loading MNIST; no curves drawn."""
    monkeypatch.setattr(cli, "_load_training_data", lambda cfg, quiet: make_splits())
    monkeypatch.setattr(Trainer, "write_curves", lambda self: None)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args))
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    return result.exit_code, " ".join(output.split())  # rich wraps long messages


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def interrupted_run(tmp_path: Path, name: str, after_steps: int = 4, **changes: Any) -> Path:
    """A run stopped by Ctrl-C after ``after_steps`` steps (mid-epoch for small counts)."""
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after_steps

    cfg = make_config(tmp_path, **changes)
    result = train.start(cfg, make_splits(), tmp_path / name).run(should_stop=stop)
    assert result.status == "interrupted"
    return result.run_dir


FROZEN = {
    "training.batch_size=32": "training.batch_size",
    "data.validation_size=10": "data.validation_size",
    "training.seed=7": "training.seed",
    "model.hidden_activation=tanh": "model.hidden_activation",
    "model.layers=400-20-10": "model.layers",
    "optimizer.lr=0.5": "optimizer.lr",
    "optimizer.name=sgd": "optimizer.name",
    "augment.enabled=true": "augment.enabled",
}


@pytest.mark.parametrize("override", sorted(FROZEN))
def test_an_override_resume_cannot_apply_is_refused_before_anything_is_written(
    tmp_path: Path, override: str
) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--set", override, "--quiet")

    assert code == 2
    assert FROZEN[override] in message
    assert "training.epochs" in message  # says what can change
    assert snapshot(tmp_path) == before
    code, _ = run("train", "--resume", str(run_dir), "--quiet")  # the run is not broken
    assert code == 0


def test_a_misspelt_override_on_resume_gets_the_configs_own_message(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    code, message = run("train", "--resume", str(run_dir), "--set", "trainig.epochs=5")
    assert code == 2
    assert "--set trainig.epochs=5: unknown key 'trainig'; did you mean 'training'?" in message


def test_resume_after_a_refused_override_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = train.start(make_config(tmp_path), make_splits(), tmp_path / "A").run()
    run_dir = interrupted_run(tmp_path, "B", after_steps=7)
    assert run("train", "--resume", str(run_dir), "--set", "training.batch_size=8")[0] == 2

    assert run("train", "--resume", str(run_dir), "--quiet")[0] == 0

    for name in (checkpoint.MODEL_FILE, train.CHECKPOINT_FILE):
        a = checkpoint.load(tmp_path / "A" / name, checkpoint=True)
        b = checkpoint.load(run_dir / name, checkpoint=True)
        for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
            assert x.tobytes() == y.tobytes()
    lines = (run_dir / train.METRICS_FILE).read_text().splitlines()
    assert without_timing([json.loads(line) for line in lines]) == without_timing(whole.history)


@pytest.mark.parametrize(
    "overrides",
    [
        ["training.epochs=5"],
        ["schedule.name=cosine", "schedule.min_lr=1e-4"],
        ["training.early_stopping.patience=2", "training.early_stopping.min_delta=0.01"],
        ["training.threads=1"],
        ["data.mirror=http://127.0.0.1:9/"],
        ["training.seed=0", "training.batch_size=16"],  # the values the run already has
    ],
    ids=lambda o: "+".join(o),
)
def test_keys_that_may_change_on_resume_are_applied_and_kept(
    tmp_path: Path, overrides: list[str]
) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    expected = train.resume_config(run_dir, overrides)  # reads only
    args = [a for o in overrides for a in ("--set", o)]

    code, message = run("train", "--resume", str(run_dir), *args, "--quiet")

    assert code == 0, message
    assert load_config(run_dir / train.CONFIG_FILE) == expected
    training = checkpoint.load(run_dir / train.CHECKPOINT_FILE).meta.training
    assert training is not None
    assert training.status in ("completed", "early_stopped")


@pytest.mark.parametrize(
    "other", [{"training": {"seed": 1}}, {"optimizer": {"name": "adam", "lr": 0.02}}]
)
def test_a_checkpoint_from_another_run_is_refused(tmp_path: Path, other: dict[str, Any]) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    foreign = interrupted_run(tmp_path, "other", **other)
    shutil.copy(foreign / train.CHECKPOINT_FILE, run_dir / train.CHECKPOINT_FILE)
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert str(run_dir / train.CHECKPOINT_FILE) in message
    assert "another run" in message
    key = "training.seed" if "training" in other else "optimizer.lr"
    assert key in message
    assert snapshot(tmp_path) == before


def test_a_model_file_in_place_of_the_checkpoint_is_refused_saying_what_to_do(
    tmp_path: Path,
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # past epoch 1: model.npz saved
    shutil.copy(run_dir / checkpoint.MODEL_FILE, run_dir / train.CHECKPOINT_FILE)
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert f"'{run_dir / train.CHECKPOINT_FILE}' has damaged resume state" in message
    assert "a model file, not a checkpoint" in message
    assert "put back an intact copy of the checkpoint" in message
    assert snapshot(tmp_path) == before


def test_a_missing_model_npz_of_a_run_that_keeps_its_best_epoch_is_refused(
    tmp_path: Path,
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # past epoch 1, its best so far
    (run_dir / checkpoint.MODEL_FILE).unlink()
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert f"'{run_dir / checkpoint.MODEL_FILE}', which holds the weights of the run's best" in (
        message
    )
    assert "is missing" in message
    assert snapshot(tmp_path) == before


def test_a_model_npz_from_another_run_is_refused(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # past epoch 1, its best so far
    foreign = interrupted_run(tmp_path, "other", after_steps=8, training={"seed": 1})
    shutil.copy(foreign / checkpoint.MODEL_FILE, run_dir / checkpoint.MODEL_FILE)
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert str(run_dir / checkpoint.MODEL_FILE) in message
    assert "another run" in message
    assert "training.seed" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("config", [None, {"optimizer": {"name": "bogus"}}])
def test_a_model_npz_that_cannot_say_its_run_is_refused_as_a_model_not_a_checkpoint(
    tmp_path: Path, config: dict[str, Any] | None
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # past epoch 1, its best so far
    model = run_dir / checkpoint.MODEL_FILE
    saved = checkpoint.load(model)
    meta = saved.meta.model_dump(mode="json", exclude_unset=True)
    meta["config"] = config
    checkpoint.save(model, saved.weights, saved.biases, {k: v for k, v in meta.items() if v})
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert f"'{model}'" in message
    assert "resume state" not in message
    assert "copy of the checkpoint" not in message
    assert f"Put back this run's own {checkpoint.MODEL_FILE}, or start a new run." in message
    assert ".." not in message  # the config's own message ends a clause here
    assert snapshot(tmp_path) == before


def test_a_model_npz_of_an_earlier_epoch_than_the_best_is_refused(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # past epoch 1, its best so far
    model = run_dir / checkpoint.MODEL_FILE
    epoch_1 = model.read_bytes()
    assert run("train", "--resume", str(run_dir), "--quiet")[0] == 0
    training = checkpoint.load(model).meta.training
    assert training is not None
    assert training.weights_from_epoch == training.best_epoch != 1
    model.write_bytes(epoch_1)  # an older copy put back
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--set", "training.epochs=5")

    assert code == 1
    assert str(model) in message
    assert f"epoch 1's weights, not those of the run's best epoch {training.best_epoch}" in message
    assert snapshot(tmp_path) == before


def test_inspect_of_a_checkpoint_saved_inside_an_epoch_says_its_weights_are_not_the_best(
    tmp_path: Path,
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # inside epoch 2; epoch 1 the best

    code, message = run("inspect", "--model", str(run_dir / train.CHECKPOINT_FILE))

    assert code == 0
    assert "best epoch 1 (lowest validation loss)" in message
    assert "; this file holds weights from inside epoch 2" in message


def test_an_interrupted_run_counts_the_time_of_the_epoch_it_stopped_inside(
    tmp_path: Path,
) -> None:
    calls = {"n": 0}

    def stop() -> bool:  # asked before each step, inside the epoch's time
        calls["n"] += 1
        time.sleep(0.01)  # so that epoch 2's two steps take time that rounding keeps
        return calls["n"] > 8  # inside epoch 2

    trainer = train.start(make_config(tmp_path), make_splits(), tmp_path / "R")
    result = trainer.run(should_stop=stop)
    assert result.status == "interrupted"
    saved = checkpoint.load(result.run_dir / train.CHECKPOINT_FILE, checkpoint=True)
    resume, training = saved.meta.resume, saved.meta.training
    assert resume is not None
    assert training is not None
    assert resume["epoch"] == 1
    assert resume["epoch_time"] > 0  # the steps of epoch 2, which resuming goes on from
    spent = resume["elapsed"] + resume["epoch_time"]
    assert training.seconds == round(spent, 3)  # what mlp inspect says
    assert result.elapsed + result.unfinished == spent  # "interrupted after 1 epoch in ..."


def test_a_checkpoint_in_place_of_model_npz_is_refused(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # inside epoch 2; epoch 1 the best
    shutil.copy(run_dir / train.CHECKPOINT_FILE, run_dir / checkpoint.MODEL_FILE)
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert str(run_dir / checkpoint.MODEL_FILE) in message
    assert "a checkpoint's weights, not those of the run's best epoch 1" in message
    assert snapshot(tmp_path) == before


def test_a_config_edited_since_training_in_a_folder_with_a_line_break_is_named_on_one_line(
    tmp_path: Path,
) -> None:
    run_dir = interrupted_run(tmp_path, "R\nS")
    (tmp_path / checkpoint.LATEST).unlink()  # a link names no folder with a line break
    config = run_dir / train.CONFIG_FILE
    config.write_text(config.read_text().replace("seed: 0", "seed: 5"))

    result = runner.invoke(cli.app, ["train", "--resume", str(run_dir), "--quiet"])

    assert result.exit_code == 2, result.output
    assert "R\nS" not in result.stderr
    shown = str(run_dir).replace("\n", "\\n")
    assert f"'{shown}/config.yaml' was edited after the run saved '{shown}/checkpoint.npz'" in (
        result.stderr.replace("\n", "")  # rich folds long lines
    )


@pytest.mark.parametrize(
    ("setting", "edited", "key"),
    [("seed: 0", "seed: 5", "training.seed"), ("lr: 0.01", "lr: 0.02", "optimizer.lr")],
)
def test_a_config_edited_since_training_is_named_as_edited_with_what_to_do(
    tmp_path: Path, setting: str, edited: str, key: str
) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    config = run_dir / train.CONFIG_FILE
    trained = config.read_text()
    assert trained.count(setting) == 1
    config.write_text(trained.replace(setting, edited))
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 2  # a configuration mistake, as the same change through --set is
    assert f"'{config}' was edited after the run saved '{run_dir / train.CHECKPOINT_FILE}'" in (
        message
    )
    assert key in message
    assert "another run" not in message
    assert f"mlp train --config {config}" in message
    assert snapshot(tmp_path) == before

    config.write_text(trained)  # the trained values put back, as the message says
    code, message = run("train", "--resume", str(run_dir), "--quiet")
    assert code == 0, message


def test_an_edited_config_and_the_same_change_through_set_are_refused_with_one_code(
    tmp_path: Path,
) -> None:
    # Both are the user's change of a setting resuming cannot change: the README's code for
    # a configuration mistake, whichever way it was made.
    edited, overridden = interrupted_run(tmp_path, "A"), interrupted_run(tmp_path, "B")
    config = edited / train.CONFIG_FILE
    config.write_text(config.read_text().replace("lr: 0.01", "lr: 0.02"))

    by_edit, message = run("train", "--resume", str(edited), "--quiet")
    by_set, _ = run("train", "--resume", str(overridden), "--set", "optimizer.lr=0.02")

    assert "was edited after the run saved" in message
    assert by_set == 2
    assert by_edit == by_set


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_run_file_that_is_no_regular_file_is_refused_with_what_to_do_about_it(
    tmp_path: Path, kind: str
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=8)  # past epoch 1: model.npz saved
    model = run_dir / checkpoint.MODEL_FILE
    if kind == "folder":
        model.unlink()
        model.mkdir()
    else:
        model.rename(tmp_path / "kept.npz")
        model.symlink_to(tmp_path / "kept.npz")
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 2
    assert f"cannot write the run's file '{model}'" in message
    assert "choose another path" not in message  # the run's files are named by mlp
    assert "mlp saves the run's model.npz at that name" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["folder", "user's picture"])
def test_a_curves_png_mlp_may_not_replace_is_refused_with_what_resume_can_do(
    tmp_path: Path, kind: str
) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    curves = run_dir / train.CURVES_FILE
    if kind == "folder":
        curves.mkdir()
    else:
        curves.write_bytes(b"\x89PNG\r\n\x1a\n mine")
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 2
    assert str(curves) in message
    assert "mlp draws the run's curves.png at that name, so move it away, then resume" in message
    assert "choose another name" not in message  # a resumed run has no other name for it
    assert "give the path" not in message
    assert snapshot(tmp_path) == before


def test_a_latest_link_mlp_did_not_make_is_refused_with_what_resume_can_do(
    tmp_path: Path,
) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    (tmp_path / "mine").mkdir()
    latest = tmp_path / checkpoint.LATEST
    latest.unlink()
    latest.symlink_to(tmp_path / "mine")
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 2
    assert f"'{latest}' is a link to something other than a run folder beside it" in message
    assert "rename or move that link, then resume the run again" in message
    assert "--out" not in message  # which --resume refuses, as it does output.dir
    assert snapshot(tmp_path) == before
    assert os.readlink(latest) == str(tmp_path / "mine")


@pytest.mark.parametrize("option", [["--config", "configs/x.yaml"], ["--out", "elsewhere"]])
def test_resume_with_config_or_out_is_an_error(tmp_path: Path, option: list[str]) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), *option)

    assert code == 2
    assert option[0] in message
    assert "--resume" in message
    assert snapshot(tmp_path) == before


def _damage(path: Path, change: str) -> None:
    """Rewrite the checkpoint at ``path`` with one part of its resume state broken."""
    saved = checkpoint.load(path, checkpoint=True)
    meta = {
        k: v
        for k, v in saved.meta.model_dump(mode="json", exclude_unset=True).items()
        if k not in ("format", "format_version")
    }
    extras = dict(saved.extras)
    resume = meta["resume"]
    if change == "perm missing":
        del extras["resume/perm"]
    elif change == "perm short":
        extras["resume/perm"] = extras["resume/perm"][:-3]
    elif change == "perm repeats":
        extras["resume/perm"] = np.zeros_like(extras["resume/perm"])
    elif change == "perm 2-d":
        extras["resume/perm"] = extras["resume/perm"].reshape(2, -1)
    elif change == "history short":
        meta["history"] = meta["history"][:-1]
    elif change == "history record field":
        meta["history"][0]["train_loss"] = "low"
    elif change == "history not a list":
        meta["history"] = {"epoch": 1}
    elif change == "optimizer array missing":
        del extras["optimizer/m"]
    elif change == "optimizer array ill-shaped":
        extras["optimizer/v"] = extras["optimizer/v"][:5]
    elif change == "optimizer step count":
        extras["optimizer/t"] = np.array(int(extras["optimizer/t"]) + 3)
    elif change == "step past the epoch":
        resume["step"] = 10_000
    elif change == "epoch as text":
        resume["epoch"] = "one"
    elif change == "rng state":
        resume["shuffle_rng"] = {"bit_generator": "MT19937", "state": 3}
    elif change == "resume entry missing":
        del resume["best_loss"]
    elif change == "rng state negative":
        resume["shuffle_rng"]["state"]["state"] = -1
    elif change == "rng state too large":
        resume["noise_rng"] = {"bit_generator": "PCG64", "state": {"state": 2**200, "inc": 3}}
    elif change == "rng state without its counters":
        del resume["noise_rng"]["has_uint32"]
    elif change == "history val_loss NaN":
        meta["history"][0]["val_loss"] = float("nan")
    elif change == "history val_acc above 1":
        meta["history"][0]["val_acc"] = 1.5
    elif change == "optimizer mean NaN":
        extras["optimizer/m"] = extras["optimizer/m"].copy()
        extras["optimizer/m"][0] = np.nan
    elif change == "optimizer second moment negative":
        extras["optimizer/v"] = extras["optimizer/v"].copy()
        extras["optimizer/v"][0] = -1
    elif change == "optimizer step count negative":
        extras["optimizer/t"] = np.array(-5)
    elif change == "optimizer step count fractional":
        extras["optimizer/t"] = np.array(float(extras["optimizer/t"]) + 0.5)
    elif change == "elapsed absurd":
        resume["elapsed"] = 1e308
    elif change == "bad epochs past the epochs run":
        resume["bad_epochs"] = 10**6
    checkpoint.save(path, saved.weights, saved.biases, meta, extras)


DAMAGES = [
    "perm missing",
    "perm short",
    "perm repeats",
    "perm 2-d",
    "history short",
    "history not a list",
    "history record field",
    "optimizer array missing",
    "optimizer array ill-shaped",
    "optimizer step count",
    "step past the epoch",
    "epoch as text",
    "rng state",
    "resume entry missing",
]


@pytest.mark.parametrize("change", DAMAGES)
def test_damaged_resume_state_is_a_clear_error_naming_the_file(tmp_path: Path, change: str) -> None:
    # Stopped in the second epoch, so there is a history and a shuffling order to damage.
    run_dir = interrupted_run(tmp_path, "R", after_steps=96 // 16 + 2)
    _damage(run_dir / train.CHECKPOINT_FILE, change)
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1
    assert str(run_dir / train.CHECKPOINT_FILE) in message
    assert "damaged resume state" in message
    assert snapshot(tmp_path) == before


# Damage that numpy or JSON would take without complaint (or with a raw exception), and the
# words the message must use to say what is wrong.
NAMED_DAMAGES = {
    "rng state negative": "resume.shuffle_rng is not a random-generator state",
    "rng state too large": "resume.noise_rng is not a random-generator state",
    "rng state without its counters": "resume.noise_rng is not a random-generator state",
    "history val_loss NaN": "history record 1 has val_loss = nan",
    "history val_acc above 1": "history record 1 has val_acc = 1.5",
    "optimizer mean NaN": "optimizer state 'm' holds values that are not finite",
    "optimizer second moment negative": "optimizer state 'v' holds negative values",
    "optimizer step count negative": "optimizer step count is -5, expected one whole number",
    "optimizer step count fractional": ".5, expected one whole number",
    "elapsed absurd": "resume.elapsed is 1e+308 seconds, more than ten years",
    "bad epochs past the epochs run": "resume.bad_epochs is 1,000,000, more than the 1 epoch run",
}


@pytest.mark.parametrize("change", sorted(NAMED_DAMAGES))
def test_damaged_values_in_resume_state_are_named_before_anything_runs(
    tmp_path: Path, change: str
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=96 // 16 + 2)
    _damage(run_dir / train.CHECKPOINT_FILE, change)
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--quiet")

    assert code == 1, message
    assert str(run_dir / train.CHECKPOINT_FILE) in message
    assert "damaged resume state" in message
    assert NAMED_DAMAGES[change] in message, message
    assert "OverflowError" not in message
    assert "array(" not in message
    assert snapshot(tmp_path) == before


def test_resume_with_fewer_epochs_than_run_says_how_many_have_run(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=3 * (96 // 16) + 2, training={"epochs": 6})
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir), "--set", "training.epochs=2")

    assert code == 2
    assert "has run 3 epochs, so training.epochs must be more than 3, not 2" in message
    assert snapshot(tmp_path) == before


def test_resume_of_a_run_of_one_epoch_says_1_epoch(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=96 // 16 + 2, training={"epochs": 6})

    code, message = run("train", "--resume", str(run_dir), "--set", "training.epochs=1")

    assert code == 2
    assert "has run 1 epoch, so training.epochs must be more than 1;" in message


def _signal_training(
    tmp_path: Path, cache: Path, signum: int, epochs: int, **options: Any
) -> tuple[int, str, str]:
    """`mlp train` of a small 784-10 network on MNIST into tmp_path/run, sent ``signum``
    once its first checkpoint is saved (`signal_when`, with ``options``)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\ndata: {validation_size: 1000}\nmodel: {layers: 784-10}\n"
        f"optimizer: {{name: sgd, lr: 0.05}}\ntraining: {{epochs: {epochs}, batch_size: 32}}\n"
    )
    run_dir = tmp_path / "run"
    env = {**os.environ, data.DATA_DIR_ENV: str(cache)}
    env.pop("MLP_DEBUG", None)
    return signal_when(
        ["train", "--config", str(config), "--out", str(run_dir), "--quiet"],
        lambda: (run_dir / train.CHECKPOINT_FILE).exists(),
        signum,
        cwd=tmp_path,
        env=env,
        waiting_for="training's first checkpoint",
        **options,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_and_sighup_stop_training_like_ctrl_c(
    tmp_path: Path,
    mnist_cache: Path,  # noqa: F811
    signum: int,
) -> None:
    run_dir = tmp_path / "run"
    code, stdout, stderr = _signal_training(tmp_path, mnist_cache, signum, 50, settle=1.0)

    assert code == 128 + signum, stderr
    assert "Traceback" not in stdout + stderr
    assert "--resume" in stderr
    saved = checkpoint.load(run_dir / train.CHECKPOINT_FILE, checkpoint=True)
    assert saved.meta.training is not None
    assert saved.meta.training.status == "interrupted"
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum", [signal.SIGHUP, signal.SIGINT], ids=["HUP under nohup", "INT under a shell's &"]
)
def test_a_signal_ignored_when_training_started_stays_ignored(
    tmp_path: Path,
    mnist_cache: Path,  # noqa: F811
    signum: int,
) -> None:
    run_dir = tmp_path / "run"
    code, stdout, stderr = _signal_training(tmp_path, mnist_cache, signum, 4, ignored=[signum])

    assert code == 0, stderr
    assert "interrupted" not in stdout + stderr
    epochs = [r["epoch"] for r in train.read_metrics(train.find_metrics(run_dir))]
    assert epochs == [1, 2, 3, 4]


def test_the_checkpoint_records_the_threads_that_resume_with_auto_keeps(tmp_path: Path) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        run_dir = interrupted_run(tmp_path, "R")
    saved = train.load_checkpoint(run_dir)
    assert train.threads_so_far(saved) == 1
    assert saved.meta.training is not None
    assert saved.meta.training.threads == 1
    with pytest.raises(CheckpointError, match="nowhere"):
        train.load_checkpoint(tmp_path / "nowhere")


def _loop_state() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The resume state and history of a run one epoch and two steps of 16 in."""
    rng = np.random.default_rng(0).bit_generator.state
    resume = {
        **vars(train.TrainState(epoch=1, step=2, seen=32)),
        "best_loss": 0.3,
        "best_epoch": 1,
        "shuffle_rng": rng,
        "noise_rng": json.loads(json.dumps(rng)),
    }
    del resume["history"]
    record = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.5, "val_loss": 0.4}
    return resume, [{**record, "val_acc": 0.6, "lr": 0.1, "time": 1.0, "best": True}]


def test_an_intact_loop_state_passes_the_resume_schema() -> None:
    state = checkpoint.read_resume(Path("c.npz"), *_loop_state())
    assert (state.epoch, state.step, state.seen) == (1, 2, 32)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda r, h: r.pop("step"), "'resume' lacks step"),
        (lambda r, h: r.update(spare=1), "'resume' has the unknown entry spare"),
        (lambda r, h: r.update(loss_sum=-1.0), "resume.loss_sum is -1.0"),
        (lambda r, h: r.update(best_accuracy=1.5), "resume.best_accuracy is 1.5"),
        (lambda r, h: r.update(epoch=True), "resume.epoch is True, expected a whole number"),
        (
            lambda r, h: r["noise_rng"].update(bit_generator="MT19937"),
            "resume.noise_rng is not a random-generator state: it has bit_generator = 'MT19937'",
        ),
        (
            lambda r, h: r["shuffle_rng"].update(uinteger=2**32),
            "resume.shuffle_rng is not a random-generator state: it has uinteger = 4294967296",
        ),
        (
            lambda r, h: r["shuffle_rng"]["state"].update(state=0, inc=0),
            "resume.shuffle_rng is not a random-generator state: it has state.inc = 0",
        ),
        (lambda r, h: h[0].pop("lr"), "history record 1 lacks lr"),
        (lambda r, h: h[0].update(time=float("nan")), "history record 1 has time = nan"),
        (lambda r, h: h[0].update(epoch=2), "history record 1 is not the record of epoch 1"),
        (lambda r, h: h.append(dict(h[0])), "one record per finished epoch (1), found 2"),
    ],
)
def test_the_resume_schema_names_the_damaged_field(damage: Any, words: str) -> None:
    resume, history = _loop_state()
    damage(resume, history)

    with pytest.raises(CheckpointError, match="damaged resume state") as caught:
        checkpoint.read_resume(Path("c.npz"), resume, history)

    assert words in str(caught.value), caught.value


def test_an_older_runs_infinite_validation_loss_is_still_resumable() -> None:
    resume, history = _loop_state()
    history[0]["val_loss"] = float("inf")

    assert checkpoint.read_resume(Path("c.npz"), resume, history).epoch == 1


def test_resuming_a_run_that_early_stopping_ended_is_refused_with_how_to_go_on(
    tmp_path: Path,
) -> None:
    # min_delta this large: only the first epoch improves, so patience 1 ends it at epoch 2.
    stopping = {"patience": 1, "min_delta": 100.0}
    cfg = make_config(tmp_path, training={"epochs": 6, "early_stopping": stopping})
    run_dir = train.start(cfg, make_splits(), tmp_path / "R").run().run_dir
    before = snapshot(tmp_path)

    code, message = run("train", "--resume", str(run_dir))

    assert code == 2
    assert "ended by early stopping after epoch 2" in message
    assert "--set training.early_stopping.patience=2" in message
    assert snapshot(tmp_path) == before
    patience = "training.early_stopping.patience=3"
    code, message = run("train", "--resume", str(run_dir), "--set", patience)
    assert code == 0, message
    epochs = [r["epoch"] for r in train.read_metrics(train.find_metrics(run_dir))]
    assert epochs == [1, 2, 3, 4]  # two more bad epochs spend the raised patience


def test_a_patience_set_on_resume_that_is_spent_does_not_say_the_run_stopped_early(
    tmp_path: Path,
) -> None:
    # min_delta this large: only the first epoch improves; without patience the run goes on.
    stopping = {"min_delta": 100.0}
    cfg = make_config(tmp_path, training={"epochs": 3, "early_stopping": stopping})
    run_dir = train.start(cfg, make_splits(), tmp_path / "R").run().run_dir
    before = snapshot(tmp_path)

    patience = "training.early_stopping.patience=2"
    code, message = run("train", "--resume", str(run_dir), "--epochs", "5", "--set", patience)

    assert code == 2
    assert "ended by early stopping" not in message
    assert "did not stop early, but the patience now set would have ended it after epoch 3" in (
        message
    )
    assert "--set training.early_stopping.patience=4" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "command",
    [["evaluate"], ["predict", "digit.png"], ["inspect"], ["show", "hidden"]],
    ids=["evaluate", "predict", "inspect", "show hidden"],
)
def test_a_run_stopped_in_its_first_epoch_has_no_model_yet(
    tmp_path: Path, command: list[str]
) -> None:
    run_dir = interrupted_run(tmp_path, "R", after_steps=2)
    assert not (run_dir / checkpoint.MODEL_FILE).exists()

    code, message = run(*command, "--model", str(run_dir))

    assert code == 2, message
    assert f"the run in '{run_dir}' has no model.npz yet: no epoch" in message
    assert f"mlp train --resume {run_dir}" in message


def test_a_second_resume_of_a_run_being_trained_is_refused_and_a_killed_one_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The data `sweep_child.py` gives the `mlp` it runs.
    splits = make_splits(n_train=2048, n_val=256)
    monkeypatch.setattr(cli, "_load_training_data", lambda cfg, quiet: splits)
    cfg = make_config(tmp_path, data={"validation_size": 256}, training={"epochs": 1})
    run_dir = train.start(cfg, splits, tmp_path / "R").run().run_dir
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": str(here.parent)}
    child = [sys.executable, str(here / "sweep_child.py"), "train", "--resume", str(run_dir)]
    proc = subprocess.Popen(
        [*child, "--epochs", "100000", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = run_dir / train.METRICS_FILE
        deadline = time.monotonic() + 60
        while len(metrics.read_text().splitlines()) < 3:  # it trains
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)

        code, message = run("train", "--resume", str(run_dir), "--epochs", "200", "--quiet")

        assert code == 2
        assert f"the run folder '{run_dir}' is in use by another mlp process" in message
        assert f"(pid {proc.pid})" in message
        assert load_config(run_dir / train.CONFIG_FILE).training.epochs == 100000  # not 200
        assert proc.poll() is None  # the first one trains on
    finally:
        proc.kill()  # kill -9: no chance to unlock
        proc.communicate()

    done = len(train.load_checkpoint(run_dir).meta.history or [])
    code, message = run("train", "--resume", str(run_dir), "--epochs", str(done + 1), "--quiet")
    assert code == 0, message
    assert not (run_dir / train.LOCK_FILE).exists()


def test_a_full_disk_while_resume_writes_the_config_is_an_error_and_the_run_still_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    run_dir = interrupted_run(tmp_path, "R")
    before = snapshot(run_dir)
    real = checkpoint.atomic_write

    def full_disk(path: Path, write: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no file name, as real

    monkeypatch.setattr(checkpoint, "atomic_write", full_disk)
    code, message = run("train", "--resume", str(run_dir), "--set", "training.epochs=5")
    assert code == 1, message
    config = run_dir / train.CONFIG_FILE
    assert f"could not write the run's config '{config}': the disk is full" in message
    assert snapshot(run_dir) == before
    monkeypatch.setattr(checkpoint, "atomic_write", real)  # space was freed
    code, message = run("train", "--resume", str(run_dir), "--set", "training.epochs=5", "-q")
    assert code == 0, message


def test_resuming_a_run_killed_before_its_first_checkpoint_says_so_and_how_to_train_it(
    tmp_path: Path,
) -> None:
    trainer = train.start(make_config(tmp_path), make_splits(), tmp_path / "R")
    assert trainer.lock is not None
    trainer.lock.release()  # as the kernel does for a process killed here, before `run`
    run_dir = trainer.run_dir
    # Killed in `start` between writing the config and saving the first checkpoint.
    (run_dir / train.CHECKPOINT_FILE).unlink()
    before = snapshot(run_dir)

    code, message = run("train", "--resume", str(run_dir))

    assert code == 2, message
    assert f"the run in '{run_dir}' was stopped before it saved its first checkpoint" in message
    assert f"mlp train --config {run_dir / train.CONFIG_FILE} --out NEW_DIR" in message
    assert snapshot(run_dir) == before


def test_a_bad_threads_value_is_named_before_the_runs_lock_is_looked_at(tmp_path: Path) -> None:
    run_dir = interrupted_run(tmp_path, "R")
    # Another process holds the run's lock, as one training it would: the option is still
    # the mistake named, before the folder's lock or checkpoint is read.
    with locks.held(run_dir / train.LOCK_FILE):
        code, message = run("train", "--resume", str(run_dir), "--threads", "two")
    assert code == 2, message
    assert "--threads takes a number of threads (1 or more) or auto, not 'two'" in message
