"""Evaluate a saved model on an MNIST split: accuracy, loss, per-class metrics, confusions.

The model's own preprocessing (from its metadata) is applied, so a 400-input model is fed
20x20 digits without being told.  The validation split is rebuilt from the seed stored in
the model's config, so ``--split val`` means exactly the images training held out.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mlp_cli import outputs
from mlp_cli.checkpoint import SavedConfig, SavedModel
from mlp_cli.errors import UsageError
from mlp_cli.limits import layers_text
from mlp_cli.model import MLP
from mlp_cli.plain import shown
from mlp_cli.predict import check_logits
from mlp_cli.preprocess import model_inputs

Split = Literal["test", "val", "train"]
GALLERY_FILE = "gallery.png"  # all the written mistakes on one page
# Held while the mistakes are written; not the run's lock, which a run that trains holds.
MISTAKES_LOCK = ".mlp-mistakes.lock"
_FILE_SAFE = re.compile(r"[A-Za-z0-9_.+-]{1,32}")


def split_images(
    saved: SavedModel, split: Split, *, progressbar: Any = False
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The MNIST images and labels of ``split`` as the model's training defined it.

    A model without one output per MNIST class raises `UsageError` before any is read."""
    from mlp_cli import data

    check_scorable(saved)
    if split == "test":
        return data.load_mnist("test", progressbar=progressbar)
    # A file without its config held nothing out: the schema's defaults say so.
    config = saved.meta.config or SavedConfig()
    if split == "val" and not config.data.validation_size:
        raise UsageError(
            f"the model '{shown(saved.path)}' was trained without a validation split (its "
            "config's data.validation_size is 0, or it has no config), so --split val has no "
            "images; use --split test, or --split train for the images it was trained on"
        )
    images, labels = data.load_mnist("train", progressbar=progressbar)
    idx = split_rows(saved, split, len(labels))
    return images[idx], labels[idx]


def split_rows(saved: SavedModel, split: Split, total: int) -> NDArray[np.int64]:
    """The indices (ascending) in its MNIST file of ``total`` images (the test file for
    "test", the training file otherwise) of each image `split_images` gives."""
    from mlp_cli import data

    if split == "test":
        return np.arange(total, dtype=np.int64)
    config = saved.meta.config or SavedConfig()
    train_idx, val_idx = data.validation_split(
        total, config.data.validation_size, config.training.seed
    )
    return val_idx if split == "val" else train_idx


def check_scorable(saved: SavedModel) -> None:
    """Refuse (UsageError) a model without one output per MNIST class: MNIST cannot score it."""
    from mlp_cli.config import MNIST_CLASSES

    classes = saved.layers[-1]
    if classes != MNIST_CLASSES:
        raise UsageError(
            f"the model '{shown(saved.path)}' has layers {layers_text(saved.layers)}, so it "
            f"tells {classes} classes apart, but MNIST has {MNIST_CLASSES} digits: scoring "
            f"on MNIST needs a model whose last layer has {MNIST_CLASSES} outputs (e.g. "
            f"784-128-{MNIST_CLASSES}, as `mlp train` makes). Use `mlp predict` for this "
            "model on images of its own classes."
        )


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
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
        columns = (precision.tolist(), recall.tolist(), f1.tolist(), actual.tolist())
        return [
            {"class": name, "precision": p, "recall": r, "f1": f, "support": n}
            for name, p, r, f, n in zip(self.class_names, *columns, strict=True)
        ]

    def undefined(self) -> dict[str, list[str]]:
        """The classes whose precision (never predicted) or recall (no examples) is 0/0,
        which `per_class` gives as 0, as scikit-learn does."""
        predicted, actual = self.confusion.sum(axis=0), self.confusion.sum(axis=1)
        names = self.class_names
        return {
            "precision": [name for name, n in zip(names, predicted, strict=True) if not n],
            "recall": [name for name, n in zip(names, actual, strict=True) if not n],
        }

    def top_confusions(self, n: int = 5) -> list[dict[str, Any]]:
        """The most frequent (true, predicted) mistakes; ties in class order."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        # most frequent first, zeros last; stable, so a tie keeps the (true, predicted) order
        order = np.argsort(-off, axis=None, kind="stable")[:n]
        names = self.class_names
        return [
            {"true": names[t], "predicted": names[p], "count": int(off[t, p])}
            for t, p in zip(*np.unravel_index(order, off.shape), strict=True)
            if off[t, p]
        ]

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
            "loss": self.loss if math.isfinite(self.loss) else None,  # JSON has no inf or NaN
            "per_class": self.per_class(),
            "undefined": self.undefined(),  # the classes whose 0/0 per_class gives as 0
            "confusion": self.confusion.tolist(),
            "top_confusions": self.top_confusions(),
            "seconds": round(self.seconds, 4),
        }


def evaluate(
    saved: SavedModel, images: NDArray[np.uint8], labels: NDArray[np.uint8], split: str
) -> Evaluation:
    """Run the model over MNIST-form ``images`` (n, 28, 28) and score it against ``labels``."""
    started = time.perf_counter()
    model = MLP.from_saved(saved)
    meta = saved.meta
    X = model_inputs(images, meta.preprocessing.model_dump())
    n, k = len(labels), model.sizes[-1]
    probabilities = np.empty((n, k), dtype=np.float32)
    loss = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # check_logits says it in a sentence
        for rows, a, z in model.forward_batches(X):
            check_logits(saved, z)
            probabilities[rows] = a
            loss += model.loss_value(meta.loss, labels[rows]) * a.shape[0]
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


def _file_safe(name: str, index: int) -> str:
    """A class name fit for a file name, else the class index (names come from the file)."""
    return name if _FILE_SAFE.fullmatch(name) and name not in (".", "..") else str(index)


# The names `write_mistakes` gives its pictures, e.g. 001-index8-true5-pred3.png; a rank
# past 999 (--count 1000 or more) has more than three digits.
_MISTAKE_NAME = re.compile(r"\d{3,}-index\d+-true.+-pred.+\.png", re.IGNORECASE)


def check_plot_apart(folder: Path, plot: Path) -> None:
    """Refuse, before any work, a --plot that --misclassified would write too (its gallery,
    a name of the kind its pictures get, or a folder it makes), or the other way round."""
    outputs.check_distinct(
        (folder / GALLERY_FILE, "gallery of --misclassified"), (plot, "--plot file")
    )
    for place in (folder, *folder.parents):  # the folder and those made to hold it
        if outputs.same_place(place, plot):
            raise UsageError(
                f"the --plot file '{shown(plot)}' is where --misclassified '{shown(folder)}' "
                "makes a folder, so the one would overwrite the other; choose another path"
            )
    if _MISTAKE_NAME.fullmatch(plot.name) and outputs.same_place(folder, plot.parent):
        raise UsageError(
            f"the --plot file '{shown(plot)}' has a name of the kind --misclassified gives its "
            f"pictures in '{shown(folder)}', so one could overwrite the other; choose another name"
        )


def write_mistakes(
    result: Evaluation,
    images: NDArray[np.uint8],
    folder: Path,
    count: int,
    rows: NDArray[np.int64] | None = None,
) -> list[Path]:
    """Write the `count` most confident mistakes as PNGs, and a gallery of them, into
    `folder`; returns the files written.  Every file is checked before the first is written
    (`outputs.check_picture`), so a refusal leaves the folder as it was.  A picture's name
    holds the image's index in its MNIST file, `rows[i]` for `images[i]` (`split_rows`;
    by default i itself).

    Pictures an earlier call wrote there (mlp's mark, and a name of the kind it gives them)
    that this call does not write again are removed first, so the folder shows this
    evaluation's mistakes only; any other file is left alone."""
    from mlp_cli.viz import save_gallery

    outputs.check_folder(folder, "folder for --misclassified")
    worst = result.worst_mistakes(count)
    names = result.class_names
    files = []
    for rank, i in enumerate(worst, start=1):
        true, pred = int(result.labels[i]), int(result.predictions[i])
        true_name, pred_name = _file_safe(names[true], true), _file_safe(names[pred], pred)
        index = i if rows is None else rows[i]
        files.append(folder / f"{rank:03d}-index{index}-true{true_name}-pred{pred_name}.png")
    gallery = [folder / GALLERY_FILE] if len(worst) else []
    for file in files + gallery:
        outputs.check_picture(file, "picture of a mistake", outputs.IMAGE_SUFFIXES)
    with outputs.writing(folder, "the folder for --misclassified"):
        folder.mkdir(parents=True, exist_ok=True)
    # Two evaluations writing here at once would each remove what was there before either
    # began, leaving both sets of mistakes, or fail removing a picture the other removed.
    with outputs.FolderLock(
        folder / MISTAKES_LOCK, "folder for --misclassified", "writing its pictures of mistakes"
    ):
        earlier = [
            old
            for old in folder.iterdir()
            if (_MISTAKE_NAME.fullmatch(old.name) or old.name == GALLERY_FILE)
            and old not in files + gallery
            and outputs.is_own_picture(old)
        ]
        for old in earlier:
            with outputs.writing(old, "over the earlier picture of a mistake"):
                old.unlink()
        for i, file in zip(worst, files, strict=True):
            outputs.save_image(Image.fromarray(images[i]), file, "picture of a mistake")
        if len(worst):
            save_gallery(
                images[worst],
                [int(result.labels[i]) for i in worst],
                [int(result.predictions[i]) for i in worst],
                [float(result.probabilities[i, result.predictions[i]]) for i in worst],
                gallery[0],
                class_names=names,
            )
    return files + gallery
