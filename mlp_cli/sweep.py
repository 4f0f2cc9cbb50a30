"""Sweeps: many training runs of one base config, each with other settings, compared by one
metric.

A sweep file names a base config, the settings to vary (keys are the dotted paths of
``--set``), how to combine them (every combination of listed values, or random draws from
the sweep's seed) and the per-epoch metric that ranks the trials. Every trial's config is
built and validated before the first one runs.

A trial is an ordinary run, trained by `mlp_cli.train` into ``<sweep dir>/<trial id>/``, so
``mlp evaluate/predict/show`` work on it and its weights equal those of ``mlp train --config
BASE --set ...`` on the same thread count. The sweep's own state is ``sweep.json`` beside
the trials (rewritten as they progress, so ``mlp sweep show`` can read a running sweep);
when every trial has ended, ``results.csv``, ``sweep.png`` and the ``best`` link are added.

Trials run in worker processes on this machine (`run_local`) or on a Ray cluster
(`mlp_cli.sweep_ray`); both run `run_trial` and report to the same `Sweep`. With
``early_terminate: asha``, asynchronous successive halving stops trials that are behind at
an epoch rung (Optuna's pruner here, Ray Tune's scheduler on Ray).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import itertools
import json
import math
import os
import re
import reprlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from mlp_cli import checkpoint, outputs, shipped
from mlp_cli.config import (
    Config,
    Override,
    _Section,
    _SettingError,
    config_from_dict,
    load_config_variants,
    parse_yaml_file,
    read_text,
    validate_as,
)
from mlp_cli.errors import ConfigError, MLPError, OutputError, TrainingError, UsageError
from mlp_cli.limits import counted, json_values_at_most, read_regular, shorten
from mlp_cli.plain import command, shown
from mlp_cli.stopping import STOP_SIGNALS, take_over
from mlp_cli.threads import usable_cores

if TYPE_CHECKING:
    from mlp_cli.data import Splits

STATE_FILE = "sweep.json"
RESULTS_FILE = "results.csv"
PICTURE_FILE = "sweep.png"
BEST = "best"
STATE_VERSION = 1
MAX_TRIALS = 10_000
MAX_STATE_BYTES = 2**26  # sweep.json: some 2 KB a trial
# A trial's record holds some 75 JSON values, and each value read costs far more memory
# than its text: they are counted before sweep.json is parsed.
MAX_STATE_VALUES = 500 * MAX_TRIALS
Metric = Literal["val_acc", "val_loss", "train_acc", "train_loss"]  # keys of metrics.jsonl
Goal = Literal["maximize", "minimize"]
Method = Literal["grid", "random"]  # every combination of listed values, or random draws
# Statuses of a trial that has ended and is not run again by --resume.
ENDED = ("completed", "early_stopped", "pruned", "failed")
STATUSES = ("pending", "running", "interrupted", *ENDED)
# sweep.json is rewritten at most this often while trials report (by either engine): a sweep
# of many short trials would otherwise rewrite a large file after each report.
SAVE_SECONDS = 1.0


# -- the sweep file ----------------------------------------------------------------------------


class MetricSpec(_Section):
    """The per-epoch metric (a key of metrics.jsonl) that ranks the trials."""

    name: Metric = "val_acc"
    goal: Goal = "maximize"


class Parameter(_Section):
    """One swept setting: a fixed `value`, a list of `values`, or a `distribution` from
    `min` to `max` (random search only)."""

    value: Any = None
    values: list[Any] | None = Field(default=None, min_length=1)
    distribution: Literal["uniform", "log_uniform_values", "int_uniform"] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        kinds = [k for k in ("value", "values", "distribution") if k in self.model_fields_set]
        if len(kinds) != 1:
            found = f"found {' and '.join(kinds)}" if kinds else "found none"
            raise _SettingError(
                "give exactly one of value (one setting), values (a list) or distribution"
                f" (with min and max); {found}"
            )
        err = _SettingError()
        if self.distribution is None:
            for bound in ("min", "max"):
                if bound in self.model_fields_set:
                    err.add(bound, "min and max go with a distribution only")
        elif self.min is None or self.max is None:
            err.add("min" if self.min is None else "max", f"{self.distribution} needs min and max")
        elif not self.min < self.max:
            err.add("max", f"must be more than min ({self.min:g}), found {self.max:g}")
        elif self.distribution == "uniform" and not math.isfinite(self.max - self.min):
            err.add("max", f"uniform takes bounds less than {_FLOAT_SPAN:.3g} apart")
        elif self.distribution == "log_uniform_values" and self.min <= 0:
            err.add("min", f"log_uniform_values needs min > 0, found {self.min:g}")
        elif self.distribution == "int_uniform" and max(abs(self.min), abs(self.max)) > _INT_BOUND:
            err.add("max", f"int_uniform takes bounds within ±{_INT_BOUND:.3g}")
        elif self.distribution == "int_uniform" and not (
            float(self.min).is_integer() and float(self.max).is_integer()
        ):
            err.add(
                "min", f"int_uniform needs whole-number bounds, found {self.min:g}, {self.max:g}"
            )
        if err.problems:
            raise err
        return self

    @property
    def choices(self) -> list[Any]:
        """The values a grid takes: the list, or the one fixed value."""
        return self.values if self.values is not None else [self.value]


class EarlyTerminate(_Section):
    """Asynchronous successive halving: at epochs grace_period * reduction_factor**k, a
    trial goes on only if it is in the best 1/reduction_factor of the trials that reached
    that epoch."""

    type: Literal["asha"]
    grace_period: int = Field(default=1, ge=1)
    # One trial in reduction_factor goes on, of at most MAX_TRIALS (and Ray Tune's scheduler
    # takes the factor's logarithm as a 64-bit number).
    reduction_factor: int = Field(default=3, ge=2, le=MAX_TRIALS)


class SweepSpec(_Section):
    """A sweep file."""

    name: str
    config: str  # the base config: a path relative to the sweep file, or a shipped name
    method: Method = "grid"
    metric: MetricSpec = MetricSpec()
    num_samples: int = Field(default=1, ge=1, le=MAX_TRIALS)
    seed: int = Field(default=0, ge=0)
    parameters: dict[str, Parameter] = Field(min_length=1)
    early_terminate: EarlyTerminate | None = None

    @field_validator("config")
    @classmethod
    def _home(cls, value: str) -> str:
        # As a shell would, which never sees a path written in a file
        return os.path.expanduser(value)

    @model_validator(mode="after")
    def _fits_method(self) -> SweepSpec:
        err = _SettingError()
        # Trials are named <name>-t0000 in their configs, which take names of 100 characters.
        if not _SWEEP_NAME.fullmatch(self.name) or self.name in (BEST, checkpoint.LATEST):
            err.add(
                "name",
                "expected a folder name of at most 90 letters, digits, '.', '_' or '-' that"
                " starts with a letter or digit and is not best or latest, found"
                f" {shorten(self.name, 100)!r}",
            )
        for key, param in self.parameters.items():
            if key in _NOT_SWEPT:
                err.problems.append((("parameters", key), _NOT_SWEPT[key]))
            if self.method == "grid" and param.distribution is not None:
                err.problems.append(
                    (
                        ("parameters", key, "distribution"),
                        "a grid sweep takes value or values; a distribution needs method: random",
                    )
                )
            if key == "training.seed" and self.method == "grid" and self.num_samples > 1:
                err.problems.append(
                    (
                        ("parameters", key),
                        "a grid sweep with num_samples > 1 repeats each combination with"
                        " seeds 0..num_samples-1; do not also sweep training.seed",
                    )
                )
        grid = math.prod(len(p.choices) for p in self.parameters.values()) * self.num_samples
        if self.method == "grid" and grid > MAX_TRIALS:
            err.add("parameters", f"the grid has {grid:,} trials, more than {MAX_TRIALS:,}")
        if err.problems:
            raise err
        return self


_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,89}")
# int_uniform draws with NumPy's 64-bit integers.
_INT_BOUND = 2**62
# uniform draws min + (max - min) * u, which must be a finite float.
_FLOAT_SPAN = sys.float_info.max

# Settings a sweep sets itself, so sweeping them would be silently undone.
_NOT_SWEPT = {
    "name": "each trial is named after the sweep and the trial; remove this parameter",
    "training.threads": "the threads of a trial are --cpus-per-trial; remove this parameter",
}


def combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    """The settings of every trial, in order: for a grid, every combination of values in
    file order (each repeated with seeds 0..num_samples-1 when num_samples > 1); for a
    random search, num_samples draws from a generator seeded with the sweep's seed."""
    params = spec.parameters
    if spec.method == "grid":
        trials = []
        for combo in itertools.product(*(p.choices for p in params.values())):
            for seed in range(spec.num_samples):
                settings = dict(zip(params, combo, strict=True))
                if spec.num_samples > 1:
                    settings["training.seed"] = seed
                trials.append(settings)
        return trials
    rng = np.random.default_rng(spec.seed)
    trials = []
    for _ in range(spec.num_samples):
        trial: dict[str, Any] = {}
        for key, p in params.items():
            if p.values is not None:
                trial[key] = p.values[int(rng.integers(len(p.values)))]
            elif p.distribution is None:
                trial[key] = p.value
            else:
                assert p.min is not None
                assert p.max is not None
                if p.distribution == "int_uniform":
                    trial[key] = int(rng.integers(int(p.min), int(p.max) + 1))
                    continue
                if p.distribution == "uniform":
                    x = rng.uniform(p.min, p.max)
                else:
                    x = math.exp(rng.uniform(math.log(p.min), math.log(p.max)))
                # 4 significant digits: the precision a learning rate is read at.
                trial[key] = min(max(float(f"{x:.4g}"), p.min), p.max)
        trials.append(trial)
    return trials


# -- trials and the sweep's state ----------------------------------------------------------------


@dataclass
class Trial:
    """One trial's settings, resolved config and progress."""

    id: str
    params: dict[str, Any]
    config: dict[str, Any]  # the resolved config, as config.yaml will hold it
    status: str = "pending"  # then running, and one of ENDED or interrupted
    reason: str | None = None  # why it failed, was interrupted or never started
    epoch: int = 0  # epochs done
    epochs: int = 0  # epochs asked for
    last: float | None = None  # the metric at the last epoch
    best: float | None = None  # its best value so far
    best_epoch: int = 0
    seconds: float = 0.0
    test_acc: float | None = None  # the best trial's, when the sweep ends
    # the epoch whose weights test_acc scores: the one its run kept (training's
    # early_stopping.monitor picks it), which need not be the sweep metric's best_epoch
    test_epoch: int | None = None

    def setting(self, key: str) -> str:
        """The swept setting `key` as the sweep file would write it ("" where it sets none)."""
        return show_value(self.params[key]) if key in self.params else ""


def show_value(value: Any) -> str:
    """A swept value as the sweep file would write it."""
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Sweep:
    """A sweep's trials and settings; `save` writes them to ``sweep.json`` in `dir`."""

    name: str
    dir: Path
    metric: Metric
    goal: Goal
    trials: list[Trial]
    method: Method = "grid"
    source: str = ""  # the sweep file it came from
    base_config: str = ""
    early_terminate: EarlyTerminate | None = None
    cpus_per_trial: Annotated[int, Field(ge=1, le=256)] = 1
    engine: Literal["local", "ray"] = "local"
    created: float = field(default_factory=time.time)

    # -- ranking --------------------------------------------------------------------------

    def better(self, a: float, b: float | None) -> bool:
        """Whether metric value `a` beats `b` (None: nothing yet)."""
        return b is None or (a > b if self.goal == "maximize" else a < b)

    def ranked(self) -> list[Trial]:
        """Trials with a metric value, best first (ties: earlier trial), then the rest."""
        sign = -1.0 if self.goal == "maximize" else 1.0
        return sorted(self.trials, key=lambda t: (t.best is None, sign * (t.best or 0.0)))

    def best_trial(self) -> Trial | None:
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0].best is not None else None

    def unfinished(self) -> list[int]:
        return [i for i, t in enumerate(self.trials) if t.status not in ENDED]

    def run_dir(self, trial: Trial) -> Path:
        return self.dir / trial.id

    # -- progress, as engines report it ------------------------------------------------------

    def started(self, index: int) -> None:
        from mlp_cli.train import CHECKPOINT_FILE

        trial = self.trials[index]
        trial.status, trial.reason = "running", None
        if not (self.run_dir(trial) / CHECKPOINT_FILE).is_file():  # its folder was gone
            trial.epoch, trial.last, trial.best, trial.best_epoch = 0, None, None, 0
            trial.seconds = 0.0

    def epoch_ended(self, index: int, record: Mapping[str, Any]) -> None:
        trial = self.trials[index]
        if trial.status == "running":  # not a report that arrived after the trial's end
            epoch = int(record["epoch"])
            if epoch <= trial.epoch:  # its run went back to an older checkpoint, which holds
                # the epochs before this one: the record is theirs, not the lost epochs'
                history = read_history(self.run_dir(trial))
                self._replay(trial, [r for r in history if int(r["epoch"]) < epoch])
            self._take(trial, record)
            trial.seconds += float(record.get("time") or 0.0)

    def _take(self, trial: Trial, record: Mapping[str, Any]) -> None:
        """One epoch's metrics.jsonl record into `trial`: its epoch, last and best metric."""
        trial.epoch = int(record["epoch"])
        value = record.get(self.metric)
        # An older run's val_loss may be infinite: no value to rank by, nor one JSON holds.
        trial.last = float(value) if value is not None and math.isfinite(value) else None
        if trial.last is not None and self.better(trial.last, trial.best):
            trial.best, trial.best_epoch = trial.last, trial.epoch

    def _replay(self, trial: Trial, history: Sequence[Mapping[str, Any]]) -> None:
        """`trial`'s epoch, metric and time made again from its run's records `history`."""
        trial.best, trial.best_epoch = None, 0
        trial.seconds = sum(float(r.get("time") or 0.0) for r in history)
        for record in history:
            self._take(trial, record)

    def ended(self, index: int, outcome: Outcome) -> None:
        trial = self.trials[index]
        trial.status, trial.reason = outcome.status, outcome.reason
        if outcome.history:  # the run's own record, whatever reports were missed
            self._replay(trial, outcome.history)
        if outcome.seconds:  # an engine that timed the trial itself, record or none
            trial.seconds = outcome.seconds

    def interrupt_running(self, reason: str) -> None:
        """End the trials still running as interrupted, with what their folders hold (each
        resumes from its last checkpoint), and save."""
        for index, trial in enumerate(self.trials):
            if trial.status == "running":
                history = read_history(self.run_dir(trial))
                self.ended(index, Outcome("interrupted", reason, history))
        self.save()

    def keys(self) -> list[str]:
        """The swept settings, in file order."""
        return list(dict.fromkeys(key for t in self.trials for key in t.params))

    def varied_keys(self) -> list[str]:
        """The swept settings that differ between trials (a fixed `value` is left out)."""
        return [
            key
            for key in self.keys()
            if len({json.dumps(t.params.get(key)) for t in self.trials}) > 1
        ]

    # -- sweep.json ---------------------------------------------------------------------------

    def state_text(self) -> str:
        """The text of sweep.json."""
        state = {"format_version": STATE_VERSION, **asdict(self)}
        state["dir"] = str(self.dir)
        if self.early_terminate is not None:
            state["early_terminate"] = self.early_terminate.model_dump()
        return json.dumps(state, indent=1, allow_nan=False)

    def save(self, *, claim: bool = False) -> None:
        """Write sweep.json; `claim`: create it exclusively, the first save of a new sweep,
        so that of two sweeps started into one folder at once only one goes on."""
        text = self.state_text()
        path = self.dir / STATE_FILE
        # The file is replaced whole or not at all: a failed save leaves the last state,
        # from which --resume goes on (a trial it says is running is run again).
        hint = (
            f"The folder keeps the last state saved; once this is fixed, `{resume_hint(self)}`"
            " continues the sweep from it."
            if path.exists() and not claim
            else "Nothing of the sweep was saved; once this is fixed, start it again."
        )
        with outputs.writing(path, "the sweep's state", hint):
            if claim:
                try:  # an empty file first, then the state in one replace, as ever after
                    open(path, "xb").close()
                except FileExistsError:
                    raise UsageError(
                        f"the sweep folder '{shown(self.dir)}' was taken by another sweep started "
                        f"at the same time (its {STATE_FILE} appeared while this one was "
                        "starting); this sweep wrote nothing there. Choose another --out or name"
                    ) from None
            try:
                checkpoint.atomic_write(path, lambda f: f.write(text.encode()))
            except BaseException:
                if claim:
                    path.unlink(missing_ok=True)  # ours, and empty
                raise

    def check(self) -> None:
        """Raise ValueError for a state `mlp sweep` would not have written beyond what the
        field types refuse: names the sweep file could not give, numbers that are not finite,
        accuracies outside 0 to 1, trial ids that are not plain folder names or repeat, and
        trial configs that are no valid config."""
        if not _SWEEP_NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name[:100]!r}")
        if not math.isfinite(self.created):
            raise ValueError(f"created {self.created}")
        ids = [t.id for t in self.trials]
        if not 1 <= len(ids) <= MAX_TRIALS or len(set(ids)) != len(ids):
            raise ValueError(f"{len(ids):,} trials, or two trials with one id")
        keys = list(self.trials[0].params)
        for t in self.trials:
            if not re.fullmatch(r"t[0-9]{3,5}", t.id) or t.status not in STATUSES:
                raise ValueError(
                    f"trial {shorten(t.id, 40)!r} with status {shorten(t.status, 40)!r}"
                )
            # Every trial sets the same settings, each a config key and a value short enough
            # to show in a table cell.
            if list(t.params) != keys or len(keys) > _MAX_SETTINGS:
                raise ValueError(f"trial {t.id}: other settings than trial {self.trials[0].id}")
            for key, value in t.params.items():
                if _unrecordable(key, value) is not None:
                    raise ValueError(f"trial {t.id}: a setting no sweep file gives")
            if not (0 <= t.epoch <= t.epochs and t.seconds >= 0):
                raise ValueError(f"trial {t.id}: epochs {t.epoch}/{t.epochs}")
            # Named apart: "epochs 3/3" would point at the two numbers that are right.
            for key, epoch in (("best_epoch", t.best_epoch), ("test_epoch", t.test_epoch)):
                if epoch is not None and not 0 <= epoch <= t.epoch:
                    ran = counted(t.epoch, "epoch")
                    raise ValueError(f"trial {t.id}: {key} {epoch} of a trial that ran {ran}")
            # pydantic reads "nan" and "inf" as floats, and json.loads 1e400 as inf.
            numbers = (t.last, t.best, t.seconds, t.test_acc)
            if not all(x is None or math.isfinite(x) for x in numbers):
                raise ValueError(f"trial {t.id}: a metric or time that is no finite number")
            # An accuracy is the share of the images it scores right.
            shares = (t.last, t.best) if self.metric.endswith("_acc") else ()
            for x in (*shares, t.test_acc):
                if x is not None and not 0.0 <= x <= 1.0:
                    raise ValueError(f"trial {t.id}: an accuracy of {x:g}, outside 0 to 1")
            config_from_dict(t.config, f"trial {t.id}'s config", trained=True)

    @classmethod
    def load(cls, folder: str | Path) -> Sweep:
        folder = Path(folder)
        path = folder / STATE_FILE
        if not path.is_file():
            raise UsageError(
                f"'{shown(folder)}' is not a sweep folder (it has no {STATE_FILE}); pass the folder"
                " `mlp sweep` printed when it started, e.g. runs/<sweep name>"
            )
        try:
            raw = read_regular(path, MAX_STATE_BYTES)
            if len(raw) > MAX_STATE_BYTES:
                raise ValueError(f"larger than {MAX_STATE_BYTES:,} bytes")
            if json_values_at_most(raw) > MAX_STATE_VALUES:
                raise ValueError(f"more than {MAX_STATE_VALUES:,} values")
            state = json.loads(raw, parse_constant=_no_constant)
            if not isinstance(state, dict) or state.pop("format_version", None) != STATE_VERSION:
                raise ValueError(f"not a sweep state of format version {STATE_VERSION}")
            state["dir"] = folder
            sweep = TypeAdapter(cls).validate_python(state)
            sweep.check()
        except (ValueError, ConfigError, OSError, RecursionError) as exc:  # ValidationError is one
            # A damaged file at the right path fails at run time (exit code 1), as a damaged
            # checkpoint, model or metrics file does; only a folder without one is a usage error.
            raise MLPError(
                f"'{shown(path)}' is not a sweep state mlp can read ({first_line(exc)}); it is "
                "written by `mlp sweep` and not meant to be edited"
            ) from None
        return sweep


def first_line(exc: BaseException) -> str:
    """An error's message, its first line only, or the error's type when it says nothing;
    for pydantic's, whose first line only counts its errors, the first error's key path and
    the value found there."""
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        found = "missing" if error["type"] == "missing" else reprlib.repr(error["input"])
        return f"{'.'.join(map(str, error['loc']))} {found}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# A dotted config key; its parts are short names (early_stopping), so that a trial's label
# (optimizer.lr=0.01, ...) stays short in the messages that show it.
_SETTING_KEY = re.compile(r"[A-Za-z0-9_]{1,40}(\.[A-Za-z0-9_]{1,40}){0,7}")
_MAX_SETTINGS = 100
_MAX_SETTING_CHARS = 2000  # a value as JSON, e.g. a list of a layer size per layer


def _unrecordable(key: str, value: Any) -> str | None:
    """Why `plan` could not write a swept setting into sweep.json (and `Sweep.check` would
    not read it back), or None when it can: a plain dotted config key, and a value that fits
    a table cell. The value is measured as JSON without writing out more than
    _MAX_SETTING_CHARS of it: YAML aliases can make a short file hold billions of items."""
    limits = (
        "keys are dotted config keys such as optimizer.lr, and a value is at most"
        f" {_MAX_SETTING_CHARS:,} characters as JSON"
    )
    if not _SETTING_KEY.fullmatch(key):
        return limits
    pieces = json.JSONEncoder(allow_nan=False).iterencode(value)
    try:
        size = sum(map(len, itertools.islice(pieces, _MAX_SETTING_CHARS + 1)))
    except ValueError:  # .nan, .inf or a number too large for a float, such as 1e400
        return "numbers must be finite, and the value holds .nan or .inf (1e400 reads as .inf)"
    return limits if size > _MAX_SETTING_CHARS else None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a sweep state holds")


# -- planning --------------------------------------------------------------------------------


# An escaped backslash, or JSON's escape of a character beyond U+FFFF as its two halves
# (\ud83d\ude00), which YAML reads as two lone surrogates: YAML writes it \U0001f600.
_JSON_ESCAPE = re.compile(r"\\\\|\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}")


def _as_yaml(value: Any) -> str:
    """`value` as YAML text that a ``--set`` reads back equal: JSON, with YAML's escapes."""

    def escape(match: re.Match[str]) -> str:
        if match[0] == "\\\\":
            return match[0]
        character = json.loads(f'"{match[0]}"')
        return f"\\U{ord(character):08x}"

    return _JSON_ESCAPE.sub(escape, json.dumps(value))


def plan(
    sweep_file: str | Path, *, out: str | Path | None = None, cpus_per_trial: int = 1
) -> Sweep:
    """Read and validate `sweep_file` (a path, or the name of a shipped sweep), and build and
    validate every trial's config.

    Raises `ConfigError` naming the file, line and key, or the trial and its settings when
    a combination gives an invalid config."""
    path = shipped.resolve(sweep_file, shipped.SWEEPS_DIR)
    source = shown(path)
    text = read_text(path, source, "sweep file")
    data, origins = parse_yaml_file(
        text, source, "sweep file", "at least name, config and parameters"
    )
    spec = validate_as(
        SweepSpec, data, origins, source, "sweep file", "name:, config:, parameters:"
    )
    combos = combinations(spec)
    width = max(3, len(str(len(combos) - 1)))
    ids = [f"t{i:0{width}d}" for i in range(len(combos))]

    def where(key: str) -> str:
        return origins.get(("parameters", key), origins.get(("parameters",), source))

    # The base config: a path is relative to the sweep file (never to the current folder);
    # a bare name is a file beside the sweep file or else a shipped config.
    beside, name = path.parent / spec.config, spec.config
    path_like = "/" in name or os.sep in name or name.endswith((".yaml", ".yml"))
    base = str(beside) if path_like or beside.is_file() else name
    variants = (
        # Named after the trial, as below, so that the base config's file name is not its name.
        [Override(f"name={_as_yaml(f'{spec.name}-{tid}')}", source)]
        + [Override(f"{key}={_as_yaml(value)}", where(key)) for key, value in combo.items()]
        for tid, combo in zip(ids, combos, strict=True)
    )
    try:  # reads the base config, so that its own problems are not blamed on a trial
        configs = load_config_variants(base, variants)
    except ConfigError as exc:
        raise ConfigError(
            f"{origins.get(('config',), source)}: config: the sweep's base config cannot be"
            f" used: {exc}"
        ) from None

    # Checked before any value is written out: a trial's settings are these values (or
    # numbers drawn between finite bounds, and the seeds of num_samples).
    for key, param in spec.parameters.items():
        for value in param.choices:
            problem = _unrecordable(key, value)
            if problem is not None:
                raise ConfigError(
                    f"{where(key)}: parameters: {key[:100]!r} is swept over a value a sweep"
                    f" cannot record: {problem}."
                )
    trials: list[Trial] = []
    for tid, combo in zip(ids, combos, strict=True):
        label = ", ".join(f"{key}={show_value(value)}" for key, value in combo.items())
        try:
            cfg = next(configs)
        except ConfigError as exc:
            raise ConfigError(f"trial {tid} ({label}) gives an invalid config:\n{exc}") from None
        if spec.metric.name.startswith("val_") and cfg.data.validation_size == 0:
            raise ConfigError(
                f"{origins.get(('metric',), source)}: metric: {spec.metric.name} needs a"
                f" validation split, but trial {tid} ({label}) has data.validation_size: 0;"
                " rank by train_acc or train_loss, or hold out validation images."
            )
        # Named after the sweep and the trial, on the trial's threads.
        training = cfg.training.model_copy(update={"threads": cpus_per_trial})
        cfg = cfg.model_copy(update={"name": f"{spec.name}-{tid}", "training": training})
        trials.append(Trial(tid, combo, cfg.model_dump(mode="json"), epochs=cfg.training.epochs))
    first_dir = trials[0].config["output"]["dir"]
    folder = Path(out) if out is not None else Path(first_dir) / spec.name
    sweep = Sweep(
        spec.name,
        folder,
        spec.metric.name,
        spec.metric.goal,
        trials,
        method=spec.method,
        source=source,
        base_config=base,
        early_terminate=spec.early_terminate,
        cpus_per_trial=cpus_per_trial,
    )
    # Half of what Sweep.load reads leaves room for what the trials add as they run.
    state = sweep.state_text().encode()
    if len(state) > MAX_STATE_BYTES // 2 or json_values_at_most(state) > MAX_STATE_VALUES // 2:
        raise ConfigError(
            f"{source}: the state of this sweep ({len(trials):,} trials of"
            f" {len(trials[0].params)} settings) would be larger than `mlp sweep` can read back"
            f" ({MAX_STATE_BYTES // 2:,} bytes, {MAX_STATE_VALUES // 2:,} JSON values); sweep"
            " fewer trials or shorter values."
        )
    return sweep


def check_outputs(folder: Path) -> None:
    """Refuse, before any trial trains, a 'best' or sweep.png in the sweep folder that mlp
    did not make, and a results.csv that is no regular file (a regular one is the sweep's
    own, as sweep.json is)."""
    from mlp_cli.train import check_latest

    if folder.is_dir():  # a resumed sweep's, which goes on in this folder (no --out)
        again = f"then resume the sweep again: {command('mlp sweep --resume', folder)}"
        check_latest(folder, BEST, elsewhere=again)
        outputs.check_picture(
            folder / PICTURE_FILE,
            "sweep picture",
            fix=f"mlp draws the sweep's {PICTURE_FILE} at that name, so move it away, {again}",
        )
        outputs.check_replaceable(
            folder / RESULTS_FILE,
            "sweep results",
            f"mlp writes the sweep's {RESULTS_FILE} at that name, so move it away, {again}",
        )


def check_trial_runs(sweep: Sweep) -> None:
    """Refuse, before a sweep is resumed, a trial still to train whose folder is a file or a
    link to one (the trial would fail, never to be run again), and a trial whose run has
    trained more epochs than the sweep gives it, or than it had when it ended (continued
    by `mlp train --resume`): taken as the trial's result, it would be ranked against trials
    of fewer epochs, or its weights scored as those of an epoch the sweep never ran, and
    recorded as more epochs than the trial has, which sweep.json cannot hold."""
    for trial in sweep.trials:
        run_dir = sweep.run_dir(trial)
        # A trial still to train is trained in a folder: no file takes its place.
        if trial.status not in ENDED and run_dir.is_file():
            link = run_dir.is_symlink()
            raise UsageError(
                f"'{shown(run_dir)}' is a {'link' if link else 'file'}, not the folder the sweep"
                f" trains trial {trial.id} in; move it away, then resume the sweep again:"
                f" {resume_hint(sweep)}"
            )
        done = max((int(r["epoch"]) for r in read_history(run_dir)), default=0)
        # An ended trial is not run again: its run is as the sweep recorded it at its end.
        ended = trial.status in ENDED
        if done > (trial.epoch if ended else trial.epochs):
            had = (
                f"the {trial.epochs} the sweep gives it"
                if done > trial.epochs
                else f"the {trial.epoch} it had when the sweep recorded it as {trial.status}"
            )
            best = sweep.dir / BEST  # its link to this trial, once gone to nowhere, is refused
            linked = best.is_symlink() and Path(os.readlink(best)).name == trial.id
            also = f" (and the sweep's '{BEST}' link to it)" if linked else ""
            raise UsageError(
                f"trial {trial.id}'s run '{shown(run_dir)}' has trained {done} epochs, more than"
                f" {had} (it was continued after the sweep trained it); the sweep ranks its"
                f" trials on their own epochs, so it does not take this run. Move the folder{also}"
                f" out of the sweep folder to keep it, then `{resume_hint(sweep)}` (a trial that"
                " had not ended is trained again)"
            )


def lock(folder: Path) -> outputs.FolderLock:
    """The lock that keeps a second process from running the sweep in `folder` while this
    one does. Its trials are runs, each locked by the process training it in its own folder
    (`train.lock_run`), so the two never wait for each other."""
    from mlp_cli.train import LOCK_FILE

    return outputs.FolderLock(folder / LOCK_FILE, "sweep folder", "running that sweep")


def check_new_sweep(sweep: Sweep) -> None:
    """Refuse a sweep folder that already holds something, before anything is written (a
    lock file alone is mlp's, left by a sweep killed as it started)."""
    from mlp_cli.train import LOCK_FILE

    folder = sweep.dir
    if (folder / STATE_FILE).is_file():
        try:  # the folder's own sweep, which need not be this one
            held = f"the sweep '{Sweep.load(folder).name}'"
        except MLPError:
            held = f"a sweep's {STATE_FILE}"
        raise UsageError(
            f"'{shown(folder)}' already holds {held}; continue it with"
            f" `{resume_hint(sweep)}`, or start a new one elsewhere (--out DIR,"
            " or another name: in the sweep file)"
        )
    if folder.exists() and (
        not folder.is_dir() or any(p.name != LOCK_FILE for p in folder.iterdir())
    ):
        raise UsageError(
            f"'{shown(folder)}' already exists and is not an empty folder; mlp writes a new sweep "
            "only into a new or empty folder: choose another --out or name"
        )
    outputs.check_folder(folder, "sweep folder")


# -- one trial, in whatever process runs it --------------------------------------------------


@dataclass
class Outcome:
    """How a trial's run ended: a `Sweep` status, why (failures), its metrics history."""

    status: str
    reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


_DATA: dict[str, Any] = {}  # this process's prepared data: {"key": ..., "splits": Splits}


def data_for(cfg: Config) -> Splits:
    """The training data for `cfg`, prepared once per process for each data setting in turn
    (trials that share them, as most in a sweep do, reuse it)."""
    from mlp_cli import data

    key = json.dumps([cfg.data.model_dump(mode="json"), cfg.training.seed])
    if _DATA.get("key") != key:
        _DATA.clear()  # one copy at a time: a 28x28 training set is 188 MB
        _DATA["splits"], _DATA["key"] = data.prepare_data(cfg), key
    splits: Splits = _DATA["splits"]
    return splits


def run_trial(
    run_dir: Path,
    config: Mapping[str, Any],
    report: Callable[[dict[str, Any]], bool],
    should_stop: Callable[[], bool],
) -> Outcome:
    """Train one trial in `run_dir`: a new run, or the continuation of the checkpoint there.

    `report(record)` is called after every epoch with its metrics.jsonl record and answers
    whether the trial should stop there (early termination); `should_stop()` is asked
    before every step. A failure is an `Outcome`, not an exception: the sweep goes on."""
    from mlp_cli import train as training

    started = time.perf_counter()
    stop_here: list[bool] = []

    class Reporter(training.Callbacks):
        def on_epoch_end(self, record: dict[str, Any]) -> None:
            if report(record):
                stop_here.append(True)

    held = contextlib.ExitStack()  # the run's lock, once the sweep takes it itself
    try:
        cfg = config_from_dict(config, str(run_dir / training.CONFIG_FILE))
        data = data_for(cfg)
        if (run_dir / training.CHECKPOINT_FILE).is_file():
            try:  # held from before the checkpoint is read to the end (`resume` takes it too)
                held.enter_context(training.lock_run(run_dir))
            except UsageError as exc:  # trained on meanwhile (`mlp train --resume`): not ended,
                return Outcome("interrupted", str(exc))  # and as the sweep last saw it
            saved = training.load_checkpoint(run_dir)
            done = saved.meta.history or []
            summary = saved.meta.training
            if summary and summary.status in ("completed", "early_stopped"):
                # Ended before the sweep heard of it (by `mlp train --resume`): the run's own
                # time, not the time it took to read here (none: the epochs' times).
                return Outcome(summary.status, None, list(done), summary.seconds or 0.0)
            trainer = training.resume(run_dir, cfg, data, saved, link=False)
        else:
            _clear_unsaved(run_dir)
            trainer = training.start(cfg, data, run_dir, link=False)
        result = trainer.run(Reporter(), lambda: bool(stop_here) or should_stop())
        if stop_here and result.status == "interrupted" and not result.model_epoch:
            # Pruning ends the trial, but a run that keeps no best epoch (restore_best off)
            # saves model.npz only at its end: its last epoch's weights are the trial's model.
            trainer.save_model(result.status)
    except (MLPError, ArithmeticError, ValueError, OSError) as exc:  # LinAlgError: a ValueError
        reason = str(exc) if isinstance(exc, MLPError) else f"{type(exc).__name__}: {exc}"
        # Only the trial's own doing is its result: training gone wrong, or a config mlp
        # refuses (a setting refused since its sweep.json was written), would go wrong again.
        # Anything else (a full disk, a failed download) leaves it for `--resume` once put right.
        own = isinstance(exc, TrainingError | ConfigError | ArithmeticError | ValueError)
        status = "failed" if own else "interrupted"
        return Outcome(status, reason, read_history(run_dir), time.perf_counter() - started)
    finally:
        held.close()
    status = "pruned" if stop_here and result.status == "interrupted" else result.status
    return Outcome(status, None, result.history, result.elapsed)


def _clear_unsaved(run_dir: Path) -> None:
    """Empty a trial's folder that holds no checkpoint, only files a run writes before its
    first (its worker was killed, or a write failed, before then): there is nothing to
    continue, and the trial starts again in it. Anything else there is left to refuse; the
    lock file is left for `train.start` to take again."""
    from mlp_cli.train import CONFIG_FILE, LOCK_FILE, METRICS_FILE

    written = (CONFIG_FILE, METRICS_FILE, checkpoint.MODEL_FILE)
    if not run_dir.is_dir() or run_dir.is_symlink():
        return
    entries = [e for e in itertools.islice(run_dir.iterdir(), 21) if e.name != LOCK_FILE]
    if len(entries) >= 20:  # far more than a run writes
        return
    for entry in entries:
        temporary = outputs.is_temp_name(entry.name)
        if not (entry.name in written or temporary) or entry.is_symlink() or not entry.is_file():
            return
    for entry in entries:
        entry.unlink()


class _Epoch(checkpoint.HistoryRecord):
    """A metrics.jsonl record as the sweep reads it: a history record with a finished
    epoch's number and its finite time."""

    epoch: int = Field(ge=1)
    time: float = Field(default=0.0, ge=0.0)


def _is_epoch(record: dict[str, Any]) -> bool:
    try:
        _Epoch.model_validate(record)
    except ValueError:  # pydantic's ValidationError is one
        return False
    return True


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The metrics.jsonl records of the run in `run_dir` that `mlp train` could have written
    (none when it has no readable file): a damaged record is left out like an unreadable file,
    so the sweep's table, picture and pruner see the epochs they can trust."""
    from mlp_cli.train import METRICS_FILE, read_metrics

    try:
        return [r for r in read_metrics(run_dir / METRICS_FILE) if _is_epoch(r)]
    except MLPError:
        return []


# -- the local engine -----------------------------------------------------------------------------


class Asha:
    """Asynchronous successive halving with Optuna's pruner, one Optuna trial per sweep
    trial, all in the process that runs the sweep."""

    def __init__(self, early: EarlyTerminate, goal: Goal) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=early.grace_period,
            reduction_factor=early.reduction_factor,
            min_early_stopping_rate=0,
        )
        self.study = optuna.create_study(direction=goal, pruner=pruner)
        self.trials: dict[int, Any] = {}

    def report(self, index: int, epoch: int, value: float | None) -> bool:
        """Whether trial `index` should stop after `epoch`, where its metric is `value`."""
        trial = self.trials.get(index)
        if trial is None:
            trial = self.trials[index] = self.study.ask()
        if value is None:
            return False
        trial.report(value, epoch)
        return bool(trial.should_prune())

    def replay(self, sweep: Sweep) -> None:
        """Tell the pruner what the trials of a resumed sweep did before, so that their
        values are at the rungs the resumed trials are compared at."""
        for index, trial in enumerate(sweep.trials):
            for record in read_history(sweep.run_dir(trial)) if trial.epoch else []:
                value = record.get(sweep.metric)
                self.report(index, int(record["epoch"]), None if value is None else float(value))
            if trial.status in ENDED:
                self.ended(index, Outcome(trial.status), trial.best)

    def ended(self, index: int, outcome: Outcome, best: float | None) -> None:
        from optuna.trial import TrialState

        trial = self.trials.pop(index, None)
        if trial is None:
            return
        if outcome.status == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        elif outcome.status == "failed" or best is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:  # completed, stopped early or interrupted, with its best value
            self.study.tell(trial, best, state=TrialState.COMPLETE)


_WORKER: dict[str, Any] = {}


def _init_worker(
    sweep_pid: int,
    threads: int,
    events: Any,
    begun: Any,
    acks: Any,
    prune: Any,
    stop_all: Any,
    asha: bool,
    mask: set[int] | None,
) -> None:
    """A worker process of the sweep's process `sweep_pid`: BLAS capped to the trial's
    threads for its whole life, Ctrl-C (or SIGTERM, SIGHUP) asking the running trial to stop
    and save a checkpoint (twice: to abort), and an end of its own once the sweep is gone.
    A forked worker starts with the stop signals held back, and sets `mask` back once they
    are its own."""
    from threadpoolctl import threadpool_limits

    _WORKER.update(
        events=events,
        begun=begun,
        acks=acks,
        prune=prune,
        stop_all=stop_all,
        asha=asha,
        interrupted=False,
        limits=threadpool_limits(limits=threads, user_api="blas"),
    )

    def handler(signum: int, frame: object) -> None:
        if _WORKER["interrupted"]:  # the second: abort at once, as `mlp train` does
            os._exit(128 + signum)
        _WORKER["interrupted"] = True

    for signum in STOP_SIGNALS:
        take_over(signum, handler)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    # The sweep's pid, not os.getppid(): a sweep killed while this process was starting
    # would leave the pid of the process that adopted it, which never ends.
    threading.Thread(target=_end_with, args=(sweep_pid,), daemon=True).start()


def _end_with(sweep_pid: int) -> None:
    """End this worker once the sweep's process `sweep_pid` is gone (``kill -9``): nothing
    else would, as it waits for work on a pipe its siblings keep open, and it holds the
    sweep folder's lock (inherited) that `mlp sweep --resume` needs. A trial it runs then
    resumes from its last epoch's checkpoint."""
    while os.getppid() == sweep_pid:
        time.sleep(0.5)
    os._exit(1)


_ABORTED = 2  # the value of a worker's "stop_all" once the sweep reads no more reports (1: stop)


def _stopping() -> bool:
    return bool(_WORKER["interrupted"] or _WORKER["stop_all"].value)


def _work(index: int, run_dir: str, config: dict[str, Any]) -> Outcome | None:
    """Run trial `index` in a worker; None when the sweep was stopped before it began."""
    if _stopping():
        return None
    _WORKER["begun"][index] = 1  # at once: a worker killed now takes its queue's reports along
    events = _WORKER["events"]
    events.put(("started", index, None))

    def report(record: dict[str, Any]) -> bool:
        events.put(("epoch", index, record))
        if not _WORKER["asha"]:
            return False
        acks, epoch = _WORKER["acks"], int(record["epoch"])
        # The verdict comes in milliseconds, and a stopping sweep still sends it: a trial
        # stopped without it would be pruned only a rung later, by --resume. Not an aborted
        # sweep, which reads no more reports.
        while acks[index] < epoch and _WORKER["stop_all"].value != _ABORTED:
            time.sleep(0.001)
        return bool(_WORKER["prune"][index])

    return run_trial(Path(run_dir), config, report, _stopping)


def default_workers(cpus_per_trial: int) -> int:
    return max(1, usable_cores() // cpus_per_trial)


def run_local(
    sweep: Sweep,
    *,
    workers: int,
    on_change: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Run the sweep's unfinished trials in `workers` processes; False when `should_stop`
    stopped it (running trials saved checkpoints to resume from)."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import Future, ProcessPoolExecutor

    todo = sweep.unfinished()
    if not todo:
        return True
    for index in todo:  # why a trial never started is the last run's: this one may start it
        if sweep.trials[index].status == "pending":
            sweep.trials[index].reason = None
    callers = set(mp.active_children())  # not the sweep's to end if its workers fail
    forking = "fork" in mp.get_all_start_methods()
    # fork: workers inherit the loaded modules and start in milliseconds.
    ctx = mp.get_context("fork" if forking else "spawn")
    # Forked by the first submit, a worker has this process's handling of the stop signals
    # until it takes them over: meanwhile they are held back from it, as `serve` holds them
    # back from its workers. The mask as it is, for the workers to set back:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ()) if forking else None
    n = len(sweep.trials)
    asha = Asha(sweep.early_terminate, sweep.goal) if sweep.early_terminate else None
    if asha is not None:
        asha.replay(sweep)
    sweep.dir.mkdir(parents=True, exist_ok=True)

    over: set[int] = set()  # trials whose run in this sweep has ended

    def handle(kind: str, index: int, payload: Any) -> None:
        if index in over:  # a worker's queue may deliver its reports after the trial's end
            return
        if kind == "started":
            sweep.started(index)
        elif kind == "epoch":
            sweep.epoch_ended(index, payload)
            if asha is not None:
                trial = sweep.trials[index]
                prune[index] = asha.report(index, int(payload["epoch"]), trial.last)
                acks[index] = int(payload["epoch"])
        on_change()

    try:  # the pipes and shared memory of the workers, which `ulimit -n` may not allow either
        events = ctx.Queue()
        begun = ctx.Array("b", n, lock=False)  # trials a worker has taken up
        acks, prune = ctx.Array("i", n, lock=False), ctx.Array("b", n, lock=False)
        stop_all = ctx.Value("b", 0, lock=False)
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(todo)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(
                os.getpid(),
                sweep.cpus_per_trial,
                events,
                begun,
                acks,
                prune,
                stop_all,
                asha is not None,
                mask,
            ),
        )
    except OSError as exc:
        raise _not_started(sweep, exc, set(mp.active_children()) - callers) from None
    with pool:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pending: dict[Future[Outcome | None], int] = {
                pool.submit(
                    _work, i, str(sweep.run_dir(sweep.trials[i])), sweep.trials[i].config
                ): i
                for i in todo
            }
        except OSError as exc:  # a worker the system would not start (`ulimit -n`)
            raise _not_started(sweep, exc, set(mp.active_children()) - callers) from None
        finally:
            if mask is not None:  # what came meanwhile is delivered here
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        last_save = 0.0
        try:  # until every submitted trial has ended
            while pending:
                if not stop_all.value and should_stop():  # what has not started never will
                    stop_all.value = 1
                    for future in pending:
                        future.cancel()
                with contextlib.suppress(queue.Empty):
                    handle(*events.get(timeout=0.05))
                    while True:
                        handle(*events.get_nowait())
                for future in [f for f in pending if f.done()]:
                    index = pending.pop(future)
                    over.add(index)
                    outcome = _outcome(future)
                    if outcome is None:  # stopped before it began
                        continue
                    if outcome.status == "interrupted" and not begun[index]:
                        # the pool broke before this trial began: it stays pending, saying why
                        sweep.trials[index].reason = outcome.reason
                        continue
                    sweep.ended(index, outcome)
                    if asha is not None:
                        asha.ended(index, outcome, sweep.trials[index].best)
                    on_change()
                # Ended trials too: a state a second old costs nothing on --resume, which
                # finds every trial's end in its own folder.
                if time.monotonic() - last_save > SAVE_SECONDS:
                    sweep.save()
                    last_save = time.monotonic()
        except BaseException:  # a second Ctrl-C: the trials still running stay resumable
            # (A failed save of the sweep's state: no more trials start, the running ones
            # stop at their next step.)
            stop_all.value = _ABORTED
            for future in pending:
                future.cancel()
            # A save that fails here too (a full disk) must not hide the first error.
            with contextlib.suppress(OutputError):
                sweep.interrupt_running(
                    "the sweep was aborted; it resumes from the last epoch's checkpoint"
                )
            raise
    sweep.save()
    # A Ctrl-C to the whole process group can stop every worker's trial before this loop
    # has asked: it is a stop all the same.
    return not (stop_all.value or should_stop())


def _not_started(sweep: Sweep, exc: OSError, started: set[Any]) -> MLPError:
    """The error for workers the system would not start, once those it did start (the
    pool's processes: the children made since the sweep began) are ended: they would wait
    for work forever, and the sweep's exit for them."""
    for worker in started:
        worker.kill()
        worker.join()
    limit = ""
    if exc.errno == errno.EMFILE:
        # not `resource`: importing it needs a file descriptor, which is what is missing
        with contextlib.suppress(AttributeError, OSError, ValueError):  # os.sysconf: Unix
            limit = f" (`ulimit -n` allows {os.sysconf('SC_OPEN_MAX')})"
    return MLPError(
        f"could not start the sweep's worker processes: {outputs.reason(exc)}{limit}. Raise the"
        f" limit or run fewer --workers, then continue with: {resume_hint(sweep)}"
    )


def _outcome(future: Any) -> Outcome | None:
    from concurrent.futures.process import BrokenProcessPool

    if future.cancelled():
        return None
    try:
        outcome: Outcome | None = future.result()
    except BrokenProcessPool as exc:
        return Outcome(
            "interrupted",
            f"a worker process of the sweep ended unexpectedly ({exc}), which stops the"
            " trials running beside it too; `mlp sweep --resume` continues them from their"
            " last checkpoints",
        )
    except Exception as exc:  # a fault of ours inside the trial: the sweep goes on
        return Outcome("failed", f"{type(exc).__name__}: {exc}")
    return outcome


# -- results ---------------------------------------------------------------------------------------


def finish(sweep: Sweep) -> None:
    """Once every trial has ended: the ``best`` link, the best trial's test accuracy,
    results.csv and sweep.png."""
    from mlp_cli.train import update_latest

    best = sweep.best_trial()
    if best is not None and (sweep.run_dir(best) / checkpoint.MODEL_FILE).is_file():
        update_latest(sweep.run_dir(best), BEST)
        best.test_acc, best.test_epoch = _test_accuracy(sweep.run_dir(best))
    sweep.save()
    write_results(sweep)
    plot_sweep(sweep)


def _test_accuracy(run_dir: Path) -> tuple[float, int | None]:
    """The test accuracy of the run's model.npz, and the epoch whose weights it holds."""
    from mlp_cli.evaluate import evaluate, split_images

    saved = checkpoint.load(run_dir / checkpoint.MODEL_FILE)
    images, labels = split_images(saved, "test")
    training = saved.meta.training
    epoch = training.weights_from_epoch if training is not None else None
    return evaluate(saved, images, labels, "test").accuracy, epoch


def write_results(sweep: Sweep) -> None:
    """results.csv: a row for each trial, best first."""
    keys = sweep.keys()
    rows = [
        {
            "trial": trial.id,
            **{key: trial.setting(key) for key in keys},
            "status": trial.status,
            f"best_{sweep.metric}": trial.best,
            "best_epoch": trial.best_epoch or None,
            "epochs": trial.epoch,
            "seconds": round(trial.seconds, 2),
            "test_acc": trial.test_acc,
            "test_epoch": trial.test_epoch,
            "reason": trial.reason,
        }
        for trial in sweep.ranked()
    ]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep.dir / RESULTS_FILE
    with outputs.writing(path, "the sweep results"):
        checkpoint.atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def plot_sweep(sweep: Sweep) -> None:
    """sweep.png: the metric against each swept setting (one point per trial), and the
    learning curves of the five best trials overlaid."""
    from mlp_cli.viz import sweep_figure

    curves = {}
    for trial in sweep.ranked()[:5]:
        # As far as the sweep ran it: a trial continued by hand has epochs it did not rank.
        history = [r for r in read_history(sweep.run_dir(trial)) if r["epoch"] <= trial.epoch]
        if trial.best is not None and history:
            curves[trial.id] = [(r["epoch"], r.get(sweep.metric)) for r in history]
    scored = [t for t in sweep.trials if t.best is not None]

    def shown(value: Any) -> Any:  # numbers stay numbers, on a numeric axis
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return value if numeric else show_value(value)

    points = {
        key: [(shown(t.params[key]), t.best, t.status) for t in scored if key in t.params]
        for key in sweep.varied_keys()
    }
    sweep_figure(points, curves, sweep.metric, f"sweep {sweep.name}", sweep.dir / PICTURE_FILE)


def summary(sweep: Sweep) -> list[dict[str, Any]]:
    """The trials, best first, as JSON-ready dicts (``mlp sweep --json``)."""
    return [
        {"rank": rank, "trial": t.id, "dir": str(sweep.run_dir(t)), **asdict(t)}
        for rank, t in enumerate(sweep.ranked(), start=1)
    ]


def resume_hint(sweep: Sweep) -> str:
    return command("mlp sweep --resume", sweep.dir)
