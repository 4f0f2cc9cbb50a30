"""The benchmark's JAX peer: its step against NumPy by hand, its two styles against each
other, and its process end to end.  Skipped where JAX and optax are not installed (they come
with the optional ``bench`` extra, not with ``dev``)."""

from __future__ import annotations

import importlib.util
import multiprocessing
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from bench import peers
from bench.workload import LR, Dataset, Network

T = TypeVar("T")


def test_jax_is_reported_missing_without_optax(monkeypatch: pytest.MonkeyPatch) -> None:
    """JAX alone is not enough for the peer: without optax it is skipped, not half-run."""
    find_spec = importlib.util.find_spec

    def without_optax(name: str, *args: Any) -> Any:
        # torch and sklearn left out too: importing them here would only grow pytest.
        return None if name in ("optax", "torch", "sklearn") else find_spec(name, *args)

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


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a newly started interpreter.  JAX takes a few hundred MB once loaded,
    and a child that pytest forks later starts with the RSS pytest had (the memory tests of
    hostile files measure their children's peak RSS), so JAX stays out of pytest's process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


Weights = list[np.ndarray[Any, Any]]


def _one_batch_epochs(
    layers: tuple[int, ...], batch: int, seed: int
) -> dict[str, tuple[dict[str, float], Weights]]:
    """Style -> (record, weights) after one epoch of one batch of `_data`."""
    from bench.jaxpeer import STYLES, JaxTrainer

    X, y = _data(batch, layers[0], layers[-1])
    trainer = JaxTrainer(layers, "relu", X, y, seed=seed, batch=batch)
    return {style: (trainer.epoch(style), trainer.weights(style)) for style in STYLES}


@needs_jax
def test_one_step_is_adam_on_the_cross_entropy_gradient() -> None:
    """One batch, one step: the weights move by Adam's first update, -lr g / (|g| + eps),
    on the softmax cross-entropy gradient worked out in float64 NumPy."""
    from bench.jaxpeer import xavier

    layers, batch, seed = (8, 6, 4), 32, 3
    trained = in_fresh_process(_one_batch_epochs, layers, batch, seed)
    X, y = _data(batch, layers[0], layers[-1])
    (W1, b1), (W2, b2) = (
        tuple(p.astype(np.float64) for p in layer) for layer in xavier(layers, seed)
    )
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

    assert set(trained) == {"scan", "step"}
    for record, weights in trained.values():
        assert record["loss"] == pytest.approx(loss, rel=1e-5)
        assert record["accuracy"] == np.mean(z2.argmax(axis=1) == y)
        for got, w, g in zip(weights, start, grads, strict=True):
            expected = w - LR * g / (np.abs(g) + 1e-8)
            np.testing.assert_allclose(got, expected, rtol=0, atol=LR * 1e-2)


def _three_epochs_each() -> tuple[set[int], list[dict[str, tuple[dict[str, float], Weights]]]]:
    """The compiled step's batch sizes, and per epoch style -> (record, weights), training
    on which of the first 3 of 12 inputs is the largest (a learnable problem)."""
    from bench.jaxpeer import STYLES, JaxTrainer

    X, _ = _data(300, 12, 3)
    y = np.argmax(X[:, :3], axis=1).astype(np.uint8)
    trainer = JaxTrainer((12, 16, 3), "sigmoid", X, y, seed=1, batch=128)
    epochs = []
    for _ in range(3):
        records = {style: trainer.epoch(style) for style in STYLES}
        epochs.append({style: (records[style], trainer.weights(style)) for style in STYLES})
    return set(trainer.step_fn), epochs


@needs_jax
def test_scan_and_step_train_alike_over_epochs() -> None:
    """The whole-epoch scan and the per-batch loop (a short last batch included) run the same
    steps on the same batches: the same weights, loss and accuracy after each epoch, and the
    loss falls on a learnable problem."""
    sizes, epochs = in_fresh_process(_three_epochs_each)
    assert sizes == {128, 300 - 256}
    for epoch in epochs:
        (scan, scan_weights), (step, step_weights) = epoch["scan"], epoch["step"]
        assert scan["loss"] == pytest.approx(step["loss"], rel=1e-6)
        assert scan["accuracy"] == step["accuracy"]
        for a, b in zip(scan_weights, step_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert epochs[-1]["scan"][0]["loss"] < epochs[0]["scan"][0]["loss"]


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
