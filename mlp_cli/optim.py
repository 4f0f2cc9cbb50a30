"""Optimizers and learning-rate schedules.

An optimizer updates one flat parameter vector in place from one flat gradient vector (see
`mlp_cli.model.MLP.params`), holding only its own state (SGD: ``velocity``; Adam: ``m``,
``v``, ``t``; RMSprop: ``square_avg``, ``velocity``), which `state_dict` and
`load_state_dict` carry to and from a checkpoint.

Each optimizer is its config class's hyperparameters, its rule, stated once for one entry
with arithmetic and ``np.sqrt`` only, and the rule's scalars for a step.  numba compiles the
rule into one pass over the vector (`mlp_cli.kernels`); the same function on NumPy blocks is
the reference the tests hold that pass to, bit for bit, and runs where numba is missing.

Schedules map training progress, measured in (fractional) epochs, to a learning rate.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mlp_cli import config
from mlp_cli.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from mlp_cli.config import ScheduleConfig

Array = NDArray[np.floating]
X = Any  # one entry (compiled) or one block of entries (NumPy) of an array
Hyper = tuple[Any, ...]  # a rule's scalars, in the arrays' dtype

# Running averages of parameters whose gradient is zero (dead units, border pixels) decay
# toward subnormals, on which arithmetic is many times slower; values this small change no
# update, so every FLUSH_EVERY steps they are set to zero (a mean of squares only below
# `below_eps`, where that holds whatever eps is).
FLUSH_BELOW = 1e-30
FLUSH_EVERY = 100


def below_eps(eps: float, below: float, dtype: np.dtype[np.floating]) -> float:
    """Where to flush a mean of squares whose root is added to `eps` (`below` at most):
    a root under a quarter of eps's last place rounds away in that sum, so zeroing it changes
    no update, however small eps is, where zeroing a root larger than eps would divide by eps."""
    if not below:  # no flush at this step, which is most steps
        return 0.0
    return min(below, (eps * float(np.finfo(dtype).eps) / 4) ** 2)


# Entries per block of the NumPy version: a block's arrays and temporaries stay in L2 cache.
BLOCK = 32768

# A compiled update is shared among threads only if each gets at least THREAD_MIN entries.
# The update runs between one step's matrix products, whose BLAS threads hold the cores;
# below this size, waking threads of its own there costs more than sharing the pass saves
# (`python -m bench threads`).
THREAD_MIN = 1 << 22


def compiled_kernels() -> ModuleType | None:
    """`mlp_cli.kernels` (which imports numba and compiles on first use), or None where numba
    is not installed or cannot be loaded."""
    cores = os.cpu_count() or 1
    try:
        if (problem := _numba_threads_problem(cores)) is not None:
            raise ValueError(problem)
        with warnings.catch_warnings():
            # numba reads NUMBA_* and a .numba_config.yaml in the current folder as it loads;
            # it warns, with a traceback, of a value it cannot parse, then ignores it
            warnings.filterwarnings("error", category=RuntimeWarning, module="numba.core.config")
            import numba  # noqa: F401
    except ImportError:
        return None
    except Exception as exc:  # numba refusing its settings: NUMBA_NUM_THREADS=0, NUMBA_OPT=x,
        # a .numba_config.yaml that is no YAML mapping...
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.filename is None):
            # ...or llvmlite's compiler library not loading, or numba not fitting (too little
            # memory, a broken install): no setting's fault, numba as good as not installed
            return None
        reason = str(exc).partition("\n")[0].rstrip(".")
        raise UsageError(
            f"numba could not start: {reason}. Check the NUMBA_* environment variables and"
            " any .numba_config.yaml in the current folder (NUMBA_NUM_THREADS must be 1 or"
            f" more, at most the {cores} CPUs of this machine, or unset)."
        ) from None
    from mlp_cli import kernels

    return kernels


def _numba_threads_problem(cores: int) -> str | None:
    """What is wrong with NUMBA_NUM_THREADS that numba lets pass, or None: it warns, with a
    traceback, about a value that is no whole number and then ignores it, and starts as
    many threads as it is told at its first parallel loop."""
    value = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        return f"NUMBA_NUM_THREADS is '{value}', not a whole number."
    if threads > cores:
        return f"NUMBA_NUM_THREADS is {threads:,}, more threads than this machine has CPUs."
    return None


class Optimizer:
    """Base class: ``step(params, grads, lr)`` updates ``params`` in place by `rule`.

    The hyperparameters are the fields of the optimizer's config class (``hyper``, with its
    defaults, e.g. `mlp_cli.config.AdamConfig`) but the learning rate, which the schedule
    passes to every step (an ``lr`` given here is only checked with them).  ``compiled=False``
    runs the NumPy version even where numba is installed; ``threads`` bounds the threads a
    compiled update is shared among.
    """

    name = "optimizer"
    rule: Callable[[X, X, X, X, Hyper], tuple[X, X, X]]
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
        **hyper: float | bool,
    ) -> None:
        self.size, self.dtype, self.t = size, dtype, 0
        self.n_weights = n_weights  # params[:n_weights] are weights, the rest biases
        settings = config.OPTIMIZERS[self.name].model_validate(hyper)
        vars(self).update(settings.model_dump(exclude={"name", "lr"}))
        self.kernels = compiled_kernels() if compiled else None
        self.threads = 1 if self.kernels is None else max(1, min(threads, size // THREAD_MIN))
        if self.kernels is not None and self.threads > 1:
            self.kernels.start_threads()
        for name in self.state_names:
            setattr(self, name, np.zeros(size, dtype=dtype))

    def scalars(self, lr: float, below: float) -> list[tuple[int, Hyper]]:
        """The rule's scalars for each span of the vector, as (end of span, scalars)."""
        raise NotImplementedError

    def step(self, params: Array, grads: Array, lr: float) -> None:
        if params.shape != (self.size,) or grads.shape != (self.size,):
            raise UsageError(
                f"the {self.name} optimizer updates {self.size} parameters, but was given "
                f"parameters of shape {params.shape} and gradients of shape {grads.shape}"
            )
        self.t += 1
        below = FLUSH_BELOW if self.t % FLUSH_EVERY == 0 else 0.0
        a, b = ([getattr(self, name) for name in self.state_names] * 2)[:2]  # SGD: a is b
        lo = 0
        for hi, scalars in self.scalars(lr, below):
            # Scalars in the arrays' dtype, so float32 arithmetic stays float32.
            h = tuple(self.dtype.type(x) if isinstance(x, float) else x for x in scalars)
            arrays = (params[lo:hi], grads[lo:hi], a[lo:hi], b[lo:hi])
            if self.kernels is not None:
                self.kernels.update(self.rule.__name__, self.threads, *arrays, h)
            else:
                for start in range(0, hi - lo, BLOCK):
                    p, g, s1, s2 = (x[start : start + BLOCK] for x in arrays)
                    p[...], s1[...], s2[...] = self.rule(p, g, s1, s2, h)
            lo = hi

    def state_dict(self) -> dict[str, NDArray[np.generic]]:
        state: dict[str, NDArray[np.generic]] = {"t": np.array(self.t, dtype=np.int64)}
        return state | {name: getattr(self, name) for name in self.state_names}

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
        for name, a in arrays.items():
            if a.dtype.kind != "f":
                problem = f"holds {a.dtype} values, expected floating-point numbers"
            elif a.shape != (self.size,):
                problem = f"has shape {a.shape}, but the model has {self.size} parameters"
            elif not np.isfinite(a).all():
                problem = "holds values that are not finite numbers"
            elif name in self.nonnegative and (a < 0).any():
                problem = (
                    "holds negative values; it is a running mean of squared gradients, "
                    "never below 0"
                )
            else:
                continue
            raise CheckpointError(f"the checkpoint's optimizer state {name!r} {problem}")
        self.t = int(t)
        for name, array in arrays.items():
            getattr(self, name)[...] = array


# -- the optimizers: each a rule for one entry, beside the rule's scalars for a step -------


def sgd(p: X, g: X, v: X, _: X, h: Hyper) -> tuple[X, X, X]:
    """v <- mu v - lr g;  p <- p + v  (Nesterov, Sutskever et al. 2013: p <- p + mu v - lr g)."""
    neg_lr, mu, nesterov = h
    step = g * neg_lr
    if mu == 0.0:
        return p + step, v, v
    v = v * mu + step
    return (p + (step + v * mu) if nesterov else p + v), v, v


class SGD(Optimizer):
    """Mini-batch gradient descent, optionally with (Nesterov) momentum.

    The velocity holds steps, lr inside, as Sutskever et al. (2013) and Keras write it;
    PyTorch's holds gradients and multiplies them by the current lr, which gives the same
    steps at a constant rate but not while a schedule changes it.  With Nesterov, the
    parameters held are the look-ahead point theta + mu v, where the gradient is taken.
    """

    name, rule, state_names = "sgd", staticmethod(sgd), ("velocity",)
    velocity: Array
    momentum: float
    nesterov: bool

    def scalars(self, lr: float, below: float) -> list[tuple[int, Hyper]]:
        return [(self.size, (-lr, self.momentum, self.nesterov))]


def adam(p: X, g: X, m: X, v: X, h: Hyper) -> tuple[X, X, X]:
    """m <- b1 m + c1 g;  v <- b2 v + (sqrt_c2 g)^2;  p <- p decay + scale m / (sqrt(v) + eps)."""
    decay, b1, c1, b2, sqrt_c2, eps, scale, below, below_v = h
    m = m * b1 + g * c1
    # Late in training many gradients are tiny and their squares subnormal; producing one is
    # what costs, so squaring last makes one operation produce them instead of two.
    g = g * sqrt_c2
    v = v * b2 + g * g
    p = p * decay + (m / (np.sqrt(v) + eps)) * scale
    if below:  # NaN stays NaN
        return p, m * (abs(m) >= below), v * (abs(v) >= below_v)
    return p, m, v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; AdamW adds decoupled weight decay.

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    AdamW (Loshchilov & Hutter 2019) first shrinks the weights (not biases): w <- w (1 - lr wd).
    """

    name, rule, state_names = "adam", staticmethod(adam), ("m", "v")
    nonnegative = ("v",)
    m: Array
    v: Array
    beta1: float
    beta2: float
    eps: float
    weight_decay = 0.0

    def scalars(self, lr: float, below: float) -> list[tuple[int, Hyper]]:
        b1, b2 = self.beta1, self.beta2
        bias1, bias2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        # sqrt(v / bias2) + eps, folded: sqrt(v) + eps sqrt(bias2), scaled by the step.
        eps, scale = self.eps * math.sqrt(bias2), -lr * math.sqrt(bias2) / bias1
        below_v = below_eps(eps, below, self.dtype)
        rest = (b1, 1.0 - b1, b2, math.sqrt(1.0 - b2), eps, scale, below, below_v)
        if not self.weight_decay:
            return [(self.size, (1.0, *rest))]
        return [(self.n_weights, (1.0 - lr * self.weight_decay, *rest)), (self.size, (1.0, *rest))]


class AdamW(Adam):
    name = "adamw"


def rmsprop(p: X, g: X, s: X, velocity: X, h: Hyper) -> tuple[X, X, X]:
    """s <- rho s + c g^2;  u = g / (sqrt(s) + eps);  p <- p - lr u, or with momentum
    p <- p - lr velocity where velocity <- mu velocity + u."""
    rho, c, eps, mu, neg_lr, below = h  # below: `below_eps` of eps
    s = s * rho + (g * g) * c
    u = g / (np.sqrt(s) + eps)
    if mu != 0.0:
        velocity = velocity * mu + u
        u = velocity
    if below:
        s = s * (abs(s) >= below)
    return p + u * neg_lr, s, velocity


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e): divide the gradient by a running RMS of its history."""

    name, rule, state_names = "rmsprop", staticmethod(rmsprop), ("square_avg", "velocity")
    nonnegative = ("square_avg",)
    square_avg: Array
    velocity: Array
    rho: float
    eps: float
    momentum: float

    def scalars(self, lr: float, below: float) -> list[tuple[int, Hyper]]:
        below = below_eps(self.eps, below, self.dtype)
        return [(self.size, (self.rho, 1.0 - self.rho, self.eps, self.momentum, -lr, below))]


OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adam, AdamW, RMSprop)}


# -- learning-rate schedules ---------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """lr(progress): the learning rate after ``progress`` epochs (a float).

    A warm-up over ``warmup_epochs`` multiplies any of the shapes by the fraction of it done,
    so the rate rises from 0 to the shape's own rate at the warm-up's end (``base_lr`` for
    constant, cosine and a step before its first cut): constant; step (times ``gamma`` every
    ``step_size`` epochs); cosine (from ``base_lr`` at the end of the warm-up down to
    ``min_lr`` at the last epoch); onecycle (cosine up from ``base_lr / 25``, or ``min_lr`` if
    higher, to ``base_lr`` over the first 30% of training, then cosine down to ``min_lr``):
    Smith & Topin's one-cycle policy ("Super-Convergence", 2017), whose phases are linear, in
    the cosine form of PyTorch's ``OneCycleLR`` (its default 30% and 25).
    """

    name: str
    base_lr: float
    epochs: int
    warmup_epochs: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0

    @classmethod
    def from_config(cls, s: ScheduleConfig, base_lr: float, epochs: int) -> Schedule:
        """The schedule ``s`` describes (its fields are this class's), for ``epochs`` epochs."""
        return cls(base_lr=base_lr, epochs=epochs, **s.model_dump())

    def __call__(self, progress: float) -> float:
        lr = SCHEDULES[self.name](self, progress)
        if self.warmup_epochs > 0 and progress < self.warmup_epochs:
            lr *= progress / self.warmup_epochs
        return lr


def _cosine_between(high: float, low: float, fraction: float) -> float:
    fraction = min(max(fraction, 0.0), 1.0)
    return low + 0.5 * (high - low) * (1.0 + math.cos(math.pi * fraction))


def _cosine(s: Schedule, progress: float) -> float:
    start = s.warmup_epochs
    span = max(s.epochs - start, 1e-12)
    return _cosine_between(s.base_lr, s.min_lr, (progress - start) / span)


def _onecycle(s: Schedule, progress: float) -> float:
    peak = 0.3 * s.epochs
    if progress < peak:
        start = max(s.base_lr / 25.0, s.min_lr)
        return _cosine_between(s.base_lr, start, 1.0 - progress / peak)
    return _cosine_between(s.base_lr, s.min_lr, (progress - peak) / (s.epochs - peak))


SCHEDULES: dict[str, Callable[[Schedule, float], float]] = {
    "constant": lambda s, progress: s.base_lr,
    "step": lambda s, progress: s.base_lr * s.gamma ** math.floor(progress / s.step_size),
    "cosine": _cosine,
    "onecycle": _onecycle,
}
