"""`mlp sweep`: the sweep file's grammar and errors, the plan of trials, and the local engine
end to end on the small synthetic data sets of `test_train` (worker processes, thread caps,
a failing trial, early termination, Ctrl-C and --resume, the results)."""

from __future__ import annotations

import csv
import errno
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.context import ForkProcess
from pathlib import Path
from typing import Any

import locks
import numpy as np
import pytest
from signals import alive
from test_train import arrays_of, make_splits, metrics, without_timing
from tiny_models import save_random_model
from typer.testing import CliRunner

from mlp_cli import checkpoint, data, sweep
from mlp_cli.cli import app
from mlp_cli.errors import ConfigError, MLPError
from mlp_cli.limits import json_values_at_most
from mlp_cli.sweep import Asha, EarlyTerminate, Outcome, Sweep, plan, run_local
from mlp_cli.train import LOCK_FILE, Trainer

runner = CliRunner()
HERE = Path(__file__).parent


def _sweep_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(HERE.parent)}


def _ignore_ctrl_c() -> None:  # as a shell without job control starts `mlp sweep ... &`
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def running_sweep(
    tmp_path: Path,
    path: Path,
    *,
    started: Callable[[Iterable[bool]], bool] = any,
    ignore_ctrl_c: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """`mlp sweep PATH --workers 2` in a child process leading a session of its own (so a
    signal can reach the sweep and its workers at once), yielded once trial t000 or t001
    (``started=all``: both) has written metrics; killed with its workers if it still runs
    when the block ends."""
    folder = tmp_path / "runs" / "grid"
    child = [sys.executable, str(HERE / "sweep_child.py"), "sweep", str(path), "--workers", "2"]
    proc = subprocess.Popen(
        child,
        cwd=tmp_path,
        env=_sweep_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_ignore_ctrl_c if ignore_ctrl_c else None,
    )
    try:
        deadline = time.monotonic() + 60
        while not started((folder / t / "metrics.jsonl").is_file() for t in ("t000", "t001")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def base_config(epochs: int = 3) -> str:
    """A small base config (20x20 inputs, 16 hidden units) trained for ``epochs``."""
    return f"""\
name: base
data: {{input_size: 20, validation_size: 256}}
model: {{layers: 400-16-10}}
optimizer: {{name: adam, lr: 0.01}}
training: {{epochs: {epochs}, batch_size: 64, seed: 0}}
"""


BASE = base_config()
TEST_ACCURACY = sweep._test_accuracy  # the fixture below stands in for it in every test


@pytest.fixture(autouse=True)
def synthetic_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials train on 2,048 learnable synthetic inputs (forked workers inherit this), draw
    no curves.png, and the best trial is scored on nothing (there is no test split)."""
    splits = make_splits(n_train=2048, n_val=256)
    monkeypatch.setattr(data, "prepare_data", lambda cfg, progressbar=False: splits)
    monkeypatch.setattr(data, "cached_files", lambda: {"synthetic": Path(__file__)})
    monkeypatch.setattr(Trainer, "write_curves", lambda self: None)
    monkeypatch.setattr(sweep, "_test_accuracy", lambda run_dir: (None, None))


def write_sweep(tmp_path: Path, body: str, name: str = "s.yaml", base: str = BASE) -> Path:
    """The base config `base` and the sweep file `body` in `tmp_path`; the sweep file."""
    (tmp_path / "base.yaml").write_text(base + f"output: {{dir: {tmp_path / 'runs'}}}\n")
    path = tmp_path / name
    path.write_text(body)
    return path


GRID = """\
name: grid
config: base.yaml
metric: {name: val_acc, goal: maximize}
parameters:
  model.hidden_activation: {values: [sigmoid, relu]}
  optimizer.lr: {values: [0.01, 0.001]}
  training.epochs: {value: 2}
"""


def mlp(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


# -- the grammar -------------------------------------------------------------------------------


def test_a_tilde_in_the_base_config_path_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "sweeps").mkdir()
    path = write_sweep(tmp_path, GRID.replace("base.yaml", "~/base.yaml"), "sweeps/s.yaml")
    s = plan(path)
    assert len(s.trials) == 4
    assert Path(s.base_config) == tmp_path / "base.yaml"


def test_a_grid_is_every_combination_in_file_order(tmp_path: Path) -> None:
    s = plan(write_sweep(tmp_path, GRID))
    assert [t.id for t in s.trials] == ["t000", "t001", "t002", "t003"]
    assert [(t.params["model.hidden_activation"], t.params["optimizer.lr"]) for t in s.trials] == [
        ("sigmoid", 0.01),
        ("sigmoid", 0.001),
        ("relu", 0.01),
        ("relu", 0.001),
    ]
    assert all(t.params["training.epochs"] == 2 and t.epochs == 2 for t in s.trials)
    # Each trial's config is the base with its settings, on the trial's threads.
    t = s.trials[3]
    assert t.config["model"]["hidden_activation"] == "relu"
    assert t.config["optimizer"]["lr"] == 0.001
    assert t.config["training"]["threads"] == 1
    assert t.config["name"] == "grid-t003"
    assert s.dir == tmp_path / "runs" / "grid"


def test_a_grid_with_num_samples_repeats_each_combination_with_seeds(tmp_path: Path) -> None:
    body = GRID.replace("metric:", "num_samples: 3\nmetric:")
    s = plan(write_sweep(tmp_path, body))
    assert len(s.trials) == 12
    assert [t.params["training.seed"] for t in s.trials[:6]] == [0, 1, 2, 0, 1, 2]
    assert [t.config["training"]["seed"] for t in s.trials[:3]] == [0, 1, 2]


RANDOM = """\
name: rand
config: base.yaml
method: random
num_samples: 200
seed: {seed}
parameters:
  optimizer.lr: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}}
  regularization.l2: {{distribution: uniform, min: 0, max: 0.001}}
  training.batch_size: {{distribution: int_uniform, min: 16, max: 20}}
  model.hidden_activation: {{values: [sigmoid, tanh, relu]}}
  training.epochs: {{value: 1}}
"""


def test_random_draws_are_reproducible_from_the_sweep_seed_and_within_bounds(
    tmp_path: Path,
) -> None:
    a = plan(write_sweep(tmp_path, RANDOM.format(seed=7)))
    b = plan(write_sweep(tmp_path, RANDOM.format(seed=7)))
    c = plan(write_sweep(tmp_path, RANDOM.format(seed=8)))
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    lrs = np.array([t.params["optimizer.lr"] for t in a.trials])
    assert lrs.min() >= 1e-4
    assert lrs.max() <= 0.1
    # log-uniform: about as many draws in each decade
    decades = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert decades.min() > 40, decades
    l2 = np.array([t.params["regularization.l2"] for t in a.trials])
    assert l2.min() >= 0
    assert l2.max() <= 0.001
    assert np.median(l2) > 2e-4
    sizes = [t.params["training.batch_size"] for t in a.trials]
    assert set(sizes) == {16, 17, 18, 19, 20}
    assert all(isinstance(n, int) for n in sizes)
    assert {t.params["model.hidden_activation"] for t in a.trials} == {"sigmoid", "tanh", "relu"}
    assert all(t.params["training.epochs"] == 1 for t in a.trials)
    assert all(
        t.config["training"]["batch_size"] == t.params["training.batch_size"] for t in a.trials
    )


def test_random_draws_rounded_to_4_digits_stay_within_bounds_that_have_more(
    tmp_path: Path,
) -> None:
    # Every draw in [0.00123441, 0.00123449) reads 0.001234 to 4 significant digits, below
    # min; one in [0.0012345, 0.001234571) reads 0.001235, above max.  Each is kept at the
    # bound it crossed.
    body = RANDOM.format(seed=7).replace(
        "{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}",
        "{distribution: log_uniform_values, min: 0.00123441, max: 0.00123449}",
    ).replace("{distribution: uniform, min: 0, max: 0.001}",
              "{distribution: uniform, min: 0.0012345, max: 0.001234571}")  # fmt: skip
    trials = plan(write_sweep(tmp_path, body)).trials
    assert {t.params["optimizer.lr"] for t in trials} == {0.00123441}
    assert {t.params["regularization.l2"] for t in trials} == {0.001234571}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            GRID.replace("metric:", "metrc:"),
            ["s.yaml:3: unknown key 'metrc'; did you mean 'metric'?"],
        ),
        (
            GRID.replace("{values: [sigmoid, relu]}", "{values: [sigmoid], value: relu}"),
            ["s.yaml:5: parameters.model.hidden_activation: give exactly one of value"],
        ),
        (
            GRID.replace("{value: 2}", "{valeus: [2]}"),
            ["s.yaml:7: unknown key 'parameters.training.epochs.valeus'; did you mean 'values'?"],
        ),
        (
            GRID.replace("{values: [0.01, 0.001]}", "{distribution: uniform, min: 0.1, max: 1}"),
            ["s.yaml:6: parameters.optimizer.lr.distribution: a grid sweep takes value or values"],
        ),
        (
            GRID.replace(
                "{values: [0.01, 0.001]}", "{distribution: log_uniform_values, min: 0, max: 1}"
            )
            + "method: random\n",
            ["parameters.optimizer.lr.min: log_uniform_values needs min > 0"],
        ),
        (
            GRID.replace("maximize", "maximise"),
            [
                "s.yaml:3: metric.goal: expected one of maximize, minimize, found 'maximise';"
                " did you mean 'maximize'?"
            ],
        ),
        (
            GRID.replace("val_acc", "val_accuracy"),
            ["s.yaml:3: metric.name: expected one of val_acc, val_loss, train_acc, train_loss"],
        ),
        (
            GRID.replace("name: grid", "name: a/b"),
            ["s.yaml:1: name: expected a folder name of at most 90"],
        ),
        (
            GRID.replace("name: grid", "name: " + "n" * 5000),
            ["s.yaml:1: name: expected a folder name", "found '" + "n" * 97 + "...'"],
        ),
        ("- a\n- b\n", ["the top level of a sweep file must be a mapping"]),
        ("# nothing\n", ["sweep file", "is empty"]),
        (
            GRID.replace("optimizer.lr:", "optimizer.learning_rate:"),
            [
                "trial t000 (model.hidden_activation=sigmoid, optimizer.learning_rate=0.01,"
                " training.epochs=2) gives an invalid config:",
                "s.yaml:6: unknown key 'optimizer.learning_rate'",
            ],
        ),
        (
            GRID.replace("{values: [sigmoid, relu]}", "{values: [relu, sigmoidal]}"),
            [
                "trial t002 (model.hidden_activation=sigmoidal, optimizer.lr=0.01,"
                " training.epochs=2) gives an invalid config:",
                "model.hidden_activation: expected one of",
            ],
        ),
        (
            GRID.replace("parameters:", "config: base.yaml\nparameters:"),
            ["s.yaml:4: duplicate key 'config'; it is already set on line 2"],
        ),
        (GRID.replace("base.yaml", "nowhere.yaml"), ["config file 'nowhere.yaml' not found"]),
        (
            GRID + "  x: !!python/object:os.system {}\n",
            ["the tag '!!python/object:os.system' is not allowed"],
        ),
        (
            GRID + "early_terminate: {type: asha, reduction_factor: 100000000000000000000}\n",
            ["s.yaml:8: early_terminate.reduction_factor: expected an integer less than or equal"],
        ),
    ],
)
def test_an_invalid_sweep_file_names_the_line_and_the_key(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    path = write_sweep(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        plan(path)
    message = str(caught.value).replace(str(tmp_path) + os.sep, "")
    for part in expected:
        assert part in message, message
    code, out, err = mlp("sweep", "plan", str(path))
    assert code == 2
    assert "Traceback" not in err
    assert out == ""


def test_a_swept_key_of_any_length_is_cut_short_in_the_error(tmp_path: Path) -> None:
    key = "optimizer." + "x" * 5000
    path = write_sweep(tmp_path, GRID.replace("  optimizer.lr:", f"  ? {key}\n  :"))
    with pytest.raises(ConfigError) as caught:
        plan(path)
    message = str(caught.value)
    assert f"parameters: {key[:100]!r} is swept over a value a sweep cannot record" in message
    assert len(message) < 1000


def test_a_validation_metric_needs_a_validation_split(tmp_path: Path) -> None:
    path = write_sweep(
        tmp_path,
        GRID.replace(
            "  training.epochs:", "  data.validation_size: {value: 0}\n  training.epochs:"
        ),
    )
    with pytest.raises(
        ConfigError, match="metric: val_acc needs a validation split, but trial t000"
    ):
        plan(path)


def test_plan_prints_the_trials_and_runs_nothing(tmp_path: Path) -> None:
    code, out, err = mlp("sweep", "plan", str(write_sweep(tmp_path, GRID)))
    assert code == 0, err
    assert "sweep grid: 4 trials (grid)" in out
    assert [line.split()[:3] for line in out.splitlines() if line.strip().startswith("t00")] == [
        ["t000", "sigmoid", "0.01"],
        ["t001", "sigmoid", "0.001"],
        ["t002", "relu", "0.01"],
        ["t003", "relu", "0.001"],
    ]
    assert not (tmp_path / "runs").exists()
    code, out, _ = mlp("sweep", "plan", str(write_sweep(tmp_path, GRID)), "--json")
    assert json.loads(out)[1] == {
        "trial": "t001",
        "model.hidden_activation": "sigmoid",
        "optimizer.lr": 0.001,
        "training.epochs": 2,
    }


@pytest.mark.parametrize(
    ("goal", "bests", "order"),
    [
        ("maximize", [(0.5, 1), (0.7, 1), (None, 0), (0.7, 2)], [1, 3, 0, 2]),
        ("minimize", [(0.5, 1), (0.6, 2), (None, 0), (0.6, 1)], [0, 1, 3, 2]),
    ],
)
def test_trials_rank_by_their_best_value_earlier_first_on_ties_unscored_last(
    tmp_path: Path, goal: str, bests: list[tuple[float | None, int]], order: list[int]
) -> None:
    s = plan(write_sweep(tmp_path, GRID.replace("goal: maximize", f"goal: {goal}")))
    scores: list[list[float | None]] = [[0.5, 0.5], [0.7, 0.6], [None, None], [0.6, 0.7]]
    for index, values in enumerate(scores):
        s.started(index)
        for epoch, value in enumerate(values, 1):
            s.epoch_ended(index, {"epoch": epoch, "val_acc": value})
    assert [(t.best, t.best_epoch) for t in s.trials] == bests
    assert [s.trials.index(t) for t in s.ranked()] == order
    assert s.best_trial() is s.trials[order[0]]


# -- the local engine --------------------------------------------------------------------------


def test_the_best_trial_is_scored_on_the_weights_its_run_kept_with_their_epoch(
    tmp_path: Path, mnist_mirror: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run keeps the epoch its early_stopping.monitor picks, which need not be the epoch
    # where the sweep's metric was best: the test accuracy says whose weights it scores.
    save_random_model(tmp_path / "model.npz", training={"weights_from_epoch": 3})
    accuracy, epoch = TEST_ACCURACY(tmp_path)
    assert epoch == 3
    assert 0.0 <= accuracy <= 1.0
    monkeypatch.setattr(sweep, "_test_accuracy", lambda run_dir: (0.9158, 1))
    code, out, err = mlp("sweep", str(write_sweep(tmp_path, GRID)), "--workers", "1")
    assert code == 0, err
    folder = tmp_path / "runs" / "grid"
    best = Sweep.load(folder).ranked()[0]
    assert (best.test_acc, best.test_epoch) == (0.9158, 1)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert (rows[0]["test_acc"], rows[0]["test_epoch"]) == ("0.9158", "1")
    assert "91.58% (1)" in out


def test_a_sweep_trains_every_trial_as_an_ordinary_run_with_the_same_bits(tmp_path: Path) -> None:
    code, out, err = mlp("sweep", str(write_sweep(tmp_path, GRID)), "--workers", "2")
    assert code == 0, err
    assert "sweep grid: 4 trials, 2 at a time, 1 thread each, into " in out
    folder = tmp_path / "runs" / "grid"
    state = Sweep.load(folder)
    assert [t.status for t in state.trials] == ["completed"] * 4
    for trial in state.trials:
        run_dir = folder / trial.id
        for name in ("config.yaml", "metrics.jsonl", "model.npz", "checkpoint.npz"):
            assert (run_dir / name).is_file()
        assert trial.best == max(r["val_acc"] for r in metrics(run_dir))
    # The best link, the ranked table and results.csv agree with the metrics.
    best = max(state.trials, key=lambda t: t.best or 0)
    assert (folder / "best").resolve() == (folder / best.id).resolve()
    assert state.best_trial() == best
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert rows[0]["trial"] == best.id
    assert [r["status"] for r in rows] == ["completed"] * 4
    assert float(rows[0]["best_val_acc"]) == best.best
    assert (folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ranked = [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert ranked == [t.id for t in state.ranked()]
    # Trial t002 equals `mlp train --config base.yaml --set ...` with its settings.
    code, _, err = mlp(
        "train",
        "--config",
        str(tmp_path / "base.yaml"),
        "--set",
        "model.hidden_activation=relu",
        "--set",
        "optimizer.lr=0.01",
        "--set",
        "training.epochs=2",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "alone"),
    )
    assert code == 0, err
    for name in ("model.npz", "checkpoint.npz"):
        assert arrays_of(folder / "t002" / name) == arrays_of(tmp_path / "alone" / name)
    assert without_timing(metrics(folder / "t002")) == without_timing(metrics(tmp_path / "alone"))
    # mlp sweep show reads the finished sweep; mlp inspect works on a trial.
    code, shown, _ = mlp("sweep", "show", str(folder))
    assert code == 0
    assert [line.split()[1] for line in shown.splitlines() if line.strip()[:1].isdigit()] == ranked
    code, _, err = mlp("inspect", "--model", str(folder / "best"))
    assert code == 0, err


def test_trials_run_in_parallel_worker_processes_with_capped_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.threads import blas_threads

    real = sweep.run_trial

    def recording(run_dir: Path, *args: Any) -> Outcome:
        (run_dir.parent / f"{run_dir.name}.worker").write_text(
            json.dumps({"pid": os.getpid(), "threads": blas_threads(), "at": time.time()})
        )
        time.sleep(0.3)  # long enough that both workers hold a trial at once
        return real(run_dir, *args)

    monkeypatch.setattr(sweep, "run_trial", recording)
    prepare = data.prepare_data
    loads = tmp_path / "loads"

    def counting(cfg: Any, progressbar: Any = False) -> Any:
        with loads.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return prepare(cfg)

    monkeypatch.setattr(data, "prepare_data", counting)
    s = plan(write_sweep(tmp_path, GRID))
    assert run_local(s, workers=2)
    seen = [json.loads((s.dir / f"{t.id}.worker").read_text()) for t in s.trials]
    assert len({w["pid"] for w in seen}) == 2
    # The data is prepared once per worker, not once per trial.
    assert sorted(loads.read_text().split()) == sorted(str(p) for p in {w["pid"] for w in seen})
    assert {w["pid"] for w in seen}.isdisjoint({os.getpid()})
    assert all(w["threads"] == 1 for w in seen)
    assert all(t.status == "completed" for t in s.trials)


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path: Path) -> None:
    body = GRID.replace("[0.01, 0.001]", "[0.1, 1.0e+39]").replace(
        "values: [sigmoid, relu]}", "values: [relu]}\n  optimizer.name: {value: sgd}"
    )
    s = plan(write_sweep(tmp_path, body))
    assert run_local(s, workers=2)
    assert [t.status for t in s.trials] == ["completed", "failed"]
    assert "the loss became" in (s.trials[1].reason or "")
    assert s.trials[1].seconds > 0  # the time it ran until it failed, though no epoch ended
    sweep.finish(s)
    rows = {r["trial"]: r for r in csv.DictReader((s.dir / "results.csv").open())}
    assert rows["t001"]["status"] == "failed"
    assert "loss became" in rows["t001"]["reason"]
    assert (s.dir / "best").resolve() == (s.dir / "t000").resolve()


ASHA = """\
name: asha
config: base.yaml
metric: {name: val_acc, goal: maximize}
parameters:
  optimizer.lr: {values: [0.01, 1.0e-6, 0.003, 1.0e-7]}
  training.epochs: {value: 4}
early_terminate: {type: asha, grace_period: 1, reduction_factor: 2}
"""


def test_asha_stops_trials_that_are_behind_at_a_rung(tmp_path: Path) -> None:
    s = plan(write_sweep(tmp_path, ASHA))
    assert run_local(s, workers=1)  # one at a time: the order of reports is fixed
    status = {t.params["optimizer.lr"]: t for t in s.trials}
    assert status[0.01].status == "completed"
    assert status[0.01].epoch == 4
    hopeless = [status[1e-6], status[1e-7]]
    assert all(t.status == "pruned" and t.epoch < 4 for t in hopeless), hopeless
    for t in hopeless:  # stopped at a rung's end, with a checkpoint to continue from
        assert t.epoch in (1, 2)
        assert len(metrics(s.dir / t.id)) == t.epoch
        assert (s.dir / t.id / "checkpoint.npz").is_file()


def test_a_pruned_trial_that_keeps_no_best_epoch_has_its_last_epoch_in_model_npz(
    tmp_path: Path,
) -> None:
    body = ASHA.replace(
        "  training.epochs:",
        "  training.early_stopping.restore_best: {value: false}\n  training.epochs:",
    )
    s = plan(write_sweep(tmp_path, body))
    assert run_local(s, workers=1)
    pruned = [t for t in s.trials if t.status == "pruned"]
    assert pruned
    for t in pruned:
        run_dir = s.dir / t.id
        model = checkpoint.load(run_dir / "model.npz")
        saved = checkpoint.load(run_dir / "checkpoint.npz", checkpoint=True)
        assert model.meta.training is not None
        assert model.meta.training.weights_from_epoch == t.epoch == len(metrics(run_dir))
        arrays = zip(model.weights + model.biases, saved.weights + saved.biases, strict=True)
        for ours, theirs in arrays:
            assert np.array_equal(ours, theirs)
        code, _, err = mlp("inspect", "--model", str(run_dir))
        assert code == 0, err


def test_sweep_png_draws_a_pruned_trial_continued_by_hand_only_as_far_as_the_sweep_ran_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its curve would go on past the epoch where the table and the picture's points say
    # it stopped, to values the sweep never ranked. (--resume refuses such a trial; a sweep
    # still running other trials meanwhile draws it.)
    s = plan(write_sweep(tmp_path, ASHA))
    assert run_local(s, workers=1)
    pruned = next(t for t in s.trials if t.status == "pruned")
    s.save()
    code, _, err = mlp("train", "--resume", str(s.dir / pruned.id))
    assert code == 0, err
    assert len(metrics(s.dir / pruned.id)) == 4
    drawn: dict[str, Any] = {}
    monkeypatch.setattr(
        "mlp_cli.viz.sweep_figure", lambda points, curves, *args: drawn.update(curves)
    )
    again = Sweep.load(s.dir)  # as a sweep still running others draws it at its end
    sweep.plot_sweep(again)
    for trial in again.trials:
        if trial.id in drawn:
            assert [epoch for epoch, _ in drawn[trial.id]] == list(range(1, trial.epoch + 1))
    assert pruned.id in drawn
    assert again.trials[int(pruned.id[1:])].epoch == pruned.epoch


def test_asha_judges_a_trial_first_at_the_end_of_the_grace_period() -> None:
    asha = Asha(EarlyTerminate(type="asha", grace_period=2, reduction_factor=2), "maximize")
    assert not asha.report(0, 1, 0.9)
    assert not asha.report(1, 1, 0.1)  # behind, but epoch 1 is no rung
    assert not asha.report(0, 2, 0.9)
    assert asha.report(1, 2, 0.1)  # at the first rung, outside the best half


def _stop_after(events: int) -> tuple[Any, Any]:
    seen = {"n": 0}

    def on_change() -> None:
        seen["n"] += 1

    return on_change, lambda: seen["n"] >= events


def test_a_stopped_sweep_resumes_to_the_same_bits(tmp_path: Path) -> None:
    body = GRID.replace("{value: 2}", "{value: 4}")
    whole = plan(write_sweep(tmp_path, body), out=tmp_path / "whole")
    assert run_local(whole, workers=2)
    part = plan(write_sweep(tmp_path, body), out=tmp_path / "part")
    on_change, should_stop = _stop_after(5)
    assert not run_local(part, workers=2, on_change=on_change, should_stop=should_stop)
    part.save()
    again = Sweep.load(tmp_path / "part")
    assert {t.status for t in again.trials} <= {"pending", "interrupted", "completed"}
    assert any(t.status == "interrupted" for t in again.trials)
    done_before = {
        t.id: (tmp_path / "part" / t.id / "model.npz").stat().st_mtime_ns
        for t in again.trials
        if t.status == "completed"
    }
    assert run_local(again, workers=2)
    assert [t.status for t in again.trials] == ["completed"] * 4
    for trial in whole.trials:
        for name in ("model.npz", "checkpoint.npz"):
            assert arrays_of(tmp_path / "whole" / trial.id / name) == arrays_of(
                tmp_path / "part" / trial.id / name
            ), (trial.id, name)
    for tid, mtime in done_before.items():  # finished trials were not run again
        assert (tmp_path / "part" / tid / "model.npz").stat().st_mtime_ns == mtime


def test_a_second_resume_of_a_running_sweep_is_refused(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 20}"))
    folder = tmp_path / "runs" / "grid"
    with running_sweep(tmp_path, path) as proc:
        code, _, err = mlp("sweep", "--resume", str(folder))

        assert code == 2, err
        assert (
            f"the sweep folder '{folder}' is in use by another mlp process (pid {proc.pid})"
            in " ".join(err.split())
        )
        assert proc.poll() is None  # the first one runs on
        _out, err = proc.communicate(timeout=300)
    # Its trials, each locked by its worker, trained under the sweep's own lock.
    assert proc.returncode == 0, err
    assert [t.status for t in Sweep.load(folder).trials] == ["completed"] * 4
    assert not list(folder.rglob(LOCK_FILE))  # each lock went with its holder


def test_lock_files_left_by_killed_processes_are_taken_again(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID)
    folder = tmp_path / "runs" / "grid"
    folder.mkdir(parents=True)
    (folder / LOCK_FILE).write_text("99999999\n")  # a sweep killed as it started
    code, _, err = mlp("sweep", str(path), "--quiet")
    assert code == 0, err
    s = Sweep.load(folder)
    for trial in s.trials:  # as when they ran into a crash before their first checkpoint
        for name in ("checkpoint.npz", "model.npz", "metrics.jsonl"):
            (folder / trial.id / name).unlink()
        (folder / trial.id / LOCK_FILE).write_text("99999999\n")
        trial.status, trial.epoch, trial.best_epoch = "running", 0, 0
        trial.best = trial.last = None
    s.save()
    code, _, err = mlp("sweep", "--resume", str(folder), "--quiet")
    assert code == 0, err
    assert [t.status for t in Sweep.load(folder).trials] == ["completed"] * 4
    assert not list(folder.rglob(LOCK_FILE))


def test_a_sweep_started_with_ctrl_c_ignored_runs_on_through_it(tmp_path: Path) -> None:
    """A shell without job control starts ``mlp sweep ... &`` with SIGINT ignored: the
    sweep and its workers keep it ignored."""
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 6}"))
    folder = tmp_path / "runs" / "grid"
    with running_sweep(tmp_path, path, ignore_ctrl_c=True) as proc:
        os.killpg(proc.pid, signal.SIGINT)  # the sweep and its workers
        _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert [t.status for t in Sweep.load(folder).trials] == ["completed"] * 4


def test_ctrl_c_stops_the_sweep_and_resume_finishes_it(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 30}"))
    folder = tmp_path / "runs" / "grid"
    with running_sweep(tmp_path, path) as proc:
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the sweep and its workers
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "sweep interrupted" in err
    assert "mlp sweep --resume" in err
    state = Sweep.load(folder)
    running = [t for t in state.trials if t.status == "interrupted"]
    assert running
    assert all((folder / t.id / "checkpoint.npz").is_file() for t in running)
    assert all(t.status in ("interrupted", "pending") for t in state.trials)
    done = subprocess.run(
        [sys.executable, str(HERE / "sweep_child.py"), "sweep", "--resume", str(folder)],
        cwd=tmp_path,
        env=_sweep_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    state = Sweep.load(folder)
    assert [t.status for t in state.trials] == ["completed"] * 4
    assert all(len(metrics(folder / t.id)) == 30 for t in state.trials)


def wait_until_ended(workers: list[int]) -> None:
    """Wait (30 s at most) until the worker processes `workers` of a killed sweep have ended."""
    deadline = time.monotonic() + 30
    while any(map(alive, workers)):  # ended, if not yet reaped by whoever adopted them
        assert time.monotonic() < deadline, "the orphaned workers of the sweep never ended"
        time.sleep(0.1)


def test_workers_of_a_sweep_killed_with_kill_9_end_and_leave_it_resumable(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 30}"))
    folder = tmp_path / "runs" / "grid"
    with running_sweep(tmp_path, path, started=all) as proc:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if not children.exists():
            pytest.skip("no /proc to find the sweep's workers in")
        workers = [int(pid) for pid in children.read_text().split()]
        proc.kill()  # the sweep alone, as `kill -9 PID` does: its workers are orphaned
        proc.wait(timeout=60)
        try:
            wait_until_ended(workers)
        finally:
            with suppress(ProcessLookupError):  # its session: any worker that did not
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    code, _, err = mlp("sweep", "--resume", str(folder), "--quiet")
    assert code == 0, err
    assert [t.status for t in Sweep.load(folder).trials] == ["completed"] * 4
    assert (folder / "results.csv").is_file()


# `mlp sweep ARGS` whose worker processes wait, once forked, until the sweep has ended or the
# file $WORKERS_GO exists before they go on starting: the moment of a `kill -9` or a signal
# that a busy machine can make last. A worker that has taken a stop signal by the end of its
# start writes the file $WORKERS_GO.taken-by-PID.
WORKERS_STARTING_LATE = """
import os, runpy, sys, time
from mlp_cli import sweep

init, the_sweep = sweep._init_worker, os.getpid()

def starting_late(*args):
    while os.getppid() == the_sweep and not os.path.exists(os.environ["WORKERS_GO"]):
        time.sleep(0.01)
    init(*args)
    if sweep._WORKER["interrupted"]:
        open(f"{os.environ['WORKERS_GO']}.taken-by-{os.getpid()}", "w").close()

sweep._init_worker = starting_late
sys.argv = sys.argv[1:]  # the child's file, then mlp's arguments
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def workers_of(proc: subprocess.Popen[Any]) -> list[int]:
    """The pids of the two worker processes of the sweep `proc`, once it has forked them."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    if not children.exists():
        pytest.skip("no /proc to find the sweep's workers in")
    deadline = time.monotonic() + 60
    while len(workers := [int(pid) for pid in children.read_text().split()]) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return workers


def test_workers_still_starting_when_the_sweep_is_killed_with_kill_9_end(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID)
    child = [sys.executable, "-c", WORKERS_STARTING_LATE, str(HERE / "sweep_child.py")]
    proc = subprocess.Popen(
        [*child, "sweep", str(path), "--workers", "2", "--quiet"],
        cwd=tmp_path,
        env={**_sweep_env(), "WORKERS_GO": str(tmp_path / "never")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        workers = workers_of(proc)
        proc.kill()
        proc.wait(timeout=60)
        wait_until_ended(workers)
    finally:
        with suppress(ProcessLookupError):  # its session: any worker that did not
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def test_a_hangup_while_the_workers_start_is_taken_by_the_sweep_and_by_each_worker(
    tmp_path: Path,
) -> None:
    # A worker is forked with the sweep's handling of the signals, which it replaces with
    # its own as it starts: a signal meanwhile must wait for the worker's own.
    path = write_sweep(tmp_path, GRID)
    go = tmp_path / "go"
    child = [sys.executable, "-c", WORKERS_STARTING_LATE, str(HERE / "sweep_child.py")]
    proc = subprocess.Popen(
        [*child, "sweep", str(path), "--workers", "2"],
        cwd=tmp_path,
        env={**_sweep_env(), "WORKERS_GO": str(go)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        workers_of(proc)
        os.killpg(proc.pid, signal.SIGHUP)  # the terminal closes
        time.sleep(0.5)  # time for the signal to reach every process before the workers go on
        go.touch()
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert " ".join(err.split()).count("stopping after this step") == 1, err  # the sweep's own
    assert "Traceback" not in err
    assert len(list(tmp_path.glob("go.taken-by-*"))) == 2  # each worker's own handling


def test_a_hangup_stops_the_sweep_and_its_workers_as_ctrl_c_does(tmp_path: Path) -> None:
    """A terminal that closes sends SIGHUP to the sweep and its workers at once."""
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 30}"))
    folder = tmp_path / "runs" / "grid"
    with running_sweep(tmp_path, path, started=all) as proc:
        os.killpg(proc.pid, signal.SIGHUP)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert " ".join(err.split()).count("stopping after this step") == 1, err  # the sweep's own
    state = Sweep.load(folder)
    running = [t for t in state.trials if t.status == "interrupted"]
    assert running
    assert all((folder / t.id / "checkpoint.npz").is_file() for t in running)


def test_a_sweep_does_not_overwrite_a_sweep_folder(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 1}"))
    assert mlp("sweep", str(path))[0] == 0
    before = (tmp_path / "runs" / "grid" / "sweep.json").read_bytes()
    code, _, err = mlp("sweep", str(path))
    assert code == 2
    assert "already holds the sweep 'grid'" in err
    assert "--resume" in err
    assert (tmp_path / "runs" / "grid" / "sweep.json").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep")
    code, _, err = mlp("sweep", str(path), "--out", str(tmp_path / "other"))
    assert code == 2
    assert "not an empty folder" in err
    assert (tmp_path / "other" / "mine.txt").read_text() == "keep"


def test_a_sweep_sent_into_another_sweeps_folder_is_told_the_name_of_that_one(
    tmp_path: Path,
) -> None:
    # Not its own name, as if the folder held it and --resume would continue it.
    path = write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 1}"))
    assert mlp("sweep", str(path))[0] == 0
    folder = tmp_path / "runs" / "grid"
    before = (folder / "sweep.json").read_bytes()
    other = write_sweep(tmp_path, path.read_text().replace("name: grid", "name: other"), "o.yaml")
    code, _, err = mlp("sweep", str(other), "--out", str(folder))
    assert code == 2
    said = " ".join(err.split())
    assert f"'{folder}' already holds the sweep 'grid'" in said
    assert "'other'" not in said
    assert (folder / "sweep.json").read_bytes() == before
    (folder / "sweep.json").write_text("{")
    code, _, err = mlp("sweep", str(other), "--out", str(folder))
    assert code == 2
    assert f"'{folder}' already holds a sweep's sweep.json" in " ".join(err.split())
    assert "'other'" not in err


def test_a_sweep_started_into_a_folder_another_sweep_just_took_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two `mlp sweep` into one folder at once both find it empty; the other one saves its
    # sweep.json while this one makes sure MNIST is there.
    path = write_sweep(tmp_path, GRID)
    state = tmp_path / "runs" / "grid" / "sweep.json"
    other = '{"the other sweep": true}'

    def other_sweep_saves(**kwargs: Any) -> None:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(other)

    monkeypatch.setattr(data, "fetch_missing", other_sweep_saves)
    code, _, err = mlp("sweep", str(path))
    assert code == 2, err
    assert "taken by another sweep" in " ".join(err.split())
    assert [p.name for p in state.parent.iterdir()] == ["sweep.json"]
    assert state.read_text() == other


def _saved_state(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A planned GRID sweep saved in ``tmp_path/good``: its folder and sweep.json's data,
    for a test to edit and write back."""
    good = plan(write_sweep(tmp_path, GRID), out=tmp_path / "good")
    good.dir.mkdir()
    good.save()
    return good.dir, json.loads((good.dir / "sweep.json").read_text())


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("a.yaml", "b.yaml"),
        ("show",),
        ("plan", "x", "y"),
        ("x.yaml", "--resume", "d"),
        ("a.yaml", "b.yaml", "--resume", "d"),
        ("plan", "x.yaml", "--resume", "d"),
    ],
)
def test_wrong_arguments_are_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, _, err = mlp("sweep", *args)
    assert code == 2
    assert "mlp sweep FILE.yaml" in err
    assert "Traceback" not in err


def test_show_refuses_a_folder_that_is_no_sweep(tmp_path: Path) -> None:
    # A folder without a sweep.json is a usage mistake (exit code 2); a damaged sweep.json
    # fails at run time (exit code 1), as a damaged checkpoint or metrics.jsonl does.
    code, _, err = mlp("sweep", "show", str(tmp_path))
    assert code == 2
    assert "is not a sweep folder" in err
    good_dir, state = _saved_state(tmp_path)
    broken = [
        "{not json",
        "[1, 2]",
        json.dumps({**state, "format_version": 99}),
        json.dumps({**state, "trials": "x"}),
        json.dumps({**state, "trials": [{**state["trials"][0], "params": "x"}]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "config": {"model": 3}}]}),
        json.dumps({**state, "cpus_per_trial": "many"}),
        json.dumps({**state, "cpus_per_trial": 0}),
        json.dumps({**state, "metric": "foo"}),
        json.dumps({**state, "goal": "bar"}),
        json.dumps({**state, "early_terminate": {"bogus": 1}}),
        json.dumps({**state, "early_terminate": {"type": "asha", "grace_period": 0}}),
        json.dumps({**state, "trials": [{**state["trials"][0], "id": "../escaped"}]}),
        json.dumps({**state, "trials": [state["trials"][0], state["trials"][0]]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "epochs": -1}]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "status": "done"}]}),
        json.dumps(state).replace('"created": ', '"created": NaN, "x": '),
        json.dumps({**state, "created": "inf"}),
        json.dumps({**state, "trials": [{**state["trials"][0], "best": "nan"}]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "test_acc": "-inf"}]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "test_epoch": -1}]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "test_epoch": 5}]}),  # epoch 0
        json.dumps({**state, "trials": [{**state["trials"][0], "test_epoch": "x"}]}),
        json.dumps({**state, "trials": [{**state["trials"][0], "seconds": 123.25}]}).replace(
            "123.25", "1e400"
        ),
        "[" * 100_000,
    ]
    for text in broken:
        (tmp_path / "sweep.json").write_text(text)
        code, _, err = mlp("sweep", "show", str(tmp_path))
        assert code == 1, text[:200]
        code, _, err = mlp("sweep", "--resume", str(tmp_path))
        assert code == 1, text[:200]
        assert "is not a sweep state mlp can read" in err, err
        assert "Traceback" not in err
    code, _, err = mlp("sweep", "show", str(good_dir))
    assert code == 0, err


def test_a_sweep_state_with_an_epoch_its_trial_never_ran_names_that_epoch(tmp_path: Path) -> None:
    good_dir, state = _saved_state(tmp_path)
    for key in ("best_epoch", "test_epoch"):
        trials = [{**state["trials"][0], key: 3}, *state["trials"][1:]]  # of 0 epochs run
        (good_dir / "sweep.json").write_text(json.dumps({**state, "trials": trials}))
        code, _, err = mlp("sweep", "show", str(good_dir))
        assert code == 1
        assert f"(trial t000: {key} 3 of a trial that ran 0 epochs)" in err, err


def test_a_sweep_state_with_an_epoch_past_the_one_its_trial_ran_counts_it_in_the_singular(
    tmp_path: Path,
) -> None:
    good_dir, state = _saved_state(tmp_path)
    trials = [{**state["trials"][0], "epoch": 1, "test_epoch": 2}, *state["trials"][1:]]
    (good_dir / "sweep.json").write_text(json.dumps({**state, "trials": trials}))
    code, _, err = mlp("sweep", "show", str(good_dir))
    assert code == 1
    assert "(trial t000: test_epoch 2 of a trial that ran 1 epoch)" in err, err


def test_show_json_writes_bytes_of_a_folder_name_that_are_not_utf8_as_predict_does(
    tmp_path: Path,
) -> None:
    try:
        run = plan(write_sweep(tmp_path, GRID), out=tmp_path / os.fsdecode(b"gr\xffid"))
        run.dir.mkdir()
    except OSError:  # a file system that takes only UTF-8 names (macOS)
        pytest.skip("this file system refuses names that are not UTF-8")
    run.save()
    code, out, err = mlp("sweep", "show", str(run.dir), "--json")
    assert code == 0, err
    assert [t["dir"] for t in json.loads(out)] == [
        str(tmp_path / "gr\\xffid" / t) for t in ("t000", "t001", "t002", "t003")
    ]


def test_a_trial_trained_with_settings_refused_since_stays_readable(tmp_path: Path) -> None:
    # An AdamW weight_decay that lr turns into more than the weights: refused in a config
    # now, trained (to nothing) by mlp before, and kept in sweep states written then.
    good_dir, state = _saved_state(tmp_path)
    trial = state["trials"][0]
    lr = trial["config"]["optimizer"]["lr"]
    trial["config"]["optimizer"] = {"name": "adamw", "lr": lr, "weight_decay": 1.5 / lr}
    (good_dir / "sweep.json").write_text(json.dumps(state))
    code, _, err = mlp("sweep", "show", str(good_dir))
    assert code == 0, err
    code, _, err = mlp("sweep", "--resume", str(good_dir), "--quiet")
    assert "is not a sweep state mlp can read" not in err
    assert f"{good_dir / 't000' / 'config.yaml'}: optimizer.weight_decay" in err  # its trial


def test_an_edited_state_is_refused_with_the_setting_and_the_value_found(tmp_path: Path) -> None:
    _, state = _saved_state(tmp_path)
    edits = [
        ("metric", "val_accuracy", "metric 'val_accuracy'"),
        ("goal", "max", "goal 'max'"),
        ("method", "bayes", "method 'bayes'"),
        ("engine", "dask", "engine 'dask'"),
        ("cpus_per_trial", 0, "cpus_per_trial 0"),
        ("cpus_per_trial", 999, "cpus_per_trial 999"),
    ]
    for key, value, found in edits:
        (tmp_path / "sweep.json").write_text(json.dumps({**state, key: value}))
        for command in (("sweep", "show"), ("sweep", "--resume")):
            code, _, err = mlp(*command, str(tmp_path))
            assert code == 1, err
            assert f"is not a sweep state mlp can read ({found});" in err, err


def test_an_edited_state_with_an_accuracy_outside_0_and_1_is_refused(tmp_path: Path) -> None:
    # Else shown as it is, e.g. a best val_acc of 750.00%, and ranked first.
    _, state = _saved_state(tmp_path)
    first = state["trials"][0]
    for key, value in [("best", 7.5), ("last", -0.25), ("test_acc", 86.8)]:
        trials = [{**first, key: value}, *state["trials"][1:]]
        (tmp_path / "sweep.json").write_text(json.dumps({**state, "trials": trials}))
        for command in (("sweep", "show"), ("sweep", "--resume")):
            code, _, err = mlp(*command, str(tmp_path))
            assert code == 1, err
            found = f"(trial t000: an accuracy of {value}, outside 0 to 1);"
            assert f"is not a sweep state mlp can read {found}" in " ".join(err.split()), err


def test_a_state_without_the_optional_asha_settings_gets_their_defaults(tmp_path: Path) -> None:
    s = plan(write_sweep(tmp_path, ASHA), out=tmp_path / "asha")
    s.dir.mkdir()
    s.save()
    state = json.loads((s.dir / "sweep.json").read_text())
    state["early_terminate"] = {"type": "asha"}
    (s.dir / "sweep.json").write_text(json.dumps(state))
    again = Sweep.load(s.dir)
    assert again.early_terminate == EarlyTerminate(type="asha", grace_period=1, reduction_factor=3)
    Asha(again.early_terminate, again.goal)  # what --resume builds from it
    again.save()
    assert json.loads((s.dir / "sweep.json").read_text())["early_terminate"] == {
        "type": "asha",
        "grace_period": 1,
        "reduction_factor": 3,
    }


def test_a_killed_worker_leaves_its_trials_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sweep.run_trial

    def dying(run_dir: Path, config: Any, report: Any, should_stop: Any) -> Outcome:
        def report_then_die(record: dict[str, Any]) -> bool:
            answer = report(record)
            if run_dir.name == "t001" and not (run_dir.parent / "died").exists():
                (run_dir.parent / "died").write_text("")
                time.sleep(0.3)  # the report reaches the sweep first
                os.kill(os.getpid(), signal.SIGKILL)  # in the middle of the trial
            return bool(answer)

        return real(run_dir, config, report_then_die, should_stop)

    monkeypatch.setattr(sweep, "run_trial", dying)
    s = plan(write_sweep(tmp_path, GRID))
    assert run_local(s, workers=2)
    assert s.trials[1].status == "interrupted"
    assert "ended unexpectedly" in (s.trials[1].reason or "")
    assert all(t.status in ("completed", "interrupted", "pending") for t in s.trials)
    again = Sweep.load(s.dir)
    assert run_local(again, workers=2)
    assert [t.status for t in again.trials] == ["completed"] * 4


def started_late(index: int, run_dir: str, config: Any) -> Outcome:
    """A trial that ends at once and whose start reaches the sweep 0.3 s later."""
    import threading

    threading.Timer(0.3, sweep._WORKER["events"].put, [("started", index, None)]).start()
    if index == 3:  # the sweep is still running when the others' starts arrive
        time.sleep(1.5)
    return Outcome("completed")


def test_a_start_reported_after_the_trial_ended_leaves_it_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's reports travel through a queue its own thread feeds, the trial's outcome
    # through the pool's pipe: a trial that ends at once (resumed after a `kill -9` of the
    # sweep, its run already completed) can have its end arrive before its start.
    monkeypatch.setattr(sweep, "_work", started_late)
    s = plan(write_sweep(tmp_path, GRID))
    assert run_local(s, workers=2)
    assert [t.status for t in s.trials] == ["completed"] * 4


def test_a_worker_killed_before_its_trials_start_was_sent_leaves_the_trial_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start goes through the queue its worker's own thread feeds: a worker killed (the
    # OOM killer, `kill -9`) as the trial begins takes it along, unsent. The trial began all
    # the same, and the sweep must not end as if nothing had happened to it.
    init = sweep._init_worker

    def starts_sent_late(sweep_pid: int, threads: int, events: Any, *rest: Any) -> None:
        import threading

        put = events.put

        def sent_late(item: tuple[str, int, Any]) -> None:
            if item[0] == "started":
                threading.Timer(0.3, put, [item]).start()
            else:
                put(item)

        events.put = sent_late
        init(sweep_pid, threads, events, *rest)

    def dying(run_dir: Path, config: Any, report: Any, should_stop: Any) -> Outcome:
        if run_dir.name == "t001":
            os.kill(os.getpid(), signal.SIGKILL)
        return Outcome("completed")

    monkeypatch.setattr(sweep, "_init_worker", starts_sent_late)
    monkeypatch.setattr(sweep, "run_trial", dying)
    s = plan(write_sweep(tmp_path, GRID))
    assert run_local(s, workers=1)
    assert [t.status for t in s.trials] == ["completed", "interrupted", "pending", "pending"]
    assert "ended unexpectedly" in (s.trials[1].reason or "")


WORK = sweep._work


def dying_after_the_first_trial(index: int, run_dir: str, config: Any) -> Outcome | None:
    """A worker killed (the OOM killer, `kill -9`) between trial 0 and the next."""
    if index > 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return WORK(index, run_dir, config)


def test_a_worker_killed_between_two_trials_ends_the_sweep_with_the_rest_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "_work", dying_after_the_first_trial)
    path = write_sweep(tmp_path, GRID)
    folder = tmp_path / "runs" / "grid"
    code, _, err = mlp("sweep", str(path), "--workers", "1", "--quiet")
    assert code == 1, err
    assert f"mlp sweep --resume {folder}" in " ".join(err.split())
    why = "3 trials not started: a worker process of the sweep ended unexpectedly"
    assert why in " ".join(err.split())
    assert [t.status for t in Sweep.load(folder).trials] == ["completed"] + ["pending"] * 3
    monkeypatch.setattr(sweep, "_work", WORK)
    code, _, err = mlp("sweep", "--resume", str(folder), "--quiet")
    assert code == 0, err
    assert [t.status for t in Sweep.load(folder).trials] == ["completed"] * 4


def test_why_a_dead_worker_left_trials_unstarted_is_not_kept_once_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "_work", dying_after_the_first_trial)
    path = write_sweep(tmp_path, GRID)
    folder = tmp_path / "runs" / "grid"
    assert mlp("sweep", str(path), "--workers", "1", "--quiet")[0] == 1
    monkeypatch.setattr(sweep, "_work", WORK)
    again = Sweep.load(folder)
    on_change, should_stop = _stop_after(1)  # a Ctrl-C in the first trial resumed
    assert not run_local(again, workers=1, on_change=on_change, should_stop=should_stop)
    assert again.trials[-1].status == "pending"
    assert all(t.reason is None for t in again.trials if t.status == "pending")
    code, out, err = mlp("sweep", "show", str(folder))
    assert code == 0, err
    assert "not started" not in out + err


def refuse_the_second_worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Let the first worker process start and refuse the next for want of file descriptors,
    as a `ulimit -n` a few files above what the sweep holds does; returns the real start."""
    started: list[Any] = []
    real = ForkProcess._Popen

    def popen(process: Any) -> Any:
        if started:
            raise OSError(errno.EMFILE, "Too many open files")
        started.append(process)
        return real(process)

    monkeypatch.setattr(ForkProcess, "_Popen", staticmethod(popen))
    return real


def test_workers_the_system_will_not_start_end_the_sweep_in_one_error_without_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first worker would wait for work forever, and the sweep's exit for it.
    real = refuse_the_second_worker(monkeypatch)
    path = write_sweep(tmp_path, GRID)
    try:
        code, _, err = mlp("sweep", str(path), "--workers", "2", "--quiet")
        assert not multiprocessing.active_children()
    finally:
        for child in multiprocessing.active_children():
            child.kill()
    message = " ".join(err.split())
    assert code == 1, message
    assert "could not start the sweep's worker processes: Too many open files" in message
    assert "mlp sweep --resume" in message
    monkeypatch.setattr(ForkProcess, "_Popen", staticmethod(real))
    code, _, err = mlp("sweep", "--resume", str(tmp_path / "runs" / "grid"), "--quiet")
    assert code == 0, err
    assert [t.status for t in Sweep.load(tmp_path / "runs" / "grid").trials] == ["completed"] * 4


def test_workers_the_system_will_not_start_leave_the_callers_own_processes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run_local is the library's: a program calling it may have processes of its own.
    mine = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    mine.start()
    refuse_the_second_worker(monkeypatch)
    sweep = plan(write_sweep(tmp_path, GRID))
    try:
        with pytest.raises(MLPError, match="could not start the sweep's worker"):
            run_local(sweep, workers=2)
        assert mine.is_alive()
        assert multiprocessing.active_children() == [mine]
    finally:
        for child in multiprocessing.active_children():
            child.kill()
            child.join()


@pytest.mark.parametrize("given", [0, 1])  # the sweep's own queue's pipe, or the pool's
def test_workers_the_system_will_not_give_pipes_end_the_sweep_in_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: int
) -> None:
    # As under a `ulimit -n` lower still: no file descriptor for the pipes that would carry
    # the workers' work and news, before any worker is started.
    pipes: list[Any] = []
    real = multiprocessing.connection.Pipe

    def pipe(duplex: bool = True) -> Any:
        if len(pipes) == given:
            raise OSError(errno.EMFILE, "Too many open files")
        pipes.append(real(duplex))
        return pipes[-1]

    monkeypatch.setattr(multiprocessing.connection, "Pipe", pipe)
    path = write_sweep(tmp_path, GRID)
    code, _, err = mlp("sweep", str(path), "--workers", "2", "--quiet")
    message = " ".join(err.split())
    assert code == 1, message
    assert message.startswith(
        "error: could not start the sweep's worker processes: Too many open files"
    ), message
    assert "mlp sweep --resume" in message
    assert not multiprocessing.active_children()
    monkeypatch.setattr(multiprocessing.connection, "Pipe", real)
    code, _, err = mlp("sweep", "--resume", str(tmp_path / "runs" / "grid"), "--quiet")
    assert code == 0, err
    assert [t.status for t in Sweep.load(tmp_path / "runs" / "grid").trials] == ["completed"] * 4


# The command line as a low `ulimit -n` leaves it when the pool asks for a pipe: every file
# descriptor taken (the limit set, through libc, at the lowest one free), so that nothing
# more can be opened, not even a module's file to import.
WITHOUT_A_FILE_DESCRIPTOR = """
import ctypes, errno, multiprocessing.connection, os, runpy, sys

class Limit(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_ulong), ("hard", ctypes.c_ulong)]

def pipe(duplex=True):
    assert "resource" not in sys.modules  # as in a command that has not needed it
    libc, limit, free = ctypes.CDLL(None), Limit(), os.dup(0)
    os.close(free)
    libc.getrlimit(7, ctypes.byref(limit))  # RLIMIT_NOFILE
    libc.setrlimit(7, ctypes.byref(Limit(free, limit.hard)))
    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

multiprocessing.connection.Pipe = pipe
sys.argv = sys.argv[1:]  # the child's file, then mlp's arguments
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's RLIMIT_NOFILE")
def test_workers_without_a_file_descriptor_left_name_the_limit(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID)
    child = [sys.executable, "-c", WITHOUT_A_FILE_DESCRIPTOR, str(HERE / "sweep_child.py")]
    proc = subprocess.run(
        [*child, "sweep", str(path), "--workers", "2"],
        env={k: v for k, v in os.environ.items() if k != "MLP_DEBUG"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 1, message
    assert message.startswith("error: could not start the sweep's worker processes:"), message
    assert "Too many open files (`ulimit -n` allows " in message


def test_an_asha_trial_stopped_while_its_verdict_is_on_the_way_is_pruned_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C reaches the sweep and its worker as trial t001 ends its first epoch, with the
    # verdict on that epoch (prune) still on its way: the trial stops pruned there, as
    # without the Ctrl-C, not interrupted, for --resume to prune it a rung later.
    real = sweep.run_trial
    ctrl_c = tmp_path / "ctrl-c"

    def ctrl_c_at_the_first_epochs_end(
        run_dir: Path, config: Any, report: Any, should_stop: Any
    ) -> Outcome:
        def reporting(record: dict[str, Any]) -> bool:
            if run_dir.name == "t001":
                ctrl_c.touch()  # as the sweep's handler notes it
                sweep._WORKER["interrupted"] = True  # as the worker's handler does
            return bool(report(record))

        return real(run_dir, config, reporting, should_stop)

    monkeypatch.setattr(sweep, "run_trial", ctrl_c_at_the_first_epochs_end)
    s = plan(write_sweep(tmp_path, ASHA))
    assert not run_local(s, workers=1, should_stop=ctrl_c.exists)
    assert [(t.status, t.epoch) for t in s.trials[:2]] == [("completed", 4), ("pruned", 1)]


def test_a_resumed_asha_sweep_stops_the_same_trials(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, ASHA)
    whole = plan(path, out=tmp_path / "whole")
    assert run_local(whole, workers=1)
    part = plan(path, out=tmp_path / "part")
    on_change, should_stop = _stop_after(7)  # inside the second or third trial
    assert not run_local(part, workers=1, on_change=on_change, should_stop=should_stop)
    again = Sweep.load(tmp_path / "part")
    assert any(t.status in ("interrupted", "pending") for t in again.trials)
    assert run_local(again, workers=1)
    assert [(t.status, t.epoch) for t in again.trials] == [
        (t.status, t.epoch) for t in whole.trials
    ]
    assert any(t.status == "pruned" for t in whole.trials)


def test_settings_the_sweep_sets_itself_cannot_be_swept(tmp_path: Path) -> None:
    body = GRID.replace(
        "  training.epochs:", "  training.threads: {values: [1, 2]}\n  training.epochs:"
    )
    with pytest.raises(ConfigError, match=r"s.yaml:7: parameters.training.threads: the threads"):
        plan(write_sweep(tmp_path, body))
    code, _, err = mlp("sweep", str(write_sweep(tmp_path, GRID)), "--cpus-per-trial", "256")
    assert code == 2
    assert "--cpus-per-trial 256 is more than the" in err
    assert not (tmp_path / "runs").exists()


def test_the_live_table_of_a_long_sweep_shows_the_running_and_the_best_trials(
    tmp_path: Path,
) -> None:
    from rich.console import Console

    from mlp_cli.render import sweep_table

    s = plan(write_sweep(tmp_path, RANDOM.format(seed=0)))
    for i, trial in enumerate(s.trials[:50]):
        trial.status, trial.best, trial.epoch = "completed", i / 100, 1
    s.trials[60].status = s.trials[61].status = "running"
    console = Console(width=200, record=True)
    console.print(sweep_table(s, width=200, height=20))
    text = console.export_text()
    shown = [line.split()[0] for line in text.splitlines() if line.startswith("t0")]
    assert shown == [f"t{i:03d}" for i in (*range(40, 50), 60, 61)]  # trial order
    assert f"{len(s.trials) - 12} more trials: mlp sweep show DIR" in text


def test_an_empty_list_of_values_is_refused_in_the_singular(tmp_path: Path) -> None:
    body = GRID.replace("{values: [0.01, 0.001]}", "{values: []}")
    with pytest.raises(ConfigError, match=r"s.yaml:6: parameters.optimizer.lr.values: ") as info:
        plan(write_sweep(tmp_path, body))
    assert "expected at least 1 item, found 0." in str(info.value)


def test_int_uniform_bounds_beyond_64_bits_are_refused(tmp_path: Path) -> None:
    body = RANDOM.format(seed=0).replace("min: 16, max: 20", "min: 1, max: 1.0e+20")
    with pytest.raises(ConfigError, match=r"s.yaml:9: parameters.training.batch_size.max: int_u"):
        plan(write_sweep(tmp_path, body))


def test_uniform_bounds_further_apart_than_the_largest_float_are_refused(tmp_path: Path) -> None:
    body = RANDOM.format(seed=0).replace("min: 0, max: 0.001", "min: -1.5e+308, max: 1.5e+308")
    with pytest.raises(ConfigError, match=r"s.yaml:8: parameters.regularization.l2.max: uniform"):
        plan(write_sweep(tmp_path, body))


def test_a_base_config_path_is_relative_to_the_sweep_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sweep(tmp_path, GRID)  # writes base.yaml beside this folder's s.yaml
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.yaml").write_text(GRID)
    monkeypatch.chdir(tmp_path)  # a base.yaml here must not be taken for sub/base.yaml
    with pytest.raises(ConfigError, match=r"config file .sub/base\.yaml. not found"):
        plan(Path("sub/s.yaml"))


def test_a_sweep_where_every_trial_fails_exits_with_an_error(tmp_path: Path) -> None:
    body = GRID.replace("[0.01, 0.001]", "[1.0e+38, 1.0e+39]").replace(
        "values: [sigmoid, relu]}", "values: [relu]}\n  optimizer.name: {value: sgd}"
    )
    code, out, err = mlp("sweep", str(write_sweep(tmp_path, body)), "--json")
    assert code == 1
    assert [t["status"] for t in json.loads(out)] == ["failed", "failed"]
    assert "no trial of the sweep gave a val_acc" in err
    assert not (tmp_path / "runs" / "grid" / "best").exists()


def test_a_best_file_of_the_users_is_refused_before_any_trial_trains(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    path = write_sweep(tmp_path, GRID)
    s = plan(path, out=folder)
    s.save()
    (folder / "best").write_text("my notes")
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 2
    assert "best" in err
    assert "that mlp did not make" in err
    assert (folder / "best").read_text() == "my notes"
    assert sorted(p.name for p in folder.iterdir()) == ["best", "sweep.json"]
    code, _, err = mlp("sweep", "--resume", str(folder), "--out", str(tmp_path / "x"))
    assert code == 2
    assert "a resumed sweep goes on in its own folder" in err


@pytest.mark.parametrize("finished", [True, False])
def test_a_trial_continued_by_hand_past_the_sweeps_epochs_is_refused_on_resume(
    tmp_path: Path, finished: bool
) -> None:
    # Taken as the trial's result, a run of more epochs than the sweep asks for would be
    # ranked against trials of fewer, and saved in a state the sweep no longer reads.
    path = write_sweep(tmp_path, GRID)
    folder = tmp_path / "runs" / "grid"
    if finished:
        assert mlp("sweep", str(path), "--workers", "1")[0] == 0
    else:  # stopped in its first trial, which is then continued by hand
        s = plan(path)
        folder.mkdir(parents=True)
        assert not run_local(s, workers=1, should_stop=lambda: s.trials[0].epoch >= 1)
        s.save()
    state = (folder / "sweep.json").read_bytes()
    code, _, err = mlp("train", "--resume", str(folder / "t000"), "--set", "training.epochs=3")
    assert code == 0, err
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 2
    said = " ".join(err.split())
    assert f"trial t000's run '{folder / 't000'}' has trained 3 epochs" in said
    assert "more than the 2 the sweep gives it" in said
    assert "Traceback" not in err
    assert (folder / "sweep.json").read_bytes() == state
    assert mlp("sweep", "show", str(folder))[0] == 0


def test_refusing_the_best_trial_continued_by_hand_says_to_move_its_best_link_too(
    tmp_path: Path,
) -> None:
    # Moving only the trial's folder left the sweep's 'best' link to nowhere, which the next
    # --resume refused as a link mlp did not make.
    path = write_sweep(tmp_path, GRID)
    folder = tmp_path / "runs" / "grid"
    assert mlp("sweep", str(path), "--workers", "1")[0] == 0
    best = os.readlink(folder / "best")
    code, _, err = mlp("train", "--resume", str(folder / best), "--set", "training.epochs=3")
    assert code == 0, err
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 2
    said = " ".join(err.split())
    assert f"trial {best}'s run '{folder / best}' has trained 3 epochs" in said
    assert "and the sweep's 'best' link to it" in said
    (folder / best).rename(tmp_path / "kept")
    (folder / "best").rename(tmp_path / "kept-best")
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 0, err


def test_an_ended_trial_continued_by_hand_is_refused_on_resume(tmp_path: Path) -> None:
    # Stopped early within the sweep's epochs, then trained on: --resume would score the
    # best trial's test accuracy on weights of an epoch the sweep never ran, and save it in
    # a state the sweep no longer reads.
    body = GRID.replace("{value: 2}", "{value: 6}") + (
        "  training.early_stopping.patience: {value: 1}\n"
        "  training.early_stopping.min_delta: {value: 10.0}\n"
    )
    path = write_sweep(tmp_path, body)
    folder = tmp_path / "runs" / "grid"
    assert mlp("sweep", str(path), "--workers", "1")[0] == 0
    state = (folder / "sweep.json").read_bytes()
    trial = Sweep.load(folder).trials[0]
    assert (trial.status, trial.epoch) == ("early_stopped", 2)
    code, _, err = mlp(
        "train", "--resume", str(folder / "t000"), "--set", "training.early_stopping.patience=5"
    )
    assert code == 0, err
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 2
    said = " ".join(err.split())
    assert f"trial t000's run '{folder / 't000'}' has trained 6 epochs" in said
    assert "more than the 2 it had when the sweep recorded it as early_stopped" in said
    assert (folder / "sweep.json").read_bytes() == state


def test_a_trial_trained_by_hand_meanwhile_is_left_to_resume_not_failed(
    tmp_path: Path,
) -> None:
    # `mlp train --resume` of a trial holds its run folder while the sweep is resumed: the
    # trial waits for it, as an ended trial is never run again.
    s = plan(write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 4}")))
    s.dir.mkdir(parents=True)
    assert not run_local(s, workers=1, should_stop=lambda: s.trials[0].epoch >= 1)
    s.save()
    assert s.trials[0].status == "interrupted"
    before = s.trials[0].epoch
    with locks.held(s.dir / "t000" / LOCK_FILE):  # as a trainer holds it
        again = Sweep.load(s.dir)
        assert run_local(again, workers=1)
    (s.dir / "t000" / LOCK_FILE).unlink()
    first = again.trials[0]
    assert (first.status, first.epoch) == ("interrupted", before)
    assert first.reason is not None
    assert "in use by another mlp process (pid 4242)" in first.reason
    assert [t.status for t in again.trials[1:]] == ["completed"] * 3
    assert run_local(again, workers=1)
    assert (again.trials[0].status, again.trials[0].epoch) == ("completed", 4)


def test_a_trial_stopped_by_a_full_disk_is_left_to_resume_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Else it ended as failed, never to be run again by --resume, though freeing some space
    # was all it needed; only training gone wrong is a trial's result.
    s = plan(write_sweep(tmp_path, GRID))
    s.dir.mkdir(parents=True)
    real = np.savez

    def full_disk(*args: object, **arrays: object) -> None:  # the workers are forked
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full_disk)
    assert run_local(s, workers=1)
    s.save()
    assert [t.status for t in s.trials] == ["interrupted"] * 4
    assert all("checkpoint.npz': the disk is full" in (t.reason or "") for t in s.trials)
    monkeypatch.setattr(np, "savez", real)  # space was freed
    again = Sweep.load(s.dir)
    assert run_local(again, workers=1)
    assert [t.status for t in again.trials] == ["completed"] * 4


def test_a_trial_whose_config_mlp_refuses_fails_and_is_not_run_again_by_resume(
    tmp_path: Path,
) -> None:
    # A sweep.json keeps readable a trial config holding a setting refused since (as
    # `mlp train` trains it no more); left interrupted, every --resume refused it again
    # and said to resume once more, where nothing but another config can put it right.
    s = plan(write_sweep(tmp_path, GRID))
    diverging = s.trials[1].config
    diverging["optimizer"] = {"name": "sgd", "lr": 0.01}
    diverging["regularization"] = {"l2": 1000.0}
    s.dir.mkdir(parents=True)
    s.save()
    loaded = Sweep.load(s.dir)
    assert run_local(loaded, workers=1)
    loaded.save()
    assert [t.status for t in loaded.trials] == ["completed", "failed", "completed", "completed"]
    assert "regularization.l2" in (loaded.trials[1].reason or "")
    assert loaded.unfinished() == []  # nothing left for --resume


def test_resuming_a_sweep_in_a_folder_that_takes_no_files_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Else taking the lock failed first: exit code 1 and a message about its file, as if
    # a write failed during the work, not a folder refused before it.
    s = plan(write_sweep(tmp_path, GRID))
    s.dir.mkdir(parents=True)
    s.save()
    state = (s.dir / "sweep.json").read_bytes()

    real_open = os.open

    def no_new_files(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # As in a folder of another user's that this one may only read.
        if flags & os.O_CREAT and Path(path).parent == s.dir:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_new_files)
    code, _, err = mlp("sweep", "--resume", str(s.dir))
    said = " ".join(err.split())
    assert code == 2
    assert f"cannot write the sweep folder '{s.dir}': Permission denied" in said
    assert "lock file" not in said
    assert (s.dir / "sweep.json").read_bytes() == state
    assert sorted(p.name for p in s.dir.iterdir()) == ["sweep.json"]


@pytest.mark.parametrize("kind", ["file", "link"])
def test_a_file_in_place_of_a_trial_still_to_train_is_refused_before_any_trial_trains(
    tmp_path: Path, kind: str
) -> None:
    # Else the trial failed, never to be run again, saying to choose another --out.
    s = plan(write_sweep(tmp_path, GRID))
    s.dir.mkdir(parents=True)
    s.save()
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes")
    if kind == "file":
        (s.dir / "t001").write_text("my notes")
    else:
        (s.dir / "t001").symlink_to(mine)
    state = (s.dir / "sweep.json").read_bytes()
    code, _, err = mlp("sweep", "--resume", str(s.dir))
    assert code == 2
    said = " ".join(err.split())
    assert f"'{s.dir / 't001'}' is a {kind}, not the folder" in said
    assert said.endswith(f"then resume the sweep again: mlp sweep --resume {s.dir}")
    assert "--out" not in said
    assert (s.dir / "sweep.json").read_bytes() == state
    assert sorted(p.name for p in s.dir.iterdir()) == ["sweep.json", "t001"]
    assert mine.read_text() == "my notes"


def test_a_trial_whose_folder_was_deleted_starts_again_with_a_record_of_its_new_run(
    tmp_path: Path,
) -> None:
    # Else its new epochs met the best epoch of the deleted run, a state the sweep saves
    # every second and that `mlp sweep show` and --resume then refused.
    body = GRID.replace("{value: 2}", "{value: 4}").replace(
        "{name: val_acc, goal: maximize}", "{name: val_loss, goal: minimize}"
    )
    s = plan(write_sweep(tmp_path, body))
    s.dir.mkdir(parents=True)
    assert not run_local(s, workers=1, should_stop=lambda: s.trials[0].epoch >= 2)
    s.save()
    assert s.trials[0].status == "interrupted"
    assert s.trials[0].best_epoch >= 2
    shutil.rmtree(s.dir / "t000")
    again = Sweep.load(s.dir)
    seen: list[tuple[int, int]] = []

    def on_change() -> None:
        again.check()  # what every save writes, and Sweep.load reads back
        trial = again.trials[0]
        if trial.status == "running":
            seen.append((trial.epoch, trial.best_epoch))

    assert run_local(again, workers=1, on_change=on_change)
    assert all(best <= epoch for epoch, best in seen), seen
    assert seen[0] == (0, 0)  # from its start: nothing of the deleted run is shown
    assert (again.trials[0].status, again.trials[0].epoch) == ("completed", 4)


def test_a_trial_resumed_from_an_older_checkpoint_keeps_the_record_of_its_earlier_epochs(
    tmp_path: Path,
) -> None:
    # Its worker killed after writing an epoch to metrics.jsonl but before the checkpoint, a
    # trial trains that epoch again: the epochs before it are still its run's, with their
    # best and time.
    body = GRID.replace("{value: 2}", "{value: 6}")
    s = plan(write_sweep(tmp_path, body))
    s.dir.mkdir(parents=True)
    assert not run_local(s, workers=1, should_stop=lambda: s.trials[0].epoch >= 1)
    s.save()
    older = (s.dir / "t000" / "checkpoint.npz").read_bytes()
    again = Sweep.load(s.dir)
    had = again.trials[0].epoch
    assert not run_local(again, workers=1, should_stop=lambda: again.trials[0].epoch > had)
    again.save()
    (s.dir / "t000" / "checkpoint.npz").write_bytes(older)
    last = Sweep.load(s.dir)
    seen: list[tuple[float, int, float, int]] = []

    def on_change() -> None:
        trial = last.trials[0]
        if trial.status == "running" and trial.epoch:
            runs = [r for r in sweep.read_history(last.run_dir(trial)) if r["epoch"] <= trial.epoch]
            best = max(runs, key=lambda r: float(r["val_acc"]))
            seconds = sum(float(r["time"]) for r in runs)
            seen.append((trial.seconds, trial.best_epoch, seconds, best["epoch"]))

    assert run_local(last, workers=1, on_change=on_change)
    assert seen
    for seconds, best_epoch, run_seconds, run_best_epoch in seen:
        assert seconds >= run_seconds - 1e-6, seen
        assert best_epoch == run_best_epoch, seen


def test_a_trial_finished_by_hand_keeps_its_runs_time(tmp_path: Path) -> None:
    # Not the time its checkpoint took to read, which is all the resumed sweep spends on it.
    s = plan(write_sweep(tmp_path, GRID.replace("{value: 2}", "{value: 4}")))
    s.dir.mkdir(parents=True)
    assert not run_local(s, workers=1, should_stop=lambda: s.trials[0].epoch >= 1)
    s.save()
    assert s.trials[0].status == "interrupted"
    code, _, err = mlp("train", "--resume", str(s.dir / "t000"))
    assert code == 0, err
    saved = checkpoint.load(s.dir / "t000" / "checkpoint.npz", checkpoint=True)
    assert saved.meta.training is not None
    again = Sweep.load(s.dir)
    assert run_local(again, workers=1)
    assert again.trials[0].status == "completed"
    assert again.trials[0].seconds == saved.meta.training.seconds


def test_damaged_metrics_records_are_left_out_when_the_sweep_reads_a_trial(
    tmp_path: Path,
) -> None:
    body = GRID.replace("values: [sigmoid, relu]", "value: relu") + (
        "early_terminate: {type: asha, grace_period: 1, reduction_factor: 2}\n"
    )
    s = plan(write_sweep(tmp_path, body))
    assert run_local(s, workers=1)
    path = s.dir / "t000" / "metrics.jsonl"
    good = path.read_text().splitlines()
    damaged = [
        '{"foo": 1}',
        good[0].replace('"val_acc": ', '"val_acc": "x", "was": '),
        good[0].replace('"epoch": 1', '"epoch": NaN'),
        good[0].replace('"epoch": 1', '"epoch": Infinity'),
        good[0].replace('"epoch": 1', '"epoch": "1"'),
        good[0].replace('"epoch": 1', '"epoch": 0'),
        good[0].replace('"time": ', '"time": Infinity, "was": '),
    ]
    path.write_text("\n".join([good[0], *damaged, *good[1:]]) + "\n")
    assert sweep.read_history(s.dir / "t000") == [json.loads(line) for line in good]
    code, _, err = mlp("sweep", "--resume", str(s.dir))  # the pruner's replay and the picture
    assert code == 0, err
    assert "Traceback" not in err
    path.write_text("\n".join(damaged) + "\n")
    assert sweep.read_history(s.dir / "t000") == []
    code, _, err = mlp("sweep", "--resume", str(s.dir))
    assert code == 0, err


def test_an_infinite_val_loss_of_an_older_run_is_no_value_and_the_state_is_saved(
    tmp_path: Path,
) -> None:
    body = GRID.replace("{name: val_acc, goal: maximize}", "{name: val_loss, goal: minimize}")
    s = plan(write_sweep(tmp_path, body), out=tmp_path / "loss")
    s.dir.mkdir()
    s.save()
    run = s.run_dir(s.trials[0])
    run.mkdir()
    record = '{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": Infinity, '
    (run / "metrics.jsonl").write_text(record + '"val_acc": 0.1, "lr": 0.01, "time": 1.0}\n')
    s.started(0)
    s.interrupt_running("stopped")  # reads metrics.jsonl, then saves
    again = Sweep.load(s.dir)
    assert (again.trials[0].status, again.trials[0].epoch) == ("interrupted", 1)
    assert again.trials[0].last is None
    assert again.trials[0].best is None


@pytest.mark.parametrize("field", ["id", "status"])
def test_a_sweep_states_trial_id_or_status_of_any_length_is_cut_short(
    tmp_path: Path, field: str
) -> None:
    good_dir, state = _saved_state(tmp_path)
    state["trials"][0][field] = "x" * 5000
    (good_dir / "sweep.json").write_text(json.dumps(state))
    code, _, err = mlp("sweep", "show", str(good_dir))
    assert code == 1, err
    assert f"'{'x' * 37}...'" in err
    assert len(err) < 1000


def test_a_sweep_state_with_settings_no_sweep_file_gives_is_refused(tmp_path: Path) -> None:
    _, state = _saved_state(tmp_path)
    first = state["trials"][0]

    def with_params(params: dict[str, Any]) -> str:
        return json.dumps({**state, "trials": [{**first, "params": params}, *state["trials"][1:]]})

    broken = [
        with_params({**first["params"], "optimizer.lr": list(range(1000))}),
        with_params({**first["params"], "optimizer.lr": "x" * 3000}),
        with_params({**first["params"], "optimizer.lr": {"a": [[0] * 600] * 2}}),
        with_params({**first["params"], "a b": 1}),
        with_params({**first["params"], "k" * 200: 1}),
        with_params({"optimizer.lr": 0.01}),
        with_params({f"k{i}": 1 for i in range(200)}),
        json.dumps({**state, "name": "n" * 5000}),
    ]
    for text in broken:
        (tmp_path / "sweep.json").write_text(text)
        for command in (("sweep", "show"), ("sweep", "--resume")):
            code, _, err = mlp(*command, str(tmp_path))
            assert code == 1, text[:200]
            assert "is not a sweep state mlp can read" in err, err
    # What a sweep file can give: a section's settings, a list, a text of a few layers.
    body = GRID.replace("{values: [sigmoid, relu]}", "{values: [sigmoid, relu]}\n") + (
        "  training.early_stopping: {value: {patience: 2}}\n"
        "  model.layers: {values: [400-16-10, [400, 32, 10]]}\n"
    )
    fine = plan(write_sweep(tmp_path, body), out=tmp_path / "fine")
    fine.dir.mkdir()
    fine.save()
    code, out, err = mlp("sweep", "show", str(fine.dir))
    assert code == 0, err
    assert "[400, 32, 10]" in out


def test_a_results_csv_that_is_a_folder_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    s = plan(write_sweep(tmp_path, GRID), out=folder)
    s.save()
    (folder / "results.csv").mkdir()
    (folder / "results.csv" / "notes.txt").write_text("mine")
    before = (folder / "sweep.json").read_bytes()
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 2
    assert "cannot write the sweep results" in err
    assert "results.csv': it is a folder" in err
    assert (folder / "sweep.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv", "sweep.json"]
    assert (folder / "results.csv" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("best", lambda p: p.write_text("my notes")),
        ("best", lambda p: p.symlink_to(Path("gone", "t009"))),  # not a sibling: not mlp's
        ("sweep.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nmine")),
        ("sweep.png", Path.mkdir),
        ("results.csv", Path.mkdir),
    ],
    ids=["best file", "best link to nowhere", "picture", "picture folder", "results folder"],
)
def test_what_resume_refuses_in_the_sweep_folder_says_what_resuming_can_do(
    tmp_path: Path, name: str, make: Callable[[Path], Any]
) -> None:
    # The sweep writes these at their names in its own folder, and --resume takes no --out:
    # the way on is to move the thing away.
    folder = tmp_path / "mine"
    folder.mkdir()
    s = plan(write_sweep(tmp_path, GRID), out=folder)
    s.save()
    make(folder / name)
    code, _, err = mlp("sweep", "--resume", str(folder))
    assert code == 2
    said = " ".join(err.split())
    assert f"'{folder / name}'" in said
    assert said.endswith(f", then resume the sweep again: mlp sweep --resume {folder}")
    assert "move it away" in said or "rename or move that" in said
    for impossible in ("--out", "--set", "choose another", "give the path"):
        assert impossible not in said
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, "sweep.json"])


@pytest.mark.parametrize(
    "parameter",
    [
        "  'optimizer.lr ': {values: [0.01, 0.001]}",
        "  output.dir: {value: '" + "d" * 2100 + "'}",
    ],
    ids=["key with a space", "long value"],
)
def test_plan_refuses_a_setting_its_own_state_could_not_hold(
    tmp_path: Path, parameter: str
) -> None:
    # What plan writes into sweep.json, Sweep.check must read back: a sweep that plans but
    # cannot be shown or resumed is refused before it starts.
    body = GRID.replace("  optimizer.lr: {values: [0.01, 0.001]}", parameter)
    with pytest.raises(ConfigError, match="swept over a value a sweep cannot record"):
        plan(write_sweep(tmp_path, body))


@pytest.mark.parametrize(
    ("parameter", "method"),
    [
        ("{values: [0.01, .nan]}", "grid"),
        ("{value: .inf}", "grid"),
        ("{values: [1e400]}", "random"),
        ("{value: [0.01, -.inf]}", "random"),
    ],
)
def test_a_swept_value_that_is_no_finite_number_is_refused_with_its_line(
    tmp_path: Path, parameter: str, method: str
) -> None:
    body = (
        f"name: pp\nconfig: base.yaml\nmethod: {method}\nparameters:\n  optimizer.lr: {parameter}\n"
    )
    code, out, err = mlp("sweep", "plan", str(write_sweep(tmp_path, body)))
    assert code == 2, err
    assert "Traceback" not in err
    assert "s.yaml:5: parameters: 'optimizer.lr' is swept over a value a sweep cannot" in err
    assert "numbers must be finite" in err
    assert out == ""


def test_a_sweep_file_of_nested_aliases_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    # 600 bytes of YAML whose last value is a list of 10**9 zeros, built from aliases.
    lines = ["name: bomb", "config: base.yaml", "parameters:"]
    lines.append("  optimizer.lr: {value: &a0 [0,0,0,0,0,0,0,0,0,0]}")
    lines += [
        f"  optimizer.beta{i}: {{value: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]}}"
        for i in range(1, 9)
    ]
    path = write_sweep(tmp_path, "\n".join(lines) + "\n")
    child = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"  # 1 GiB of address space
        "from mlp_cli.cli import app\n"
        "app(['sweep', 'plan', sys.argv[1]])\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "s.yaml:6: parameters: 'optimizer.beta2' is swept over a value" in done.stderr
    assert "at most 2,000 characters as JSON" in done.stderr


def test_a_base_config_name_holding_a_nul_is_reported_as_such(tmp_path: Path) -> None:
    body = GRID.replace("config: base.yaml", 'config: "base\\0.yaml"')
    code, out, err = mlp("sweep", "plan", str(write_sweep(tmp_path, body)))
    assert code == 2, err
    assert "s.yaml:2: config: the sweep's base config cannot be used: " in err
    assert "holds a NUL character" in err
    assert out == ""


def test_a_sweep_file_name_holding_a_line_break_is_shown_escaped_on_one_line(
    tmp_path: Path,
) -> None:
    path = write_sweep(tmp_path, GRID.replace("metric:", "metric: [", 1), name="my\nsweep.yaml")
    code, out, err = mlp("sweep", "plan", str(path))
    assert code == 2, err
    assert err.startswith(f"error: {tmp_path}/my\\nsweep.yaml:4:1: invalid YAML"), err
    assert out == ""


@pytest.mark.parametrize("base", ["nothere.yaml", "folder", "fifo", "/dev/zero", "bad.yaml"])
def test_a_base_config_that_cannot_be_used_is_reported_as_such(tmp_path: Path, base: str) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "bad.yaml").write_text("model: {layers: [\n")
    body = GRID.replace("config: base.yaml", f"config: {base}")
    path = write_sweep(tmp_path, body)
    code, out, err = mlp("sweep", "plan", str(path))
    assert code == 2, err
    assert "Traceback" not in err
    assert "s.yaml:2: config: the sweep's base config cannot be used: " in err
    assert base in err
    assert "trial" not in err
    assert out == ""


def test_a_full_disk_during_a_sweep_is_an_error_naming_the_state_and_resume_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from mlp_cli import checkpoint

    real = checkpoint.atomic_write
    saves = []
    full = tmp_path / "full"  # seen by the forked workers too

    def full_after_one_save(path: Path, write: Any) -> None:
        if path.name == "sweep.json":  # written by this process only
            saves.append(path)
            if len(saves) > 1:  # the first save as the trials run
                full.touch()
        # A trial's weights wait for the disk to fill, which the sweep's save does: else a
        # trial could save its first checkpoint before the sweep saves its state again.
        deadline = time.monotonic() + 30
        while path.suffix == ".npz" and not full.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        # The small files still fit, weights and checkpoints no longer do.
        if full.exists() and (path.name == "sweep.json" or path.suffix == ".npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no file name, as real
        real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", full_after_one_save)
    path = write_sweep(tmp_path, GRID)
    code, _, err = mlp("sweep", str(path), "--workers", "1", "--quiet")
    assert code == 1, err
    assert "Traceback" not in err
    state = tmp_path / "runs" / "grid" / "sweep.json"
    assert f"could not write the sweep's state '{state}': the disk is full" in err
    assert "mlp sweep --resume" in err
    # No trial started after the error; the one running then stopped without a checkpoint,
    # its folder holding only what a run writes before its first, which --resume replaces.
    assert not (state.parent / "t003").exists()
    assert not (state.parent / "t000" / "checkpoint.npz").exists()
    monkeypatch.setattr(checkpoint, "atomic_write", real)  # space was freed
    code, _, err = mlp("sweep", "--resume", str(state.parent), "--quiet")
    assert code == 0, err
    assert [t.status for t in Sweep.load(state.parent).trials] == ["completed"] * 4


def test_a_shipped_sweep_is_named_from_any_folder_and_uses_a_shipped_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import shipped

    names = shipped.shipped_sweeps()
    assert names == ["400-25-10-recipe", "depth-width"]
    assert (HERE.parent / "sweeps").resolve() == shipped.SWEEPS_DIR  # one copy in the repository
    monkeypatch.chdir(tmp_path)
    for name in names:
        s = plan(name)
        assert s.source == str(shipped.SWEEPS_DIR / f"{name}.yaml")
        assert s.base_config in [c.name for c in shipped.shipped_configs()]  # a name, not a path
        code, out, err = mlp("sweep", "plan", name, "--json")
        assert code == 0, err
        assert len(json.loads(out)) == len(s.trials)
    assert plan("depth-width.yaml").name == "depth-width"
    code, out, _ = mlp("sweep", "--help")
    assert all(name in out for name in names)
    code, _, err = mlp("sweep", "plan", "depth-widht")
    assert code == 2
    assert "did you mean 'depth-width'?" in err
    assert "the name of a shipped sweep: 400-25-10-recipe, depth-width" in err
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_state_of_millions_of_values_is_refused_before_it_is_parsed(
    tmp_path: Path,
) -> None:
    import tracemalloc

    from mlp_cli.errors import MLPError

    # 18 MB of empty lists: parsed, each would cost 20 times its 3 bytes.
    empty_lists = ",".join(["[]"] * (sweep.MAX_STATE_VALUES + 1_000_000))
    (tmp_path / "sweep.json").write_text(f'{{"format_version": 1, "x": [{empty_lists}]}}')
    del empty_lists
    tracemalloc.start()
    try:
        with pytest.raises(MLPError, match=rf"more than {sweep.MAX_STATE_VALUES:,} values") as e:
            Sweep.load(tmp_path)
        assert e.value.exit_code == 1  # a damaged file, not a usage mistake
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * (tmp_path / "sweep.json").stat().st_size
    for command in (("sweep", "show"), ("sweep", "--resume")):
        code, _, err = mlp(*command, str(tmp_path))
        assert code == 1
        assert (
            f"is not a sweep state mlp can read (more than {sweep.MAX_STATE_VALUES:,} values)"
            in err
        )


def test_plan_refuses_a_sweep_whose_state_could_not_be_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_sweep(tmp_path, GRID)
    s = plan(path)
    values = json_values_at_most(s.state_text().encode())
    monkeypatch.setattr(sweep, "MAX_STATE_VALUES", 2 * values)  # as much as plan may write
    assert len(plan(path).trials) == 4
    monkeypatch.setattr(sweep, "MAX_STATE_VALUES", 2 * values - 2)
    with pytest.raises(ConfigError, match=r"s.yaml: the state of this sweep \(4 trials of 3"):
        plan(path)


@pytest.mark.parametrize(
    ("action", "option", "named"),
    [
        ("plan", ["--workers", "2"], "--workers"),
        ("plan", ["--cpus-per-trial", "2"], "--cpus-per-trial"),
        ("plan", ["--engine", "local"], "--engine"),
        ("plan", ["--engine", "ray", "--address", "127.0.0.1:6379"], "--engine and --address"),
        ("plan", ["--quiet"], "--quiet"),
        ("show", ["--workers", "2"], "--workers"),
        ("show", ["--storage", "/tmp/ray"], "--storage"),
        ("show", ["-q"], "--quiet"),
        ("show", ["--out", "elsewhere"], "--out"),
        ("show", ["--out", "x", "--quiet", "--workers", "2"], "--workers, --quiet and --out"),
    ],
)
def test_plan_and_show_refuse_the_options_of_running_a_sweep(
    tmp_path: Path, action: str, option: list[str], named: str
) -> None:
    target = (
        str(write_sweep(tmp_path, GRID)) if action == "plan" else str(_saved_state(tmp_path)[0])
    )
    code, out, err = mlp("sweep", action, target, *option)
    assert code == 2, err
    assert out == ""
    said = " ".join(err.split())
    assert f"{named} cannot be combined with `mlp sweep {action}`" in said
    assert f"Drop {named}." in said
    # what each action does take still works
    taken = ["--json"] if action == "show" else ["--json", "--out", str(tmp_path / "o")]
    code, out, err = mlp("sweep", action, target, *taken)
    assert code == 0, err
    assert json.loads(out)


def test_resume_refuses_address_without_ray_before_taking_the_sweeps_lock(tmp_path: Path) -> None:
    folder, _ = _saved_state(tmp_path)
    # Another process holds the sweep's lock, as a running mlp would: the option is still
    # the mistake named, found before the folder's lock or trials are looked at.
    with locks.held(folder / LOCK_FILE):
        code, _, err = mlp("sweep", "--resume", str(folder), "--address", "127.0.0.1:6379")
    assert code == 2, err
    assert "go with --engine ray" in err


def test_the_help_of_workers_says_it_sets_the_trials_at_once_with_either_engine() -> None:
    # run_ray takes --workers too: a private Ray's CPUs, and a cluster's trials at once
    code, out, _ = mlp("sweep", "--help")
    assert code == 0
    said = " ".join(out.replace("│", " ").split())
    assert "--workers N [1<=x<=256] Trials at once, with either engine" in said
    assert "local engine" not in said
