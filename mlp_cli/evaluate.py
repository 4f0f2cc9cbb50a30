"""Evaluate a saved model on an MNIST split: accuracy, loss, per-class metrics, confusions.

The model's own preprocessing (from its metadata) is applied, so a 400-input model is fed
20x20 digits without being told.  The validation split is rebuilt from the seed stored in
the model's config, so ``--split val`` means exactly the images training held out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mlp_cli.checkpoint import SavedModel
from mlp_cli.errors import CheckpointError, UsageError
from mlp_cli.model import MLP

Split = Literal["test", "val", "train"]


def build_model(saved: SavedModel) -> MLP:
    """An `MLP` holding a saved model's weights."""
    meta = saved.meta
    model = MLP(saved.layers, meta.hidden_activation, meta.output_activation)
    for W, w in zip(model.W, saved.weights, strict=True):
        W[...] = w
    for b, v in zip(model.b, saved.biases, strict=True):
        b[...] = v
    return model


def check_outputs(saved: SavedModel, probabilities: NDArray[np.floating]) -> None:
    """Refuse outputs that are not finite: weights finite in the file can still overflow
    float32 on the way through the layers, and NaN must never be reported as a prediction."""
    if not np.all(np.isfinite(probabilities)):
        raise CheckpointError(
            f"the model '{saved.path}' computes outputs that are not finite numbers: its "
            "weights are too large for float32 arithmetic. Retrain it (a smaller learning "
            "rate, weight decay or max_norm keep weights small)."
        )


def split_images(
    saved: SavedModel, split: Split, *, progressbar: Any = False
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The MNIST images and labels of ``split`` as the model's training defined it."""
    from mlp_cli import data

    if split == "test":
        return data.load_mnist("test", progressbar=progressbar)
    images, labels = data.load_mnist("train", progressbar=progressbar)
    config = saved.meta.config
    val_size = config.data.validation_size if config else 0
    seed = config.training.seed if config else 0
    train_idx, val_idx = data.validation_split(len(labels), val_size, seed)
    idx = val_idx if split == "val" else train_idx
    if split == "val" and not idx.size:
        raise UsageError("this model was trained without a validation split; use --split test")
    return images[idx], labels[idx]


@dataclass
class Evaluation:
    split: str
    n: int
    accuracy: float
    loss: float
    confusion: NDArray[np.int64]  # (K, K): rows true class, columns predicted
    probabilities: NDArray[np.float32]  # (n, K)
    predictions: NDArray[np.int64]  # (n,)
    labels: NDArray[np.uint8]  # (n,)
    seconds: float
    class_names: list[str]

    def per_class(self) -> list[dict[str, Any]]:
        """Precision, recall, F1 and support of each class (0 where undefined)."""
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
        rows = []
        for k, name in enumerate(self.class_names):
            precision = tp[k] / predicted[k] if predicted[k] else 0.0
            recall = tp[k] / actual[k] if actual[k] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append(
                {
                    "class": name,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    "support": int(actual[k]),
                }
            )
        return rows

    def top_confusions(self, n: int = 5) -> list[dict[str, Any]]:
        """The most frequent (true, predicted) mistakes."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(off, axis=None)[::-1][:n]
        pairs = []
        for flat in order:
            true, pred = divmod(int(flat), off.shape[1])
            if off[true, pred] == 0:
                break
            pairs.append(
                {
                    "true": self.class_names[true],
                    "predicted": self.class_names[pred],
                    "count": int(off[true, pred]),
                }
            )
        return pairs

    def worst_mistakes(self, n: int) -> NDArray[np.int64]:
        """Indices of misclassified examples, most confident mistakes first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        confidence = self.probabilities[wrong, self.predictions[wrong]]
        return wrong[np.argsort(-confidence, kind="stable")][:n]

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n": self.n,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
            "top_confusions": self.top_confusions(),
            "seconds": round(self.seconds, 4),
        }


def evaluate(
    saved: SavedModel, images: NDArray[np.uint8], labels: NDArray[np.uint8], split: str
) -> Evaluation:
    """Run the model over MNIST-form ``images`` (n, 28, 28) and score it against ``labels``."""
    from mlp_cli.losses import LOSSES
    from mlp_cli.preprocess import model_inputs

    started = time.perf_counter()
    model = build_model(saved)
    meta = saved.meta
    X = model_inputs(images, meta.preprocessing.model_dump())
    loss_fn = LOSSES[meta.loss]
    n, k = len(labels), model.sizes[-1]
    probabilities = np.empty((n, k), dtype=np.float32)
    loss, batch = 0.0, 2048
    with np.errstate(over="ignore", invalid="ignore"):  # check_outputs says it in one sentence
        for start in range(0, n, batch):
            a = model.forward(X[start : start + batch])
            probabilities[start : start + batch] = a
            z = model._work[a.shape[0]].z_out  # the logits, for a loss computed as in training
            loss += loss_fn.value(model.output, z, a, labels[start : start + batch]) * a.shape[0]
    check_outputs(saved, probabilities)
    predictions = probabilities.argmax(axis=1)
    correct = int(np.count_nonzero(predictions == labels))
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels.astype(np.int64), predictions), 1)
    return Evaluation(
        split=split,
        n=n,
        accuracy=correct / n if n else 0.0,
        loss=loss / n if n else 0.0,
        confusion=confusion,
        probabilities=probabilities,
        predictions=predictions,
        labels=labels,
        seconds=time.perf_counter() - started,
        class_names=list(meta.class_names),
    )
