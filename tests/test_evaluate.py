"""Tests for mlp_cli.evaluate's ranking of mistakes."""

from __future__ import annotations

import numpy as np

from mlp_cli.evaluate import Evaluation


def test_worst_mistakes_are_the_wrong_predictions_most_confident_first() -> None:
    rng = np.random.default_rng(15)
    true, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    prob = rng.uniform(0, 1, 200).astype(np.float32)  # as the model gives them
    probabilities = np.zeros((200, 3), np.float32)
    probabilities[np.arange(200), pred] = prob  # the probability of each prediction
    result = Evaluation(
        split="test",
        n=200,
        accuracy=0.0,
        loss=0.0,
        confusion=np.zeros((3, 3), np.int64),
        probabilities=probabilities,
        predictions=pred,
        labels=true.astype(np.uint8),
        seconds=0.0,
        class_names=["0", "1", "2"],
    )
    got = result.worst_mistakes(15)
    wrong = [i for i in range(200) if true[i] != pred[i]]
    assert got.tolist() == sorted(wrong, key=lambda i: -prob[i])[:15]
