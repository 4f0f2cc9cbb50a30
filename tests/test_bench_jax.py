"""The benchmark's JAX peer: its step against NumPy by hand, its two styles against each
other, and its process end to end.  Skipped where JAX and optax are not installed (they come
with the optional ``bench`` extra, not with ``dev``)."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from bench import peers
from bench.workload import LR, Dataset, Network


def test_jax_is_reported_missing_without_optax(monkeypatch: pytest.MonkeyPatch) -> None:
    """JAX alone is not enough for the peer: without optax it is skipped, not half-run."""
    find_spec = importlib.util.find_spec

    def without_optax(name: str, *args: Any) -> Any:
        return None if name == "optax" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_optax)
    found = peers.available()
    assert "jax" in found
    assert found["jax"] is None


jax_missing = any(importlib.util.find_spec(m) is None for m in ("jax", "optax"))
needs_jax = pytest.mark.skipif(jax_missing, reason="jax and optax are not installed")


def _data(n: int, inputs: int, classes: int, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, inputs), dtype=np.float32)
    y = rng.integers(0, classes, n).astype(np.uint8)
    return X, y


@needs_jax
def test_one_step_is_adam_on_the_cross_entropy_gradient() -> None:
    """One batch, one step: the weights move by Adam's first update, -lr g / (|g| + eps),
    on the softmax cross-entropy gradient worked out in float64 NumPy."""
    from bench.jaxpeer import JaxTrainer, xavier

    layers, batch = (8, 6, 4), 32
    X, y = _data(batch, layers[0], layers[-1])
    trainer = JaxTrainer(layers, "relu", X, y, seed=3, batch=batch)
    (W1, b1), (W2, b2) = (tuple(p.astype(np.float64) for p in layer) for layer in xavier(layers, 3))
    x = X.astype(np.float64)
    z1 = x @ W1 + b1  # (batch, 6)
    a1 = np.maximum(z1, 0)
    z2 = a1 @ W2 + b2  # (batch, 4)
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(batch), y]))
    delta2 = (p - np.eye(layers[-1])[y]) / batch  # dL/dz2
    delta1 = (delta2 @ W2.T) * (z1 > 0)  # dL/dz1
    grads = [x.T @ delta1, delta1.sum(axis=0), a1.T @ delta2, delta2.sum(axis=0)]
    start = [W1, b1, W2, b2]

    for style in ("scan", "step"):
        record = trainer.epoch(style)
        assert record["loss"] == pytest.approx(loss, rel=1e-5)
        assert record["accuracy"] == np.mean(z2.argmax(axis=1) == y)
        for got, w, g in zip(trainer.weights(style), start, grads, strict=True):
            expected = w - LR * g / (np.abs(g) + 1e-8)
            np.testing.assert_allclose(got, expected, rtol=0, atol=LR * 1e-2)


@needs_jax
def test_scan_and_step_train_alike_over_epochs() -> None:
    """The whole-epoch scan and the per-batch loop (a short last batch included) run the same
    steps on the same batches: the same weights, loss and accuracy after each epoch, and the
    loss falls on a learnable problem."""
    from bench.jaxpeer import JaxTrainer

    X, _ = _data(300, 12, 3)
    y = np.argmax(X[:, :3], axis=1).astype(np.uint8)  # learnable: the largest of 3 inputs
    trainer = JaxTrainer((12, 16, 3), "sigmoid", X, y, seed=1, batch=128)
    assert set(trainer.step_fn) == {128, 300 - 256}
    losses = []
    for _ in range(3):
        scan, step = trainer.epoch("scan"), trainer.epoch("step")
        assert scan["loss"] == pytest.approx(step["loss"], rel=1e-6)
        assert scan["accuracy"] == step["accuracy"]
        for a, b in zip(trainer.weights("scan"), trainer.weights("step"), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        losses.append(scan["loss"])
    assert losses[-1] < losses[0]


@needs_jax
@pytest.mark.slow
def test_the_peer_process_times_both_styles_on_its_cpus() -> None:
    """`runners` starts one JAX process for two runners: each epoch comes back timed, compile
    seconds and the pinned CPUs are in the details, and closing ends the process."""
    net = Network((784, 8, 10), "relu")
    X, y = _data(200, 784, 10)
    found = peers.runners(["jax"], net, Dataset(X, y, "synthetic"), threads=1)
    try:
        assert [r.name for r in found] == ["jax-scan", "jax-step"]
        for runner in found:
            assert runner.epoch() > 0
            details = runner.details()
            assert details["compile_seconds"] > 0
            assert len(details["cpus"]) == 1
            (epoch,) = details["epoch_details"]
            assert 0 <= epoch["accuracy"] <= 1
            assert epoch["busy_threads"] >= 1
    finally:
        for runner in found:
            runner.close()
    assert isinstance(found[0], peers.JaxRunner)
    assert found[0].process.process.returncode == 0
