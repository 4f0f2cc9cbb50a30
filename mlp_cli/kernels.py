"""Compiled loops, one pass each: the optimizers' updates (`mlp_cli.optim`) and a ReLU
layer's bias, activation and derivative (`mlp_cli.model.MLP.use_kernels`).

An update applies its rule from `mlp_cli.optim` to every entry, in parallel (``prange``):
no entry depends on another, so the bits do not depend on which thread took which.  The
ReLU loops perform the float operations of the NumPy code they replace, in the same order.
Without fast-math (no fused multiply-add) both give NumPy's bits, reading and writing each
entry once instead of once per NumPy operation.  ``error_model="numpy"`` lets a division by
zero give inf, as in NumPy.  Importing this module imports numba, so `mlp_cli.optim` does
that only when an optimizer is built.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
from numba import prange

from mlp_cli import optim

if "NUMBA_THREADING_LAYER" not in os.environ:
    # OpenMP's idle workers spin after each update, on the cores the next products' BLAS
    # threads need (`bench/` shows the cost); the workqueue's threads sleep instead.
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]
_LAUNCH = threading.Lock()  # the workqueue runs one parallel loop at a time

Array = optim.Array
F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS: dict[str, Any] = {"error_model": "numpy", "boundscheck": False}


def _jit(loop: F, **options: Any) -> F:
    """``loop`` compiled by numba, cached on disk where numba finds a writable folder (the
    package's ``__pycache__``, ``NUMBA_CACHE_DIR`` or the user's cache folder).  Without
    one, as for a read-only install run by a user whose home is not writable, numba refuses
    ``cache=True`` outright; the loop is then compiled afresh in each process instead."""
    try:
        return cast(F, numba.njit(cache=True, **_OPTIONS, **options)(loop))
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return cast(F, numba.njit(**_OPTIONS, **options)(loop))


def _parallel(loop: F) -> F:
    return _jit(loop, parallel=True)


_sgd, _adam, _rmsprop = (_jit(rule) for rule in (optim.sgd, optim.adam, optim.rmsprop))


# One loop per rule, since numba caches neither a loop built around a rule by a closure nor
# one given the rule as an argument.


@_parallel
def sgd(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
    for i in prange(p.size):
        p[i], a[i], b[i] = _sgd(p[i], g[i], a[i], b[i], h)


@_parallel
def adam(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
    for i in prange(p.size):
        p[i], a[i], b[i] = _adam(p[i], g[i], a[i], b[i], h)


@_parallel
def rmsprop(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
    for i in prange(p.size):
        p[i], a[i], b[i] = _rmsprop(p[i], g[i], a[i], b[i], h)


_MOST_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


# The same loops on the calling thread: starting a parallel loop costs more than a small
# network's whole update, even on one thread.


@_jit
def sgd_serial(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
    for i in range(p.size):
        p[i], a[i], b[i] = _sgd(p[i], g[i], a[i], b[i], h)


@_jit
def adam_serial(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
    for i in range(p.size):
        p[i], a[i], b[i] = _adam(p[i], g[i], a[i], b[i], h)


@_jit
def rmsprop_serial(p: Array, g: Array, a: Array, b: Array, h: optim.Hyper) -> None:
    for i in range(p.size):
        p[i], a[i], b[i] = _rmsprop(p[i], g[i], a[i], b[i], h)


_LOOPS = {  # rule name -> (serial loop, parallel loop)
    "sgd": (sgd_serial, sgd),
    "adam": (adam_serial, adam),
    "rmsprop": (rmsprop_serial, rmsprop),
}


def update(rule: str, threads: int, *arrays_and_scalars: Any) -> None:
    """Run the loop of ``rule`` (`mlp_cli.optim.sgd`, ...) on ``threads`` threads at most."""
    serial, parallel = _LOOPS[rule]
    if threads <= 1:
        serial(*arrays_and_scalars)
        return
    with _LAUNCH:
        numba.set_num_threads(min(threads, _MOST_THREADS))
        parallel(*arrays_and_scalars)


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
