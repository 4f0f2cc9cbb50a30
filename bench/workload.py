"""What the benchmark trains: the four shipped architectures, their training data and configs.

Every engine trains the same networks on the same inputs: MNIST's 60,000 training digits as
float32 model inputs (`mlp_cli.preprocess.digits_to_inputs`), held once per input size and
shared (never copied) by all engines, mini-batches of 128, Adam at lr 1e-3, softmax output
and cross-entropy, no regularisation, no validation split.  The arithmetic of one step is
spelled out here as the list of its matrix multiplications, so the matmul-only ceiling and
achieved GFLOP/s follow from the network alone.

Left out: preprocessing options (standardisation, augmentation) that do not change the work
of a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mlp_cli.config import Config, config_from_dict
from mlp_cli.data import Splits
from mlp_cli.errors import DataError

BATCH = 128  # examples per step, every engine
LR = 1e-3  # Adam's learning rate, every engine
THREADS = 2  # BLAS / intra-op threads, every engine
SMOKE_IMAGES = 512  # training images in --smoke mode
MORE_EPOCHS = 5  # timing --seconds takes at most this many times the --epochs

Inputs = NDArray[np.float32]
Labels = NDArray[np.uint8]


@dataclass(frozen=True)
class Gemm:
    """One float32 matrix product of a step: (m, k) @ (k, n)."""

    m: int
    n: int
    k: int
    kind: Literal["forward", "grad_w", "grad_x"]

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k


@dataclass(frozen=True)
class Network:
    """An architecture: layer sizes and the hidden activation (output: softmax)."""

    layers: tuple[int, ...]
    hidden: Literal["relu", "sigmoid"]

    @property
    def name(self) -> str:
        return "-".join(map(str, self.layers))

    @property
    def label(self) -> str:
        return f"{self.name} {self.hidden}"

    @property
    def input_size(self) -> int:
        """Side of the square input image (784 inputs: 28, 400 inputs: 20)."""
        return math.isqrt(self.layers[0])

    @property
    def parameters(self) -> int:
        pairs = zip(self.layers[:-1], self.layers[1:], strict=True)
        return sum(n_in * n_out + n_out for n_in, n_out in pairs)

    def gemms(self, batch: int = BATCH) -> list[Gemm]:
        """The matrix products of one training step: forward Z_l = W_l A_{l-1}, weight
        gradient dW_l = delta_l A_{l-1}^T, and for every layer but the first the
        back-propagated W_l^T delta_l.  Each is listed as (m, n, k) of the row form
        (examples as rows), which has the same FLOPs as the model's column form.
        """
        found: list[Gemm] = []
        pairs = list(zip(self.layers[:-1], self.layers[1:], strict=True))
        for n_in, n_out in pairs:
            found.append(Gemm(batch, n_out, n_in, "forward"))
        for l, (n_in, n_out) in enumerate(pairs):
            found.append(Gemm(n_out, n_in, batch, "grad_w"))
            if l > 0:
                found.append(Gemm(batch, n_in, n_out, "grad_x"))
        return found

    def flops_per_step(self, batch: int = BATCH) -> int:
        return sum(g.flops for g in self.gemms(batch))


NETWORKS = (
    Network((784, 100, 10), "relu"),
    Network((784, 800, 10), "relu"),
    Network((784, 1200, 1200, 10), "relu"),
    Network((400, 25, 10), "sigmoid"),
)
WIDEST = NETWORKS[2]  # the network of the drift and memory runs


def network_named(name: str) -> Network:
    """The benchmark's network called ``name`` (as in ``784-100-10`` or its label); a
    ValueError names the known ones."""
    for net in NETWORKS:
        if name in (net.name, net.label):
            return net
    known = ", ".join(net.name for net in NETWORKS)
    raise ValueError(f"unknown network {name!r}; the benchmark knows {known}")


def bench_config(net: Network, epochs: int, seed: int = 0) -> Config:
    """The `mlp train` config of one benchmark run: `net`, Adam lr 1e-3, batch 128."""
    return config_from_dict(
        {
            "name": f"bench-{net.name}",
            "data": {"input_size": net.input_size, "validation_size": 0, "normalize": "none"},
            "model": {
                "layers": list(net.layers),
                "hidden_activation": net.hidden,
                "output_activation": "softmax",
            },
            "loss": "cross_entropy",
            "optimizer": {"name": "adam", "lr": LR},
            "training": {"epochs": epochs, "batch_size": BATCH, "seed": seed},
        },
        source="<benchmark>",
    )


@dataclass
class Dataset:
    """Training digits as model inputs of one input size, held once for all engines."""

    X: Inputs  # (n, input_size**2)
    y: Labels  # (n,)
    source: str  # "mnist" or "synthetic"

    def splits(self, input_size: int) -> Splits:
        """A `Splits` view for `mlp_cli.train.Trainer`: everything trains, nothing validates."""
        preprocessing: dict[str, Any] = {
            "input_size": input_size,
            "source": f"benchmark ({self.source})",
            "normalize": None,
        }
        n = len(self.y)
        return Splits(
            self.X,
            self.y,
            np.arange(n, dtype=np.int64),
            np.arange(0, dtype=np.int64),
            preprocessing,
            {},
        )


def load_digits(smoke: bool) -> tuple[NDArray[np.uint8], Labels, str]:
    """MNIST's training digits (n, 28, 28) and labels; in smoke mode the first
    SMOKE_IMAGES of them, or random digits if MNIST is not cached (CI has no network)."""
    from mlp_cli import data

    try:
        images, labels = data.load_mnist("train", download=not smoke)
    except DataError:
        if not smoke:
            raise
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (SMOKE_IMAGES, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, SMOKE_IMAGES, dtype=np.uint8)
        return images, labels, "synthetic"
    if smoke:
        return images[:SMOKE_IMAGES], labels[:SMOKE_IMAGES], "mnist"
    return images, labels, "mnist"


def datasets(nets: tuple[Network, ...], smoke: bool) -> dict[int, Dataset]:
    """One `Dataset` per input size the networks need."""
    from mlp_cli.preprocess import digits_to_inputs

    images, labels, source = load_digits(smoke)
    found: dict[int, Dataset] = {}
    for size in sorted({net.input_size for net in nets}):
        found[size] = Dataset(digits_to_inputs(images, size), labels, source)
    return found
