"""The ``.npz`` weights format: save, load, validate.

A model file is an ordinary NumPy ``.npz`` archive that loads with
``np.load(path, allow_pickle=False)`` and describes itself:

- ``W1 .. WL`` (float32, shape (n_l, n_{l-1})) and ``b1 .. bL`` (float32, shape (n_l,));
- ``metadata``: a 0-d string array holding JSON (format name and version, layer sizes,
  activations, loss, input preprocessing, class names, the resolved config, package version,
  data hashes, training summary), described by `ModelMetadata`.

A training checkpoint is the same plus the optimizer's state (``optimizer/<name>``) and
what resuming needs (``resume/<name>``), described under ``metadata["resume"]``.

Files are written atomically (temporary file in the same folder, flushed and fsynced, then
``os.replace``), so a crash or a full disk leaves the previous file as it was.

Loading trusts nothing in the file and allocates nothing it has not bounded first: only a
regular file is opened; every member's declared size, compression method and ``.npy`` header
(shape, dtype) are checked before its data is decompressed, against the shapes the metadata's
layer sizes imply and against `mlp_cli.limits`; the metadata is validated as a whole against
`ModelMetadata`; the values must be finite float32 numbers. Any problem is one
`CheckpointError` naming the file and what is wrong. The loader reads the zip members itself
rather than through ``np.load``, so that no read can decompress more than was checked.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import reprlib
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlp_cli.activations import ACTIVATIONS
from mlp_cli.errors import CheckpointError, UsageError
from mlp_cli.limits import (
    MAX_LAYERS,
    MAX_PARAMETERS,
    MNIST_SIDE,
    MNIST_TRAINING_IMAGES,
    NotRegularFileError,
    counted,
    format_bytes,
    layers_text,
    network_size_problem,
    open_regular,
    read_regular,
    shorten,
)
from mlp_cli.losses import LOSSES, OUTPUTS
from mlp_cli.outputs import advice, reason
from mlp_cli.outputs import atomic_write as atomic_write  # its home; re-exported
from mlp_cli.plain import command, decodable, shown

FORMAT_NAME = "mlp-cli"
FORMAT_VERSION = 1
METADATA_KEY = "metadata"
MAX_METADATA_CHARS = 4 * 2**20  # a config, summaries and a checkpoint's history: a few KiB
EXTRA_PREFIXES = ("optimizer/", "resume/")  # checkpoint-only members
MODEL_FILE = "model.npz"  # a run directory's best model
CHECKPOINT_FILE = "checkpoint.npz"  # a run directory's latest state, for --resume
LATEST = "latest"  # <runs>/latest points at the newest run directory

MAX_CLASS_NAME = 100  # characters of one class name
MAX_DATA_HASHES = 16  # entries of data_hashes: mlp writes one per MNIST file, 4
_MAX_HASH_ENTRY = 128  # characters of a file name or digest there (a sha256 has 64)
_MAX_SHORT_TEXT = 100  # characters of a version, a time, a training status or monitor
MIN_STD = 1e-3  # a smaller standardisation std would blow pixel differences up a thousandfold
_MAX_MEMBERS = 2 * MAX_LAYERS + 16  # weights, biases, metadata and a checkpoint's extras
_MAX_NPY_HEADER = 10_000  # characters of a .npy header, as NumPy's own loader allows
# Extras hold one number per parameter (optimizer state) or per training image (a shuffle).
_MAX_EXTRA_ITEMS = MAX_PARAMETERS + 2**17
_MAX_ITEM_BYTES = 8
_MAX_FILE_BYTES = (
    2 * MAX_PARAMETERS + 4 * _MAX_EXTRA_ITEMS
) * _MAX_ITEM_BYTES + 4 * MAX_METADATA_CHARS
_CHUNK = 2**20  # bytes decompressed at a time
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# -- the metadata schema ------------------------------------------------------------------------


class _Record(BaseModel):
    """A part of the metadata: exact JSON types, no NaN or infinity, no unknown keys.

    Each model's validator is built when it is first used, not when this module loads:
    reading a model never needs the checkpoint's resume state or history."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, defer_build=True
    )


class _OpenRecord(_Record):
    """A part whose unknown keys are kept as written, unchecked."""

    model_config = ConfigDict(extra="allow")


def _short(text: str) -> str:
    if len(text) > _MAX_SHORT_TEXT:
        raise ValueError(f"holds {len(text):,} characters; expected at most {_MAX_SHORT_TEXT}")
    return text


# Checked by len(): pydantic's max_length refuses the lone surrogates of an undecodable byte.
_ShortText = Annotated[str, AfterValidator(_short)]


class Normalization(_Record):
    """Standardisation of inputs already scaled to [0, 1]: ``x' = (x - mean) / std``."""

    mean: float = Field(ge=0.0, le=1.0)
    std: float = Field(ge=MIN_STD, le=1.0)


class Preprocessing(_Record):
    """How a 28x28 MNIST-form digit becomes the network's input."""

    # Fields in the order `mlp train` writes them, which is the order they are dumped in.
    input_size: int = Field(ge=1, le=MNIST_SIDE)  # side of the area-averaged square
    source: str | None = None  # a sentence for people; not used to compute anything
    normalize: Normalization | None


class TrainingSummary(_OpenRecord):
    """How training went. Later versions may add keys; they are kept, unchecked."""

    # Fields in the order `mlp train` writes them, which is the order they are dumped in.
    status: _ShortText | None = None
    epochs_run: int | None = Field(default=None, ge=0)
    best_epoch: int | None = Field(default=None, ge=0)
    best_val_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    best_val_loss: float | None = Field(default=None, ge=0.0)
    # what picked the best epoch: val_loss (older files) or val_acc
    monitor: _ShortText | None = None
    seconds: float | None = Field(default=None, ge=0.0)
    threads: int | None = Field(default=None, ge=1)  # BLAS threads, kept on resume by `auto`
    weights_from_epoch: int | None = Field(default=None, ge=0)


class _SavedData(_OpenRecord):
    # absent: the run held nothing out; as a config says it, fewer than MNIST holds
    validation_size: int = Field(default=0, ge=0, lt=MNIST_TRAINING_IMAGES)


class _SavedEarlyStopping(_OpenRecord):
    restore_best: bool = True  # false: model.npz holds the run's last epoch, not its best
    # a smaller improvement made no new best epoch, so a later epoch may beat the best one
    min_delta: float = Field(default=0.0, ge=0.0)


class _SavedTraining(_OpenRecord):
    seed: int = Field(default=0, ge=0)
    early_stopping: _SavedEarlyStopping = Field(default_factory=_SavedEarlyStopping)


class SavedConfig(_OpenRecord):
    """The resolved training config, as saved. Only what reading a model needs is checked
    (the validation split, whether the best epoch was kept); the rest is kept as written,
    for people and for resuming."""

    data: _SavedData = Field(default_factory=_SavedData)
    training: _SavedTraining = Field(default_factory=_SavedTraining)


def _one_of(registry: Mapping[str, Any]) -> AfterValidator:
    """A check that a name is one of `registry`'s (activations, outputs or losses)."""

    def known(name: str) -> str:
        if name not in registry:
            raise ValueError(f"is {shorten(name, 40)!r}; expected one of {', '.join(registry)}")
        return name

    return AfterValidator(known)


class ModelMetadata(_OpenRecord):
    """Everything a model file says about itself besides its arrays (the ``metadata`` JSON).

    Validated once when the file is loaded, so readers get known-good values. Unknown
    top-level keys are kept (and ignored); a checkpoint's ``resume`` and ``history`` are
    only checked to be a JSON object and a list of objects: resuming checks their content.
    """

    format: Literal["mlp-cli"]
    format_version: Literal[1]
    layers: list[Annotated[int, Field(ge=1)]] = Field(min_length=2, max_length=MAX_LAYERS + 1)
    hidden_activation: Annotated[str, _one_of(ACTIVATIONS)]
    output_activation: Annotated[str, _one_of(OUTPUTS)]
    loss: Annotated[str, _one_of(LOSSES)]
    preprocessing: Preprocessing
    class_names: list[str]
    config: SavedConfig | None = None
    package_version: _ShortText | None = None
    data_hashes: dict[str, str] = Field(default_factory=dict)
    created: _ShortText | None = None
    training: TrainingSummary | None = None
    resume: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None

    @field_validator("layers")
    @classmethod
    def _sizes_are_bounded(cls, layers: list[int]) -> list[int]:
        if problem := network_size_problem(layers):
            raise ValueError(problem)
        return layers

    @field_validator("class_names")
    @classmethod
    def _short_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not 1 <= len(name) <= MAX_CLASS_NAME:
                raise ValueError(
                    f"holds {name[:20]!r}; expected names of 1 to {MAX_CLASS_NAME} characters"
                )
        # a name is the key of its class in predict's and serve's JSON, and labels its row;
        # JSON writes an undecodable byte as \xNN (`decodable`), so names differ as written
        if twice := [name for name, count in Counter(map(decodable, names)).items() if count > 1]:
            raise ValueError(f"holds {twice[0][:20]!r} twice; expected a different name per class")
        return names

    @field_validator("data_hashes")
    @classmethod
    def _few_hashes(cls, hashes: dict[str, str]) -> dict[str, str]:
        if len(hashes) > MAX_DATA_HASHES:
            raise ValueError(
                f"holds {len(hashes):,} entries; expected at most {MAX_DATA_HASHES}, one"
                " file name and its sha256 per data file"
            )
        for name, digest in hashes.items():
            if max(len(name), len(digest)) > _MAX_HASH_ENTRY:
                raise ValueError(
                    f"holds {name[:20]!r}: {digest[:20]!r}; expected file names and digests"
                    f" of at most {_MAX_HASH_ENTRY} characters"
                )
        return hashes

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        side = self.preprocessing.input_size
        if self.layers[0] != side * side:
            raise _MismatchError(
                "layers",
                f"starts with {self.layers[0]} inputs, but preprocessing.input_size {side} gives "
                f"{side}x{side} = {side * side}",
            )
        if len(self.class_names) != self.layers[-1]:
            raise _MismatchError(
                "class_names",
                f"has {len(self.class_names)} names for the {self.layers[-1]} outputs of layers "
                f"{layers_text(self.layers)}; expected one name per output",
            )
        return self

    def weights_epoch(self) -> int | None:
        """The epoch whose weights a model file holds, where it is known: the training
        summary's ``weights_from_epoch``, or, in a file written before that was recorded for
        a run without restore_best (which saved model.npz only at its end), its last epoch."""
        training, config = self.training, self.config
        if training is None or training.weights_from_epoch is not None:
            return None if training is None else training.weights_from_epoch
        # A checkpoint (with its resume state) may be saved inside an epoch: no epoch's.
        last = self.resume is None and config and not config.training.early_stopping.restore_best
        return training.epochs_run if last else None


_MAX_SECONDS = 10 * 366 * 24 * 3600  # ten years: any larger time is damage, not a run
_Count = Annotated[int, Field(ge=0)]
_NonNegative = Annotated[float, Field(ge=0.0)]


class _Generator(_Record):
    """A saved PCG64 state (what ``default_rng`` uses): numpy takes a state it cannot hold
    with an OverflowError, or silently wraps it."""

    class _Inner(_Record):
        state: int = Field(ge=0, lt=2**128)
        inc: int = Field(ge=0, lt=2**128)

        @field_validator("inc")
        @classmethod
        def _odd(cls, inc: int) -> int:
            # numpy always makes the increment odd; an even one can leave the stream stuck
            if inc % 2 == 0:
                raise ValueError(f"= {inc}, expected an odd number")
            return inc

    bit_generator: Literal["PCG64"]
    state: _Inner
    has_uint32: int = Field(ge=0, le=1)
    uinteger: int = Field(ge=0, lt=2**32)


class HistoryRecord(_OpenRecord):
    """One finished epoch as metrics.jsonl holds it; the fields the learning curves and
    summaries read are checked, the rest kept (but never NaN: the file must stay JSON)."""

    epoch: int
    train_loss: _NonNegative
    train_acc: float = Field(ge=0.0, le=1.0)
    # null without a validation split; infinite in older runs' files
    val_loss: float | None = Field(ge=0.0, allow_inf_nan=True)
    val_acc: float | None = Field(ge=0.0, le=1.0)
    lr: _NonNegative

    @model_validator(mode="after")
    def _no_nan(self) -> HistoryRecord:
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, float) and math.isnan(value):
                raise _MismatchError(key, "= nan, expected a number")
        return self


class ResumeState(_Record):
    """A checkpoint's loop state (``metadata["resume"]``): what `TrainState` holds besides
    the history, and the two random generators. Checks that need the run's data and batch
    size (the step within an epoch, the shuffling order) are left to resuming."""

    epoch: _Count
    step: _Count
    loss_sum: _NonNegative
    correct: _Count
    seen: _Count
    epoch_time: _NonNegative
    best_loss: _NonNegative | None
    best_epoch: _Count
    best_accuracy: float | None = Field(ge=0.0, le=1.0)
    bad_epochs: _Count
    elapsed: _NonNegative
    shuffle_rng: _Generator
    noise_rng: _Generator

    @field_validator("epoch_time", "elapsed")
    @classmethod
    def _within_ten_years(cls, seconds: float) -> float:
        if seconds > _MAX_SECONDS:
            raise ValueError(f"is {seconds:.3g} seconds, more than ten years")
        return seconds

    @model_validator(mode="after")
    def _within_epochs(self) -> ResumeState:
        for name in ("best_epoch", "bad_epochs"):
            if (value := getattr(self, name)) > self.epoch:
                raise _MismatchError(
                    name, f"is {value:,}, more than the {counted(self.epoch, 'epoch')} run"
                )
        return self


class _ResumeFile(_Record):
    """The two metadata entries a checkpoint adds for resuming."""

    resume: ResumeState
    history: list[HistoryRecord]


def read_resume(path: Path, resume: Any, history: Any) -> ResumeState:
    """A checkpoint's ``resume`` metadata, checked together with its ``history``; anything
    wrong with either raises `damaged_resume` naming it."""
    try:
        state = _ResumeFile.model_validate({"resume": resume, "history": history})
    except ValidationError as exc:
        raise damaged_resume(path, _resume_error(exc.errors(include_url=False)[0])) from None
    epoch, records = state.resume.epoch, len(state.history)
    if records != epoch:
        raise damaged_resume(
            path,
            f"'history' should hold one record per finished epoch ({epoch}), found {records} "
            "records",
        )
    for number, record in enumerate(state.history, start=1):
        if record.epoch != number:
            problem = f"history record {number} is not the record of epoch {number}"
            raise damaged_resume(path, problem)
    return state.resume


def _resume_error(error: Any) -> str:
    """One pydantic error of `read_resume` in the words of the checkpoint's fields."""
    loc, cause = [str(part) for part in error["loc"]], (error.get("ctx") or {}).get("error")
    if isinstance(cause, _MismatchError):
        loc.append(cause.field)
    prefix, has = "", True
    if loc[0] == "history" and len(loc) > 1:
        subject, loc = f"history record {int(loc[1]) + 1}", loc[2:]
    elif loc[1:2] in (["shuffle_rng"], ["noise_rng"]):
        prefix = f"resume.{loc[1]} is not a random-generator state: "
        subject, loc = "it", loc[2:]
    else:
        subject, has = loc.pop(0), False
    name, whole = ".".join(loc), subject if has else f"'{subject}'"
    if error["type"] in ("missing", "extra_forbidden"):
        what = "lacks" if error["type"] == "missing" else "has the unknown entry"
        return f"{prefix}{whole} {what} {name}"
    if not name:
        clause = f"{subject} is"
    else:
        clause = f"{subject} has {name} =" if has else f"{subject}.{name} is"
    if isinstance(cause, ValueError):
        return f"{prefix}{clause.rsplit(' ', 1)[0]} {cause}"
    return f"{prefix}{clause} {_show(error['input'])}, {_expectation(error)}"


class _MismatchError(ValueError):
    """Two metadata fields disagree; `field` names the one reported."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


@dataclass
class SavedModel:
    """What a model file holds: weights, biases and the validated metadata."""

    weights: list[NDArray[np.floating]]  # W_1 .. W_L, each (n_l, n_{l-1})
    biases: list[NDArray[np.floating]]  # b_1 .. b_L, each (n_l,)
    meta: ModelMetadata
    extras: dict[str, NDArray[np.generic]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def layers(self) -> list[int]:
        """Layer sizes [n_0, n_1, ..., n_L], read from the weights' shapes: the arrays are
        what computes, the metadata's copy is for readers of the file alone."""
        return layer_sizes(self.weights)


def layer_sizes(weights: list[NDArray[np.floating]]) -> list[int]:
    """Layer sizes [n_0, n_1, ..., n_L] of the weights W_1 .. W_L, from their shapes."""
    return [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]


# -- saving ---------------------------------------------------------------------------------


def save(
    path: str | Path,
    weights: list[NDArray[np.floating]],
    biases: list[NDArray[np.floating]],
    metadata: Mapping[str, Any],
    extras: Mapping[str, NDArray[np.generic]] | None = None,
) -> Path:
    """Write a model (and, with ``extras``, a checkpoint) atomically to ``path``."""
    path = Path(path)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    meta["layers"] = layer_sizes(weights)
    arrays: dict[str, NDArray[np.generic]] = {}
    for i, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        arrays[f"W{i}"] = np.ascontiguousarray(w)
        arrays[f"b{i}"] = np.ascontiguousarray(b)
    for name, value in (extras or {}).items():
        if not name.startswith(EXTRA_PREFIXES):
            raise ValueError(f"extra array names start with {EXTRA_PREFIXES}: {name}")
        arrays[name] = np.asarray(value)
    arrays[METADATA_KEY] = np.array(json.dumps(meta))
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
    except OSError as exc:
        raise CheckpointError(
            f"could not write '{shown(path)}': {reason(exc)}. The previous file, if any, is"
            f" unchanged. {advice(exc)}"
        ) from None
    return path


# -- loading --------------------------------------------------------------------------------


def damaged_resume(path: Path, problem: str) -> CheckpointError:
    """A checkpoint whose loop state (``resume``, ``history``, ``resume/*`` and
    ``optimizer/*`` arrays) cannot be continued from."""
    return CheckpointError(
        f"'{shown(path)}' has damaged resume state: {problem}. The run cannot continue from it; "
        "start a new run, or put back an intact copy of the checkpoint."
    )


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"'{shown(path)}' is not a valid mlp model file: {problem}. Expected a .npz written by "
        f"`mlp train` (arrays W1..WL, b1..bL and a JSON 'metadata' entry)."
    )


@dataclass(frozen=True)
class _Member:
    """One ``.npy`` member of the archive, as its zip entry and its header declare it."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran: bool
    offset: int  # bytes of .npy preamble before the data

    @property
    def count(self) -> int:
        return math.prod(self.shape)  # Python ints: an absurd shape cannot overflow


def load(path: str | Path, *, checkpoint: bool = False) -> SavedModel:
    """Read and validate a model file (``checkpoint=True`` also returns optimizer/resume arrays).

    Raises CheckpointError, naming the file and the problem, for anything but a model file
    `save` could have written; nothing is decompressed or allocated before it is bounded.
    """
    path = Path(path)
    try:
        handle = open_regular(path)
    except FileNotFoundError:
        raise CheckpointError(f"model file '{shown(path)}' not found") from None
    except NotRegularFileError as exc:
        if path.is_dir():
            raise CheckpointError(
                f"'{shown(path)}' is a folder; expected a .npz model file"
            ) from None
        raise CheckpointError(
            f"model file '{shown(path)}' cannot be used: {exc.strerror}; pass a .npz model file "
            "or a run directory"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read model file '{shown(path)}': {exc.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            magic = handle.read(4)
        except OSError as exc:  # an I/O error of the disk, for one
            raise CheckpointError(
                f"cannot read model file '{shown(path)}': {exc.strerror}"
            ) from None
        if magic != b"PK\x03\x04":
            raise _fail(path, "it is not a zip/.npz archive")
        if size > _MAX_FILE_BYTES:
            raise _fail(
                path,
                f"it holds {format_bytes(size)}, more than a model of at most "
                f"{MAX_PARAMETERS:,} parameters can",
            )
        handle.seek(0)
        try:
            with warnings.catch_warnings(), zipfile.ZipFile(handle) as archive:
                warnings.simplefilter("error", UserWarning)  # NumPy warns of odd headers
                return _read_archive(archive, path, checkpoint)
        except (
            zipfile.BadZipFile,
            zlib.error,
            ValueError,
            OSError,
            EOFError,
            KeyError,
            NotImplementedError,
            RuntimeError,
            UserWarning,
        ) as exc:  # NotImplementedError and RuntimeError: damaged compression/encryption flags
            raise _fail(path, f"it could not be read ({shorten(exc, 200)})") from None


# The dtype of a .npy header that declares text (str or bytes): whole, its kind, its length.
_TEXT_DESCR = re.compile(rb"'descr'\s*:\s*'([<>|=]?([USa])(\d*))'")
_CHAR_BYTES = {b"U": 4, b"S": 1, b"a": 1}  # bytes per character of each kind of text


def _read_archive(archive: zipfile.ZipFile, path: Path, checkpoint: bool) -> SavedModel:
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise _fail(path, f"it has {len(infos):,} members; a model has at most {_MAX_MEMBERS}")
    members: dict[str, _Member] = {}
    for info in infos:
        name = _member_name(info, path)
        if name in members:
            raise _fail(path, f"member '{name}' appears twice")
        members[name] = _read_header(archive, info, name, path)
    meta = _read_metadata(archive, members, path)
    layers = meta.layers
    expected: dict[str, tuple[int, ...]] = {}
    for i in range(1, len(layers)):
        expected[f"W{i}"] = (layers[i], layers[i - 1])
        expected[f"b{i}"] = (layers[i],)
    names = set(members) - {METADATA_KEY}
    if missing := sorted(set(expected) - names, key=lambda n: (n[0], int(n[1:]))):
        raise _fail(path, f"arrays {', '.join(missing)} are missing")
    extra_names = sorted(names - set(expected))
    if unexpected := [n for n in extra_names if not n.startswith(EXTRA_PREFIXES)]:
        raise _fail(path, f"unexpected arrays {', '.join(unexpected)}")
    for name, shape in expected.items():
        member = members[name]
        if member.shape != shape:
            raise _fail(path, f"{name} has shape {member.shape}, the layers say {shape}")
        if member.dtype not in _FLOATS:
            raise _fail(path, f"{name} has dtype {member.dtype}, expected float32")
    for name in extra_names:
        member = members[name]
        if member.dtype.kind not in "biuf" or member.dtype.itemsize > _MAX_ITEM_BYTES:
            raise _fail(path, f"{name} has dtype {member.dtype}, expected numbers")
        if len(member.shape) > 1 or member.count > _MAX_EXTRA_ITEMS:
            problem = f"{name} has shape {member.shape}, expected at most one dimension"
            raise damaged_resume(path, problem)
    for name, member in members.items():
        _check_size(member, name, path)
    weights: list[NDArray[np.floating]] = []
    biases: list[NDArray[np.floating]] = []
    for name in expected:
        array = _read_data(archive, members[name], name, path)
        if not np.all(np.isfinite(array)):
            raise _fail(path, f"{name} holds NaN or infinite values")
        if array.dtype != np.float32 and array.size and float(np.abs(array).max()) > _FLOAT32_MAX:
            raise _fail(path, f"{name} holds values too large for float32")
        (weights if name[0] == "W" else biases).append(array)
    extras = (
        {name: _read_data(archive, members[name], name, path) for name in extra_names}
        if checkpoint
        else {}
    )
    return SavedModel(weights, biases, meta, extras, path)


def _member_name(info: zipfile.ZipInfo, path: Path) -> str:
    """The array name of a zip entry, after checking it can be read within bounds."""
    if not info.filename.endswith(".npy"):
        raise _fail(path, f"unexpected member '{shorten(info.filename, 80)}'")
    name = info.filename[: -len(".npy")]
    if info.flag_bits & 0x1:
        raise _fail(path, f"member '{name}' is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # Python's bzip2 and LZMA readers cannot bound how much one read decompresses.
        raise _fail(
            path,
            f"member '{name}' uses zip compression method {info.compress_type}; model files "
            "are stored or deflate-compressed, as NumPy's savez and savez_compressed write them",
        )
    return name


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: Path) -> _Member:
    """A member's .npy header (shape, dtype), read without touching the data; the header's
    size is bounded before it is read and its data size checked against the zip entry."""
    with archive.open(info) as stream:
        start = stream.read(8)
        if len(start) < 8 or start[:6] != npy_format.MAGIC_PREFIX:
            raise _fail(path, f"member '{name}' is not a .npy array")
        length_bytes = 2 if start[6] == 1 else 4
        length_raw = stream.read(length_bytes)
        length = int.from_bytes(length_raw, "little")
        if len(length_raw) < length_bytes or length > _MAX_NPY_HEADER:
            raise _fail(path, f"member '{name}' has a damaged .npy header")
        header = start + length_raw + stream.read(length)
    text = _TEXT_DESCR.search(header)
    too_long = text and (
        f"declares the text dtype {text.group(1).decode('ascii')}, larger than NumPy "
        f"can hold (a model's metadata is at most {MAX_METADATA_CHARS:,} characters)"
    )
    try:
        preamble = io.BytesIO(header)
        version = npy_format.read_magic(preamble)
        reader = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(preamble)
    except (ValueError, EOFError, SyntaxError, TypeError, RecursionError, MemoryError) as exc:
        if too_long:
            problem = too_long
        elif "object at 0x" in str(exc):  # NumPy names the syntax node it refused
            problem = "has a .npy header whose shape or dtype is not written as plain numbers"
        else:
            problem = f"has a damaged .npy header ({shorten(exc, 200)})"
        raise _fail(path, f"member '{name}' {problem}") from None
    # NumPy before 2.0 wraps a text length past 2**31 bytes around instead of refusing it.
    if text and text.group(3) and dtype.itemsize != int(text.group(3)) * _CHAR_BYTES[text.group(2)]:
        raise _fail(path, f"member '{name}' {too_long}")
    if dtype.hasobject:
        raise _fail(path, f"member '{name}' holds Python objects, which are never loaded")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise _fail(path, f"member '{name}' holds records, not an array of numbers")
    return _Member(info, tuple(shape), dtype, bool(fortran), len(header))


def _check_size(member: _Member, name: str, path: Path) -> None:
    """Refuse a member whose zip entry holds more or fewer bytes than its header declares.

    Called after a weight's shape is compared with the layers (an absurd shape is named as
    such, not as a truncated file) and before anything of that size is allocated."""
    declared = member.offset + member.count * member.dtype.itemsize
    if member.info.file_size < declared:
        raise _fail(path, f"member '{name}' is truncated")
    if member.info.file_size > declared:
        raise _fail(path, f"member '{name}' holds bytes beyond its array")


def _read_data(archive: zipfile.ZipFile, member: _Member, name: str, path: Path) -> NDArray[Any]:
    """A member's array, decompressed a chunk at a time into an array of the checked size.

    The zip entry's CRC is verified on the last chunk, so a flipped byte is refused."""
    _check_size(member, name, path)
    array = np.empty(member.count, dtype=member.dtype)
    raw = array.view(np.uint8)  # (count * itemsize,): the same memory, byte by byte
    with archive.open(member.info) as stream:
        stream.read(member.offset)
        done = 0
        while done < raw.size:
            chunk = stream.read(min(_CHUNK, raw.size - done))
            if not chunk:
                raise _fail(path, f"member '{name}' is truncated")
            raw[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
    if member.fortran:
        return array.reshape(member.shape[::-1]).T
    return array.reshape(member.shape)


def _read_metadata(
    archive: zipfile.ZipFile, members: Mapping[str, _Member], path: Path
) -> ModelMetadata:
    """The metadata JSON, validated as a `ModelMetadata`."""
    member = members.get(METADATA_KEY)
    if member is None:
        raise _fail(path, "the 'metadata' entry is missing")
    if member.shape != () or member.dtype.kind != "U":
        raise _fail(path, "the 'metadata' entry is not a JSON string")
    if member.dtype.itemsize > 4 * MAX_METADATA_CHARS:
        raise _fail(path, "the 'metadata' entry is implausibly large")
    text = str(_read_data(archive, member, METADATA_KEY, path)[()])
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"its metadata is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise _fail(path, "its metadata is nested too deeply") from None
    if not isinstance(metadata, dict):
        raise _fail(path, "its metadata is not a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise _fail(path, f"its metadata names format {_show(metadata.get('format'))}")
    version = metadata.get("format_version")
    # only a number is a version that another mlp may have written; anything else is
    # damage, which "this mlp reads version 1" would not explain ('1' against 1)
    if "format_version" not in metadata:
        raise _fail(path, "its metadata lacks the field 'format_version'")
    if not isinstance(version, int | float) or isinstance(version, bool):
        raise _fail(
            path,
            f"its metadata field 'format_version' is {_show(version)}: expected a whole number",
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"'{shown(path)}' uses model format version {_show(version)}; this mlp reads version "
            f"{FORMAT_VERSION}. Retrain the model, or use the mlp release that wrote it."
        )
    try:
        meta = ModelMetadata.model_validate(metadata)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]["loc"]
        if first and first[0] in ("resume", "history"):
            raise damaged_resume(path, _describe(exc)) from None
        raise _fail(path, _describe(exc)) from None
    return meta


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = 6
_show = _REPR.repr


# What pydantic's error types mean for a JSON file, in its readers' words.
_EXPECTED = {
    "model_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "list_type": "expected a list",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "string_unicode": "expected text, which holds no bytes that are not UTF-8",
}


def _expectation(error: Any) -> str:
    """What pydantic's `error` says a value should be, as "expected ...": in our words where
    `_EXPECTED` has them, else in pydantic's ("a valid date", "a value greater than 0"); a
    message of another form ("List should have at least 2 items ...") as pydantic says it."""
    if error["type"] in _EXPECTED:
        return _EXPECTED[error["type"]]
    message: str = error["msg"]
    if not message.startswith("Input should be "):
        return message[:1].lower() + message[1:]
    wanted = message.removeprefix("Input should be ")
    return f"expected {'' if wanted.startswith(('a ', 'an ')) else 'a value '}{wanted}"


def _describe(exc: ValidationError) -> str:
    """The first problems pydantic found, each naming its metadata field."""
    clauses = []
    for error in exc.errors(include_url=False)[:3]:
        cause = (error.get("ctx") or {}).get("error")
        loc = [str(part) for part in error["loc"]]
        if isinstance(cause, _MismatchError):
            loc = [cause.field]
        where = ".".join(loc) if loc else "(the whole object)"
        if error["type"] == "missing":
            clauses.append(f"its metadata lacks the field '{where}'")
        elif error["type"] == "extra_forbidden":
            clauses.append(f"its metadata has an unknown field '{where}'")
        elif isinstance(cause, ValueError):
            clauses.append(f"its metadata field '{where}' {cause}")
        else:
            expected = _expectation(error)
            clauses.append(f"its metadata field '{where}' is {_show(error['input'])}: {expected}")
    more = len(exc.errors()) - len(clauses)
    return "; ".join(clauses) + (f" (and {more} more problems)" if more > 0 else "")


MAX_LINK_BYTES = 1024  # a plain-file link holds one run folder's name


def latest_file_target(link: Path) -> str | None:
    """The run folder a plain-file ``latest`` link names (what `mlp train` writes where
    symlinks are not available), or None when the file is not such a link: larger than
    `MAX_LINK_BYTES`, not UTF-8, or not one plain folder name."""
    try:
        raw = read_regular(link, MAX_LINK_BYTES)
        name = raw.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    plain = is_plain_name(name) and name != LATEST
    return name if plain and len(raw) <= MAX_LINK_BYTES else None


def through_latest(path: Path, fix: str) -> Path:
    """``path``, or the run folder it names if it is a plain-file ``latest`` link (see
    `latest_file_target`); a plain file there that is no such link is a `UsageError`
    ending in ``fix``."""
    if path.name != LATEST or path.is_symlink() or not path.is_file():
        return path
    name = latest_file_target(path)
    if name is None:
        raise UsageError(
            f"'{shown(path)}' is a file, but not the link to the newest run that `mlp train` "
            "writes where symlinks are not available (one line naming a run folder beside "
            f"it). {fix}"
        )
    return path.parent / name


def is_plain_name(name: str, *, one_line: bool = True) -> bool:
    """Whether ``name`` names a folder beside the link: one path component, and with
    `one_line` no line break (a plain-file link holds the name as one line; a symlink holds
    any name exactly)."""
    breaks = "\n" if one_line else ""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0" + breaks)


def no_model(latest: Path, alternative: str) -> UsageError:
    """The error for a `latest` link that is not there: nothing has been trained here."""
    return UsageError(
        f"no trained model found: '{shown(latest)}' does not exist. Train one with `mlp train` "
        f"(`mlp config list` shows the configs it can train), or {alternative}."
    )


def no_model_yet(run_dir: Path) -> UsageError:
    """The error for a run folder whose training has not saved a model: it has begun (its
    checkpoint is there) but no epoch has ended."""
    return UsageError(
        f"the run in '{shown(run_dir)}' has no {MODEL_FILE} yet: no epoch of its training has "
        "ended with a model saved (`mlp train` saves it at an epoch's end, or at the end of "
        "training for a run that keeps no best epoch), so there is nothing to use. Let it run "
        f"on, or continue it with `{command('mlp train --resume', run_dir)}`."
    )


def find_model(model: str | Path | None = None, *, runs: str | Path = "runs") -> Path:
    """The model file a command should use: ``model`` (a .npz or a run directory), or the
    newest run (``runs/latest``)."""
    if model is None:
        link = Path(runs) / LATEST
        latest = through_latest(link, "Pass --model PATH (a .npz file or a run directory).")
        if not latest.exists():
            raise no_model(link, "pass --model PATH (a .npz file or a run directory)")
        model = latest
    path = Path(model)
    folder = path.is_dir()
    if folder:
        path = path / MODEL_FILE
    if path.is_symlink() and not path.exists():  # there, so "not found" would puzzle
        raise UsageError(
            f"model '{shown(path)}' is a link to nowhere (its target is gone, or it is a loop "
            "of links); pass a .npz file or a run directory"
        )
    if folder:
        if not path.exists() and (path.parent / CHECKPOINT_FILE).exists():
            raise no_model_yet(path.parent)
        if not path.exists():
            raise UsageError(
                f"'{shown(model)}' is a folder without a {MODEL_FILE}; pass a run directory made "
                "by `mlp train` or a .npz file"
            )
    elif not path.exists():
        raise UsageError(f"model '{shown(path)}' not found; pass a .npz file or a run directory")
    return path
