"""Predict digits in users' image files with a saved model.

Paths may be files, folders (their image files, not recursive) or glob patterns.  Every
picture is turned into an MNIST-style 28x28 digit (`mlp_cli.preprocess.mnist_style`, or
`raw_image` for pictures already in MNIST form), then BATCH of them at a time go through the
model's own input transform and a forward pass, so that only one batch of pictures is held
in memory however many files there are.  A file that cannot be used becomes a `Failure`
with its message; the others are still predicted.

Only NumPy, Pillow and the model modules are imported: no config, data or plotting code.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mlp_cli import outputs
from mlp_cli.checkpoint import SavedModel
from mlp_cli.errors import CheckpointError, ImageError, UsageError
from mlp_cli.model import MLP
from mlp_cli.plain import shown
from mlp_cli.preprocess import mnist_style, normalize_inputs, open_image, prepare_inputs, raw_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Pictures predicted together: MLP.predict_proba's own batch, so each picture meets the same
# matrix products as in one call over all of them (the same bits), in about 16 MB.
BATCH = 2048


@dataclass
class Prediction:
    file: str
    digit: int  # the most probable class's index (the digit itself for MNIST)
    probability: float
    probabilities: list[float]  # one per class, in class order
    image: NDArray[np.float32]  # (28, 28) in [0, 1]: what the network was shown

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most probable classes as (index, probability), most probable first."""
        # Ties rank the lower index first, as argmax picks it.
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        return {
            "file": self.file,
            "digit": self.digit,
            "class_name": class_names[self.digit],
            "probability": self.probability,
            "probabilities": dict(zip(class_names, self.probabilities, strict=True)),
            "top3": [
                {"digit": d, "class_name": class_names[d], "probability": p} for d, p in self.top(3)
            ],
        }


@dataclass
class Failure:
    file: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "error": self.message}


def image_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Files to predict, in the order given (folders and globs expanded, sorted), and the
    paths that name no file; refuses ``paths`` that name nothing at all."""
    files: list[Path] = []
    failures: list[Failure] = []
    for raw in paths:
        text = str(raw)
        path = Path(text)
        if not text:  # Path("") is the current folder: an unset shell variable, most likely
            failures.append(Failure(text, "an empty path names no image; give a file or folder"))
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                failures.append(
                    Failure(
                        text,
                        f"folder '{shown(text)}' holds no image files (looked for "
                        f"{', '.join(IMAGE_SUFFIXES)})",
                    )
                )
            files.extend(found)
        elif not path.exists() and glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
            if not matches:
                failures.append(Failure(text, f"no files match the pattern '{shown(text)}'"))
            files.extend(matches)
        else:
            files.append(path)  # a missing file is reported by open_image
    if not files and not failures:
        raise UsageError("no images given; pass image files, folders or glob patterns")
    return files, failures


def predict_batches(
    saved: SavedModel, files: Sequence[Path], *, raw: bool = False
) -> Iterator[tuple[list[Prediction], list[Failure]]]:
    """Predict ``files`` in order, BATCH pictures at a time: yields each batch's predictions
    and the files among them that could not be used."""
    to_digit = raw_image if raw else mnist_style
    digits: list[NDArray[np.float32]] = []
    kept: list[Path] = []
    failures: list[Failure] = []
    for index, file in enumerate(files):
        try:
            digits.append(to_digit(open_image(file), source=shown(file)))
            kept.append(file)
        except ImageError as exc:
            failures.append(Failure(str(file), str(exc)))
        if len(digits) == BATCH or index == len(files) - 1:
            predictions: list[Prediction] = []
            if digits:
                X = network_inputs(saved, digits)
                predictions = predictions_from(kept, digits, checked_proba(saved, X))
            yield predictions, failures
            digits, kept, failures = [], [], []


def checked_proba(saved: SavedModel, X: NDArray[np.float32]) -> NDArray[np.float32]:
    """``saved``'s `MLP.predict_proba` of X, refused (`check_logits`) when its logits are not
    finite."""
    model = MLP.from_saved(saved)
    with np.errstate(over="ignore", invalid="ignore"):  # check_logits says it in a sentence
        return model.predict_proba(X, check=lambda logits: check_logits(saved, logits))


def check_logits(saved: SavedModel, logits: NDArray[np.floating]) -> None:
    """Refuse a forward pass of ``saved`` whose logits Z_L are not all finite.

    The logits, not the outputs: softmax subtracts the row's maximum and a sigmoid
    saturates, so an overflow inside the network can come out as finite but meaningless
    probabilities, while finite logits always give finite outputs.  Every evaluation and
    prediction goes through here."""
    if not np.all(np.isfinite(logits)):
        raise CheckpointError(
            f"the model '{shown(saved.path)}' computes outputs that are not finite numbers: its "
            "weights are too large for float32 arithmetic. Retrain it (a smaller learning "
            "rate, weight decay or max_norm keep weights small)."
        )


def network_inputs(saved: SavedModel, digits: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The model's input rows (n, input_size**2) for 28x28 digits: its own size and
    standardisation.  `mlp predict` and `mlp serve` both go through here."""
    preprocessing = saved.meta.preprocessing
    X = prepare_inputs(digits, preprocessing.input_size)
    normalize_inputs(X, preprocessing.model_dump())
    return X


def predictions_from(
    files: Sequence[str | Path],
    digits: Sequence[NDArray[np.float32]],
    probabilities: NDArray[np.floating],
) -> list[Prediction]:
    """One `Prediction` per row of ``probabilities`` (n, classes)."""
    return [
        Prediction(str(file), int(p.argmax()), float(p.max()), p.tolist(), digit)
        for file, digit, p in zip(files, digits, probabilities, strict=True)
    ]


def _input_stem(file: str | Path) -> str:
    """The image's name without its suffix, shortened to leave room for the suffixes within
    a 255-byte name."""
    stem = Path(file).stem
    while len(os.fsencode(stem)) > 200:
        stem = stem[:-1]
    return stem


class InputWriter:
    """Writes predictions' 28x28 network inputs into a folder as they come, each as
    ``<image name>-input.png``, ``-2``, ``-3``... added where two images share a name.

    Made with every file that is to be predicted, it checks the name each would get
    (`outputs.check_picture`) before the first is written, so a refusal leaves the folder as
    it was; a name the checks did not foresee (a file before it failed) is checked when
    it comes."""

    WHAT = "saved network input"

    def __init__(self, folder: Path, files: Sequence[str | Path]) -> None:
        outputs.check_folder(folder, "folder for --save-input")
        self.folder = folder
        stems = [_input_stem(file) for file in files]
        self.checked = {self._check(folder / name) for name in outputs.unique_names(stems)}
        self.name = outputs.UniqueNames()  # the names of the inputs written so far

    def _check(self, path: Path) -> Path:
        return outputs.check_picture(path, self.WHAT, outputs.IMAGE_SUFFIXES)

    def write(self, predictions: Sequence[Prediction]) -> list[Path]:
        """Write the inputs of `predictions`; returns their files, in the same order."""
        files = []
        for p in predictions:
            file = self.folder / self.name(_input_stem(p.file))
            if file not in self.checked:
                self._check(file)
            pixels = np.clip(np.rint(p.image * 255), 0, 255).astype(np.uint8)
            files.append(outputs.save_image(Image.fromarray(pixels), file, self.WHAT))
        return files
