"""The multilayer perceptron: parameters, forward pass, backpropagation.

Notation follows the printed equations.  Layer l (1..L) has weights W_l of shape
(n_l, n_{l-1}) and biases b_l of shape (n_l,).  Inside the network a mini-batch is held as
the printed column vectors side by side: A_l has one *column* per example, and

    Z_l = W_l A_{l-1} + b_l          # (n_l, batch), b_l added to every column
    A_l = g(Z_l)

and backpropagation by the chain rule reads

    delta_L = dL/dZ_L                                   (from `mlp_cli.losses`)
    dW_l    = delta_l A_{l-1}^T                         # (n_l, n_{l-1})
    db_l    = sum over the batch of delta_l             # (n_l,)
    delta_{l-1} = (W_l^T delta_l) * g'(Z_{l-1})         # (n_{l-1}, batch)

Outside, examples are rows, as in data files and NumPy habit: `forward` takes X of shape
(batch, n_0) and returns A_L of shape (batch, n_L), and the loss functions see rows.  The
input enters as the view X^T and the output layer is computed as A_{L-1}^T W_L^T, already in
rows, so no batch is ever copied to change layout.  (Columns inside are not only the printed
notation: OpenBLAS computes a step's products faster in this form than in the row form
Z_l^T = A_{l-1}^T W_l^T; bench/matmul.py measures it.)

All parameters live in one flat vector ``params`` laid out as [W_1 .. W_L, b_1 .. b_L];
``W``, ``b`` are views into it, and likewise ``grads``/``dW``/``db``.  Optimizers update
the flat vector in a few whole-array passes, and weight-only operations (penalties, weight
decay) act on the prefix ``params[:n_weights]``.  Work arrays for each batch size are
allocated once and reused, so a training step allocates almost nothing.

The module knows nothing of configs, files or training loops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, get_args

import numpy as np
from numpy.typing import DTypeLike, NDArray

from mlp_cli.activations import ACTIVATIONS
from mlp_cli.errors import UsageError
from mlp_cli.losses import LOSSES, OUTPUTS, softmax

if TYPE_CHECKING:
    from mlp_cli.checkpoint import SavedModel

Array = NDArray[np.floating]
Labels = NDArray[np.integer]


@dataclass
class _Work:
    """Arrays reused by every step with one batch size."""

    # A_0 .. A_L.  A_0 is the caller's X (batch, n_0); hidden A_l are (n_l, batch) columns;
    # A_L is (batch, n_L) rows, like z_out.  deltas likewise, at index 1 .. L.
    acts: list[Array]
    deltas: list[Array]
    z_out: Array  # Z_L, kept for the loss value
    lse: Array  # (batch,): each row's log-sum-exp of Z_L, a softmax output's by-product
    sums: Array  # (batch,): scratch for the compiled softmax's row sums
    ones: Array  # (batch,) of 1: db = delta 1 is a matrix-vector product, faster than a sum
    # Per dropped layer l: mask_l in {0, 1/(1-p)} and A_l * mask_l, both (batch, n_l) rows,
    # so a seed draws the same masks whatever the layout of A_l.
    dropped: dict[int, Array] = field(default_factory=dict)
    masks: dict[int, Array] = field(default_factory=dict)
    active: set[int] = field(default_factory=set)  # layers dropped in the last forward pass


class MLP:
    """A fully connected network with ``sizes = [n_0, n_1, ..., n_L]``.

    ``hidden`` names the activation of layers 1..L-1 (`mlp_cli.activations.ACTIVATIONS`),
    ``output`` the output function of layer L (`mlp_cli.losses.OUTPUTS`).  ``dtype`` is
    float32 for training and float64 for gradient checking.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: str = "relu",
        output: str = "softmax",
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise UsageError(f"layer sizes must be at least two positive numbers, got {sizes}")
        if hidden not in ACTIVATIONS:
            raise UsageError(f"unknown hidden activation {hidden!r}; one of {list(ACTIVATIONS)}")
        if output not in OUTPUTS:
            raise UsageError(f"unknown output function {output!r}; one of {list(OUTPUTS)}")
        self.sizes = [int(n) for n in sizes]
        self.hidden = hidden
        self.output = output
        self.dtype: np.dtype[np.floating] = np.dtype(dtype)  # type: ignore[assignment]
        shapes = list(zip(self.sizes[1:], self.sizes[:-1], strict=True))
        self.n_weights = sum(o * i for o, i in shapes)
        n_biases = sum(self.sizes[1:])
        self.params: Array = np.zeros(self.n_weights + n_biases, dtype=self.dtype)
        self.grads: Array = np.zeros_like(self.params)
        self.W, self.b = self._views(self.params, shapes)
        self.dW, self.db = self._views(self.grads, shapes)
        self._work: dict[int, _Work] = {}
        self._scratch: Array | None = None
        self.kernels: ModuleType | None = None  # see `use_kernels`
        self._hidden_kernels: tuple[Callable[[Array, Array], None], ...] | None = None

    @classmethod
    def from_saved(cls, saved: SavedModel) -> MLP:
        """The network a loaded model file describes, holding its weights."""
        meta = saved.meta
        model = cls(saved.layers, meta.hidden_activation, meta.output_activation)
        model.set_weights(saved.weights, saved.biases)
        return model

    def set_weights(self, weights: Sequence[Array], biases: Sequence[Array]) -> None:
        """Copy W_1..W_L and b_1..b_L (shapes as ``W``, ``b``) into the parameters."""
        for param, value in zip([*self.W, *self.b], [*weights, *biases], strict=True):
            param[...] = value

    def use_kernels(self, kernels: ModuleType | None) -> None:
        """Run the hidden layers' bias addition and activation and its derivative (ReLU and
        sigmoid), and the softmax output with its cross-entropy delta, through the compiled
        loops of `mlp_cli.kernels` (None: NumPy).  They give the same bits in one pass
        instead of several NumPy calls.  Training turns this on; evaluation and prediction
        stay in NumPy and never import numba."""
        self.kernels = kernels
        self._hidden_kernels = None if kernels is None else kernels.HIDDEN.get(self.hidden)

    def _views(self, flat: Array, shapes: list[tuple[int, int]]) -> tuple[list[Array], list[Array]]:
        weights, biases = [], []
        w_at, b_at = 0, self.n_weights
        for n_out, n_in in shapes:
            weights.append(flat[w_at : w_at + n_out * n_in].reshape(n_out, n_in))
            biases.append(flat[b_at : b_at + n_out])
            w_at += n_out * n_in
            b_at += n_out
        return weights, biases

    @property
    def n_layers(self) -> int:
        """Number of weight layers L."""
        return len(self.sizes) - 1

    @property
    def weights_flat(self) -> Array:
        """All weights (no biases) as one flat view."""
        return self.params[: self.n_weights]

    # -- initialisation -----------------------------------------------------------------

    def initialize(self, scheme: str, rng: np.random.Generator, scale: float | None = None) -> None:
        """Draw the weights from ``scheme``; biases start at zero.

        xavier: U(+-sqrt(6 / (n_in + n_out)))  (Glorot & Bengio 2010)
        he:     N(0, 2 / n_in)                  (He et al. 2015, for ReLU)
        uniform: U(+-scale)    normal: N(0, scale^2)
        (scale: the config's ``DEFAULT_INIT_SCALE`` of the scheme unless given)
        """
        # The config states the schemes and their defaults; imported here so that loading a
        # saved model does not import (and build) the config schema.
        from mlp_cli.config import DEFAULT_INIT_SCALE, Init

        if scheme not in get_args(Init):
            raise UsageError(f"unknown initialisation {scheme!r}; one of {list(get_args(Init))}")
        scale = DEFAULT_INIT_SCALE.get(scheme) if scale is None else scale
        for W in self.W:
            n_out, n_in = W.shape
            if scheme in ("xavier", "uniform"):
                limit = np.sqrt(6.0 / (n_in + n_out)) if scheme == "xavier" else float(scale or 0)
                # U[0, 1) drawn in the model's dtype: no float64 detour in float32
                W[...] = rng.random(W.shape, dtype=self.dtype) * (2 * limit) - limit
            else:
                std = np.sqrt(2.0 / n_in) if scheme == "he" else float(scale or 0)
                W[...] = rng.standard_normal(W.shape, dtype=np.float64).astype(self.dtype) * std
        self.params[self.n_weights :] = 0.0

    # -- forward ------------------------------------------------------------------------

    def _work_for(self, n: int) -> _Work:
        work = self._work.get(n)
        if work is None:
            # A_0 is the caller's input, set by `forward`; the others are ours.
            hidden = self.sizes[1:-1]
            acts = [np.empty((0, 0), dtype=self.dtype)]
            acts += [np.empty((size, n), dtype=self.dtype) for size in hidden]  # columns
            acts.append(np.empty((n, self.sizes[-1]), dtype=self.dtype))  # rows
            deltas = [np.empty_like(a) for a in acts]  # deltas[0] is never used
            z_out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
            lse = np.empty(n, dtype=self.dtype)
            work = _Work(acts, deltas, z_out, lse, np.empty_like(lse), np.ones_like(lse))
            if len(self._work) >= 3:  # training, last-batch and evaluation sizes
                self._work.pop(next(iter(self._work)))
            self._work[n] = work
        return work

    def _input_rows(self, work: _Work, l: int) -> Array:
        """The input of layer l+1 as rows (batch, n_l): X, a dropped copy, or A_l^T (a view)."""
        if l in work.active:
            return work.dropped[l]
        return work.acts[l] if l == 0 else work.acts[l].T

    def forward(
        self,
        X: Array,
        *,
        dropout: Sequence[float] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Array:
        """Output activations A_L, shape (batch, n_L), for inputs X of shape (batch, n_0).

        With ``dropout`` (one drop probability per layer input, input layer first) and an
        ``rng``, units are dropped as inverted dropout: kept ones are scaled by 1/(1-p), so
        nothing changes at evaluation time.  The returned array is a work buffer that the
        next call overwrites; copy it to keep it.
        """
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise UsageError(
                f"the network expects inputs of shape (batch, {self.sizes[0]}), got {X.shape}"
            )
        work = self._work_for(X.shape[0])
        work.active.clear()
        work.acts[0] = X  # remembered for dW_1; no copy
        act = ACTIVATIONS[self.hidden].forward
        L = self.n_layers
        for l in range(1, L + 1):
            p = dropout[l - 1] if dropout is not None else 0.0
            if p > 0.0 and rng is not None:
                self._drop(work, l - 1, p, rng)
            a_prev = self._input_rows(work, l - 1)  # (batch, n_{l-1})
            if l < L:
                z = work.acts[l]  # (n_l, batch)
                np.matmul(self.W[l - 1], a_prev.T, out=z)  # W_l A_{l-1}
                if self._hidden_kernels is not None:
                    self._hidden_kernels[0](z, self.b[l - 1])
                else:
                    z += self.b[l - 1][:, None]
                    act(z, z)
            else:
                np.matmul(a_prev, self.W[l - 1].T, out=work.z_out)  # (batch, n_L): Z_L^T
        z, a, b = work.z_out, work.acts[-1], self.b[-1]
        if self.kernels is not None and self.output == "softmax":
            self.kernels.bias_softmax(z, b, a, work.lse, work.sums)
            return a
        z += b
        if self.output == "softmax":  # the loss reuses the sums softmax takes
            softmax(z, a, lse=work.lse)
        else:
            OUTPUTS[self.output](z, a)
        return a

    def _drop(self, work: _Work, layer: int, p: float, rng: np.random.Generator) -> None:
        """Draw mask_layer and store (A_layer * mask_layer) as rows in work.dropped."""
        n = work.z_out.shape[0]
        if layer not in work.masks:
            work.masks[layer] = np.empty((n, self.sizes[layer]), dtype=self.dtype)
            work.dropped[layer] = np.empty_like(work.masks[layer])
        mask, dropped = work.masks[layer], work.dropped[layer]
        rng.random(dtype=mask.dtype.type, out=mask)  # U[0, 1), drawn in place: no temporary
        np.greater_equal(mask, p, out=mask)
        mask *= 1.0 / (1.0 - p)
        a = work.acts[layer] if layer == 0 else work.acts[layer].T
        np.multiply(a, mask, out=dropped)
        work.active.add(layer)

    # -- backward -----------------------------------------------------------------------

    def backward(
        self,
        y: Labels,
        loss: str = "cross_entropy",
        *,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> float:
        """Fill ``grads`` with the gradient of the objective for the last ``forward`` batch.

        The objective is the mean data loss plus the penalties on the weights (not the
        biases): ``l2 / 2 * sum W^2 + l1 * sum |W|``, independent of the batch size.
        Returns the mean data loss (without penalties), the number worth reporting.
        """
        work = self._work[y.shape[0]]
        loss_fn = LOSSES[loss]
        z_out, a_out = work.z_out, work.acts[-1]
        value = self.loss_value(loss, y)
        backward = ACTIVATIONS[self.hidden].backward
        if self._hidden_kernels is not None:
            backward = self._hidden_kernels[1]
        if self.kernels is not None and loss == "cross_entropy":
            scale = a_out.dtype.type(1.0 / y.shape[0])  # 1/N as the NumPy delta rounds it
            self.kernels.cross_entropy_delta(a_out, y, scale, work.deltas[-1])
        else:
            loss_fn.delta(self.output, z_out, a_out, y, work.deltas[-1])
        delta = work.deltas[-1].T  # (n_L, batch), a view of the rows
        for l in range(self.n_layers, 0, -1):
            np.matmul(delta, self._input_rows(work, l - 1), out=self.dW[l - 1])
            np.matmul(delta, work.ones, out=self.db[l - 1])  # sum over the batch
            if l > 1:
                prev = work.deltas[l - 1]  # (n_{l-1}, batch)
                np.matmul(self.W[l - 1].T, delta, out=prev)  # W_l^T delta_l
                if (l - 1) in work.active:
                    prev *= work.masks[l - 1].T
                backward(work.acts[l - 1], prev)
                delta = prev
        self._add_penalty_gradient(l1, l2)
        return value

    def _add_penalty_gradient(self, l1: float, l2: float) -> None:
        if l1 == 0.0 and l2 == 0.0:
            return
        if self._scratch is None:
            self._scratch = np.empty(self.n_weights, dtype=self.dtype)
        w, g, tmp = self.weights_flat, self.grads[: self.n_weights], self._scratch
        if l2:
            np.multiply(w, l2, out=tmp)
            g += tmp
        if l1:
            np.sign(w, out=tmp)
            tmp *= l1
            g += tmp

    def penalty(self, l1: float = 0.0, l2: float = 0.0) -> float:
        """l2 / 2 * sum W^2 + l1 * sum |W| over all weights."""
        w = self.weights_flat.astype(np.float64)
        return float(0.5 * l2 * np.dot(w, w) + l1 * np.abs(w).sum())

    # -- evaluation helpers -------------------------------------------------------------

    def forward_batches(
        self, X: Array, batch_size: int = 2048
    ) -> Iterator[tuple[slice, Array, Array]]:
        """``forward`` over X a batch at a time, in evaluation mode (no dropout): yields
        (the batch's rows of X, A_L, Z_L), both (batch, n_L) work buffers that the next
        batch overwrites."""
        for start in range(0, X.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            a = self.forward(X[rows])
            yield rows, a, self.logits(a.shape[0])

    def predict_proba(
        self,
        X: Array,
        batch_size: int = 2048,
        *,
        check: Callable[[Array], None] | None = None,
    ) -> Array:
        """Output activations for every row of X, shape (n, n_L), a new array.

        ``check``, if given, sees each batch's logits Z_L first and may raise to refuse them."""
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        for rows, a, z in self.forward_batches(X, batch_size):
            if check is not None:
                check(z)
            out[rows] = a
        return out

    def loss_value(self, loss: str, y: Labels) -> float:
        """The mean ``loss`` of the last forward batch (of y's length) against y, with the
        log-sum-exp a softmax output already took."""
        work = self._work[y.shape[0]]
        lse = work.lse if self.output == "softmax" else None
        return LOSSES[loss].value(self.output, work.z_out, work.acts[-1], y, lse)

    def count_correct(self, y: Labels) -> int:
        """How many examples of the last forward batch (of y's length) have their largest
        output at their label y."""
        a = self._work[y.shape[0]].acts[-1]
        if self.kernels is not None:
            return int(self.kernels.count_correct(a, y))
        return int(np.count_nonzero(a.argmax(axis=1) == y))

    def logits(self, n: int) -> Array:
        """Z_L of the last forward pass over ``n`` rows, shape (n, n_L): a work buffer."""
        return self._work[n].z_out

    def hidden_activations(self, n: int) -> list[Array]:
        """A_1 .. A_{L-1} of the last forward pass over ``n`` rows, each (n_l, n): work
        buffers."""
        return self._work[n].acts[1:-1]

    def layer_outputs(self, X: Array) -> list[Array]:
        """Every layer's activations for X: A_1 ... A_L, each (batch, n_l), new arrays.

        The last is what `predict_proba` returns, from the same forward pass."""
        out = self.forward(X)
        work = self._work[X.shape[0]]
        return [work.acts[l].T.copy() for l in range(1, self.n_layers)] + [out.copy()]

    def evaluate(
        self, X: Array, y: Labels, loss: str = "cross_entropy", batch_size: int = 2048
    ) -> tuple[float, float]:
        """(mean loss, accuracy) over all of X, in evaluation mode (no dropout)."""
        total, correct = 0.0, 0
        for rows, a, _ in self.forward_batches(X, batch_size):
            total += self.loss_value(loss, y[rows]) * a.shape[0]
            correct += self.count_correct(y[rows])
        n = max(X.shape[0], 1)
        return total / n, correct / n

    def apply_max_norm(self, max_norm: float) -> None:
        """Rescale each unit's incoming weight vector (a row of W_l) to norm <= max_norm."""
        for W in self.W:
            norms = np.sqrt(np.einsum("ij,ij->i", W, W))
            if np.isinf(norms).any():  # squares beyond float32's range: a scale of 0 would
                # erase those units, not cap them
                norms = np.sqrt(np.einsum("ij,ij->i", W, W, dtype=np.float64))
            scale = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12)).astype(self.dtype)
            W *= scale[:, None]
