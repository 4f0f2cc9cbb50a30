"""Tests for mlp_cli.evaluate: the scores of a model, the metrics derived from its confusion
matrix, and the ranking of mistakes."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import save_random_model

from mlp_cli import checkpoint
from mlp_cli.errors import UsageError
from mlp_cli.evaluate import Evaluation, evaluate, split_images


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


@pytest.mark.parametrize("loss", [math.inf, math.nan])
def test_a_loss_that_is_not_finite_is_null_in_the_json(loss: float) -> None:
    labels = np.array([0, 1, 1], np.uint8)
    result = Evaluation(
        split="test",
        n=3,
        accuracy=2 / 3,
        loss=loss,
        confusion=np.array([[1, 0], [1, 1]], np.int64),
        probabilities=np.array([[1, 0], [1, 0], [0, 1]], np.float32),
        predictions=np.array([0, 0, 1], np.int64),
        labels=labels,
        seconds=0.0,
        class_names=["0", "1"],
    )
    text = json.dumps(result.to_json(), allow_nan=False)  # raises on Infinity or NaN
    assert json.loads(text)["loss"] is None


@pytest.mark.usefixtures("no_public_mirrors")  # MNIST is not there: it must not be needed
def test_the_val_split_of_a_model_trained_without_one_is_refused_before_reading_mnist(
    tmp_path: Path,
) -> None:
    path = save_random_model(tmp_path / "noval.npz", config={"data": {"validation_size": 0}})
    with pytest.raises(UsageError) as refused:
        split_images(checkpoint.load(path), "val")
    message = str(refused.value)
    assert str(path) in message
    assert "validation_size" in message
    assert "--split test" in message


def test_the_json_names_the_precision_and_recall_that_are_0_over_0() -> None:
    # "1" is never predicted and "2" has no examples; both are given as 0, as in the table.
    result = Evaluation(
        split="val",
        n=3,
        accuracy=2 / 3,
        loss=0.5,
        confusion=np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]], np.int64),
        probabilities=np.array([[1, 0, 0]] * 3, np.float32),
        predictions=np.array([0, 0, 0], np.int64),
        labels=np.array([0, 0, 1], np.uint8),
        seconds=0.0,
        class_names=["0", "1", "2"],
    )
    report = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert [row["precision"] for row in report["per_class"]] == [2 / 3, 0.0, 0.0]
    assert [row["recall"] for row in report["per_class"]] == [1.0, 0.0, 0.0]
    assert report["undefined"] == {"precision": ["1", "2"], "recall": ["2"]}


def test_the_most_frequent_confusions_list_ties_in_class_order() -> None:
    # The mistakes of a real validation split: one made 9 times, two 5 times, four 4 times.
    # Of the five listed, ties come in class order (true class, then predicted), so the
    # 4s listed are the first two of them, not two picked by the sort.
    confusion = np.diag([198, 207, 170, 179, 176, 187, 208, 207, 185, 186]).astype(np.int64)
    for (t, p), count in {(3, 5): 9, (3, 2): 4, (6, 0): 4, (8, 2): 4, (8, 3): 4}.items():
        confusion[t, p] = count
    for t, p in [(9, 4), (5, 3)]:
        confusion[t, p] = 5
    result = scored(confusion, [str(d) for d in range(10)], split="val", loss=0.2)
    pairs = [(c["true"], c["predicted"], c["count"]) for c in result.top_confusions()]
    assert pairs == [("3", "5", 9), ("5", "3", 5), ("9", "4", 5), ("3", "2", 4), ("6", "0", 4)]


def test_evaluate_scores_the_models_own_outputs_with_true_classes_as_rows(tmp_path: Path) -> None:
    # More images than one forward batch (2,048), so the last, shorter batch counts as its rows.
    names = [f"digit {d}" for d in range(10)]
    saved = checkpoint.load(save_random_model(tmp_path / "m.npz", class_names=names))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2100, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 2100).astype(np.uint8)
    result = evaluate(saved, images, labels, "test")

    # The same network in float64 from the file's arrays: ReLU hidden layer, softmax output.
    X = images.reshape(len(images), -1) / 255.0
    z = np.maximum(X @ saved.weights[0].T + saved.biases[0], 0) @ saved.weights[1].T
    z += saved.biases[1]
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    predicted = z.argmax(axis=1)
    assert result.predictions.tolist() == predicted.tolist()
    assert result.accuracy == np.mean(predicted == labels)
    assert result.loss == pytest.approx(-np.mean(log_p[np.arange(2100), labels]), rel=1e-5)
    want = np.zeros((10, 10), np.int64)
    for true, guess in zip(labels, predicted, strict=True):
        want[true, guess] += 1  # row: the true class; column: the prediction
    assert result.confusion.tolist() == want.tolist()
    assert [row["class"] for row in result.per_class()] == names  # row k: class k's name


def scored(
    confusion: Any,
    names: Sequence[str] = ("a", "b", "c"),
    *,
    split: str = "test",
    loss: float = 0.5,
) -> Evaluation:
    """An evaluation of ``confusion`` (rows true classes, columns predictions) of the classes
    ``names``; only the confusion matters to what is derived from it, so the examples'
    predictions and labels are placeholders."""
    n, k = int(np.sum(confusion)), len(names)
    return Evaluation(
        split=split,
        n=n,
        accuracy=float(np.trace(confusion)) / n,
        loss=loss,
        confusion=np.array(confusion, np.int64),
        probabilities=np.full((n, k), 1 / k, np.float32),
        predictions=np.zeros(n, np.int64),
        labels=np.zeros(n, np.uint8),
        seconds=0.0,
        class_names=list(names),
    )


def test_per_class_precision_recall_f1_and_support_by_hand() -> None:
    rows = scored([[5, 1, 0], [3, 3, 2], [0, 0, 4]]).per_class()
    precision = [5 / 8, 3 / 4, 4 / 6]  # correct / predicted as the class (column sums)
    recall = [5 / 6, 3 / 8, 4 / 4]  # correct / examples of the class (row sums)
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert [row["class"] for row in rows] == ["a", "b", "c"]
    assert [row["precision"] for row in rows] == pytest.approx(precision, rel=1e-15)
    assert [row["recall"] for row in rows] == pytest.approx(recall, rel=1e-15)
    assert [row["f1"] for row in rows] == pytest.approx(f1, rel=1e-15)
    assert [row["support"] for row in rows] == [6, 8, 4]


@pytest.mark.parametrize("split", ["val", "train"])
def test_pictures_of_mistakes_are_named_by_their_index_in_the_mnist_file(
    mnist_mirror: object, tmp_path: Path, split: str
) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from mlp_cli import data
    from mlp_cli.cli import app

    model = save_random_model(
        tmp_path / "m.npz", config={"data": {"validation_size": 2000}, "training": {"seed": 3}}
    )
    folder = tmp_path / "mistakes"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(model), "--split", split, "--misclassified", str(folder)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.stderr
    images, labels = data.load_mnist("train")
    names = sorted(folder.glob("*-index*.png"))
    assert len(names) == 50
    for name in names:
        index, true = (int(part) for part in re.findall(r"-index(\d+)-true(\d+)-", name.name)[0])
        assert labels[index] == true, name.name
        assert np.array_equal(np.asarray(Image.open(name)), images[index]), name.name


def test_pictures_ranked_past_999_are_removed_by_the_next_misclassified_as_the_others(
    mnist_mirror: object, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mlp_cli.cli import app

    model = save_random_model(tmp_path / "m.npz")  # random weights: thousands of mistakes
    folder = tmp_path / "mistakes"
    for count in ("1001", "2"):
        args = ["evaluate", "--model", str(model), "--misclassified", str(folder)]
        result = CliRunner().invoke(app, [*args, "--count", count], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len(names) == 3, names  # this evaluation's two mistakes and its gallery
    assert names[0].startswith("001-index")
    assert names[1].startswith("002-index")
    assert names[2] == "gallery.png"
