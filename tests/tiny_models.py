"""Small model files with random weights, for tests of what reads a model."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from mlp_cli import checkpoint


def save_random_model(path: Path, layers: tuple[int, ...] = (784, 16, 10), **metadata: Any) -> Path:
    """A valid ReLU/softmax model of ``layers`` (28x28 inputs) with random weights (seed 0)
    at ``path``; ``metadata`` adds to its metadata (``data_hashes=...``)."""
    rng = np.random.default_rng(0)
    weights = [
        rng.normal(0, 0.1, (n_out, n_in)).astype(np.float32)
        for n_in, n_out in itertools.pairwise(layers)
    ]
    return save_model(path, weights, **metadata)


def save_model(path: Path, weights: list[np.ndarray], **metadata: Any) -> Path:
    """A valid ReLU/softmax model (28x28 inputs) of ``weights`` W_1 .. W_L with zero biases
    at ``path``; ``metadata`` adds to its metadata or replaces parts of it."""
    biases = [np.zeros(w.shape[0], np.float32) for w in weights]
    meta = {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": 28, "normalize": None},
        "class_names": [str(d) for d in range(10)],
        **metadata,
    }
    return checkpoint.save(path, weights, biases, meta)
