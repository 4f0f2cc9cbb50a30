"""Run configuration: the schema, YAML loading, ``--set`` overrides and their error messages.

A run is described by one YAML file read into `Config`, a pydantic model whose defaults and
one-line descriptions are the single place where every setting is defined (the README and
``mlp config schema`` are generated from them). Everything is checked before any work starts:
unknown keys, wrong types, values out of range and settings that contradict each other are
refused with a `ConfigError` that names the file, the line and the key.

YAML is read by ruamel.yaml as YAML 1.2 (``1e-3`` is a number, ``no`` and ``2020-01-01`` are
text, ``012`` is twelve), which also gives the line of every key; tags such as
``!!python/object`` are refused, never executed, and so are duplicate keys. A ``--set``
override is read by the same loader, placed in the tree and validated with the rest.

What the settings *do* is left to the modules that use them (`mlp_cli.model`, `mlp_cli.optim`,
`mlp_cli.train`, `mlp_cli.data`); this module imports no NumPy, so the command line's
``--help`` stays fast.
"""

import contextlib
import copy
import difflib
import io
import math
import os
import re
import reprlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import Event
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.representer import SafeRepresenter
from ruamel.yaml.scanner import Scanner
from ruamel.yaml.tokens import Token

from mlp_cli import shipped
from mlp_cli.errors import ConfigError
from mlp_cli.limits import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_NODES,
    MAX_EPOCHS,
    MAX_LAYERS,
    MNIST_SIDE,
    MNIST_TRAINING_IMAGES,
    NotRegularFileError,
    batch_size_problem,
    counted,
    format_bytes,
    layers_text,
    network_size_problem,
    read_regular,
    shorten,
)
from mlp_cli.plain import shown

MNIST_CLASSES = 10
_MAX_SOURCE_CHARS = 100  # of a --set shown in a message

KeyPath = tuple[str | int, ...]


class _SettingError(ValueError):
    """Raised inside validators: problems, each with a key path relative to the validated model.

    The error formatter turns each into its own ``file:line: key: problem`` clause; a plain
    `ValueError` would lose the key path of cross-field problems. A problem given at
    construction is one of the validated value itself; `add` gathers cross-field ones.
    """

    def __init__(self, *problems: str) -> None:
        self.problems: list[tuple[KeyPath, str]] = [((), text) for text in problems]

    def add(self, dotted: str, text: str) -> None:
        self.problems.append((tuple(dotted.split(".")), text))

    def __str__(self) -> str:
        return "; ".join(f"{_dotted(path)}: {text}" for path, text in self.problems)


# -- schema ----------------------------------------------------------------------------------


class _Section(BaseModel):
    """Settings common to every section: unknown keys are refused and YAML text is never
    silently turned into a number (strict), and infinities or NaN are not numbers here."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True
    )


class DataConfig(_Section):
    """Which images to train on and how to prepare them."""

    dataset: Literal["mnist"] = Field(default="mnist", description="Dataset to train on.")
    input_size: Literal[20, 28] = Field(
        default=28,
        description="Side of the square input image in pixels (20 gives 400 inputs, 28 gives 784).",
    )
    validation_size: int = Field(
        default=10000,
        ge=0,
        lt=MNIST_TRAINING_IMAGES,
        description="Training images held out for validation (0 = no validation set).",
    )
    mirror: str | None = Field(
        default=None, description="Base URL (http/https) tried before the built-in MNIST mirrors."
    )
    normalize: Literal["none", "standardize"] = Field(
        default="none",
        description="'standardize' subtracts the training-set pixel mean and divides by its std.",
    )

    @field_validator("mirror")
    @classmethod
    def _mirror_is_http_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parts = urlsplit(value)
            except ValueError:  # e.g. an unclosed '[' of an IPv6 address
                parts = urlsplit("")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _SettingError(
                    "expected a base URL starting with http:// or https://, found "
                    + _REPR.repr(value),
                )
        return value


def _dropout_kind(value: Any) -> str | None:
    """Which branch of `ModelConfig.dropout` a value belongs to (None: neither)."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return None


_DropRate = Annotated[float, Field(ge=0.0, lt=1.0)]
_Dropout = Annotated[
    Annotated[list[_DropRate], Tag("list")] | Annotated[_DropRate, Tag("number")],
    Discriminator(
        _dropout_kind,
        custom_error_type="dropout_type",
        custom_error_message="expected a drop probability in [0, 1) or a list of them",
    ),
]
_LAYERS_TEXT = re.compile(r"\s*[0-9]+(?:\s*-\s*[0-9]+)*\s*")
Init = Literal["xavier", "he", "uniform", "normal"]  # the schemes of `MLP.initialize`
# Half-width of init 'uniform' (the classic exercise's epsilon) and std of 'normal'.
DEFAULT_INIT_SCALE = {"uniform": 0.12, "normal": 0.01}


def _layers_schema(schema: dict[str, Any]) -> None:
    """The JSON schema of `ModelConfig.layers`: the list, or the text `_layers_from_text` reads."""
    as_list = {key: schema.pop(key) for key in ("type", "items", "minItems", "maxItems")}
    size = r"0*[1-9][0-9]*"  # a positive number, as the list's items
    pattern = rf"^\s*{size}(\s*-\s*{size}){{1,{MAX_LAYERS}}}\s*$"
    as_text = {"type": "string", "pattern": pattern}
    schema["anyOf"] = [as_list, as_text]


class ModelConfig(_Section):
    """The network: layer sizes, activations, initialisation and per-layer regularisers."""

    layers: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=2,
        max_length=MAX_LAYERS + 1,
        description="Layer sizes from input to output, as a list or text such as 784-100-10.",
        json_schema_extra=_layers_schema,
    )
    hidden_activation: Literal["sigmoid", "tanh", "relu", "leaky_relu"] = Field(
        default="relu", description="Activation function of every hidden layer."
    )
    output_activation: Literal["softmax", "sigmoid"] = Field(
        default="softmax", description="Activation function of the output layer."
    )
    init: Init = Field(default="xavier", description="How the initial weights are drawn.")
    init_scale: float | None = Field(
        default=None,
        gt=0.0,
        description="Half-width for init 'uniform' (default {uniform}) or std for 'normal'"
        " ({normal}).".format(**DEFAULT_INIT_SCALE),
    )
    dropout: _Dropout = Field(
        default=0.0,
        description=(
            "Drop probability of each weight layer's input (input layer first), in [0, 1);"
            " one number applies to every hidden layer's output."
        ),
    )
    max_norm: float | None = Field(
        default=None,
        gt=0.0,
        description="Largest L2 norm allowed for each unit's incoming weights.",
    )

    @field_validator("layers", mode="before")
    @classmethod
    def _layers_from_text(cls, value: Any) -> Any:
        # "784-100-10" is how architectures are usually written; a list is the canonical form.
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # int() refuses more than 4300 digits
                if _LAYERS_TEXT.fullmatch(value):
                    return [int(part) for part in value.split("-")]
            raise _SettingError(
                "expected layer sizes separated by '-' such as 784-100-10,"
                f" or a list, found {_REPR.repr(value)}",
            )
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> "ModelConfig":
        problems = _SettingError()
        if size_problem := network_size_problem(self.layers):
            problems.add("layers", size_problem)
        weight_layers = len(self.layers) - 1
        if isinstance(self.dropout, list) and len(self.dropout) != weight_layers:
            problems.add(
                "dropout",
                f"has {counted(len(self.dropout), 'rate')} but layers {layers_text(self.layers)}"
                f" has {counted(weight_layers, 'weight layer')}; give one rate per weight layer"
                " (input layer first) or a single number",
            )
        if self.init_scale is not None and self.init not in DEFAULT_INIT_SCALE:
            problems.add(
                "init_scale",
                f"is only used by init 'uniform' or 'normal', but init is '{self.init}';"
                " remove init_scale or change init",
            )
        if problems.problems:
            raise problems
        return self

    @property
    def dropout_rates(self) -> list[float]:
        """Drop probability of each weight layer's input, input layer first (len(layers) - 1)."""
        if isinstance(self.dropout, list):
            return list(self.dropout)
        return [0.0] + [self.dropout] * (len(self.layers) - 2)


class RegularizationConfig(_Section):
    """Penalties on the weights added to the loss."""

    # Bounded so that the penalty's gradient stays finite for float32 weights; a weight of 1
    # already outweighs the data's loss, so 1000 leaves room for any useful setting.
    l1: float = Field(
        default=0.0, ge=0.0, le=1000.0, description="Weight of the L1 penalty on the weights."
    )
    l2: float = Field(
        default=0.0, ge=0.0, le=1000.0, description="Weight of the L2 penalty on the weights."
    )


# What the optimizers' settings of the same name mean, whatever their defaults.
_LearningRate = Annotated[
    float, Field(gt=0.0, description="Learning rate (peak rate when scheduled).")
]
_SquaredDecay = Annotated[
    float,
    Field(ge=0.0, lt=1.0, description="Decay rate of the running mean of squared gradients."),
]
_Eps = Annotated[float, Field(gt=0.0, description="Added to the denominator for stability.")]
_FLOAT32_ZERO = 2.0**-150  # float32, in which training runs, rounds a number this small to 0


def _trained_before(info: ValidationInfo) -> bool:
    """Whether the config is one mlp trained before, read back (`config_from_dict`'s
    ``trained``): the settings that diverge, refused since, stay readable there."""
    return bool(info.context and info.context.get("trained"))


def _check_eps(eps: float, added: float, what: str) -> None:
    """Refuse an eps whose `added` (`what`, the least the optimizer adds to the root mean
    square of the gradients) is 0 in float32: a weight whose gradient is 0 would then take a
    step of 0 / 0, not a number, and make every later loss NaN."""
    if added <= _FLOAT32_ZERO:
        problems = _SettingError()
        problems.add(
            "eps",
            f"is {_show(eps)}, so small that {what}, which the optimizer adds to the root mean"
            " square of the gradients, is 0 in float32, in which training runs: a weight whose"
            " gradient is 0 would take a step of 0 / 0, not a number; use a larger eps, such as"
            " the default 1e-08",
        )
        raise problems


class SGDConfig(_Section):
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""

    name: Literal["sgd"] = Field(
        default="sgd", description="Optimizer: stochastic gradient descent."
    )
    lr: _LearningRate = 0.1
    momentum: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Fraction of the previous step kept (0 = plain SGD).",
    )
    nesterov: bool = Field(default=False, description="Use Nesterov momentum (needs momentum > 0).")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGDConfig":
        if self.nesterov and self.momentum == 0.0:
            problems = _SettingError()
            problems.add("nesterov", "is true but momentum is 0; set momentum above 0 (e.g. 0.9)")
            raise problems
        return self


class _AdamFields(_Section):
    """Hyperparameters Adam and AdamW share."""

    name: str
    lr: _LearningRate = 1e-3
    beta1: float = Field(
        default=0.9, ge=0.0, lt=1.0, description="Decay rate of the running mean of gradients."
    )
    beta2: _SquaredDecay = 0.999
    eps: _Eps = 1e-8

    @model_validator(mode="after")
    def _eps_is_not_0_in_float32(self, info: ValidationInfo) -> "_AdamFields":
        # Adam adds eps * sqrt(1 - beta2^t) to sqrt(v) (see `mlp_cli.optim.Adam`), least at t = 1
        if not _trained_before(info):
            _check_eps(self.eps, self.eps * math.sqrt(1.0 - self.beta2), "eps * sqrt(1 - beta2)")
        return self


class AdamConfig(_AdamFields):
    """Adam: per-weight step sizes from running averages of the gradient and its square."""

    name: Literal["adam"] = Field(default="adam", description="Optimizer: Adam.")


class AdamWConfig(_AdamFields):
    """AdamW: Adam with weight decay applied to the weights directly, not through the loss."""

    name: Literal["adamw"] = Field(
        default="adamw", description="Optimizer: Adam with decoupled decay."
    )
    weight_decay: float = Field(
        default=0.01, ge=0.0, description="Fraction of each weight removed per step, times lr."
    )

    @model_validator(mode="after")
    def _decay_leaves_some_weight(self, info: ValidationInfo) -> "AdamWConfig":
        # The rate a schedule gives is at most lr, so lr * weight_decay is the most removed.
        if (removed := self.lr * self.weight_decay) >= 1.0 and not _trained_before(info):
            problems = _SettingError()
            problems.add(
                "weight_decay",
                f"is {_show(self.weight_decay)} with lr {_show(self.lr)}: adamw multiplies"
                f" every weight by 1 - lr * weight_decay = {1.0 - removed:.3g} at each step,"
                " which at 0 erases it, below 0 flips its sign and below -1 grows it until it"
                " overflows; lower weight_decay or lr so that lr * weight_decay is below 1"
                " (the defaults give 1e-05)",
            )
            raise problems
        return self


class RMSpropConfig(_Section):
    """RMSprop: steps divided by a running root-mean-square of the gradient."""

    name: Literal["rmsprop"] = Field(default="rmsprop", description="Optimizer: RMSprop.")
    lr: _LearningRate = 1e-3
    rho: _SquaredDecay = 0.9
    eps: _Eps = 1e-8
    momentum: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Fraction of the previous step kept (0 = none)."
    )

    @model_validator(mode="after")
    def _eps_is_not_0_in_float32(self, info: ValidationInfo) -> "RMSpropConfig":
        if not _trained_before(info):
            _check_eps(self.eps, self.eps, "eps")
        return self


OptimizerConfig = Annotated[
    SGDConfig | AdamConfig | AdamWConfig | RMSpropConfig, Field(discriminator="name")
]
OPTIMIZERS: dict[str, type[_Section]] = {  # name -> section, from the union above
    model.model_fields["name"].default: model for model in get_args(get_args(OptimizerConfig)[0])
}


def _unnamed_optimizer_schema(schema: dict[str, Any]) -> None:
    """The JSON schema of `Config.optimizer`: chosen by its name, and a section without one
    is the default optimizer's, as `Config._optimizer_name_defaults_to_adam` reads it."""
    by_name = {key: schema.pop(key) for key in ("oneOf", "discriminator")}
    default = Config.model_fields["optimizer"].get_default(call_default_factory=True)
    unnamed = by_name["discriminator"]["mapping"][default.name]
    schema.update({"if": {"required": ["name"]}, "then": by_name, "else": {"$ref": unnamed}})


class ScheduleConfig(_Section):
    """How the learning rate changes over the epochs."""

    name: Literal["constant", "step", "cosine", "onecycle"] = Field(
        default="constant", description="Learning-rate schedule."
    )
    warmup_epochs: float = Field(
        default=0.0,
        ge=0.0,
        description="Epochs of warm-up from 0 (0 = none): the schedule's rate times the fraction"
        " of the warm-up done; cosine starts after it.",
    )
    step_size: int = Field(
        default=10, ge=1, description="For 'step': multiply lr by gamma every this many epochs."
    )
    gamma: float = Field(
        default=0.1, gt=0.0, le=1.0, description="For 'step': factor applied to lr."
    )
    min_lr: float = Field(
        default=0.0, ge=0.0, description="Lowest lr reached by 'cosine' and 'onecycle'."
    )


class EarlyStoppingConfig(_Section):
    """Which epoch is best, and when to stop because the monitored metric stopped improving."""

    monitor: Literal["val_loss", "val_acc"] = Field(
        default="val_loss",
        description="What picks the best epoch: val_loss (lowest) or val_acc (highest).",
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        description="Epochs without improvement of the monitored metric before stopping "
        "(null = never).",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0.0,
        description="An epoch improves on the best only by more than this (val_acc: a fraction).",
    )
    restore_best: bool = Field(
        default=True,
        description="Keep the best epoch's weights in model.npz (else the last epoch's).",
    )


class TrainingConfig(_Section):
    """The training loop: length, batches, randomness and threads."""

    epochs: int = Field(
        default=20, ge=1, le=MAX_EPOCHS, description="Passes over the training set."
    )
    batch_size: int = Field(default=64, ge=1, description="Training examples per gradient step.")
    seed: int = Field(
        default=0, ge=0, description="Seed of every random choice (init, shuffling, ...)."
    )
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        default="auto",
        description="Threads for BLAS and the optimizer update: a number (at most the cores), "
        "auto (by network size and free cores) or null (BLAS's default).",
    )

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_setting(cls, value: Any) -> Any:
        # One message for the three accepted forms, instead of one per branch of the union.
        number = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if value is None or value == "auto" or number:
            return value
        raise _SettingError(
            f"expected a number of threads (1 or more), auto or null, found {_show(value)}"
        )

    early_stopping: EarlyStoppingConfig = Field(
        default_factory=EarlyStoppingConfig,
        description="Stopping when validation stalls.",
    )


class AugmentConfig(_Section):
    """Random distortions applied to each training batch as it is drawn."""

    enabled: bool = Field(default=False, description="Distort training images on the fly.")
    # Bounded so that the ranges the shifts and angles are drawn from stay finite: a shift
    # by an image's side moves the digit out of it, and 180 degrees covers every rotation.
    max_shift: float = Field(
        default=2.0,
        ge=0.0,
        le=MNIST_SIDE,
        description=f"Largest shift in pixels along each axis (at most {MNIST_SIDE}).",
    )
    max_rotation: float = Field(
        default=10.0, ge=0.0, le=180.0, description="Largest rotation in degrees (at most 180)."
    )
    max_scale: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Largest relative change of size (0.1 = up to ±10%).",
    )
    # Bounded so that the fields stay finite in float32; at sigma 28 an alpha of 10000
    # already moves pixels by about the image's side.
    elastic_alpha: float = Field(
        default=0.0,
        ge=0.0,
        le=10_000.0,
        description="Strength of elastic distortion (0 = none, at most 10000).",
    )
    # Bounded because the smoothing kernel has 8 sigma + 1 taps; a Gaussian wider than the
    # image already smooths the field to nearly one shift of the whole digit.
    elastic_sigma: float = Field(
        default=6.0,
        gt=0.0,
        le=MNIST_SIDE,
        description=f"Smoothness of elastic distortion, in pixels (at most {MNIST_SIDE}).",
    )


class OutputConfig(_Section):
    """Where runs are written."""

    dir: str = Field(
        default="runs",
        min_length=1,
        description="Folder that holds one folder per run ('~' is the home folder).",
    )

    @field_validator("dir")
    @classmethod
    def _dir_is_a_path(cls, value: str) -> str:
        if "\0" in value:
            raise _SettingError(
                f"expected a folder path, found {_REPR.repr(value)}, whose NUL character no"
                " path can hold"
            )
        # As a shell would, which never sees a path written in a file or a --set
        return os.path.expanduser(value)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Config(_Section):
    """Everything that defines a training run."""

    name: str | None = Field(
        default=None,
        description="Run name and folder name (null = the config file's name).",
        # as `_name_is_safe_folder_name` checks it, so that an editor flags what mlp refuses
        json_schema_extra={
            "anyOf": [{"type": "string", "pattern": f"^{_SAFE_NAME.pattern}$"}, {"type": "null"}]
        },
    )
    data: DataConfig = Field(default_factory=DataConfig, description="The dataset.")
    model: ModelConfig = Field(description="The network.")
    loss: Literal["cross_entropy", "mse"] = Field(
        default="cross_entropy", description="Loss minimised during training."
    )
    regularization: RegularizationConfig = Field(
        default_factory=RegularizationConfig, description="Weight penalties."
    )
    optimizer: OptimizerConfig = Field(
        default_factory=AdamConfig,
        description="Optimizer, chosen by its 'name'.",
        json_schema_extra=_unnamed_optimizer_schema,
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="Learning-rate schedule."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="The loop.")
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Training-time augmentation."
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")

    @model_validator(mode="before")
    @classmethod
    def _optimizer_name_defaults_to_adam(cls, data: Any) -> Any:
        # An optimizer section without a name tunes the default optimizer.
        if isinstance(data, dict):
            optimizer = data.get("optimizer")
            if isinstance(optimizer, dict) and "name" not in optimizer:
                default = cls.model_fields["optimizer"].get_default(call_default_factory=True)
                return {**data, "optimizer": {"name": default.name, **optimizer}}
        return data

    @field_validator("name")
    @classmethod
    def _name_is_safe_folder_name(cls, value: str | None) -> str | None:
        if value is not None and not _SAFE_NAME.fullmatch(value):
            raise _SettingError(
                "expected a folder name of at most 100 letters, digits, '.', '_' or '-'"
                f" that starts with a letter or digit, found {_REPR.repr(value)}",
            )
        return value

    @model_validator(mode="after")
    def _check_consistency(self, info: ValidationInfo) -> "Config":
        problems = _SettingError()
        inputs = self.data.input_size**2
        first, last = self.model.layers[0], self.model.layers[-1]
        if first != inputs:
            fix, side = f"use {inputs}", math.isqrt(first)
            sides = get_args(DataConfig.model_fields["input_size"].annotation)
            if side**2 == first and side in sides:
                fix += f" or set data.input_size: {side}"
            problems.add(
                "model.layers",
                f"starts with {first} but data.input_size is {self.data.input_size},"
                f" which gives {inputs} inputs; {fix}",
            )
        if last != MNIST_CLASSES:
            problems.add(
                "model.layers",
                f"ends with {last} but MNIST has {MNIST_CLASSES} classes;"
                f" the last layer must have {MNIST_CLASSES} units",
            )
        if batch_problem := batch_size_problem(self):
            problems.add("training.batch_size", batch_problem)
        schedule, lr = self.schedule, self.optimizer.lr
        if schedule.name in ("cosine", "onecycle") and schedule.min_lr > lr:
            problems.add(
                "schedule.min_lr",
                f"is {_show(schedule.min_lr)} but optimizer.lr is {_show(lr)}; {schedule.name}"
                " lowers the rate from optimizer.lr down to min_lr, so min_lr must be at most"
                " optimizer.lr; lower min_lr or raise optimizer.lr",
            )
        optimizer, l2 = self.optimizer, self.regularization.l2
        if isinstance(optimizer, SGDConfig) and l2 and not _trained_before(info):
            # The penalty alone, w <- w - lr l2 w with momentum mu, shrinks the weights only
            # for lr l2 below 2 (1 + mu), or 2 (1 + mu) / (1 + 2 mu) with Nesterov's
            mu = optimizer.momentum
            bound = 2.0 * (1.0 + mu) / (1.0 + 2.0 * mu if optimizer.nesterov else 1.0)
            if lr * l2 >= bound:
                effect = (  # at the bound itself they swing at one size
                    "makes every step enlarge the weights until they overflow"
                    if lr * l2 > bound
                    else "no longer shrinks the weights, which keep their size from step to step"
                )
                problems.add(
                    "regularization.l2",
                    f"is {_show(l2)} with sgd at optimizer.lr {_show(lr)}: with lr * l2 ="
                    f" {lr * l2:.3g}, the penalty alone {effect}: sgd with momentum {mu:g}"
                    f"{' (nesterov)' if optimizer.nesterov else ''} shrinks them only for"
                    f" lr * l2 below {bound:.3g}; lower l2 or optimizer.lr",
                )
        patience = self.training.early_stopping.patience
        if patience is not None and self.data.validation_size == 0:
            problems.add(
                "training.early_stopping.patience",
                f"is {patience} but data.validation_size is 0, so there is no validation"
                f" split whose {self.training.early_stopping.monitor} it could watch; set"
                " data.validation_size above 0 or remove patience",
            )
        stopping = self.training.early_stopping
        if stopping.monitor == "val_acc" and stopping.min_delta >= 1 and not _trained_before(info):
            problems.add(
                "training.early_stopping.min_delta",
                f"is {_show(stopping.min_delta)} but monitor is val_acc, a fraction from 0 to 1"
                " that no epoch can raise by more than 1, so no epoch after the first would count"
                " as an improvement; give it as a fraction (0.005 is half a percentage point)",
            )
        if problems.problems:
            raise problems
        return self


# The schedules that read a setting only some of them use.
_SCHEDULE_SETTINGS = {"step_size": ("step",), "gamma": ("step",), "min_lr": ("cosine", "onecycle")}


def unused_settings(cfg: Config) -> list[str]:
    """Settings given a value other than their default that this config's other choices
    make change nothing (a step schedule's gamma under cosine, a hidden activation without a
    hidden layer), one sentence each. They are accepted, so that one --set can switch a
    schedule or a network's depth, but a run says so rather than ignore them in silence."""
    unused = []
    schedule = cfg.schedule
    for key, users in _SCHEDULE_SETTINGS.items():
        value = getattr(schedule, key)
        if schedule.name not in users and value != ScheduleConfig.model_fields[key].default:
            unused.append(
                f"schedule.{key} is {_show(value)}, but the {schedule.name} schedule does not"
                f" use it (only {' and '.join(users)} does), so it changes nothing in this run"
            )
    model = cfg.model
    if len(model.layers) == 2:  # no hidden layer
        layers = layers_text(model.layers)
        if model.hidden_activation != ModelConfig.model_fields["hidden_activation"].default:
            unused.append(
                f"model.hidden_activation is {_show(model.hidden_activation)}, but layers"
                f" {layers} has no hidden layer, so it changes nothing in this run"
            )
        if not isinstance(model.dropout, list) and model.dropout:
            unused.append(
                f"model.dropout is {_show(model.dropout)}, which drops hidden layers' outputs,"
                f" but layers {layers} has no hidden layer, so it changes nothing in this run;"
                f" [{_show(model.dropout)}] would drop the inputs"
            )
    stopping = cfg.training.early_stopping
    if cfg.data.validation_size == 0:
        for key in ("monitor", "min_delta"):
            value = getattr(stopping, key)
            if value != EarlyStoppingConfig.model_fields[key].default:
                unused.append(
                    f"training.early_stopping.{key} is {_show(value)}, but data.validation_size"
                    " is 0, so there is no validation score to watch and it changes nothing"
                    " in this run"
                )
    return unused


def _sections(model: type[BaseModel], path: KeyPath = ()) -> dict[KeyPath, type[BaseModel]]:
    """Every section of the schema by key path (the optimizer's sections are in `OPTIMIZERS`)."""
    found: dict[KeyPath, type[BaseModel]] = {path: model}
    for key, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.update(_sections(field.annotation, (*path, key)))
    return found


_SECTIONS = _sections(Config)


# -- YAML ------------------------------------------------------------------------------------

_CORE = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_CORE + tag for tag in ("str", "int", "float", "bool", "null", "seq", "map")}
_TEXT_TAGS = {_CORE + "timestamp", _CORE + "value"}  # ruamel's extras to the core schema
_MAX_TAG_CHARS = 100  # of a tag, shown or read: the core schema's are a few
Origins = dict[KeyPath, str]
"""Where each key path's value came from: ``'file.yaml:12'`` or ``'--set key=value'``."""


class _RefusedError(ConstructorError):
    """A value the loader will not build; its `problem` is the whole explanation."""

    def __init__(self, problem: str, node: Node | Event | Token) -> None:
        super().__init__(None, None, problem, node.start_mark)


def _tag_refused(tag: str, where: Node | Token) -> _RefusedError:
    return _RefusedError(
        f"the tag '{shorten(tag, _MAX_TAG_CHARS)}' is not allowed: a config file holds only"
        " plain data (text, numbers, true/false, lists and mappings), never Python objects or"
        " other tagged values; remove the tag",
        where,
    )


class _BoundedScanner(Scanner):
    """ruamel's scanner, refusing a tag longer than any the core schema has as soon as it is
    read (ruamel decodes a tag in time that grows with the square of its length: ten seconds
    for a tag of 1 MB), and a %YAML directive naming a version ruamel does not read (it fails
    an assertion at 1.3, and 2.0 is blamed on indentation)."""

    def scan_directive(self) -> Any:
        token = super().scan_directive()
        if token.name == "YAML" and tuple(token.value) not in ((1, 1), (1, 2)):
            raise _RefusedError(
                f"the %YAML directive names version {'.'.join(map(str, token.value))}, but a"
                " config is read as YAML 1.2; write '%YAML 1.2' or remove the line",
                token,
            )
        return token

    def scan_tag(self) -> Any:
        token = super().scan_tag()
        handle, suffix = token.value
        if len(suffix) > _MAX_TAG_CHARS:
            raise _tag_refused((handle or "") + suffix, token)
        return token


class _BoundedComposer(Composer):
    """ruamel's composer, refusing a document of more than MAX_CONFIG_NODES values and keys
    as it reaches them: dense YAML (``[[], [], ...]``) is a node every few bytes, and ruamel
    keeps hundreds of bytes a node, so a file within MAX_CONFIG_BYTES could take hundreds of
    megabytes."""

    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.nodes += 1
        if self.nodes > MAX_CONFIG_NODES:
            raise _RefusedError(
                f"more than {MAX_CONFIG_NODES:,} values and keys, where a config holds a few"
                " hundred",
                self.parser.peek_event(),
            )
        return super().compose_node(parent, index)


def _check(
    node: Node,
    path: KeyPath,
    origins: Origins,
    source: str,
    build: SafeConstructor,
    done: dict[int, bool],
    override: bool = False,
) -> None:
    """Refuse tags other than the core schema's, aliases to a value that contains them,
    duplicate keys and keys that are not text below `node`, the value at `path`, and note
    the line of every key path in `origins`; `done` says which nodes are (being) checked.
    `override` says `node` is a ``--set`` value, whose lines messages leave out."""
    if id(node) in done:  # an alias: to a value checked before, or to one that contains it
        if done[id(node)]:
            return
        problem = "an alias refers to the value that contains it; a config cannot contain itself"
        raise _RefusedError(problem, node)
    tag: str = node.tag or ""
    if tag not in _PLAIN_TAGS and not (tag in _TEXT_TAGS and node.ctag.handle is None):
        raise _tag_refused(tag.replace(_CORE, "!!"), node)
    if isinstance(node, ScalarNode):
        if tag in _TEXT_TAGS:  # untagged 2020-01-01 is text: the 1.2 core schema has no dates
            node.tag = _CORE + "str"
        try:
            build.construct_object(node)
        except (ValueError, LookupError, TypeError):  # "!!int x", or a number too long to read
            expected = _EXPECTED.get(tag.replace(_CORE, "") + "_type", "plain data")
            problem = f"expected {expected}, found {_REPR.repr(node.value)}"
            # YAML allows '_' between an integer's digits, as in 1_000
            digits = node.value.lstrip("+-").replace("_", "")
            if tag == _CORE + "int" and digits.isdecimal():
                problem = f"an integer of {len(digits):,} digits, too long to read"  # for int()
            raise _RefusedError(f"a value could not be read: {problem}", node) from None
        return
    done[id(node)] = False
    if isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            origins[(*path, index)] = f"{source}:{item.start_mark.line + 1}"
            _check(item, (*path, index), origins, source, build, done, override)
    lines: dict[str, int] = {}
    merges = False
    for key_node, value in node.value if isinstance(node, MappingNode) else ():
        if key_node.tag == _CORE + "merge":  # '<<: *defaults' merges that mapping into this one
            _check(value, path, origins, source, build, done, override)
            merges = True
            continue
        _check(key_node, path, origins, source, build, done, override)
        key, line = key_node.value, key_node.start_mark.line + 1
        where = source if override else f"{source}:{line}"
        if key_node.tag != _CORE + "str":
            found = _show(build.construct_object(key_node, deep=True))
            raise ConfigError(
                f"{where}: {_dotted(path) or 'the top level'} has the key {found}, but keys"
                " must be names such as 'epochs'; put quotes around it if it is meant as one."
            )
        if key in lines:
            before, both = ("", "two") if override else (f" on line {lines[key]}", "two lines")
            raise ConfigError(
                f"{where}: duplicate key '{_dotted((*path, key))}'; it is already set{before}."
                f" Keep only one of the {both}."
            )
        lines[key] = line
        origins[(*path, key)] = f"{source}:{line}"
        _check(value, (*path, key), origins, source, build, done, override)
    if merges:  # ruamel repeats a merged key once per merge, which nested merges multiply
        build.flatten_mapping(node)
        node.value = list({key.value: (key, value) for key, value in node.value}.values())
    done[id(node)] = True


def _parse_yaml(
    text: str, source: str, *, override: Sequence[str] | None = None
) -> tuple[Any, Origins]:
    """One YAML 1.2 document as plain data (None when it holds nothing) and the line of every
    key path, built by ruamel's safe constructor once `_check` has found only plain data in it.

    `override` is the key path of a ``--set`` override named by `source` whose value
    `text` is (None for a file).
    """
    origins: Origins = {(): f"{source}:1"}
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer, yaml.Scanner = _BoundedComposer, _BoundedScanner
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a reused anchor is valid YAML; ruamel would print
            node = yaml.compose(text)
            if node is None:
                return None, origins
            origins[()] = f"{source}:{node.start_mark.line + 1}"
            path, set_value = tuple(override or ()), override is not None
            _check(node, path, origins, source, yaml.constructor, {}, set_value)
            return yaml.constructor.construct_document(node), origins
    except YAMLError as exc:
        raise ConfigError(_describe_yaml_error(exc, source, override is not None, text)) from None
    except RecursionError:
        raise ConfigError(
            f"{source}: the YAML is nested too deeply to read; a config needs only a few levels."
        ) from None
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, AssertionError) as exc:
        # ruamel failing on a construct it should have refused, by an exception or a failed
        # assertion: bad YAML all the same
        raise ConfigError(f"{source}: invalid YAML: {type(exc).__name__}: {exc}.") from None


def _describe_yaml_error(exc: YAMLError, source: str, override: bool, text: str) -> str:
    """One paragraph for a YAML syntax or construction error in `text`, citing
    file:line:column (for a ``--set`` override's value: the override and the column in its
    value)."""
    where = source
    if isinstance(exc, ReaderError):  # it gives a position in the text, not a line
        lines = re.split(r"\r\n?|\n", text[: exc.position])
        where += (
            f": the value at character {exc.position + 1}"
            if override
            else f":{len(lines)}:{len(lines[-1]) + 1}"
        )
        return (
            f"{where}: invalid YAML: character #x{exc.character:04x} is not allowed"
            f" ({exc.reason}); a config file must be plain text."
        )
    if not isinstance(exc, MarkedYAMLError):
        return f"{source}: invalid YAML: {exc}."
    mark = exc.problem_mark or exc.context_mark
    if mark is not None and override:
        where += f": the value at character {mark.column + 1}"
    elif mark is not None:
        where += f":{mark.line + 1}:{mark.column + 1}"
    # ruamel's problem quotes what it found (an alias's name, a tag), which may be any length
    problem = shorten(exc.problem or exc.context or "unreadable YAML", 400)
    # ruamel names an unexpected token as a one-item tuple: "but found ('<scalar>',)"
    problem = re.sub(r"\(('<[^<>']*>'),\)", r"\1", problem)
    if isinstance(exc, ConstructorError):  # a refusal of ours explains itself; ruamel's do not
        lead = "" if isinstance(exc, _RefusedError) else "a value could not be read: "
        return f"{where}: {lead}{problem}."
    context, other = "", exc.context_mark
    if exc.context and exc.problem:
        elsewhere = other is not None and mark is not None and other.line != mark.line
        context = f" ({exc.context}{f' on line {other.line + 1}' if elsewhere else ''})"
    fix = (
        "Values are read as YAML; put text that holds ': ', '#' or brackets in quotes,"
        " e.g. --set \"name='a: b'\"."
        if override
        else "Check the indentation, the ': ' after each key and that quotes and brackets"
        " are closed."
    )
    return f"{where}: invalid YAML: {problem}{context}. {fix}"


# -- overrides -------------------------------------------------------------------------------


class Override(str):
    """A ``KEY=VALUE`` override that messages name as the user typed it, e.g. a command-line
    shortcut ``--epochs 5`` for ``training.epochs=5``."""

    source: str

    def __new__(cls, text: str, source: str) -> "Override":
        override = super().__new__(cls, text)
        override.source = source
        return override


def _override_source(text: str) -> str:
    # Quoted and escaped when it holds line breaks or other invisible characters, and cut
    # to a readable length: every message about an override starts with it.
    source = text.source if isinstance(text, Override) else f"--set {text}"
    shown = source if source.isprintable() else repr(source)
    if len(shown) > _MAX_SOURCE_CHARS:
        shown = f"{shown[: _MAX_SOURCE_CHARS - 3]}... ({len(source):,} characters)"
    return shown


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``KEY.PATH=VALUE`` into its key path and its value read as YAML.

    ``"training.epochs=5"`` gives ``(["training", "epochs"], 5)``; ``"optimizer.lr=1e-3"``
    gives 0.001; ``"model.layers=784-100-10"`` gives the text ``"784-100-10"``; an empty
    value gives None. The key path is checked with the rest of the config, by the schema.
    """
    source = _override_source(text)
    key, equals, raw = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not equals or not all(path):
        raise ConfigError(
            f"{source}: expected KEY=VALUE with a dotted key, for example"
            " --set training.epochs=5 or --set optimizer.lr=1e-3."
        )
    return path, _parse_yaml(raw, source, override=path)[0]


def _apply_override(data: dict[str, Any], text: str, origins: Origins) -> None:
    """Set one ``--set`` override in `data` (in place) and record where the value came from."""
    path, value = parse_override(text)
    source = _override_source(text)
    node = data
    for depth, key in enumerate(path[:-1]):
        here, child = tuple(path[: depth + 1]), node.get(key)
        parent = _SECTIONS.get(here[:-1])
        # A setting has no keys below it; the optimizer, a union of sections, is no setting.
        setting = parent and key in parent.model_fields and here not in [*_SECTIONS, ("optimizer",)]
        if child is None and not setting:
            child = {}
        if not isinstance(child, dict):
            found = "a single setting" if child is None else f"{_show(child)} in the config"
            raise ConfigError(
                f"{source}: {_dotted(here)} is {found}, not a section, so it has no key"
                f" '{path[depth + 1]}'."
            )
        node[key] = child = dict(child)  # its own: a YAML alias may share it with another section
        node = child
    node[path[-1]] = value
    key_path = tuple(path)
    for old in [p for p in origins if p[: len(key_path)] == key_path]:
        del origins[old]
    for depth in range(1, len(key_path) + 1):
        origins.setdefault(key_path[:depth], source)


# -- error messages --------------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # Python refuses to print integers of more than 4300 digits
            return f"<an integer of about {int(x.bit_length() * 0.30103)} digits>"
        return super().repr_int(x, level)


_REPR = _ShortRepr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = 6
_REPR.maxlevel = 2


def _show(value: Any) -> str:
    """A found value as the user would recognise it from their YAML."""
    if value is None or isinstance(value, bool):
        return {None: "nothing (null)", True: "true", False: "false"}[value]
    kind = "a section " if isinstance(value, dict) else "a list " if isinstance(value, list) else ""
    return kind + _REPR.repr(value)


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _did_you_mean(word: Any, choices: Sequence[Any]) -> str:
    if not isinstance(word, str):
        return ""
    texts = [str(c) for c in choices]
    # 'ReLU' is 'relu' in other spellings; difflib compares case-sensitively.
    same = [text for text in texts if text.lower() == word.lower()]
    close = same or difflib.get_close_matches(word, texts, n=len(texts))
    # Every choice as close as the closest is named: 'activation' may be either *_activation.
    score = {text: difflib.SequenceMatcher(None, text, word).ratio() for text in close}
    tied = [f"'{text}'" for text in texts if text in score and score[text] == score[close[0]]]
    return f"; did you mean {' or '.join(tied)}?" if close else ""


def _section_of(schema: type[BaseModel], path: KeyPath) -> type[BaseModel]:
    """The section (a model class) at `path` of `schema`: through sub-sections, optional
    sections and the values of a mapping of sections (a sweep's parameters)."""
    node: Any = schema
    for key in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[str(key)].annotation
        else:  # dict[str, Section]: every key leads to the same section
            node = get_args(node)[-1]
        if get_origin(node) in (Union, UnionType):  # Section | None
            node = next(arg for arg in get_args(node) if arg is not type(None))
    return node  # type: ignore[no-any-return]


def _unknown_key(where: str, path: KeyPath, optimizer: str | None, schema: type[BaseModel]) -> str:
    """The message for a key no section has, with the closest key or the key's real home."""
    key, section = path[-1], _dotted(path[:-1])
    allowed = list(
        (OPTIMIZERS[optimizer] if optimizer else _section_of(schema, path[:-1])).model_fields
    )
    hint, about = _did_you_mean(key, allowed), ""
    scope = f"in {section}" if section else "at the top level"
    owners = [name for name, other in OPTIMIZERS.items() if key in other.model_fields]
    if optimizer is not None:
        about, scope = f" for optimizer '{optimizer}'", f"for {optimizer}"
        if owners:
            hint = (
                f"; {key} is a setting of optimizer {' and '.join(owners)}, so set"
                " optimizer.name to one of those or remove it"
            )
    elif schema is Config:
        # A setting of that name elsewhere ('epochs' -> 'training.epochs'), else a close spelling.
        homes = [_dotted((*at, key)) for at, home in _SECTIONS.items() if key in home.model_fields]
        homes += [f"optimizer.{key}"] if owners else []
        if len(homes) == 1:
            hint = f"; did you mean '{homes[0]}'?"
    if isinstance(key, str) and "." in key and key.split(".")[0] in allowed:
        parts = key.split(".")  # 'training.epochs: 5', as a --set names it
        nested = ": {".join(parts) + ": ..." + "}" * (len(parts) - 1)
        hint = f"; keys are nested, not dotted: did you mean '{shorten(nested, 100)}'?"
    return (
        # a --set may name a key of any length
        f"{where}: unknown key '{shorten(_dotted(path), 100)}'{about}{hint} (allowed keys {scope}:"
        f" {', '.join(allowed)})."
    )


_REQUIRED_EXAMPLES = {
    ("model",): "a model section, e.g. 'model: {layers: 784-100-10}'",
    ("model", "layers"): "e.g. 'layers: 784-100-10' under model",
}
# pydantic says "Input should be a valid integer"; these read as the user's YAML does.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "model_type": "a section of keys",
    "dict_type": "a section of keys",
    "model_attributes_type": "a section of keys",
}


def _explain(error: Mapping[str, Any]) -> str:
    """Pydantic's error as plain words: what was expected and what was found."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    message, hint, choices = str(error["msg"]).rstrip("."), "", []
    if kind == "missing":
        example = _REQUIRED_EXAMPLES.get(tuple(map(str, error["loc"])))
        return "this required key is missing" + (f"; add {example}" if example else "")
    if kind in ("too_short", "too_long"):
        bound = "at least" if kind == "too_short" else "at most"
        limit = ctx["min_length" if kind == "too_short" else "max_length"]
        return f"expected {bound} {counted(limit, 'item')}, found {ctx['actual_length']}"
    if message.startswith("Input should be "):
        expected = "expected " + _EXPECTED.get(kind, message.removeprefix("Input should be "))
    else:  # pydantic's own sentence ('String should have at least 1 character') or ours
        expected = message[:1].lower() + message[1:]
    if kind in ("literal_error", "union_tag_invalid"):  # the latter: no optimizer of that name
        if kind == "union_tag_invalid":
            value = value.get("name") if isinstance(value, dict) else None
        listed = ctx.get("expected") or ctx["expected_tags"]
        choices = [choice.strip("'") for choice in re.split(", | or ", listed)]
        expected, hint = f"expected one of {', '.join(choices)}", _did_you_mean(value, choices)
    elif "_than" in kind:  # the limit's type is the field's: 'an integer less than 60000'
        noun = "an integer" if isinstance(next(iter(ctx.values())), int) else "a number"
        expected = expected.replace("expected", f"expected {noun}", 1)
    if _taken_unquoted(value, kind, choices):
        hint = f" in quotes, which makes it text; write {value} without quotes"
    return f"{expected}, found {_show(value)}{hint}"


def _taken_unquoted(value: Any, kind: str, choices: Sequence[str]) -> bool:
    """Whether `value` is text that YAML reads without quotes as what the setting takes: a
    number or true/false of the expected type, or one of a literal's numeric `choices`."""
    try:
        plain = _parse_yaml(value, "")[0] if isinstance(value, str) and len(value) <= 40 else None
    except ConfigError:  # not YAML, or a value `_check` refuses
        return False
    if isinstance(plain, bool):  # an integer to Python, never to YAML or the schema
        return kind == "bool_type"
    if kind == "int_type":
        return isinstance(plain, int)
    if kind == "literal_error":
        return isinstance(plain, int | float) and str(plain) in choices
    return kind == "float_type" and isinstance(plain, int | float)


def _user_path(loc: Sequence[str | int], data: Any, missing: bool) -> tuple[KeyPath, str | None]:
    """Pydantic's error location as the key path the user wrote, and the union branch it
    names (the optimizer's name, dropout's 'list' or 'number'), which the user never wrote."""
    path: list[str | int] = []
    branch = None
    for index, part in enumerate(loc):
        if isinstance(data, dict) and isinstance(part, str):
            found = part in data or (missing and index == len(loc) - 1)
        else:
            found = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not found:
            branch = str(part)
            continue
        data = data.get(part) if isinstance(data, dict) else data[part]
        path.append(part)
    return tuple(path), branch


def _known(path: KeyPath, origins: Origins) -> KeyPath:
    """`path` or its nearest parent whose origin is known (the top level's always is)."""
    return next(path[:depth] for depth in range(len(path), -1, -1) if path[:depth] in origins)


def _clauses(
    error: Mapping[str, Any], data: Any, origins: Origins, schema: type[BaseModel]
) -> list[tuple[KeyPath, str]]:
    """One or more (key path, ``where: key: problem.``) clauses for one pydantic error."""
    path, branch = _user_path(error["loc"], data, error["type"] == "missing")
    if error["type"] == "extra_forbidden":
        optimizer = branch if branch in OPTIMIZERS and schema is Config else None
        return [(path, _unknown_key(origins[_known(path, origins)], path, optimizer, schema))]
    if error["type"] == "union_tag_invalid":
        path = (*path, "name")
    invalid = error.get("ctx", {}).get("error")
    problems = invalid.problems if isinstance(invalid, _SettingError) else [((), _explain(error))]
    clauses = []
    for relative, text in problems:
        at = (*path, *relative)
        text = text if text.endswith(("?", ".")) else f"{text}."
        clauses.append(
            (at, f"{origins[_known(at, origins)]}: {_dotted(at) + ': ' if at else ''}{text}")
        )
    return clauses


_MAX_CLAUSES = 12
_Model = TypeVar("_Model", bound=BaseModel)


def validate_as(
    schema: type[_Model],
    data: Any,
    origins: Origins,
    source: str,
    what: str,
    keys: str,
    context: dict[str, Any] | None = None,
) -> _Model:
    """Validate plain data as `schema` (a config, a sweep file), turning every problem into
    one `ConfigError` of ``file:line: key: problem`` clauses; `keys` are examples of the
    top-level keys, for a file whose top level is no mapping; `context` goes to pydantic."""
    origins = {(): source, **origins}  # data given as such (not read from YAML) has no lines
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else _show(data)
        raise ConfigError(
            f"{origins[()]}: the top level of a {what} must be a mapping of"
            f" sections ({keys}, ...), found {kind}."
        )
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    clauses = [c for error in errors for c in _clauses(error, data, origins, schema)]
    # File order first; overrides (no line number) after the file they override.
    order = {path: index for index, path in enumerate(origins)}
    clauses.sort(key=lambda clause: order[_known(clause[0], origins)])
    lines = [text for _, text in clauses]
    if len(lines) > _MAX_CLAUSES:
        lines = [*lines[:_MAX_CLAUSES], f"... and {len(lines) - _MAX_CLAUSES} more problems."]
    raise ConfigError("\n".join(lines))


def _validate(data: Any, origins: Origins, source: str, trained: bool = False) -> Config:
    keys = "model:, data:, optimizer:"
    return validate_as(Config, data, origins, source, "config", keys, {"trained": trained})


# -- public API ----------------------------------------------------------------------------


def _not_found(path: Path, source: str, what: str) -> ConfigError:
    """A missing config or sweep file, with the shipped ones of its kind to choose from."""
    sweep = what == "sweep file"
    names = shipped.shipped_sweeps() if sweep else [c.name for c in shipped.shipped_configs()]
    hint = _did_you_mean(path.name.removesuffix(".yaml"), names)
    choice = (
        "a sweep file or the name of a shipped sweep"
        if sweep
        else "a YAML file or the name of a shipped config"
    )
    listed = "" if sweep else " (`mlp config list` describes them)"
    return ConfigError(
        f"{what} '{source}' not found (looked for {shown(path.absolute())}){hint or '.'}"
        f" Give the path of {choice}: {', '.join(names)}{listed}."
    )


def read_text(path: Path, source: str, what: str = "config file") -> str:
    """The text of a YAML file of ours (a config, a sweep file), bounded and decoded, or a
    `ConfigError` naming it as `what`."""
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise _not_found(path, source, what) from None
    except (IsADirectoryError, NotRegularFileError) as exc:
        if path.is_dir():
            raise ConfigError(
                f"{what} '{source}' is a folder; give the path of a .yaml file in it."
            ) from None
        raise ConfigError(
            f"{what} '{source}' cannot be used: {exc.strerror}; give the path of a .yaml file."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} '{source}' could not be read: {exc.strerror}.") from None
    except ValueError:  # a name from a file (a sweep's config:) may hold what no path can
        raise ConfigError(f"{what} '{source}' is no file name: it holds a NUL character.") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} '{source}' is larger than {format_bytes(MAX_CONFIG_BYTES)}; a {what}"
            " is a few hundred bytes of YAML. Check that the path names one."
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} '{source}' is not UTF-8 text (byte {exc.start} cannot be decoded);"
            " save it as UTF-8."
        ) from None


def parse_yaml_file(text: str, source: str, what: str, needs: str) -> tuple[Any, Origins]:
    """A YAML file's plain data and the origin of every key path; `needs` says what an
    empty file lacks."""
    data, origins = _parse_yaml(text, source)
    # Only comments and blank lines; an explicit null is answered as a top level that is no mapping.
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise ConfigError(f"{what} '{source}' is empty; it needs {needs}.")
    return data, origins


def _read_config(path: str | Path) -> tuple[str, str, str]:
    """The text of a config file or shipped config, the name messages give it, and its stem."""
    resolved = shipped.resolve(path)
    source = shown(resolved if resolved != Path(path) else path)
    return read_text(resolved, source), source, resolved.stem


def _parse_config(text: str, source: str) -> tuple[Any, Origins]:
    needs = f"at least {_REQUIRED_EXAMPLES[('model',)]}"
    return parse_yaml_file(text, source, "config file", needs)


def _build(
    data: Any, origins: Origins, source: str, overrides: Sequence[str], default_name: str | None
) -> Config:
    if isinstance(data, dict):
        for override in overrides:
            _apply_override(data, override, origins)
        if data.get("name") is None and default_name is not None:
            data["name"] = default_name
            origins[("name",)] = f"{source} (the run name comes from the file name; set name:)"
    return _validate(data, origins, source)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate a YAML config file.

    `overrides` are ``KEY.PATH=VALUE`` strings applied in order after reading, as given to
    ``--set`` (values are read as YAML: ``training.epochs=5``, ``model.layers=784-100-10``).
    `path` may also be the name of a shipped config (``mnist-400-25-10``, see
    `mlp_cli.shipped`) when no file of that name exists. `name` defaults to the file's stem.
    Raises `ConfigError` on any problem.
    """
    return next(load_config_variants(path, [overrides]))


def load_config_variants(path: str | Path, variants: Iterable[Sequence[str]]) -> Iterator[Config]:
    """`load_config` with each list of overrides in `variants` in turn, the file read once,
    here: a file that cannot be read or parsed raises before any variant is built."""
    text, source, stem = _read_config(path)
    data, origins = _parse_config(text, source)
    return (
        _build(copy.deepcopy(data), dict(origins), source, overrides, stem)
        for overrides in variants
    )


def config_from_yaml(text: str, source: str = "<string>", overrides: Sequence[str] = ()) -> Config:
    """Validate a config given as YAML text; `source` names it in error messages."""
    return _build(*_parse_config(text, source), source, overrides, None)


def config_from_dict(
    data: Mapping[str, Any], source: str = "<dict>", *, trained: bool = False
) -> Config:
    """Validate a config given as plain data, e.g. ``cfg.model_dump()`` kept in a checkpoint;
    ``trained``: one mlp trained before, whose settings that diverge are not refused."""
    plain = dict(data) if isinstance(data, Mapping) else data
    return _validate(plain, {}, source, trained)


class _Representer(SafeRepresenter):
    """Writes 1e-08 as 1.0e-08, which YAML 1.1 readers such as PyYAML also read as a number."""

    def represent_float(self, data: Any) -> ScalarNode:
        node = super().represent_float(data)
        if "e" in node.value and "." not in node.value:
            node.value = node.value.replace("e", ".0e", 1)
        return node


_Representer.add_representer(float, _Representer.represent_float)


def dump_config(cfg: Config, *, with_name: bool = True) -> str:
    """The resolved config as YAML that `load_config` reads back to an equal `Config`;
    without ``name`` if not `with_name`, so that the file takes its own name instead."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    text = io.StringIO()
    yaml.dump(cfg.model_dump(mode="json", exclude=None if with_name else {"name"}), text)
    return text.getvalue()


def show_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The config at ``path`` resolved as `dump_config` writes it, and the file's leading
    comment block, from the same bounded read. The ``name`` is left out where it is the file's
    own name and no override set it: a copy saved under another name then runs under that
    name, not this one's."""
    text, source, stem = _read_config(path)
    cfg = _build(*_parse_config(text, source), source, overrides, stem)
    # `--set name=` (empty) falls back to the file's own name, so it names nothing
    named = any(keys == ["name"] and value for keys, value in map(parse_override, overrides))
    return dump_config(cfg, with_name=named or cfg.name != stem), shipped.header_lines(text)


def config_schema() -> dict[str, Any]:
    """The JSON schema of a config file, with every setting's default and description."""
    return Config.model_json_schema()
