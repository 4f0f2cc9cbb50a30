"""Central-difference check of backpropagation.

For a network built like the config's, in float64, on a small random batch, every sampled
parameter theta_i is nudged by +-h and the objective (mean loss + penalties) re-evaluated:

    numeric_i = (J(theta + h e_i) - J(theta - h e_i)) / (2h)

and compared with backprop's analytic gradient per parameter array through the relative
error ||g - n|| / (||g|| + ||n||).  Correct backprop gives ~1e-9; a wrong derivative gives
~1e-2 or worse.  Biases are drawn at random too, so no ReLU sits exactly on its kink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlp_cli.losses import LOSSES
from mlp_cli.model import MLP

TOLERANCE = 1e-6


@dataclass(frozen=True)
class GradCheck:
    name: str  # "W1", "b1", ...
    checked: int  # entries compared
    size: int  # entries in the array
    rel_error: float

    @property
    def passed(self) -> bool:
        return self.rel_error < TOLERANCE


def gradcheck(
    sizes: Sequence[int],
    hidden: str,
    output: str,
    loss: str,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    batch: int = 8,
    max_entries: int = 200,
    seed: int = 0,
    h: float = 1e-6,
) -> list[GradCheck]:
    """Compare backprop with central differences, per parameter array (W1, b1, W2, ...).

    At most ``max_entries`` randomly chosen entries of each array are checked, so large
    networks finish in seconds.
    """
    rng = np.random.default_rng(seed)
    model = MLP(sizes, hidden, output, dtype=np.float64)
    model.initialize("xavier", rng)
    for b in model.b:
        b[...] = rng.normal(0.0, 0.1, b.shape)
    X = rng.random((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    loss_fn = LOSSES[loss]

    def objective() -> float:
        a = model.forward(X)
        z = model._work[batch].z_out
        return loss_fn.value(output, z, a, y) + model.penalty(l1, l2)

    model.forward(X)
    model.backward(y, loss, l1=l1, l2=l2)
    analytic = model.grads.copy()

    results = []
    names = [f"W{i}" for i in range(1, model.n_layers + 1)]
    names += [f"b{i}" for i in range(1, model.n_layers + 1)]
    offset = 0
    for name, view in zip(names, [*model.W, *model.b], strict=True):
        size = view.size
        picks = rng.choice(size, min(size, max_entries), replace=False) + offset
        numeric = np.empty(len(picks))
        for k, i in enumerate(picks):
            old = model.params[i]
            model.params[i] = old + h
            up = objective()
            model.params[i] = old - h
            down = objective()
            model.params[i] = old
            numeric[k] = (up - down) / (2 * h)
        g = analytic[picks]
        denom = np.linalg.norm(g) + np.linalg.norm(numeric)
        error = float(np.linalg.norm(g - numeric) / denom) if denom > 0 else 0.0
        results.append(GradCheck(name, len(picks), size, error))
        offset += size
    return results
