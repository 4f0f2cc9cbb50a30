"""How much `mlp` will read or allocate for what a user hands it, and how files are opened.

Configs, model files, images and cached data come from users and from the network, so every
one of them is bounded before anything is allocated: a file is read only if it is a regular
file (a named pipe would block forever, a device never end), never past a size cap, and a
network is refused when its parameters alone would not fit in a reasonable memory, and a
training run when what it allocates would not (`training_memory`). The config check and
the model loader share these bounds, so every network a config may describe can also be
saved and loaded again.

What is checked against these bounds is left to the modules that read each kind of file.
No NumPy here: `mlp_cli.config` imports this module and keeps ``--help`` fast.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from mlp_cli.config import Config

# Weights and biases of one network. Several times the largest MLPs published for MNIST
# (about 12 million parameters), and 128 MiB in float32, so loading one stays far below a
# gigabyte even from float64 files.
MAX_PARAMETERS = 2**25
MAX_LAYER_UNITS = 2**20  # units in any one layer
MAX_LAYERS = 64  # weight layers of one network
MAX_EPOCHS = 100_000  # of one run: its history is read back whole (metrics.jsonl)
# What one training run may allocate (`training_memory`): weights, optimizer
# state, data and batch buffers, leaving room below 1 GB for Python and its libraries.
MAX_TRAINING_BYTES = 640 * 2**20
MAX_CONFIG_BYTES = 2**20  # a config is a few KiB of YAML
MAX_CONFIG_NODES = 20_000  # values and keys of one YAML file: a config holds a few hundred
MNIST_SIDE = 28  # side of an MNIST image in pixels, the largest input a model can take
MNIST_TRAINING_IMAGES = 60000
EVAL_BATCH = 2048  # rows per batch when a validation split is scored (MLP.evaluate)
FLOAT32_BYTES = 4


def counted(count: int, noun: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``, ``"1,024 units"``: `count` and `noun`, in the plural
    unless `count` is 1."""
    return f"{count:,} {noun}{'s' * (count != 1)}"


def percent(share: float, decimals: int = 2) -> str:
    """``share`` (0.9751) as a percentage to `decimals` places (``"97.51%"``), except that a
    share short of 1 is never rounded up to ``"100.00%"`` (57,999 of 58,000 is ``">99.99%"``),
    nor one above 0 down to ``"0.00%"`` (``"<0.01%"``): either would read as all or none."""
    text = f"{100 * share:.{decimals}f}%"
    least = 10.0**-decimals  # the smallest step shown
    if text == f"{100:.{decimals}f}%" and share < 1:
        return f">{100 - least:.{decimals}f}%"
    if text == f"{0:.{decimals}f}%" and share > 0:
        return f"<{least:.{decimals}f}%"
    return text


def format_bytes(count: int) -> str:
    """``count`` bytes in decimal units: ``"4.0 TB"``, ``"512 bytes"``."""
    if count < 1000:
        return f"{count} bytes"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        value /= 1000
        if value < 999.95:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} ZB"


def shorten(value: object, limit: int) -> str:
    """``str(value)``, cut to ``limit`` characters (an error from a damaged file or a server
    can hold anything, of any length)."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parameter_count(layers: Sequence[int]) -> int:
    """Weights and biases of an MLP with these layer sizes (input first); exact, any size."""
    return sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(layers))


class NotRegularFileError(OSError):
    """A path names something other than a regular file (a pipe, a device, a folder...);
    ``strerror`` says what it is."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"it is {kind}, not a regular file")
        self.strerror = str(self)


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words, from its ``st_mode``: "a folder",
    "a named pipe (FIFO)", ... (the one description, for reading and for writing)."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for reading in binary mode if, and only if, it is a regular file.

    The file is opened without blocking and checked through its descriptor, so a named pipe
    neither blocks the open nor is swapped in between the check and the read. Raises
    `NotRegularFileError` (whose ``strerror`` says what the path is), FileNotFoundError,
    IsADirectoryError or another OSError.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(file_kind(mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file ``path``: one byte more than the
    caller accepts, so that ``len(result) > limit`` says the file is too large."""
    with open_regular(path) as handle:
        # A read allocates as much as it is asked for, so ask for no more than the file holds.
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(min(size, limit) + 1)
        if size < len(data) <= limit:  # it grew since: the rest, as far as the limit
            data += handle.read(limit + 1 - len(data))
        return data


def json_values_at_most(raw: bytes) -> int:
    """An upper bound on the number of values in the JSON text `raw` (a key and its value
    counted as one), without parsing it: each but the first follows a ',', '[' or '{'."""
    return 1 + sum(raw.count(mark) for mark in (b",", b"[", b"{"))


def layers_text(layers: Sequence[int]) -> str:
    """Layer sizes as they are written in configs: ``"784-100-10"``."""
    return "-".join(str(size) for size in layers)


def network_size_problem(layers: Sequence[int]) -> str | None:
    """Why a network of these layer sizes is refused (it would not fit in memory), or None.
    Configs and model files are held to the same bound."""
    parameters = parameter_count(layers)
    if parameters > MAX_PARAMETERS:
        return (
            f"{layers_text(layers)} has {parameters:,} parameters, which would need"
            f" {format_bytes(FLOAT32_BYTES * parameters)} for its weights alone; mlp handles"
            f" networks of at most {MAX_PARAMETERS:,} parameters"
            f" ({format_bytes(FLOAT32_BYTES * MAX_PARAMETERS)})"
        )
    if (widest := max(layers)) > MAX_LAYER_UNITS:
        return f"has a layer of {widest:,} units; a layer has at most {MAX_LAYER_UNITS:,}"
    return None


def batch_size_problem(cfg: Config) -> str | None:
    """Why one batch of `cfg` cannot be trained (said of training.batch_size), before any memory
    is allocated for it, or None."""
    batch = cfg.training.batch_size
    examples = MNIST_TRAINING_IMAGES - cfg.data.validation_size
    if batch > examples:
        return (
            f"is {batch:,} but only {examples:,} training"
            f" {'image remains' if examples == 1 else 'images remain'} after the"
            f" {cfg.data.validation_size:,} of data.validation_size; a batch holds at most"
            " all of them"
        )
    fixed, per_example = training_memory(cfg)
    if fixed + batch * per_example <= MAX_TRAINING_BYTES:
        return None
    need = format_bytes(fixed + batch * per_example)
    if fixed + per_example > MAX_TRAINING_BYTES:
        return (
            f"is {batch:,}, but training layers {layers_text(cfg.model.layers)} with"
            f" {cfg.optimizer.name} would need about {need} of memory, and even a batch"
            f" of 1 would need more than the {format_bytes(MAX_TRAINING_BYTES)} mlp allows"
            " (the weights, their gradients, the optimizer's state and the training"
            " data come first); use narrower layers"
        )
    return (
        f"is {batch:,}: training layers {layers_text(cfg.model.layers)} on batches of"
        f" {batch:,} would need about {need} of memory (weights, gradients, optimizer"
        " state, the training data, and each batch's activations and deltas), more than"
        f" the {format_bytes(MAX_TRAINING_BYTES)} mlp allows; use a batch_size of at most"
        f" {(MAX_TRAINING_BYTES - fixed) // per_example:,}"
    )


def training_memory(cfg: Config) -> tuple[int, int]:
    """(bytes, bytes per example of a batch) that training this config allocates.

    The first counts what does not depend on the batch size: the parameters and their
    gradients, the optimizer's state (one vector per moment), a copy of the parameters
    while a file is saved, the training inputs, the validation copy and its evaluation
    buffers. The second counts, per example of a batch, the gathered inputs, every
    layer's activations and deltas, the output's logits, dropout's masks and dropped
    copies, and the elastic distortion's fields; twice, since the epoch's shorter last
    batch has its own buffers."""
    from mlp_cli.config import SGDConfig  # not at the top: config imports this module

    layers, rates = cfg.model.layers, cfg.model.dropout_rates
    parameters = parameter_count(layers)
    moments = 1 if isinstance(cfg.optimizer, SGDConfig) else 2
    copies = 2 + moments + 1  # params, grads, moments, one saved copy
    if cfg.regularization.l1 or cfg.regularization.l2:
        copies += 1  # the penalty gradient's scratch vector
    n_in, units = layers[0], sum(layers[1:])
    val = cfg.data.validation_size
    fixed = (
        FLOAT32_BYTES
        * (
            copies * parameters
            + MNIST_TRAINING_IMAGES * n_in  # the training inputs
            + val * n_in  # the validation inputs, gathered once
            + min(val, EVAL_BATCH) * (2 * units + layers[-1])  # scoring them (work buffers)
        )
        + 8 * 2 * MNIST_TRAINING_IMAGES
    )  # the shuffling order and the split's indices
    dropped = sum(([n_in, *layers[1:-1]])[l] for l, p in enumerate(rates) if p > 0)
    # An elastic field is noise and its smoothed copy, (2, side, batch, side) each; the
    # affine warp works on a fixed number of images at a time.
    elastic = cfg.augment.enabled and cfg.augment.elastic_alpha > 0
    augmented = 4 * n_in if elastic else 0
    per_example = FLOAT32_BYTES * (n_in + 2 * units + layers[-1] + 2 * dropped + augmented)
    return fixed, 2 * per_example
