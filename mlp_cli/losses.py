"""Output functions and losses, with the gradient of the loss with respect to the output
layer's pre-activations ``z``.

Targets are integer class labels ``y`` of shape (batch,), standing for one-hot rows ``Y``.
Every loss is the mean over the batch, so gradients carry a factor ``1/N``.

- cross-entropy: with softmax, L = -mean log a_y; with sigmoid outputs it is the binary
  cross-entropy summed over the K units. Both are the canonical pairing, so
  dL/dz = (a - Y) / N, the fused gradient that avoids dividing by a.
- mean squared error: L = 1/(2N) sum ||a - Y||^2 (the textbook 1/2 cancels the square's 2);
  dL/dz = J_g^T (a - Y) / N with the output function's Jacobian J_g.

Loss values are computed from ``z`` with log-sum-exp / softplus, so they stay finite when
an output saturates.  Penalties (L1/L2) are the model's business, not the loss's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mlp_cli.activations import sigmoid

Array = NDArray[np.floating]
Labels = NDArray[np.integer]


def softmax(z: Array, out: Array, lse: Array | None = None) -> Array:
    """a_k = e^{z_k} / sum_j e^{z_j}, row by row, shifted by the row maximum for stability.

    With ``lse`` (shape (batch,)), also writes each row's log-sum-exp log sum_j e^{z_j}, the
    cross-entropy's other term, from the sums already at hand: the bits are those the loss
    would compute again from ``z``.
    """
    zmax = z.max(axis=1, keepdims=True)
    np.subtract(z, zmax, out=out)
    np.exp(out, out=out)
    total = row_sums(out)
    out /= total[:, None]
    if lse is not None:
        np.log(total, out=lse)
        lse += zmax[:, 0]
    return out


def row_sums(e: Array) -> Array:
    """Each row's sum, the columns added left to right: the order `mlp_cli.kernels` adds
    them in, so that training's compiled softmax and this one agree bit for bit."""
    total = e[:, 0].copy()
    for column in e.T[1:]:
        total += column
    return total


OUTPUTS: dict[str, Callable[[Array, Array], Array]] = {"softmax": softmax, "sigmoid": sigmoid}


def _rows(y: Labels) -> NDArray[np.intp]:
    return np.arange(y.shape[0])


def _cross_entropy(output: str, z: Array, a: Array, y: Labels, lse: Array | None = None) -> float:
    if output == "softmax":
        if lse is None:
            zmax = z.max(axis=1)
            lse = zmax + np.log(row_sums(np.exp(z - zmax[:, None])))
        # The mean as np.mean takes it (a sum in the array's dtype, then one division),
        # without its Python-level bookkeeping.
        return float(np.add.reduce(lse - z[_rows(y), y]) / y.shape[0])
    # Binary cross-entropy per unit: softplus(z) - Y z, summed over units.
    total = np.logaddexp(0.0, z).sum() - z[_rows(y), y].sum()
    return float(total / y.shape[0])


def _cross_entropy_delta(output: str, z: Array, a: Array, y: Labels, out: Array) -> None:
    np.copyto(out, a)
    out[_rows(y), y] -= 1.0
    out *= 1.0 / y.shape[0]


def _mse(output: str, z: Array, a: Array, y: Labels, lse: Array | None = None) -> float:
    r = a.copy()
    r[_rows(y), y] -= 1.0
    return float(0.5 * np.einsum("ij,ij->", r, r) / y.shape[0])


def _mse_delta(output: str, z: Array, a: Array, y: Labels, out: Array) -> None:
    np.copyto(out, a)
    out[_rows(y), y] -= 1.0  # r = a - Y
    out *= 1.0 / y.shape[0]
    if output == "sigmoid":
        out *= a * (1.0 - a)
    else:  # softmax Jacobian: J^T r = a * (r - <a, r>)
        out -= np.einsum("ij,ij->i", a, out)[:, None]
        out *= a


class LossValue(Protocol):
    def __call__(
        self, output: str, z: Array, a: Array, y: Labels, lse: Array | None = None
    ) -> float:
        """The mean loss over the batch; ``lse``, if given, is each row's log-sum-exp of
        ``z`` as `softmax` wrote it."""
        ...


@dataclass(frozen=True)
class Loss:
    label: str  # what an axis of its values is called
    value: LossValue
    delta: Callable[[str, Array, Array, Labels, Array], None]
    """delta(output, z, a, y, out) writes dL/dz, shape (batch, K), into out."""


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss("cross-entropy loss", _cross_entropy, _cross_entropy_delta),
    "mse": Loss("mean squared error", _mse, _mse_delta),
}
