"""Central-difference check of backpropagation.

For a network built like the config's, in float64, on a small random batch, every sampled
parameter theta_i is nudged by +-h and the objective (mean loss + penalties) re-evaluated:

    numeric_i = (J(theta + h e_i) - J(theta - h e_i)) / (2h)

and compared with backprop's analytic gradient per parameter array through the relative
error ||g - n|| / max(||g|| + ||n||, floor).  Correct backprop gives ~1e-9; a wrong
derivative gives ~1e-2 or worse.  The floor is what rounding lets central differences
resolve (about L * eps * |J| / h per entry, divided by the tolerance): in a deep sigmoid
network the gradients of layers far from the output shrink towards it, and a ratio of
rounding to rounding says nothing about backprop.  Biases are drawn at random too, so no
ReLU sits exactly on its kink.  An entry whose nudges move a (leaky) ReLU's input or, under
an L1 penalty, the weight itself across 0 is left out of the comparison and counted: there
the derivative jumps, and the difference quotient straddling the jump is no derivative.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mlp_cli.activations import ACTIVATIONS
from mlp_cli.errors import UsageError
from mlp_cli.limits import format_bytes, layers_text, parameter_count
from mlp_cli.model import MLP

TOLERANCE = 1e-6
H = 1e-6  # the central difference's nudge h, in float64
MAX_BYTES = 512 * 2**20  # float64 arrays the check may hold at once
# Multiply-adds of all the forward passes it makes (two per checked entry): about a minute
# of float64 matrix products on a small machine.
MAX_WORK = 10**11


@dataclass(frozen=True)
class GradCheck:
    name: str  # "W1", "b1", ...
    checked: int  # entries compared
    size: int  # entries in the array
    rel_error: float
    kinks: int = 0  # sampled entries not compared: their nudges crossed a kink

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
    dropout: Sequence[float] | None = None,
    batch: int = 8,
    max_entries: int = 200,
    seed: int = 0,
) -> list[GradCheck]:
    """Compare backprop with central differences, per parameter array (W1, b1, W2, ...).

    At most ``max_entries`` randomly chosen entries of each array are checked, so large
    networks finish in seconds; those whose nudges cross a kink are not compared.
    ``dropout`` (one drop probability per layer input, input layer first, as
    `MLP.forward` takes) drops units through one set of masks, the same in every pass.
    """
    _check_cost(sizes, batch, max_entries)
    rng = np.random.default_rng(seed)
    model = MLP(sizes, hidden, output, dtype=np.float64)
    model.initialize("xavier", rng)
    for b in model.b:
        b[...] = rng.normal(0.0, 0.1, b.shape)
    X = rng.random((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    # Masks drawn anew in every pass would make J a random function; drawn from generators
    # seeded alike, they are one fixed set, through which J is smooth and its gradient the
    # one backprop gives with those units dropped.
    masks = int(rng.integers(2**63)) if dropout is not None and any(dropout) else None

    def forward() -> None:
        model.forward(
            X, dropout=dropout, rng=None if masks is None else np.random.default_rng(masks)
        )

    def objective() -> float:
        forward()
        return model.loss_value(loss, y) + model.penalty(l1, l2)

    def sides() -> list[NDArray[np.bool_]]:
        """Which side of the kink at 0 each hidden unit's input is on, per example."""
        if not ACTIVATIONS[hidden].kink:
            return []
        return [a > 0 for a in model.hidden_activations(batch)]  # a > 0 exactly where z > 0

    def crossed(before: list[NDArray[np.bool_]]) -> bool:
        return not all(map(np.array_equal, sides(), before))

    # What a central difference can resolve per entry: the rounding of J (which grows with
    # each layer J passes through), divided by h.
    rounding = np.finfo(np.float64).eps * max(abs(objective()), 1.0) * model.n_layers
    resolution = rounding / H
    forward()
    base = sides()
    model.backward(y, loss, l1=l1, l2=l2)
    analytic = model.grads.copy()

    results = []
    names = [f"{kind}{i}" for kind in "Wb" for i in range(1, model.n_layers + 1)]  # as params
    offset = 0
    for name, view in zip(names, [*model.W, *model.b], strict=True):
        size = view.size
        picks = rng.choice(size, min(size, max_entries), replace=False) + offset
        numeric = np.empty(len(picks))
        smooth = np.ones(len(picks), dtype=bool)
        for k, i in enumerate(picks):
            old = model.params[i]
            kink = l1 > 0 and i < model.n_weights and abs(old) <= H  # |w| bends at w = 0
            model.params[i] = old + H
            up = objective()
            kink = kink or crossed(base)
            model.params[i] = old - H
            down = objective()
            kink = kink or crossed(base)
            model.params[i] = old
            numeric[k] = (up - down) / (2 * H)
            smooth[k] = not kink
        g, numeric = analytic[picks][smooth], numeric[smooth]
        floor = np.sqrt(len(g)) * resolution / TOLERANCE
        denom = max(float(np.linalg.norm(g) + np.linalg.norm(numeric)), floor)
        error = float(np.linalg.norm(g - numeric) / denom) if denom > 0 else 0.0
        results.append(GradCheck(name, len(g), size, error, kinks=len(picks) - len(g)))
        offset += size
    return results


def _check_cost(sizes: Sequence[int], batch: int, max_entries: int) -> None:
    """Refuse, before allocating anything, a check that would need more than `MAX_BYTES`
    of memory or `MAX_WORK` multiply-adds."""
    pairs = list(itertools.pairwise(sizes))
    params = parameter_count(sizes)
    weights = params - sum(sizes[1:])
    # Parameters, gradients and their copy, the penalty gradient's scratch, and the two
    # arrays of the weights' size that the penalty makes in every objective (a float64
    # copy and its |w|); per example: the inputs, each layer's z, a and delta, and each
    # layer input's dropout mask and dropped copy.
    per_example = sizes[0] + 3 * sum(sizes[1:]) + 2 * sum(sizes[:-1])
    nbytes = 8 * (6 * params + batch * per_example)
    checked = sum(min(n_in * n_out, max_entries) + min(n_out, max_entries) for n_in, n_out in pairs)
    work = (2 * checked + 1) * batch * weights
    network = layers_text(sizes)
    if nbytes > MAX_BYTES:
        raise UsageError(
            f"gradcheck of a {network} network on a batch of {batch} would need about "
            f"{format_bytes(nbytes)} of memory in float64, more than the {format_bytes(MAX_BYTES)} "
            "it allows. Backpropagation is the same code at any width: check a narrower "
            "network with the same activations and loss (e.g. --set model.layers=...), or a "
            "smaller --batch."
        )
    if work > MAX_WORK:
        raise UsageError(
            f"gradcheck of a {network} network on a batch of {batch}, {checked:,} entries, "
            f"would take about {work:.1e} multiply-adds, more than the {MAX_WORK:.0e} it "
            "allows (a minute or so). Use a smaller --batch or --entries, or a narrower "
            "network with the same activations and loss."
        )
