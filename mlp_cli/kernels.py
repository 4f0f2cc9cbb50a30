"""Compiled loops, one pass each: the optimizers' updates (`mlp_cli.optim`), a hidden
layer's bias, activation and derivative, and the softmax output's row work and
cross-entropy delta (`mlp_cli.model.MLP.use_kernels`).

An update applies its optimizer's rule to every entry, in parallel (``prange``) for a large
vector: no entry depends on another, so the bits do not depend on which thread took which.
The layer loops perform the float operations of the NumPy code they replace
(`mlp_cli.activations`, `mlp_cli.losses`) in the same order, reading and writing each entry
once; exp and log stay NumPy's, between the loops, since a compiled exp rounds differently.
No fast-math (no fused multiply-add) keeps NumPy's bits; ``error_model="numpy"`` lets a
division by zero give inf.  Importing this module imports numba, so `mlp_cli.optim` does
that only when an optimizer is built.
"""

from __future__ import annotations

import marshal
import os
import threading
import zlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numba import prange
from numba.extending import register_jitable

from mlp_cli import optim
from mlp_cli.errors import UsageError

if "NUMBA_THREADING_LAYER" not in os.environ:
    # OpenMP's idle workers spin after each update, on the cores the next products' BLAS
    # threads need (`bench/` shows the cost); the workqueue's threads sleep instead.
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]
_LAUNCH = threading.Lock()  # the workqueue runs one parallel loop at a time

Array = optim.Array
F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS: dict[str, Any] = {"error_model": "numpy", "boundscheck": False}


def _jit(loop: F, **options: Any) -> F:
    """``loop`` compiled by numba, cached on disk where numba finds a writable folder; where
    it finds none (a read-only install, an unwritable home) it refuses ``cache=True``, and
    the loop is compiled afresh in each process instead."""
    try:
        return cast(F, numba.njit(cache=True, **_OPTIONS, **options)(loop))
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return cast(F, numba.njit(**_OPTIONS, **options)(loop))


def _loop(rule: Callable[..., Any], parallel: bool) -> Callable[..., None]:
    """``rule`` (`mlp_cli.optim.sgd`, ...) applied to every entry of its arrays, shared among
    threads (``prange``) if ``parallel``."""

    def loop(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
        for i in prange(p.size):
            p[i], a[i], b[i] = rule(p[i], g[i], a[i], b[i], h)

    # numba names a cache file after the loop's qualified name, checks it against this
    # module's source alone and keys its entries by bytecode and closure, not compile flags:
    # the name holds the rule, the flag and the rule's code, so no loop is read stale.
    code = zlib.crc32(marshal.dumps(rule.__code__))
    kind = "parallel" if parallel else "serial"
    loop.__name__ = loop.__qualname__ = f"{rule.__name__}_{kind}_{code:08x}"
    return _jit(loop, parallel=parallel)


# A loop finds its rule in its closure, which numba's cache key pickles: a compiled rule
# pickles with an id new in every process (the cache would never match), a plain function
# registered as jitable by its name.  Per rule (AdamW's is Adam's), a loop on the calling
# thread (starting a parallel loop costs more than a small network's whole update) and a
# loop shared among threads.
_RULES = dict.fromkeys(optimizer.rule for optimizer in optim.OPTIMIZERS.values())
_LOOPS = {
    rule.__name__: (_loop(rule, False), _loop(rule, True))
    for rule in map(register_jitable(**_OPTIONS), _RULES)
}
_MOST_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


def start_threads() -> None:
    """Load numba's threading layer and start its threads, which numba does at the first
    parallel loop: a layer it cannot load (NUMBA_THREADING_LAYER naming none, or tbb where
    TBB is not installed) is then refused before any work, not at a run's first update."""
    try:
        with _LAUNCH:
            numba.get_num_threads()
    except ValueError as exc:
        reason = " ".join(str(exc).split()).rstrip(".")  # numba's hint is on lines of its own
        raise UsageError(
            f"numba could not start its threads: {reason}. Check NUMBA_THREADING_LAYER (unset,"
            " mlp picks the workqueue layer)."
        ) from None


def update(rule: str, threads: int, *arrays_and_scalars: Any) -> None:
    """Run the loop of ``rule`` (`mlp_cli.optim.sgd`, ...) on ``threads`` threads at most."""
    serial, parallel = _LOOPS[rule]
    if threads <= 1:
        serial(*arrays_and_scalars)
        return
    with _LAUNCH:
        numba.set_num_threads(min(threads, _MOST_THREADS))
        parallel(*arrays_and_scalars)


# -- hidden layers: z = g(z + b) in place, and delta *= g'(z) from a = g(z) -------------------


@_jit
def bias_relu(z: Array, b: Array) -> None:
    """z = max(z + b, 0) for z of shape (n, batch), b of shape (n,), in place.  As with
    np.maximum, NaN stays NaN and -0.0 becomes 0.0."""
    n, batch = z.shape
    for i in range(n):
        bi = b[i]
        for j in range(batch):
            v = z[i, j] + bi
            z[i, j] = v if v > 0.0 or v != v else 0.0


@_jit
def relu_backward(a: Array, delta: Array) -> None:
    """delta *= 1[not a <= 0], in place, for a and delta of the same shape."""
    n, batch = a.shape
    for i in range(n):
        for j in range(batch):
            delta[i, j] = delta[i, j] * (0.0 if a[i, j] <= 0.0 else 1.0)


@_jit
def _bias_negate(z: Array, b: Array) -> None:
    """z = -(z + b), the sigmoid's first two operations."""
    n, batch = z.shape
    for i in range(n):
        bi = b[i]
        for j in range(batch):
            z[i, j] = -(z[i, j] + bi)


@_jit
def _reciprocal_of_one_plus(e: Array) -> None:
    """e = 1 / (e + 1), the sigmoid's last two operations (in e's own precision)."""
    one = np.float32(1.0)  # exact in any float type; adds in e's precision
    n, batch = e.shape
    for i in range(n):
        for j in range(batch):
            e[i, j] = one / (e[i, j] + one)


def bias_sigmoid(z: Array, b: Array) -> None:
    """z = 1 / (1 + e^-(z + b)) for z of shape (n, batch), b of shape (n,), in place."""
    _bias_negate(z, b)
    with np.errstate(over="ignore"):  # e^-z is inf for z < -88 in float32; 1/inf is 0
        np.exp(z, out=z)
    _reciprocal_of_one_plus(z)


@_jit
def sigmoid_backward(a: Array, delta: Array) -> None:
    """delta *= a (1 - a), as delta = delta a; delta -= delta a."""
    n, batch = a.shape
    for i in range(n):
        for j in range(batch):
            d = delta[i, j] * a[i, j]
            delta[i, j] = d - d * a[i, j]


# Per hidden activation: (bias and activation, derivative).  The others run in NumPy.
HIDDEN = {"relu": (bias_relu, relu_backward), "sigmoid": (bias_sigmoid, sigmoid_backward)}


# -- the softmax output and its cross-entropy ------------------------------------------------


@_jit
def _add_bias_and_shift(z: Array, b: Array, out: Array, row_max: Array) -> None:
    """z += b (each row); row_max = each row's maximum (NaN if the row holds one);
    out = z - row_max."""
    batch, k = z.shape
    for i in range(batch):
        for c in range(k):
            z[i, c] = z[i, c] + b[c]
        m = z[i, 0]
        for c in range(1, k):
            v = z[i, c]
            if v > m or v != v:
                m = v
        row_max[i] = m
        for c in range(k):
            out[i, c] = z[i, c] - m


@_jit
def _divide_by_row_sum(e: Array, total: Array) -> None:
    """total = each row's sum, columns added left to right; e /= total."""
    batch, k = e.shape
    for i in range(batch):
        t = e[i, 0]
        for c in range(1, k):
            t = t + e[i, c]
        total[i] = t
        for c in range(k):
            e[i, c] = e[i, c] / t


def bias_softmax(z: Array, b: Array, out: Array, lse: Array, total: Array) -> None:
    """z += b, then `mlp_cli.losses.softmax` with its ``lse``: out = softmax of each row
    of z, lse = each row's log-sum-exp; ``total`` (batch,) is scratch."""
    _add_bias_and_shift(z, b, out, lse)  # lse holds the row maxima until the end
    np.exp(out, out=out)
    _divide_by_row_sum(out, total)
    np.log(total, out=total)
    np.add(total, lse, out=lse)


@_jit
def cross_entropy_delta(a: Array, y: Any, scale: Any, out: Array) -> None:
    """out = (a - Y) scale for one-hot rows Y of the labels y, as
    `mlp_cli.losses` computes (a - Y) / N with scale = 1/N in a's precision."""
    batch, k = a.shape
    one = np.float32(1.0)
    for i in range(batch):
        for c in range(k):
            v = a[i, c]
            if c == y[i]:
                v = v - one
            out[i, c] = v * scale


@_jit
def count_correct(a: Array, y: Any) -> int:
    """How many rows of a have their largest entry (the first one, or the first NaN, as
    np.argmax picks) at the label in y."""
    batch, k = a.shape
    correct = 0
    for i in range(batch):
        best, m = 0, a[i, 0]
        if m == m:
            for c in range(1, k):
                v = a[i, c]
                if v != v:
                    best = c
                    break
                if v > m:
                    best, m = c, v
        if best == y[i]:
            correct += 1
    return correct
