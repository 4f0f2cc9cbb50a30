"""Small model files with random weights, for tests of what reads a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlp_cli import checkpoint


def save_random_model(path: Path) -> Path:
    """A valid 784-16-10 ReLU/softmax model with random weights (seed 0) at ``path``."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.1, (16, 784)).astype(np.float32)]
    weights.append(rng.normal(0, 0.1, (10, 16)).astype(np.float32))
    biases = [np.zeros(16, np.float32), np.zeros(10, np.float32)]
    meta = {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": 28, "normalize": None},
        "class_names": [str(d) for d in range(10)],
    }
    return checkpoint.save(path, weights, biases, meta)
