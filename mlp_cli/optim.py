"""Optimizers and learning-rate schedules.

An optimizer updates one flat parameter vector in place from one flat gradient vector (see
`mlp_cli.model.MLP.params`).  Each holds only its own state (SGD: ``velocity``; Adam:
``m``, ``v``, ``t``; RMSprop: ``square_avg``, ``velocity``), exposed by `state_dict` as a
name -> array mapping so a checkpoint can store it and `load_state_dict` can put it back.

The vectors can be millions of entries long and a step runs hundreds of times per epoch, so
every pass over memory counts.  Each update is written twice, with the same float operations
in the same order, so both give the same bits:

- in NumPy, block by block (`BLOCK` entries): all of a block's ufuncs run while its slices
  sit in cache, with preallocated block-sized temporaries written through ``out=``.  This is
  the readable version, and the one used where numba is not installed.
- as a compiled loop (`mlp_cli.kernels`), one pass per step: each entry is read and written
  once, with no temporaries.  Adam makes a dozen ufunc calls per block, and at 2.4 million
  parameters the loop is about three times faster; it is used whenever numba imports.

The compiled loop can also run on several threads (``threads``, as many as BLAS uses): the
vector is cut into pieces, which the threads take in turn and update with the same loop,
the GIL released, so the bits do not depend on who took what.  Small networks stay on one
thread (`THREAD_MIN`), where handing work to another would cost more than it saves.  It
only pays while BLAS's idle workers sleep instead of spinning on the cores the update needs
(see `mlp_cli.threads`).  The NumPy version stays on the calling thread: split among Python
threads it was measured slower, as every ufunc call passes the GIL back and forth.

Schedules map training progress, measured in (fractional) epochs, to a learning rate.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

from mlp_cli.errors import CheckpointError, UsageError

Array = NDArray[np.floating]

# Running averages decay geometrically toward zero for parameters whose gradient is zero
# (dead units, border pixels): Adam's m by beta1 = 0.9 per step reaches float32's subnormal
# range (< 1.2e-38) a few hundred steps after its gradient stopped, then stays at the
# smallest subnormal, since 0.9 times it rounds back to it.  Every operation on a subnormal
# is many times slower, and epochs get steadily slower.  Values this small change no update
# (they sit far below eps), so they are flushed to zero every FLUSH_EVERY steps; from 1e-30,
# a hundred steps of decay stay far above the subnormal range.
FLUSH_BELOW = 1e-30
FLUSH_EVERY = 100

# Entries per block of an update.  Adam's block touches six arrays (params, grads, m, v and
# two temporaries): 6 x 128 KiB in float32, which stays in a core's L2 cache, while the
# Python cost per block (a dozen ufunc calls) stays small against its arithmetic.
BLOCK = 32768

# A compiled update is shared among threads only if each gets at least THREAD_MIN entries.
# A second thread helps once BLAS's idle worker has stopped spinning on its core, about
# 0.4 ms after the last product (see `mlp_cli.threads`), and Adam takes about that long for
# 2^19 float32 entries: measured, a second thread saved nothing at 784-800-10 (637,000
# parameters, one thread here) and 0.6-0.9 ms of a 9.8 ms step at 784-1200-1200-10 (2.4
# million, two threads).
THREAD_MIN = 1 << 19
# The threads share the update in pieces of PIECE entries, each taking the next piece left
# until none is: a thread that starts late, its core still held by a spinning BLAS worker,
# takes fewer.  That was measured 1-3% faster per step than one fixed half per thread.
# PIECE is a multiple of a cache line, so no two threads write to one.
PIECE = 1 << 18


def _spans(size: int, length: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive ranges of ``length`` entries covering ``range(size)``."""
    return [(lo, min(lo + length, size)) for lo in range(0, size, length)]


def compiled_kernels() -> ModuleType | None:
    """`mlp_cli.kernels` (which imports numba and compiles on first use), or None where numba
    is not installed."""
    try:
        from mlp_cli import kernels
    except ImportError:
        return None
    return kernels


class Optimizer:
    """Base class: ``step(params, grads, lr)`` updates ``params`` in place.

    ``compiled=False`` runs the NumPy version even where the compiled loops are available.
    ``threads`` bounds the threads a compiled update is shared among (see `THREAD_MIN`).
    """

    name = "optimizer"
    state_names: tuple[str, ...] = ()
    nonnegative: tuple[str, ...] = ()  # state arrays that are means of squares

    def __init__(
        self,
        size: int,
        dtype: np.dtype[np.floating],
        n_weights: int,
        *,
        compiled: bool = True,
        threads: int = 1,
    ) -> None:
        self.size = size
        self.dtype = dtype
        self.n_weights = n_weights  # params[:n_weights] are weights, the rest biases
        self.t = 0
        self.kernels = compiled_kernels() if compiled else None
        self.threads = 1 if self.kernels is None else max(1, min(threads, size // THREAD_MIN))
        self._blocks = _spans(size, BLOCK)  # the NumPy version's
        self._pieces = _spans(size, PIECE)  # the threads' share of a compiled update
        self._pool = (
            ThreadPoolExecutor(self.threads - 1, thread_name_prefix="mlp-update")
            if self.threads > 1
            else None
        )
        block = min(size, BLOCK)
        self._tmp = np.zeros(block, dtype=dtype)  # block-sized scratch
        self._denom = np.zeros(block, dtype=dtype)
        self._mask = np.zeros(block, dtype=bool)

    def step(self, params: Array, grads: Array, lr: float) -> None:
        raise NotImplementedError

    def _check(self, params: Array, grads: Array) -> None:
        if params.shape != (self.size,) or grads.shape != (self.size,):
            raise UsageError(
                f"the {self.name} optimizer updates {self.size} parameters, but was given "
                f"parameters of shape {params.shape} and gradients of shape {grads.shape}"
            )

    def _compiled(
        self,
        kernel: Callable[..., None],
        arrays: tuple[Array, ...],
        *scalars: object,
        head: int | None = None,
    ) -> None:
        """``kernel(*arrays, *scalars)``, piece by piece on `threads` threads (this one among
        them).  ``head`` counts leading entries of the whole vector (AdamW's decayed
        weights): each piece is passed, before the scalars, how many of its own entries fall
        among them."""

        def call(lo: int, hi: int) -> None:
            share = () if head is None else (min(max(head - lo, 0), hi - lo),)
            kernel(*(a[lo:hi] for a in arrays), *share, *scalars)

        if self._pool is None:
            call(0, self.size)
            return
        pieces, lock = iter(self._pieces), threading.Lock()

        def take_pieces() -> None:
            while True:
                with lock:
                    piece = next(pieces, None)
                if piece is None:
                    return
                call(*piece)

        pending = [self._pool.submit(take_pieces) for _ in range(self.threads - 1)]
        try:
            take_pieces()
        finally:
            wait(pending)  # an interrupted step still finishes every piece
        for future in pending:
            future.result()  # raises what a piece raised

    def state_dict(self) -> dict[str, NDArray[np.generic]]:
        state: dict[str, NDArray[np.generic]] = {"t": np.array(self.t, dtype=np.int64)}
        for name in self.state_names:
            state[name] = getattr(self, name)
        return state

    def load_state_dict(self, state: Mapping[str, NDArray[np.generic]]) -> None:
        missing = [n for n in ("t", *self.state_names) if n not in state]
        if missing:
            raise CheckpointError(
                f"the checkpoint's {self.name} optimizer state lacks {', '.join(missing)}"
            )
        t = np.asarray(state["t"])
        whole = t.ndim == 0 and t.dtype.kind in "iuf" and np.isfinite(t) and t == np.floor(t)
        if not whole or t < 0:
            shown = t.item() if t.ndim == 0 and t.dtype.kind in "iufb" else f"a {t.dtype} array"
            raise CheckpointError(
                f"the checkpoint's optimizer step count is {shown!r}, expected one whole "
                "number >= 0"
            )
        arrays = {name: np.asarray(state[name]) for name in self.state_names}
        for name, array in arrays.items():
            if array.dtype.kind != "f":
                raise CheckpointError(
                    f"the checkpoint's optimizer state {name!r} holds {array.dtype} values, "
                    "expected floating-point numbers"
                )
            if array.shape != (self.size,):
                raise CheckpointError(
                    f"the checkpoint's optimizer state {name!r} has shape {array.shape}, "
                    f"but the model has {self.size} parameters"
                )
            if not np.isfinite(array).all():
                raise CheckpointError(
                    f"the checkpoint's optimizer state {name!r} holds values that are not "
                    "finite numbers"
                )
            if name in self.nonnegative and (array < 0).any():
                raise CheckpointError(
                    f"the checkpoint's optimizer state {name!r} holds negative values; it is "
                    "a running mean of squared gradients, never below 0"
                )
        self.t = int(t)
        for name, array in arrays.items():
            getattr(self, name)[...] = array

    def _flush_subnormals(self, *arrays: Array) -> None:
        """Set entries below FLUSH_BELOW in magnitude to zero (arrays of one block, or whole
        state arrays with the compiled loops)."""
        if self.kernels is not None:
            for array in arrays:
                self._compiled(self.kernels.flush, (array,), self.dtype.type(FLUSH_BELOW))
            return
        tmp, keep = self._tmp[: len(arrays[0])], self._mask[: len(arrays[0])]
        for array in arrays:
            # Multiplying by the mask is vectorised; copyto(..., where=) is a per-element loop.
            np.abs(array, out=tmp)
            np.less(tmp, FLUSH_BELOW, out=keep)
            np.logical_not(keep, out=keep)  # NaN and inf are kept, as they are
            np.multiply(array, keep, out=array)


class SGD(Optimizer):
    """Mini-batch gradient descent, optionally with (Nesterov) momentum.

    v <- mu v - lr g;  w <- w + v                       (classical momentum)
    v <- mu v - lr g;  w <- w + mu v - lr g             (Nesterov, as in Sutskever et al. 2013)
    """

    name = "sgd"
    state_names = ("velocity",)

    def __init__(
        self,
        size: int,
        dtype: np.dtype[np.floating],
        n_weights: int,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        compiled: bool = True,
        threads: int = 1,
    ) -> None:
        super().__init__(size, dtype, n_weights, compiled=compiled, threads=threads)
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros(size, dtype=dtype)

    def step(self, params: Array, grads: Array, lr: float) -> None:
        self._check(params, grads)
        self.t += 1
        mu = self.momentum
        if self.kernels is not None:
            f = self.dtype.type
            arrays = (params, grads, self.velocity)
            self._compiled(self.kernels.sgd, arrays, f(-lr), f(mu), self.nesterov)
            return
        for lo, hi in self._blocks:
            p, g, tmp = params[lo:hi], grads[lo:hi], self._tmp[: hi - lo]
            np.multiply(g, -lr, out=tmp)  # -lr g
            if mu == 0.0:
                p += tmp
                continue
            v = self.velocity[lo:hi]
            v *= mu
            v += tmp
            if self.nesterov:
                mu_v = self._denom[: hi - lo]
                np.multiply(v, mu, out=mu_v)
                tmp += mu_v
                p += tmp
            else:
                p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; AdamW adds decoupled weight decay.

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    AdamW (Loshchilov & Hutter 2019) first shrinks the weights (not biases): w <- w (1 - lr wd).
    """

    name = "adam"
    state_names = ("m", "v")
    nonnegative = ("v",)

    def __init__(
        self,
        size: int,
        dtype: np.dtype[np.floating],
        n_weights: int,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        compiled: bool = True,
        threads: int = 1,
    ) -> None:
        super().__init__(size, dtype, n_weights, compiled=compiled, threads=threads)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.m = np.zeros(size, dtype=dtype)
        self.v = np.zeros(size, dtype=dtype)

    def step(self, params: Array, grads: Array, lr: float) -> None:
        self._check(params, grads)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        bias1 = 1.0 - b1**self.t
        bias2 = 1.0 - b2**self.t
        # denom = sqrt(v / bias2) + eps, folded: sqrt(v) + eps sqrt(bias2), scaled by the step.
        eps = self.eps * math.sqrt(bias2)
        scale = -lr * math.sqrt(bias2) / bias1
        sqrt_c2 = math.sqrt(1.0 - b2)
        decay = 1.0 - lr * self.weight_decay
        flush = self.t % FLUSH_EVERY == 0
        if self.kernels is not None:
            f = self.dtype.type
            decayed = self.n_weights if self.weight_decay else 0
            self._compiled(
                self.kernels.adam,
                (params, grads, self.m, self.v),
                f(decay),
                f(b1),
                f(1.0 - b1),
                f(b2),
                f(sqrt_c2),
                f(eps),
                f(scale),
                head=decayed,
            )
            if flush:
                self._flush_subnormals(self.m, self.v)
            return
        for lo, hi in self._blocks:
            p, g, m, v = params[lo:hi], grads[lo:hi], self.m[lo:hi], self.v[lo:hi]
            tmp, denom = self._tmp[: hi - lo], self._denom[: hi - lo]
            if self.weight_decay and lo < self.n_weights:
                p[: self.n_weights - lo] *= decay
            m *= b1
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2
            # (1 - b2) g^2 as (sqrt(1 - b2) g)^2: late in training many gradients are tiny
            # (below 1e-19, from saturated outputs) and their squares subnormal.  Producing a
            # subnormal is what costs (a microcode assist per vector); squaring last makes one
            # operation produce them instead of two.  np.square is a unary loop, twice as fast
            # as multiply(g, g).
            np.multiply(g, sqrt_c2, out=tmp)
            np.square(tmp, out=tmp)
            v += tmp
            np.sqrt(v, out=denom)
            denom += eps
            np.divide(m, denom, out=tmp)
            tmp *= scale
            p += tmp
            if flush:
                self._flush_subnormals(m, v)


class AdamW(Adam):
    name = "adamw"


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e): divide the gradient by a running RMS of its history.

    s <- rho s + (1 - rho) g^2;   u = g / (sqrt(s) + eps)
    with momentum mu: v <- mu v + u; w <- w - lr v;  without: w <- w - lr u
    """

    name = "rmsprop"
    state_names = ("square_avg", "velocity")
    nonnegative = ("square_avg",)

    def __init__(
        self,
        size: int,
        dtype: np.dtype[np.floating],
        n_weights: int,
        *,
        rho: float = 0.9,
        eps: float = 1e-8,
        momentum: float = 0.0,
        compiled: bool = True,
        threads: int = 1,
    ) -> None:
        super().__init__(size, dtype, n_weights, compiled=compiled, threads=threads)
        self.rho, self.eps, self.momentum = rho, eps, momentum
        self.square_avg = np.zeros(size, dtype=dtype)
        self.velocity = np.zeros(size, dtype=dtype)

    def step(self, params: Array, grads: Array, lr: float) -> None:
        self._check(params, grads)
        self.t += 1
        flush = self.t % FLUSH_EVERY == 0
        if self.kernels is not None:
            f = self.dtype.type
            self._compiled(
                self.kernels.rmsprop,
                (params, grads, self.square_avg, self.velocity),
                f(self.rho),
                f(1.0 - self.rho),
                f(self.eps),
                f(self.momentum),
                f(-lr),
            )
            if flush:
                self._flush_subnormals(self.square_avg)
            return
        for lo, hi in self._blocks:
            p, g, s = params[lo:hi], grads[lo:hi], self.square_avg[lo:hi]
            tmp, denom = self._tmp[: hi - lo], self._denom[: hi - lo]
            s *= self.rho
            np.square(g, out=tmp)
            tmp *= 1.0 - self.rho
            s += tmp
            np.sqrt(s, out=denom)
            denom += self.eps
            np.divide(g, denom, out=tmp)
            if self.momentum:
                velocity = self.velocity[lo:hi]
                velocity *= self.momentum
                velocity += tmp
                np.multiply(velocity, -lr, out=tmp)
            else:
                tmp *= -lr
            p += tmp
            if flush:
                self._flush_subnormals(s)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
}


def make_optimizer(
    name: str,
    size: int,
    dtype: np.dtype[np.floating],
    n_weights: int,
    threads: int = 1,
    **hyper: float | bool,
) -> Optimizer:
    """Build optimizer ``name`` for a parameter vector of ``size`` entries, whose compiled
    update may use up to ``threads`` threads.

    ``hyper`` holds the optimizer's own hyperparameters (momentum, betas, ...); the learning
    rate is not one of them: it is passed to every ``step`` by the schedule.
    """
    build: Callable[..., Optimizer] = OPTIMIZERS[name]  # each class has its own keywords
    return build(size, dtype, n_weights, threads=threads, **hyper)


# -- learning-rate schedules ---------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """lr(progress): the learning rate after ``progress`` epochs (a float).

    A linear warm-up from 0 over ``warmup`` epochs multiplies any of the shapes:
    constant; step (times ``gamma`` every ``step_size`` epochs); cosine (from ``base_lr``
    down to ``min_lr`` at the last epoch); onecycle (cosine up to ``base_lr`` over the
    first 30% of training, then cosine down to ``min_lr``, Smith & Topin 2018).
    """

    name: str
    base_lr: float
    epochs: int
    warmup: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0

    def __call__(self, progress: float) -> float:
        lr = SCHEDULES[self.name](self, progress)
        if self.warmup > 0 and progress < self.warmup:
            lr *= progress / self.warmup
        return lr


def _constant(s: Schedule, progress: float) -> float:
    return s.base_lr


def _step(s: Schedule, progress: float) -> float:
    return s.base_lr * s.gamma ** math.floor(progress / s.step_size)


def _cosine_between(high: float, low: float, fraction: float) -> float:
    fraction = min(max(fraction, 0.0), 1.0)
    return low + 0.5 * (high - low) * (1.0 + math.cos(math.pi * fraction))


def _cosine(s: Schedule, progress: float) -> float:
    start = s.warmup
    span = max(s.epochs - start, 1e-12)
    return _cosine_between(s.base_lr, s.min_lr, (progress - start) / span)


def _onecycle(s: Schedule, progress: float) -> float:
    peak = 0.3 * s.epochs
    if progress < peak:
        start = max(s.base_lr / 25.0, s.min_lr)
        return _cosine_between(s.base_lr, start, 1.0 - progress / peak)
    return _cosine_between(s.base_lr, s.min_lr, (progress - peak) / (s.epochs - peak))


SCHEDULES: dict[str, Callable[[Schedule, float], float]] = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
    "onecycle": _onecycle,
}
