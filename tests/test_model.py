"""Tests for the NumPy MLP engine (`mlp_cli.model`, `activations`, `losses`, `gradcheck`).

The forward pass is compared with a per-example column-vector computation written here, loss
values with hand formulas, and backpropagation with central differences of an objective
computed independently of the model, for every hidden activation x output x loss x penalty,
with dropout, and for a deeper network.  Everything runs in float64 on tiny networks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from mlp_cli import activations
from mlp_cli.activations import ACTIVATIONS
from mlp_cli.errors import UsageError
from mlp_cli.gradcheck import gradcheck
from mlp_cli.losses import LOSSES, OUTPUTS, softmax
from mlp_cli.model import MLP

F64 = NDArray[np.floating]

HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu")
OUTPUT = ("softmax", "sigmoid")
LOSS = ("cross_entropy", "mse")
PENALTY = {"none": (0.0, 0.0), "l1": (0.05, 0.0), "l2": (0.0, 0.1)}  # name -> (l1, l2)
ALL_COMBOS = list(itertools.product(HIDDEN, OUTPUT, LOSS, PENALTY))
TOLERANCE = 1e-6  # largest relative error accepted between backprop and central differences
H = 1e-6  # central-difference step

# -- independent reference computations --------------------------------------------------------

HIDDEN_SCALAR: dict[str, Callable[[float], float]] = {
    "sigmoid": lambda z: 1.0 / (1.0 + math.exp(-z)),
    "tanh": math.tanh,
    "relu": lambda z: max(z, 0.0),
    "leaky_relu": lambda z: z if z > 0.0 else 0.01 * z,
}

HIDDEN_VECTOR: dict[str, Callable[[F64], F64]] = {
    "sigmoid": lambda Z: 1.0 / (1.0 + np.exp(-Z)),
    "tanh": np.tanh,
    "relu": lambda Z: np.maximum(Z, 0.0),
    "leaky_relu": lambda Z: np.where(Z > 0.0, Z, 0.01 * Z),
}


def softmax_rows(Z: F64) -> F64:
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


OUTPUT_VECTOR: dict[str, Callable[[F64], F64]] = {
    "softmax": softmax_rows,
    "sigmoid": HIDDEN_VECTOR["sigmoid"],
}


def reference_forward_one(model: MLP, x: F64) -> F64:
    """Output of one example by the column-vector equations z = W a + b, a = g(z)."""
    a = x.reshape(-1, 1)  # (n_0, 1)
    for l in range(model.n_layers):
        W, b = model.W[l], model.b[l]
        z = np.dot(W, a) + b.reshape(-1, 1)  # (n_l, 1)
        if l < model.n_layers - 1:
            a = np.array([[HIDDEN_SCALAR[model.hidden](float(v))] for v in z[:, 0]])
        elif model.output == "softmax":
            e = [math.exp(float(v) - float(z.max())) for v in z[:, 0]]
            a = np.array([[v / sum(e)] for v in e])
        else:
            a = np.array([[HIDDEN_SCALAR["sigmoid"](float(v))] for v in z[:, 0]])
    return a[:, 0]


def reference_objective(
    model: MLP, X: F64, y: NDArray[np.int64], loss: str, l1: float, l2: float
) -> float:
    """Mean data loss plus weight penalties, computed without the model's own code paths."""
    A = X
    for l in range(model.n_layers):
        Z = A @ model.W[l].T + model.b[l]  # (batch, n_l)
        A = (
            HIDDEN_VECTOR[model.hidden](Z)
            if l < model.n_layers - 1
            else OUTPUT_VECTOR[model.output](Z)
        )
    n, k = int(A.shape[0]), int(A.shape[1])
    Y = np.eye(k)[y]  # (batch, K) one-hot
    if loss == "mse":
        data = 0.5 * float(np.sum((A - Y) ** 2)) / n
    elif model.output == "softmax":
        data = -float(np.mean(np.log(A[np.arange(n), y])))
    else:  # binary cross-entropy summed over the output units
        data = -float(np.sum(Y * np.log(A) + (1.0 - Y) * np.log(1.0 - A))) / n
    weights = np.concatenate([W.ravel() for W in model.W])
    return data + 0.5 * l2 * float(weights @ weights) + l1 * float(np.abs(weights).sum())


def random_model(
    sizes: list[int], hidden: str, output: str, seed: int = 0, dtype: type = np.float64
) -> MLP:
    """A model with random weights *and* biases (so no ReLU unit sits on its kink)."""
    rng = np.random.default_rng(seed)
    model = MLP(sizes, hidden, output, dtype=dtype)
    model.params[...] = rng.normal(0.0, 0.7, model.params.size)
    return model


def relative_error(a: F64, b: F64) -> float:
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


def numeric_gradient(model: MLP, objective: Callable[[], float]) -> F64:
    """Central differences of ``objective`` with respect to every entry of model.params."""
    numeric = np.empty(model.params.size)
    for i in range(model.params.size):
        old = float(model.params[i])
        model.params[i] = old + H
        up = objective()
        model.params[i] = old - H
        down = objective()
        model.params[i] = old
        numeric[i] = (up - down) / (2 * H)
    return numeric


def batch(n_in: int, n_out: int, n: int = 7, seed: int = 1) -> tuple[F64, NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (n, n_in)), rng.integers(0, n_out, n)


# -- the tables -------------------------------------------------------------------------------


def test_tables_hold_exactly_the_documented_functions() -> None:
    assert set(ACTIVATIONS) == set(HIDDEN)
    assert set(OUTPUTS) == set(OUTPUT)
    assert set(LOSSES) == set(LOSS)


@pytest.mark.parametrize("name", HIDDEN)
def test_activation_forward_and_derivative_match_the_math(name: str) -> None:
    z = np.array([-3.0, -0.7, -1e-3, 2e-3, 0.4, 2.5])
    a = ACTIVATIONS[name].forward(z.copy(), np.empty_like(z))
    assert a == pytest.approx([HIDDEN_SCALAR[name](float(v)) for v in z], rel=1e-14)
    delta = np.full_like(z, 2.0)
    ACTIVATIONS[name].backward(a, delta)
    slope = [
        (HIDDEN_SCALAR[name](float(v) + H) - HIDDEN_SCALAR[name](float(v) - H)) / (2 * H) for v in z
    ]
    assert delta == pytest.approx([2.0 * s for s in slope], rel=1e-7, abs=1e-9)


def test_leaky_relu_slope_is_the_documented_one() -> None:
    assert activations.LEAKY_SLOPE == 0.01


# -- forward pass -----------------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "output"), list(itertools.product(HIDDEN, OUTPUT)))
def test_forward_equals_per_example_column_vector_computation(hidden: str, output: str) -> None:
    model = random_model([5, 4, 6, 3], hidden, output, seed=2)
    X, _ = batch(5, 3, n=6)
    got = model.forward(X).copy()
    want = np.array([reference_forward_one(model, x) for x in X])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_float32_forward_agrees_with_float64_reference() -> None:
    model64 = random_model([8, 6, 4], "tanh", "softmax", seed=3)
    model32 = MLP([8, 6, 4], "tanh", "softmax", dtype=np.float32)
    model32.params[...] = model64.params
    X, _ = batch(8, 4, n=5)
    got = model32.forward(X.astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, model64.forward(X), rtol=1e-5, atol=1e-6)


def test_softmax_rows_are_probabilities_even_for_huge_logits() -> None:
    model = random_model([4, 5, 6], "relu", "softmax", seed=4)
    X, _ = batch(4, 6, n=9)
    P = model.forward(X * 1e3)  # logits in the thousands: a naive exp overflows
    assert np.all(np.isfinite(P))
    assert np.all(P >= 0.0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_forward_refuses_inputs_of_the_wrong_width() -> None:
    model = MLP([4, 3, 2], dtype=np.float64)
    with pytest.raises(UsageError, match=r"\(batch, 4\)"):
        model.forward(np.zeros((2, 5)))


@pytest.mark.parametrize(
    ("sizes", "hidden", "output"),
    [
        ([4], "relu", "softmax"),
        ([4, 0, 2], "relu", "softmax"),
        ([4, 2], "swish", "softmax"),
        ([4, 2], "relu", "linear"),
    ],
)
def test_bad_architecture_is_a_usage_error(sizes: list[int], hidden: str, output: str) -> None:
    with pytest.raises(UsageError):
        MLP(sizes, hidden, output)


def test_parameter_views_share_one_flat_buffer_weights_first() -> None:
    model = MLP([3, 4, 2], dtype=np.float64)
    model.params[...] = np.arange(model.params.size)
    assert model.n_weights == 3 * 4 + 4 * 2
    np.testing.assert_array_equal(model.W[0], np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(model.W[1], np.arange(12, 20).reshape(2, 4))
    np.testing.assert_array_equal(model.b[0], [20, 21, 22, 23])
    np.testing.assert_array_equal(model.b[1], [24, 25])
    np.testing.assert_array_equal(model.weights_flat, np.arange(20))


# -- initialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["xavier", "he", "uniform", "normal"])
def test_initialisation_is_seeded_and_zeroes_biases(scheme: str) -> None:
    def init(seed: int) -> MLP:
        model = MLP([50, 40, 10])
        model.params[...] = 5.0
        model.initialize(scheme, np.random.default_rng(seed))
        return model

    a, b, c = init(7), init(7), init(8)
    assert a.params.tobytes() == b.params.tobytes()
    assert not np.array_equal(a.weights_flat, c.weights_flat)
    assert all(np.all(bias == 0.0) for bias in a.b)


def test_initialisation_scales_follow_their_definitions() -> None:
    model = MLP([400, 300, 10], dtype=np.float64)
    rng = np.random.default_rng(0)
    model.initialize("xavier", rng)
    limit = math.sqrt(6.0 / (400 + 300))
    assert np.abs(model.W[0]).max() <= limit
    assert np.abs(model.W[0]).max() > 0.99 * limit
    model.initialize("he", rng)
    assert np.std(model.W[0]) == pytest.approx(math.sqrt(2.0 / 400), rel=0.02)
    model.initialize("uniform", rng)
    assert np.abs(model.W[0]).max() <= 0.12
    model.initialize("normal", rng, scale=0.5)
    assert np.std(model.W[0]) == pytest.approx(0.5, rel=0.02)
    with pytest.raises(UsageError):
        model.initialize("orthogonal", rng)


def test_initialisation_scale_defaults_to_the_configs_and_a_given_scale_wins() -> None:
    from mlp_cli.config import DEFAULT_INIT_SCALE

    model = MLP([400, 300, 10], dtype=np.float64)
    rng = np.random.default_rng(0)
    model.initialize("uniform", rng)
    assert 0.99 * 0.12 < np.abs(model.W[0]).max() <= 0.12 == DEFAULT_INIT_SCALE["uniform"]
    model.initialize("normal", rng)
    assert np.std(model.W[0]) == pytest.approx(0.01, rel=0.02)
    assert DEFAULT_INIT_SCALE["normal"] == 0.01
    model.initialize("normal", rng, scale=0.5)
    assert np.std(model.W[0]) == pytest.approx(0.5, rel=0.02)
    assert set(DEFAULT_INIT_SCALE) == {"uniform", "normal"}  # xavier and he derive theirs


# -- losses -----------------------------------------------------------------------------------


def loss_value(loss: str, output: str, z: list[list[float]], y: list[int]) -> float:
    Z = np.array(z, dtype=np.float64)
    A = OUTPUTS[output](Z, np.empty_like(Z))
    return LOSSES[loss].value(output, Z, A, np.array(y))


def test_softmax_cross_entropy_of_a_two_class_case_by_hand() -> None:
    # p(class 1) = e^2 / (e^1 + e^2) for the first example, e^0.5 / (e^0.5 + e^-1) for the second.
    want_first = -math.log(math.exp(2.0) / (math.exp(1.0) + math.exp(2.0)))
    want_second = -math.log(math.exp(-1.0) / (math.exp(0.5) + math.exp(-1.0)))
    got = loss_value("cross_entropy", "softmax", [[1.0, 2.0], [0.5, -1.0]], [1, 1])
    assert got == pytest.approx((want_first + want_second) / 2, rel=1e-14)


def test_softmax_cross_entropy_stays_finite_when_saturated() -> None:
    # The true class's logit is 2000 below the other: the loss is 2000, not inf.
    got = loss_value("cross_entropy", "softmax", [[1000.0, -1000.0]], [1])
    assert got == pytest.approx(2000.0, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 7, 128, 1000])
def test_cross_entropy_from_softmaxs_sums_has_the_bits_of_the_loss_from_logits(
    batch: int, dtype: type
) -> None:
    """The training step takes the loss's log-sum-exp from the softmax it already computed;
    the loss must be the one computed afresh from the logits, bit for bit."""
    rng = np.random.default_rng(batch)
    z: NDArray[np.floating] = (rng.standard_normal((batch, 10)) * 30).astype(dtype)
    z[0, :3] = [1e4, -1e4, 88.0]  # saturated rows stay finite both ways
    y = rng.integers(0, 10, batch)
    a = np.empty_like(z)
    lse: NDArray[np.floating] = np.empty(batch, dtype=dtype)
    softmax(z, a, lse=lse)
    plain = np.empty_like(z)
    OUTPUTS["softmax"](z, plain)
    assert a.tobytes() == plain.tobytes()
    fresh = LOSSES["cross_entropy"].value("softmax", z, a, y)
    assert math.isfinite(fresh)
    assert LOSSES["cross_entropy"].value("softmax", z, a, y, lse) == fresh


def test_sigmoid_cross_entropy_sums_binary_losses_over_units_by_hand() -> None:
    z, y = [[0.3, -1.2, 2.0]], [2]
    a = [1.0 / (1.0 + math.exp(-v)) for v in z[0]]
    want = -(math.log(1 - a[0]) + math.log(1 - a[1]) + math.log(a[2]))
    assert loss_value("cross_entropy", "sigmoid", z, y) == pytest.approx(want, rel=1e-13)
    # Saturated: z = -800 for the true unit costs 800.
    assert loss_value("cross_entropy", "sigmoid", [[-800.0, -50.0]], [0]) == pytest.approx(
        800.0 + math.log1p(math.exp(-50.0)), rel=1e-12
    )


@pytest.mark.parametrize("output", OUTPUT)
def test_mse_is_half_the_mean_squared_distance_to_one_hot(output: str) -> None:
    z, y = [[0.2, -0.4, 1.1], [0.0, 0.7, -0.3]], [0, 2]
    total = 0.0
    for row, label in zip(z, y, strict=True):
        if output == "softmax":
            e = [math.exp(v) for v in row]
            a = [v / sum(e) for v in e]
        else:
            a = [1.0 / (1.0 + math.exp(-v)) for v in row]
        total += sum((ak - (1.0 if k == label else 0.0)) ** 2 for k, ak in enumerate(a))
    assert loss_value("mse", output, z, y) == pytest.approx(0.5 * total / 2, rel=1e-13)


def test_backward_returns_the_data_loss_and_penalty_is_weights_only() -> None:
    model = random_model([4, 3, 2], "tanh", "softmax", seed=5)
    X, y = batch(4, 2)
    model.forward(X)
    reported = model.backward(y, "cross_entropy", l1=0.3, l2=0.2)
    assert reported == pytest.approx(reference_objective(model, X, y, "cross_entropy", 0, 0))
    w = np.concatenate([W.ravel() for W in model.W])
    want = 0.1 * float(w @ w) + 0.3 * float(np.abs(w).sum())
    assert model.penalty(l1=0.3, l2=0.2) == pytest.approx(want, rel=1e-13)
    model.b[0][...] = 100.0  # biases are not penalised
    assert model.penalty(l1=0.3, l2=0.2) == pytest.approx(want, rel=1e-13)


# -- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "output", "loss", "penalty"), ALL_COMBOS)
def test_gradcheck_module_passes_every_combination(
    hidden: str, output: str, loss: str, penalty: str
) -> None:
    l1, l2 = PENALTY[penalty]
    results = gradcheck([4, 5, 3], hidden, output, loss, l1=l1, l2=l2, max_entries=1000)
    assert [r.name for r in results] == ["W1", "W2", "b1", "b2"]
    assert [r.checked for r in results] == [20, 15, 5, 3]  # every entry, none sampled away
    for r in results:
        assert r.rel_error < TOLERANCE, r
        assert r.passed


def test_gradcheck_module_catches_a_wrong_derivative(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_tanh_backward(a: F64, delta: F64) -> None:
        delta -= delta * a  # should be a^2

    broken = activations.Activation(activations.tanh, wrong_tanh_backward)
    monkeypatch.setitem(ACTIVATIONS, "tanh", broken)
    results = gradcheck([4, 5, 3], "tanh", "softmax", "cross_entropy", max_entries=1000)
    assert {r.name: r.passed for r in results} == {"W1": False, "W2": True, "b1": False, "b2": True}
    assert max(r.rel_error for r in results) > 1e-3


def test_gradcheck_relative_error_is_the_difference_over_both_norms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Backprop doubled: g = 2n, so ||g - n|| / (||g|| + ||n||) = 1/3 for every array.
    backward = MLP.backward

    def doubled(self: MLP, *args: Any, **kwargs: Any) -> None:
        backward(self, *args, **kwargs)
        self.grads *= 2.0

    monkeypatch.setattr(MLP, "backward", doubled)
    results = gradcheck([4, 5, 3], "tanh", "softmax", "cross_entropy", max_entries=1000)
    assert [r.rel_error for r in results] == pytest.approx([1 / 3] * 4, rel=1e-6)


def drop_forgetting_the_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break backprop through dropout: the forward pass drops units, backward keeps them."""
    drop = MLP._drop

    def forgetful(self: MLP, work: Any, layer: int, p: float, rng: np.random.Generator) -> None:
        drop(self, work, layer, p, rng)
        work.masks[layer][...] = 1.0  # delta is no longer multiplied by the mask

    monkeypatch.setattr(MLP, "_drop", forgetful)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradcheck_checks_backprop_through_dropout(
    hidden: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def check() -> dict[str, bool]:
        results = gradcheck([4, 5, 3], hidden, "softmax", "cross_entropy", dropout=[0.2, 0.5],
                            batch=16, max_entries=1000)  # fmt: skip
        return {r.name: r.passed for r in results}

    assert check() == {"W1": True, "W2": True, "b1": True, "b2": True}
    drop_forgetting_the_mask(monkeypatch)
    assert check() == {"W1": False, "W2": True, "b1": False, "b2": True}


@pytest.mark.parametrize(
    ("hidden", "l1", "seed"),
    [("relu", 0.0, 310), ("relu", 0.0, 636), ("leaky_relu", 0.0, 310), ("tanh", 0.01, 171)],
)
def test_gradcheck_leaves_out_entries_whose_nudges_cross_a_kink(
    hidden: str, l1: float, seed: int
) -> None:
    # With these seeds a ReLU's input (relu, leaky_relu) or an L1-penalised weight (tanh)
    # lies within h of 0: the difference quotient across the jump of the derivative was a
    # relative 1e-2 from backprop's exact gradient, a FAIL of correct code.  Under seed 636
    # only the nudge down crosses the kink, under 310 the nudge up.
    results = gradcheck(
        [6, 100, 3], hidden, "softmax", "cross_entropy", l1=l1, batch=16, max_entries=1000,
        seed=seed,
    )  # fmt: skip
    assert [r.name for r in results if not r.passed] == []
    assert sum(r.kinks for r in results) > 0
    assert [r.checked + r.kinks for r in results] == [600, 300, 100, 3]


def test_gradcheck_passes_a_deep_network_whose_gradients_shrink_to_rounding() -> None:
    # Sixty sigmoid layers: far from the output the gradients are so small that the central
    # differences' rounding alone made a relative error of 2.9e-6 here.
    sizes = [400, *[30] * 60, 10]
    results = gradcheck(sizes, "sigmoid", "sigmoid", "mse", batch=32, max_entries=30)
    assert [r.name for r in results if not r.passed] == []
    assert max(r.rel_error for r in results) < TOLERANCE / 10


@pytest.mark.parametrize(("hidden", "output", "loss", "penalty"), ALL_COMBOS)
def test_backprop_equals_central_differences_of_an_independent_objective(
    hidden: str, output: str, loss: str, penalty: str
) -> None:
    l1, l2 = PENALTY[penalty]
    model = random_model([4, 5, 3], hidden, output, seed=11)
    X, y = batch(4, 3)
    model.forward(X)
    model.backward(y, loss, l1=l1, l2=l2)
    analytic = model.grads.copy()
    numeric = numeric_gradient(model, lambda: reference_objective(model, X, y, loss, l1, l2))
    assert relative_error(analytic, numeric) < TOLERANCE


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("output", "loss"), [("softmax", "cross_entropy"), ("sigmoid", "mse")])
def test_deeper_network_gradients(hidden: str, output: str, loss: str) -> None:
    sizes = [6, 5, 4, 3, 3]
    for r in gradcheck(sizes, hidden, output, loss, l2=0.01, max_entries=1000, seed=3):
        assert r.rel_error < TOLERANCE, r
    model = random_model(sizes, hidden, output, seed=12)
    X, y = batch(6, 3, n=5)
    model.forward(X)
    model.backward(y, loss, l1=0.01)
    analytic = model.grads.copy()
    numeric = numeric_gradient(model, lambda: reference_objective(model, X, y, loss, 0.01, 0.0))
    assert relative_error(analytic, numeric) < TOLERANCE


DROPOUT = [0.3, 0.5, 0.25]  # input layer, then each hidden layer
DROP_SEED = 99


def dropped_objective(model: MLP, X: F64, y: NDArray[np.int64], loss: str) -> float:
    """The objective under the dropout mask drawn from a fresh generator with DROP_SEED."""
    a = model.forward(X, dropout=DROPOUT, rng=np.random.default_rng(DROP_SEED))
    z = model.logits(X.shape[0])
    return LOSSES[loss].value(model.output, z, a, y) + model.penalty(0.0, 0.05)


@pytest.mark.parametrize(("hidden", "output"), list(itertools.product(HIDDEN, OUTPUT)))
def test_dropout_gradient_of_the_fixed_mask_objective(hidden: str, output: str) -> None:
    model = random_model([5, 6, 6, 3], hidden, output, seed=13)
    X, y = batch(5, 3, n=6)
    loss = "cross_entropy"
    first = model.forward(X, dropout=DROPOUT, rng=np.random.default_rng(DROP_SEED)).copy()
    again = model.forward(X, dropout=DROPOUT, rng=np.random.default_rng(DROP_SEED)).copy()
    clean = model.forward(X).copy()
    np.testing.assert_array_equal(first, again)  # the same seed gives the same mask
    assert not np.allclose(first, clean)  # and the mask does change the output
    model.forward(X, dropout=DROPOUT, rng=np.random.default_rng(DROP_SEED))
    model.backward(y, loss, l2=0.05)
    analytic = model.grads.copy()
    numeric = numeric_gradient(model, lambda: dropped_objective(model, X, y, loss))
    assert relative_error(analytic, numeric) < TOLERANCE


def test_dropout_is_inverted_and_off_without_a_generator() -> None:
    model = MLP([400, 1], "relu", "sigmoid", dtype=np.float64)
    model.W[0][...] = 1.0 / 400
    X = np.ones((200, 400))
    no_rng = model.forward(X, dropout=[0.5]).copy()
    np.testing.assert_allclose(no_rng, 1.0 / (1.0 + math.exp(-1.0)))
    model.forward(X, dropout=[0.5], rng=np.random.default_rng(0))
    z = model.logits(200)[:, 0]  # mean of the kept inputs scaled by 2: about 1 on average
    assert float(z.mean()) == pytest.approx(1.0, abs=0.01)
    assert float(z.std()) > 0.02


def test_dropout_keeps_each_input_with_probability_1_minus_p_scaled_by_1_over_1_minus_p() -> None:
    # At p = 0.2 a kept input is worth 1/0.8 and about 80% are kept; p = 0.5 alone would not
    # tell p from 1 - p.
    p = 0.2
    model = MLP([400, 1], "relu", "sigmoid", dtype=np.float64)
    model.W[0][...] = 1.0
    model.forward(np.ones((200, 400)), dropout=[p], rng=np.random.default_rng(0))
    z = model.logits(200)[:, 0]  # each row: (inputs kept) / (1 - p)
    kept = z * (1 - p)
    np.testing.assert_allclose(kept, np.round(kept), rtol=0, atol=1e-9)
    assert float(kept.sum()) / (200 * 400) == pytest.approx(1 - p, abs=0.01)


# -- evaluation helpers ------------------------------------------------------------------------


def test_from_saved_rebuilds_the_network_a_model_file_describes(tmp_path: Path) -> None:
    from mlp_cli import checkpoint

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((5, 4)).astype(np.float32)]
    weights.append(rng.standard_normal((3, 5)).astype(np.float32))
    biases = [rng.standard_normal(5).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    meta = {
        "hidden_activation": "tanh",
        "output_activation": "sigmoid",
        "loss": "mse",
        "preprocessing": {"input_size": 2, "normalize": None},
        "class_names": ["a", "b", "c"],
    }
    saved = checkpoint.load(checkpoint.save(tmp_path / "m.npz", weights, biases, meta))
    model = MLP.from_saved(saved)
    assert (model.sizes, model.hidden, model.output) == ([4, 5, 3], "tanh", "sigmoid")
    X = rng.random((6, 4), dtype=np.float32)
    z1 = np.tanh(X @ weights[0].T + biases[0])
    want = 1 / (1 + np.exp(-(z1 @ weights[1].T + biases[1])))
    np.testing.assert_allclose(model.predict_proba(X, batch_size=4), want, rtol=1e-5)


def test_evaluate_and_predict_proba_agree_with_the_reference_in_any_batch_size() -> None:
    model = random_model([4, 5, 3], "sigmoid", "softmax", seed=14)
    X, y = batch(4, 3, n=10)
    want_p = np.array([reference_forward_one(model, x) for x in X])
    want_loss = reference_objective(model, X, y, "cross_entropy", 0.0, 0.0)
    want_acc = float(np.mean(want_p.argmax(axis=1) == y))
    for size in (1, 3, 10, 64):
        np.testing.assert_allclose(model.predict_proba(X, batch_size=size), want_p, rtol=1e-12)
        loss, acc = model.evaluate(X, y, "cross_entropy", batch_size=size)
        assert loss == pytest.approx(want_loss, rel=1e-12)
        assert acc == want_acc


def test_max_norm_caps_each_units_incoming_weights() -> None:
    model = MLP([3, 2, 2], dtype=np.float64)
    model.W[0][...] = [[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]]  # norms 5 and 0.5
    model.W[1][...] = [[0.0, 2.0], [1.0, 0.0]]
    model.apply_max_norm(1.0)
    np.testing.assert_allclose(model.W[0], [[0.6, 0.8, 0.0], [0.3, 0.4, 0.0]])
    np.testing.assert_allclose(model.W[1], [[0.0, 1.0], [1.0, 0.0]])


def test_max_norm_caps_weights_whose_squares_overflow_float32() -> None:
    model = MLP([3, 2, 2])  # float32, as trained: 1e20 squared is beyond its range
    model.W[0][...] = [[3e20, 4e20, 0.0], [0.3, 0.4, 0.0]]  # norms 5e20 and 0.5
    model.W[1][...] = [[0.0, 2.0], [1.0, 0.0]]
    model.apply_max_norm(1.0)
    np.testing.assert_allclose(model.W[0], [[0.6, 0.8, 0.0], [0.3, 0.4, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(model.W[1], [[0.0, 1.0], [1.0, 0.0]], rtol=1e-6)


# -- compiled loops ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", ["relu", "sigmoid"])
def test_compiled_loops_give_the_same_bits_as_numpy(hidden: str, dtype: type) -> None:
    """Forward outputs and every gradient, with dropout too, whatever `use_kernels` says."""
    from mlp_cli.optim import compiled_kernels

    kernels = compiled_kernels()
    assert kernels is not None, "numba is a dependency"
    rng = np.random.default_rng(5)
    X: NDArray[np.floating] = rng.standard_normal((33, 12)).astype(dtype)
    y = rng.integers(0, 4, 33)
    results = []
    for use in (None, kernels):
        model = MLP([12, 9, 7, 4], hidden, "softmax", dtype=dtype)
        model.initialize("he", np.random.default_rng(3))
        model.use_kernels(use)
        runs = []
        for dropout in (None, [0.2, 0.5, 0.1]):
            drop_rng = np.random.default_rng(8)
            out = model.forward(X, dropout=dropout, rng=drop_rng).copy()
            model.backward(y, "cross_entropy", l2=0.01)
            runs.append((out.tobytes(), model.grads.tobytes()))
        results.append(runs)
    assert results[0] == results[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", ["relu", "sigmoid"])
def test_compiled_hidden_loops_add_each_units_own_bias(hidden: str, dtype: type) -> None:
    # Training starts from zero biases, which any bias, or none, would match.
    from mlp_cli.optim import compiled_kernels

    kernels = compiled_kernels()
    assert kernels is not None, "numba is a dependency"
    rng = np.random.default_rng(6)
    z: NDArray[np.floating] = rng.standard_normal((5, 8)).astype(dtype)  # (units, batch)
    b: NDArray[np.floating] = rng.standard_normal(5).astype(dtype)
    want = z + b[:, None]
    ACTIVATIONS[hidden].forward(want, want)
    got = z.copy()
    kernels.HIDDEN[hidden][0](got, b)
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_relu_loops_treat_special_values_as_numpy_does(dtype: type) -> None:
    from mlp_cli.optim import compiled_kernels

    kernels = compiled_kernels()
    assert kernels is not None, "numba is a dependency"
    special = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-40, -1e-40, 2.0, -2.0]
    z: NDArray[np.floating] = np.array([special, special[::-1]], dtype=dtype)  # (2, batch 9)
    b: NDArray[np.floating] = np.array([0.0, -0.0], dtype=dtype)
    want = np.maximum(z + b[:, None], 0.0)
    got = z.copy()
    kernels.bias_relu(got, b)
    assert got.tobytes() == want.tobytes()

    delta: NDArray[np.floating] = np.array([special[::-1], special], dtype=dtype)
    want_delta = delta.copy()
    with np.errstate(invalid="ignore"):  # inf * 0, which the loop does silently
        ACTIVATIONS["relu"].backward(want, want_delta)
    kernels.relu_backward(want, delta)
    assert delta.tobytes() == want_delta.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_sigmoid_and_softmax_loops_treat_special_values_as_numpy_does(
    dtype: type,
) -> None:
    from mlp_cli.optim import compiled_kernels

    kernels = compiled_kernels()
    assert kernels is not None, "numba is a dependency"
    special = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-40, -1e-40, 2.0, -100.0, 100.0]
    z: NDArray[np.floating] = np.array([special, special[::-1]], dtype=dtype)
    b: NDArray[np.floating] = np.array([0.5, -0.0], dtype=dtype)
    want = z + b[:, None]
    ACTIVATIONS["sigmoid"].forward(want, want)
    got = z.copy()
    kernels.bias_sigmoid(got, b)
    assert got.tobytes() == want.tobytes()
    delta: NDArray[np.floating] = np.array([special[::-1], special], dtype=dtype)
    want_delta = delta.copy()
    with np.errstate(invalid="ignore"):
        ACTIVATIONS["sigmoid"].backward(want, want_delta)
    kernels.sigmoid_backward(want, delta)
    assert delta.tobytes() == want_delta.tobytes()

    # Rows of ten logits as the output layer holds them (batch, K): ordinary, huge, with an
    # infinity, with a NaN, all equal; a bias with a signed zero and an infinity.
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((7, 10)) * 20
    logits[1] = [1e4, -1e4, 88.0, 89.0, -88.0, 0.0, -0.0, 3.0, 2.0, 1.0]
    logits[2, 4], logits[3, 7], logits[4] = np.inf, np.nan, 7.0
    logits = logits.astype(dtype)
    bias: NDArray[np.floating] = np.array(
        [0.5, -0.0, 0.0, 1.0, -3.0, 0.0, 2.0, 0.0, 0.0, 0.0], dtype=dtype
    )
    y = np.array([0, 1, 2, 3, 4, 9, 5], dtype=np.uint8)
    want_z = logits + bias
    want_a = np.empty_like(logits)
    want_lse: NDArray[np.floating] = np.empty(7, dtype=dtype)
    got_z = logits.copy()
    got_a, got_lse, sums = np.empty_like(logits), np.empty_like(want_lse), np.empty_like(want_lse)
    with np.errstate(invalid="ignore"):  # inf - inf, in both
        softmax(want_z, want_a, lse=want_lse)
        kernels.bias_softmax(got_z, bias, got_a, got_lse, sums)
    assert got_z.tobytes() == want_z.tobytes()
    assert got_a.tobytes() == want_a.tobytes()
    assert got_lse.tobytes() == want_lse.tobytes()
    want_d, got_d = np.empty_like(logits), np.empty_like(logits)
    LOSSES["cross_entropy"].delta("softmax", want_z, want_a, y, want_d)
    kernels.cross_entropy_delta(want_a, y, want_a.dtype.type(1.0 / 7), got_d)
    assert got_d.tobytes() == want_d.tobytes()

    # The correct count picks what np.argmax picks: the first of equal entries, a NaN first.
    probabilities: NDArray[np.floating] = np.array(
        [[0.1, 0.7, 0.7], [np.nan, 0.9, 0.0], [0.2, np.nan, 0.8], [0.3, 0.3, 0.3], [0, 0, 1]],
        dtype=dtype,
    )
    for labels in itertools.product(range(3), repeat=5):
        y_small = np.array(labels, dtype=np.int64)
        picked = int(np.count_nonzero(probabilities.argmax(axis=1) == y_small))
        assert kernels.count_correct(probabilities, y_small) == picked, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_softmax_shifts_by_the_row_maximum_in_any_column(dtype: type) -> None:
    # Row c has its largest logit in column c, 100 above the others: unshifted, e^100
    # overflows float32.
    from mlp_cli.optim import compiled_kernels

    kernels = compiled_kernels()
    assert kernels is not None, "numba is a dependency"
    logits = np.random.default_rng(4).standard_normal((10, 10))
    logits[np.arange(10), np.arange(10)] = 100.0
    z: NDArray[np.floating] = logits.astype(dtype)
    bias: NDArray[np.floating] = np.zeros(10, dtype=dtype)
    want_a, got_a = np.empty_like(z), np.empty_like(z)
    want_lse: NDArray[np.floating] = np.empty(10, dtype=dtype)
    got_lse, sums = np.empty_like(want_lse), np.empty_like(want_lse)
    softmax(z.copy(), want_a, lse=want_lse)
    kernels.bias_softmax(z.copy(), bias, got_a, got_lse, sums)
    assert got_a.tobytes() == want_a.tobytes()
    assert got_lse.tobytes() == want_lse.tobytes()
    np.testing.assert_allclose(np.diag(got_a), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got_lse, 100.0, rtol=1e-6)


def test_models_outside_training_never_import_numba(
    imports_of: Callable[[str], set[str]],
) -> None:
    """Prediction and evaluation build models without kernels, so they skip numba's import
    (about half a second)."""
    code = (
        "import numpy as np, mlp_cli.predict, mlp_cli.evaluate\n"
        "from mlp_cli.model import MLP\n"
        "m = MLP([4, 3, 2]); m.initialize('he', np.random.default_rng(0))\n"
        "m.forward(np.ones((5, 4), dtype=np.float32))"
    )
    assert "numba" not in imports_of(code)
