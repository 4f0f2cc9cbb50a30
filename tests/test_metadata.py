"""Tests for the model metadata schema (`checkpoint.ModelMetadata`): every field a model file
states about itself is validated once at load, and a bad value is one CheckpointError naming
the file and the field, never a traceback or a NaN later on."""

from __future__ import annotations

import copy
import io
import itertools
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlp_cli import checkpoint
from mlp_cli.errors import CheckpointError
from mlp_cli.evaluate import evaluate
from mlp_cli.predict import predict_batches

LAYERS = [784, 16, 10]


def good_metadata() -> dict[str, Any]:
    """Metadata as `mlp train` writes it for a standardized 784-16-10 network."""
    return {
        "format": "mlp-cli",
        "format_version": 1,
        "layers": LAYERS,
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {
            "input_size": 28,
            "source": "28x28 MNIST-form digit, pixel/255, area-averaged to input_size",
            "normalize": {"mean": 0.13, "std": 0.31},
        },
        "class_names": [str(d) for d in range(10)],
        "config": {"data": {"validation_size": 1000}, "training": {"seed": 3}},
        "package_version": "0.1.0",
        "data_hashes": {"t10k-images-idx3-ubyte": "0" * 64},
        "created": "2026-01-01T00:00:00+00:00",
        "training": {
            "status": "completed",
            "epochs_run": 2,
            "best_epoch": 2,
            "best_val_accuracy": 0.9,
            "best_val_loss": 0.3,
            "seconds": 1.5,
            "monitor": "val_loss",  # a key a later version adds: kept, unchecked
        },
    }


def weights(layers: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(layers), start=1):
        arrays[f"W{i}"] = rng.normal(0, 0.1, (n_out, n_in)).astype(np.float32)
        arrays[f"b{i}"] = np.zeros(n_out, np.float32)
    return arrays


def write_model(
    path: Path, meta: Any, arrays: dict[str, np.ndarray] | None = None, raw_json: str | None = None
) -> Path:
    """A model file holding `arrays` (default: LAYERS' weights) and `meta` as its JSON."""
    members = dict(weights(LAYERS) if arrays is None else arrays)
    members["metadata"] = np.array(json.dumps(meta) if raw_json is None else raw_json)
    with path.open("wb") as f:
        np.savez(f, **members)  # type: ignore[arg-type]
    return path


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """good_metadata() with the field at `path` set to `value` (removed when value is ...)."""
    meta = copy.deepcopy(good_metadata())
    parent: Any = meta
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return meta


BAD_FIELDS: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "std zero": (("preprocessing", "normalize", "std"), 0.0, "preprocessing.normalize.std"),
    "std negative": (("preprocessing", "normalize", "std"), -0.3, "preprocessing.normalize.std"),
    "std NaN": (("preprocessing", "normalize", "std"), float("nan"), "preprocessing.normalize.std"),
    "std text": (("preprocessing", "normalize", "std"), "0.3", "preprocessing.normalize.std"),
    "mean huge": (("preprocessing", "normalize", "mean"), 1e308, "preprocessing.normalize.mean"),
    "mean infinite": (
        ("preprocessing", "normalize", "mean"),
        float("inf"),
        "preprocessing.normalize.mean",
    ),
    "normalize a list": (("preprocessing", "normalize"), [0.1, 0.3], "preprocessing.normalize"),
    "preprocessing a string": (("preprocessing",), "standardize", "preprocessing"),
    "preprocessing a list": (("preprocessing",), [28], "preprocessing"),
    "preprocessing unknown key": (("preprocessing", "invert"), True, "preprocessing.invert"),
    "input size a million": (("preprocessing", "input_size"), 10**6, "preprocessing.input_size"),
    "input size a bool": (("preprocessing", "input_size"), True, "preprocessing.input_size"),
    "input size disagrees with layers": (("preprocessing", "input_size"), 20, "layers"),
    "no output activation": (("output_activation",), ..., "output_activation"),
    "unknown output activation": (("output_activation",), "relu", "output_activation"),
    "unknown hidden activation": (("hidden_activation",), "swish", "hidden_activation"),
    "unknown loss": (("loss",), "hinge", "loss"),
    "no loss": (("loss",), ..., "loss"),
    "three class names": (("class_names",), ["0", "1", "2"], "class_names"),
    "class names not text": (("class_names",), list(range(10)), "class_names"),
    "no class names": (("class_names",), ..., "class_names"),
    "a class name twice": (("class_names",), ["0", *"123456780"], "class_names"),
    "an empty class name": (("class_names",), ["", *"123456789"], "class_names"),
    "two class names that JSON output writes alike": (  # an undecodable byte is written \xff
        ("class_names",),
        ["\udcff", "\\xff", *"23456789"],
        "class_names",
    ),
    "no preprocessing": (("preprocessing",), ..., "preprocessing"),
    "training a list": (("training",), [1, 2], "training"),
    "accuracy above one": (("training", "best_val_accuracy"), 3.0, "training.best_val_accuracy"),
    "validation size text": (
        ("config", "data", "validation_size"),
        "many",
        "config.data.validation_size",
    ),
    "validation size of all of MNIST": (  # `mlp evaluate --split val` could not rebuild it
        ("config", "data", "validation_size"),
        60000,
        "config.data.validation_size",
    ),
    "seed negative": (("config", "training", "seed"), -1, "config.training.seed"),
    "min_delta negative": (
        ("config", "training", "early_stopping"),
        {"min_delta": -0.1},
        "config.training.early_stopping.min_delta",
    ),
    "min_delta text": (
        ("config", "training", "early_stopping"),
        {"monitor": "val_acc", "min_delta": "half a point"},
        "config.training.early_stopping.min_delta",
    ),
    "resume a list": (("resume",), [1, 2], "resume"),
    "history not records": (("history",), [1, 2], "history"),
    "data hashes a list": (("data_hashes",), ["x"], "data_hashes"),
    "data hashes by the thousand": (
        ("data_hashes",),
        {f"f{i}": "0" * 64 for i in range(50_000)},
        "data_hashes",
    ),
    "one data hash more than MAX_DATA_HASHES": (
        ("data_hashes",),
        {f"f{i}": "0" * 64 for i in range(checkpoint.MAX_DATA_HASHES + 1)},
        "data_hashes",
    ),
    "data hash of a megabyte": (("data_hashes",), {"f": "0" * 2**20}, "data_hashes"),
    "data hash name of a megabyte": (("data_hashes",), {"f" * 2**20: "0"}, "data_hashes"),
    "package version of a megabyte": (("package_version",), "1" * 2**20, "package_version"),
    "creation time of a megabyte": (("created",), "2" * 2**20, "created"),
    "training status of a megabyte": (("training", "status"), "s" * 2**20, "training.status"),
    "monitor of a megabyte": (("training", "monitor"), "m" * 2**20, "training.monitor"),
}


@pytest.mark.parametrize("case", BAD_FIELDS)
def test_each_bad_field_is_one_error_naming_the_file_and_the_field(
    tmp_path: Path, case: str
) -> None:
    field, value, named = BAD_FIELDS[case]
    path = write_model(tmp_path / "model.npz", changed(field, value))
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert str(path) in message
    assert f"'{named}" in message


@pytest.mark.parametrize("field", ["hidden_activation", "output_activation", "loss"])
def test_an_unknown_name_of_any_length_is_cut_short_in_the_error(
    tmp_path: Path, field: str
) -> None:
    path = write_model(tmp_path / "model.npz", changed((field,), "x" * 5000))
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert f"'{field}' is '{'x' * 37}...'" in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    ("layers", "named"),
    [([784, 0, 10], "layers"), ([784, 2**21, 10], "layers"), ([784, 100_000, 10], "parameters")],
)
def test_absurd_layer_sizes_are_refused_from_the_metadata_alone(
    tmp_path: Path, layers: list[int], named: str
) -> None:
    # The arrays stay small: the metadata's claim is refused before any shape is compared.
    path = write_model(tmp_path / "model.npz", changed(("layers",), layers))
    with pytest.raises(CheckpointError, match=named) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)


def test_layers_inconsistent_with_the_weight_shapes_are_refused(tmp_path: Path) -> None:
    arrays = weights([784, 12, 10])
    path = write_model(tmp_path / "model.npz", good_metadata(), arrays)
    with pytest.raises(
        CheckpointError, match=r"W1 has shape \(12, 784\), the layers say \(16, 784\)"
    ):
        checkpoint.load(path)


def test_weights_that_overflow_float32_are_refused(tmp_path: Path) -> None:
    arrays = weights(LAYERS)
    arrays["W2"] = arrays["W2"].astype(np.float64)
    arrays["W2"][3, 4] = 1e300
    path = write_model(tmp_path / "model.npz", good_metadata(), arrays)
    with pytest.raises(CheckpointError, match="W2 holds values too large for float32"):
        checkpoint.load(path)


def test_metadata_nested_too_deeply_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "model.npz", None, raw_json="[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="metadata"):
        checkpoint.load(path)


def test_json_nan_in_metadata_is_refused(tmp_path: Path) -> None:
    text = json.dumps(good_metadata()).replace('"std": 0.31', '"std": NaN')
    path = write_model(tmp_path / "model.npz", None, raw_json=text)
    with pytest.raises(CheckpointError, match=r"preprocessing\.normalize\.std"):
        checkpoint.load(path)


def test_a_good_file_gives_typed_metadata_and_keeps_unknown_keys(tmp_path: Path) -> None:
    meta = good_metadata()
    meta["future_key"] = {"anything": [1, 2]}
    meta["training"]["future_count"] = 4
    saved = checkpoint.load(write_model(tmp_path / "model.npz", meta))
    assert saved.meta.preprocessing.normalize is not None
    assert saved.meta.preprocessing.normalize.std == pytest.approx(0.31)
    assert saved.meta.class_names == [str(d) for d in range(10)]
    assert saved.meta.config is not None
    assert saved.meta.config.training.seed == 3
    assert saved.meta.training is not None
    assert saved.meta.training.monitor == "val_loss"
    assert saved.meta.training.model_extra == {"future_count": 4}
    assert saved.meta.model_extra == {"future_key": {"anything": [1, 2]}}
    assert saved.layers == LAYERS


def test_a_checkpoint_gives_its_resume_state_and_history(tmp_path: Path) -> None:
    meta = good_metadata()
    meta["resume"] = {"epoch": 1, "shuffle_rng": {"state": 1}}
    meta["history"] = [{"epoch": 1, "loss": 0.5}]
    saved = checkpoint.load(write_model(tmp_path / "checkpoint.npz", meta), checkpoint=True)
    assert saved.meta.resume == {"epoch": 1, "shuffle_rng": {"state": 1}}
    assert saved.meta.history == [{"epoch": 1, "loss": 0.5}]


def test_outputs_that_overflow_are_an_error_not_nan_predictions(tmp_path: Path) -> None:
    # Finite float32 weights whose products overflow: the file loads, the outputs are inf/NaN.
    arrays = weights(LAYERS)
    arrays["W1"][:] = 1e30
    arrays["W2"][:] = 1e30
    path = write_model(
        tmp_path / "model.npz", changed(("preprocessing", "normalize"), None), arrays
    )
    saved = checkpoint.load(path)
    images = np.full((2, 28, 28), 200, np.uint8)
    with pytest.raises(CheckpointError, match="not finite"):
        evaluate(saved, images, np.zeros(2, np.uint8), "test")
    picture = tmp_path / "digit.png"
    from PIL import Image

    pixels = np.full((28, 28), 255, np.uint8)
    pixels[5:23, 12:16] = 0
    Image.fromarray(pixels).save(picture)
    with pytest.raises(CheckpointError, match="not finite"):
        list(predict_batches(saved, [picture]))


def test_every_model_train_writes_matches_the_schema() -> None:
    """The keys `Trainer.metadata` writes are exactly those the schema knows (plus none)."""
    known = set(checkpoint.ModelMetadata.model_fields)
    assert set(good_metadata()) <= known
    summary = set(checkpoint.TrainingSummary.model_fields)
    assert {"status", "epochs_run", "best_epoch", "best_val_accuracy", "seconds"} <= summary


def test_npz_written_by_savez_compressed_loads(tmp_path: Path) -> None:
    members = weights(LAYERS)
    members["metadata"] = np.array(json.dumps(good_metadata()))
    path = tmp_path / "compressed.npz"
    with path.open("wb") as f:
        np.savez_compressed(f, **members)  # type: ignore[arg-type]
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    saved = checkpoint.load(path)
    for i, W in enumerate(saved.weights, start=1):
        np.testing.assert_array_equal(W, members[f"W{i}"])


def test_fortran_ordered_arrays_load_with_their_values(tmp_path: Path) -> None:
    members: dict[str, Any] = weights(LAYERS)
    members["W1"] = np.asfortranarray(members["W1"])
    buf = io.BytesIO()
    np.save(buf, members["W1"])
    assert b"'fortran_order': True" in buf.getvalue()[:128]
    path = write_model(tmp_path / "model.npz", good_metadata(), members)
    np.testing.assert_array_equal(checkpoint.load(path).weights[0], members["W1"])
