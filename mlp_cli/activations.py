"""Hidden-layer activation functions and their derivatives.

Each activation is a pair of functions that work in place on preallocated arrays, because
the training loop calls them on every mini-batch:

- ``forward(z, out)`` writes ``a = g(z)`` into ``out`` (``out`` may be ``z`` itself);
- ``backward(a, delta)`` multiplies ``delta`` in place by ``g'(z)``, computed from the
  activation ``a`` rather than from ``z`` (cheaper, and it lets the forward pass overwrite
  ``z``).  Every activation here has a derivative expressible through its output.

The output layer's functions (softmax, sigmoid) live in `mlp_cli.losses`, where they are
fused with the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]

LEAKY_SLOPE = 0.01  # slope of leaky ReLU for negative inputs


def sigmoid(z: Array, out: Array) -> Array:
    """a = 1 / (1 + e^-z), elementwise."""
    # exp(-z) overflows to inf for z < -88 in float32; 1/inf is the correct limit 0.
    with np.errstate(over="ignore"):
        np.negative(z, out=out)
        np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def sigmoid_backward(a: Array, delta: Array) -> None:
    """delta *= a (1 - a)."""
    delta *= a
    delta -= delta * a


def tanh(z: Array, out: Array) -> Array:
    return np.tanh(z, out=out)


def tanh_backward(a: Array, delta: Array) -> None:
    """delta *= 1 - a^2."""
    delta -= delta * a * a


def relu(z: Array, out: Array) -> Array:
    return np.maximum(z, 0.0, out=out)


def _positive(a: Array) -> NDArray[np.bool_]:
    """The mask of the (leaky) ReLU's linear side: "not a <= 0" rather than "a > 0", so that
    a NaN activation passes its delta on."""
    keep = np.less_equal(a, 0.0)
    np.logical_not(keep, out=keep)
    return keep


def relu_backward(a: Array, delta: Array) -> None:
    """delta *= 1[a > 0]; a = 0 exactly where z <= 0."""
    # A multiplication by the boolean mask is a vectorised loop; copyto(..., where=) and
    # putmask take a much slower per-element path.
    np.multiply(delta, _positive(a), out=delta)


def leaky_relu(z: Array, out: Array) -> Array:
    """a = z for z > 0, LEAKY_SLOPE * z otherwise, computed as max(z, LEAKY_SLOPE z)."""
    # The slope is below 1, so the larger of z and slope * z is the right branch.
    np.maximum(z, z * LEAKY_SLOPE, out=out)
    return out


def leaky_relu_backward(a: Array, delta: Array) -> None:
    """delta *= 1 where a > 0, LEAKY_SLOPE elsewhere (a has the sign of z)."""
    delta *= np.maximum(_positive(a), a.dtype.type(LEAKY_SLOPE))  # 1 or the slope


@dataclass(frozen=True)
class Activation:
    forward: Callable[[Array, Array], Array]
    backward: Callable[[Array, Array], None]
    kink: bool = False  # g' jumps at z = 0: no difference quotient across it is a derivative


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_backward),
    "tanh": Activation(tanh, tanh_backward),
    "relu": Activation(relu, relu_backward, kink=True),
    "leaky_relu": Activation(leaky_relu, leaky_relu_backward, kink=True),
}
