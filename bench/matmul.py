"""The matmul-only ceiling: how fast this machine multiplies one training step's matrices.

A step of a fully connected network is, apart from elementwise work, the products listed by
`bench.workload.Network.gemms`.  Timing exactly those products (same shapes, same float32,
same memory layouts and transposes as `mlp_cli.model.MLP`, preallocated outputs, the same
thread count) gives the time a step could take if everything else were free; an engine's
achieved GFLOP/s divided by this ceiling's is the fraction of the matmul limit it reaches.
With PyTorch installed its matmuls are timed as well, and the faster of the two libraries
is the machine's ceiling.

Left out: the bias additions and activations, which are not matrix products.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.workload import BATCH, Network

Step = Callable[[], None]


def _numpy_step(net: Network, batch: int, rng: np.random.Generator) -> Step:
    pairs = list(zip(net.layers[:-1], net.layers[1:], strict=True))
    acts = [rng.random((batch, n), dtype=np.float32) for n in net.layers]
    deltas = [rng.random((batch, n), dtype=np.float32) for n in net.layers]
    weights = [rng.random((n_out, n_in), dtype=np.float32) for n_in, n_out in pairs]
    grads = [np.empty_like(W) for W in weights]

    def step() -> None:
        for l, W in enumerate(weights):
            np.matmul(acts[l], W.T, out=acts[l + 1])  # Z = A W^T
        for l, W in enumerate(weights):
            np.matmul(deltas[l + 1].T, acts[l], out=grads[l])  # dW = delta^T A
            if l > 0:
                np.matmul(deltas[l + 1], W, out=deltas[l])  # delta_prev = delta W

    return step


def _torch_step(net: Network, batch: int) -> Step:
    import torch

    pairs = list(zip(net.layers[:-1], net.layers[1:], strict=True))
    acts = [torch.rand(batch, n) for n in net.layers]
    deltas = [torch.rand(batch, n) for n in net.layers]
    weights = [torch.rand(n_out, n_in) for n_in, n_out in pairs]
    grads = [torch.empty_like(W) for W in weights]

    def step() -> None:
        with torch.no_grad():
            for l, W in enumerate(weights):
                torch.mm(acts[l], W.t(), out=acts[l + 1])
            for l, W in enumerate(weights):
                torch.mm(deltas[l + 1].t(), acts[l], out=grads[l])
                if l > 0:
                    torch.mm(deltas[l + 1], W, out=deltas[l])

    return step


def step_seconds(
    net: Network, library: str = "numpy", *, batch: int = BATCH, budget: float = 0.5
) -> float:
    """Seconds one step's matrix products take, the median of repeated timings in ``library``
    ("numpy" or "pytorch") lasting about ``budget`` seconds in all."""
    step = _numpy_step(net, batch, np.random.default_rng(0)) if library == "numpy" else None
    if step is None:
        step = _torch_step(net, batch)
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
