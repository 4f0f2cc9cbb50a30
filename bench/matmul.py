"""The matmul-only ceiling: how fast this machine multiplies one training step's matrices.

A step of a fully connected network is, apart from elementwise work, the products listed by
`bench.workload.Network.gemms`.  Timing exactly those products (same shapes, same float32,
preallocated outputs, the same thread count) gives the time a step could take if everything
else were free; an engine's achieved GFLOP/s divided by this ceiling's is the fraction of the
matmul limit it reaches.  The products are timed in two memory layouts (`LAYOUTS`: the one
`mlp_cli.model.MLP` uses and the all-rows one), and with PyTorch installed in PyTorch as
well; the fastest is the machine's ceiling.

Left out: the bias additions and activations, which are not matrix products.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.workload import BATCH, Network

Step = Callable[[], None]
Rand = Callable[[tuple[int, ...]], Any]  # shape -> a new random float32 matrix
MatMul = Callable[[Any, Any, Any], Any]  # (a, b, out) -> out = a @ b

# "columns" is `mlp_cli.model.MLP`'s layout: the input X as rows (batch, n_0), hidden
# activations and deltas as columns (n_l, batch), the output layer in rows (batch, n_L).
# "rows" holds every activation and delta as rows, the other common way to write it.
# The ceiling is the faster of the two, so no layout choice of the engine lowers it.
LAYOUTS = ("columns", "rows")


def _columns(net: Network, batch: int, rand: Rand, mm: MatMul) -> Step:
    L = len(net.layers) - 1
    acts = [rand((batch, net.layers[0]))]
    acts += [rand((n, batch)) for n in net.layers[1:-1]]
    acts.append(rand((batch, net.layers[-1])))
    deltas = [rand(tuple(a.shape)) for a in acts]
    pairs = list(zip(net.layers[:-1], net.layers[1:], strict=True))
    weights = [rand((n_out, n_in)) for n_in, n_out in pairs]
    grads = [rand((n_out, n_in)) for n_in, n_out in pairs]
    rows = [acts[0]] + [a.T for a in acts[1:L]]  # rows[l]: the input of layer l+1
    delta_cols = [*deltas[1:L], deltas[L].T]  # delta_cols[l]: delta_{l+1}

    def step() -> None:
        for l, W in enumerate(weights):
            if l < L - 1:
                mm(W, rows[l].T, acts[l + 1])  # Z = W A
            else:
                mm(rows[l], W.T, acts[L])  # output layer in rows: Z^T = A^T W^T
        for l, W in enumerate(weights):
            mm(delta_cols[l], rows[l], grads[l])  # dW = delta A^T
            if l > 0:
                mm(W.T, delta_cols[l], deltas[l])  # delta_prev = W^T delta

    return step


def _rows(net: Network, batch: int, rand: Rand, mm: MatMul) -> Step:
    acts = [rand((batch, n)) for n in net.layers]
    deltas = [rand((batch, n)) for n in net.layers]
    pairs = list(zip(net.layers[:-1], net.layers[1:], strict=True))
    weights = [rand((n_out, n_in)) for n_in, n_out in pairs]
    grads = [rand((n_out, n_in)) for n_in, n_out in pairs]

    def step() -> None:
        for l, W in enumerate(weights):
            mm(acts[l], W.T, acts[l + 1])  # Z = A W^T
        for l, W in enumerate(weights):
            mm(deltas[l + 1].T, acts[l], grads[l])  # dW = delta^T A
            if l > 0:
                mm(deltas[l + 1], W, deltas[l])  # delta_prev = delta W

    return step


def _step(net: Network, batch: int, library: str, layout: str) -> Step:
    build = _columns if layout == "columns" else _rows
    if library == "numpy":
        rng = np.random.default_rng(0)
        return build(
            net,
            batch,
            lambda shape: rng.random(shape, dtype=np.float32),
            lambda a, b, out: np.matmul(a, b, out=out),
        )
    import torch

    def mm(a: Any, b: Any, out: Any) -> Any:
        with torch.no_grad():
            return torch.mm(a, b, out=out)

    return build(net, batch, lambda shape: torch.rand(*shape), mm)


def _median_seconds(step: Step, budget: float) -> float:
    step()  # warm-up: BLAS buffers and threads
    started = time.perf_counter()
    step()
    once = max(time.perf_counter() - started, 1e-6)
    reps = max(1, int(budget / 5 / once))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(reps):
            step()
        timings.append((time.perf_counter() - started) / reps)
    return float(np.median(timings))


def step_seconds(
    net: Network, library: str = "numpy", *, batch: int = BATCH, budget: float = 0.5
) -> float:
    """Seconds one step's matrix products take in ``library`` ("numpy" or "pytorch"): the
    median of repeated timings, in the faster of the `LAYOUTS`, about ``budget`` seconds in
    all."""
    share = budget / len(LAYOUTS)
    return min(_median_seconds(_step(net, batch, library, lay), share) for lay in LAYOUTS)
