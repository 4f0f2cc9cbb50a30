"""Tests for `mlp_cli.checkpoint`: the .npz round trip, refusal of every kind of damaged or
foreign file with a CheckpointError naming it, atomic saving, and `find_model`."""

from __future__ import annotations

import errno
import io
import itertools
import json
import os
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from tiny_models import save_random_model

from mlp_cli import checkpoint
from mlp_cli.errors import CheckpointError, UsageError

Arrays = dict[str, NDArray[Any]]
LAYERS = [4, 5, 3]
# The metadata `mlp train` writes for a 2x2-pixel, three-class network of LAYERS.
META: dict[str, Any] = {
    "hidden_activation": "tanh",
    "output_activation": "softmax",
    "loss": "cross_entropy",
    "preprocessing": {"input_size": 2, "normalize": {"mean": 0.25, "std": 0.5}},
    "class_names": ["a", "b", "c"],
}


@pytest.fixture
def weights() -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]]:
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((o, i)).astype(np.float32) for i, o in itertools.pairwise(LAYERS)]
    b = [rng.standard_normal(o).astype(np.float32) for o in LAYERS[1:]]
    return W, b


@pytest.fixture
def saved(tmp_path: Path, weights: tuple[list[Any], list[Any]]) -> Path:
    """A valid model file with layers 4-5-3."""
    W, b = weights
    return checkpoint.save(tmp_path / "model.npz", W, b, META)


def members(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def write_npz(path: Path, arrays: Arrays) -> Path:
    with path.open("wb") as f:  # a file object: np.savez appends nothing to the name
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return path


def metadata_array(**changes: Any) -> NDArray[Any]:
    meta = {"format": "mlp-cli", "format_version": 1, "layers": LAYERS, **META, **changes}
    return np.array(json.dumps({k: v for k, v in meta.items() if v is not None}))


def assert_refused(path: Path, *fragments: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, checkpoint=True)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return info.value


# -- round trip -------------------------------------------------------------------------------


def test_round_trip_is_bit_identical_and_keeps_metadata(
    tmp_path: Path, weights: tuple[list[Any], list[Any]]
) -> None:
    W, b = weights
    meta = {**META, "config": {"nested": [1, 2.5, None]}, "text": "é"}
    path = checkpoint.save(tmp_path / "m.npz", W, b, meta)
    loaded = checkpoint.load(path)
    assert loaded.path == path
    assert loaded.layers == LAYERS
    for got, want in zip(loaded.weights + loaded.biases, W + b, strict=True):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    with np.load(path, allow_pickle=False) as archive:  # the file itself, as written
        written = json.loads(str(archive[checkpoint.METADATA_KEY][()]))
    for key, value in meta.items():
        assert written[key] == value
        assert loaded.meta.model_dump(mode="json", exclude_unset=True)[key] == value
    assert written["format"] == checkpoint.FORMAT_NAME
    assert loaded.meta.format == checkpoint.FORMAT_NAME
    assert loaded.meta.format_version == checkpoint.FORMAT_VERSION
    assert loaded.extras == {}


def test_checkpoint_extras_round_trip_only_when_asked(
    tmp_path: Path, weights: tuple[list[Any], list[Any]]
) -> None:
    W, b = weights
    extras: Arrays = {
        "optimizer/t": np.array(7, dtype=np.int64),
        "optimizer/m": np.arange(43, dtype=np.float32),
        "resume/perm": np.array([2, 0, 1], dtype=np.int64),
    }
    path = checkpoint.save(tmp_path / "c.npz", W, b, META, extras)
    full = checkpoint.load(path, checkpoint=True)
    assert set(full.extras) == set(extras)
    for name, value in extras.items():
        assert full.extras[name].dtype == value.dtype
        np.testing.assert_array_equal(full.extras[name], value)
    assert checkpoint.load(path).extras == {}


def test_extras_must_use_a_checkpoint_prefix(
    tmp_path: Path, weights: tuple[list[Any], list[Any]]
) -> None:
    W, b = weights
    with pytest.raises(ValueError, match="W3"):
        checkpoint.save(tmp_path / "x.npz", W, b, {}, {"W3": np.zeros(2)})
    assert not (tmp_path / "x.npz").exists()


def test_file_is_a_plain_npz_without_pickles(saved: Path) -> None:
    arrays = members(saved)  # allow_pickle=False: would raise on any object array
    assert set(arrays) == {"W1", "b1", "W2", "b2", "metadata"}
    assert arrays["W1"].shape == (5, 4)
    assert arrays["W2"].shape == (3, 5)
    assert arrays["b2"].dtype == np.float32
    meta = json.loads(str(arrays["metadata"]))
    assert meta["layers"] == LAYERS
    assert meta["hidden_activation"] == "tanh"


# -- damaged and foreign files ----------------------------------------------------------------


def test_flipped_data_byte_is_refused(saved: Path) -> None:
    raw = bytearray(saved.read_bytes())
    at = raw.index(members(saved)["W2"].tobytes())  # W2's data, inside the archive
    raw[at + 3] ^= 0x10
    saved.write_bytes(bytes(raw))
    assert_refused(saved)


@pytest.mark.parametrize("keep", [0, 3, 30, 0.5, 0.9])
def test_truncated_file_is_refused(saved: Path, keep: float) -> None:
    raw = saved.read_bytes()
    saved.write_bytes(raw[: int(keep * len(raw)) if isinstance(keep, float) else keep])
    assert_refused(saved)


@pytest.mark.parametrize(
    "content",
    [b"W1,b1\n1,2\n", b"\x89PNG\r\n\x1a\n" + bytes(100), b"\x93NUMPY" + bytes(64)],
    ids=["text", "png", "npy"],
)
def test_file_that_is_not_a_zip_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "renamed.npz"
    path.write_bytes(content)
    assert_refused(path, "not a zip")


def test_zip_with_a_foreign_member_is_refused(saved: Path) -> None:
    with zipfile.ZipFile(saved, "a") as archive:
        archive.writestr("notes.txt", "hello")
    assert_refused(saved, "notes.txt")


def test_pickled_object_array_is_refused_without_unpickling(saved: Path) -> None:
    arrays = members(saved)
    arrays["W1"] = np.array([object()] * 20, dtype=object).reshape(5, 4)
    write_npz(saved, arrays)
    assert_refused(saved, "W1", "Python objects")


def test_member_whose_data_is_shorter_than_its_header_says_is_refused(saved: Path) -> None:
    arrays = members(saved)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (5, 4)}
    )
    with zipfile.ZipFile(saved, "w") as archive:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.save(buf, value)
            payload = buf.getvalue()
            if name == "W1":  # header promises 20 floats, only 10 follow
                payload = header.getvalue() + value.ravel()[:10].tobytes()
            archive.writestr(f"{name}.npy", payload)
    assert_refused(saved, "W1")


Change = Callable[[Arrays], None]


def _drop(name: str) -> Change:
    def change(arrays: Arrays) -> None:
        del arrays[name]

    return change


def _set(name: str, value: Callable[[Arrays], NDArray[Any]]) -> Change:
    def change(arrays: Arrays) -> None:
        arrays[name] = value(arrays)

    return change


def _with_nan(name: str, at: int, value: float) -> Change:
    def change(arrays: Arrays) -> None:
        array = arrays[name].copy()
        array.flat[at] = value
        arrays[name] = array

    return change


DAMAGE: dict[str, tuple[Change, tuple[str, ...]]] = {
    "missing W2": (_drop("W2"), ("W2", "missing")),
    "missing b1": (_drop("b1"), ("b1", "missing")),
    "extra array": (_set("W3", lambda a: np.zeros((2, 3), np.float32)), ("W3",)),
    "W1 transposed": (_set("W1", lambda a: a["W1"].T.copy()), ("W1", "(4, 5)")),
    "b2 too long": (_set("b2", lambda a: np.zeros(4, np.float32)), ("b2", "(4,)")),
    "optimizer state in two dimensions": (
        _set("optimizer/m", lambda a: np.zeros((2, 3), np.float32)),
        ("optimizer/m", "(2, 3)", "at most one dimension"),
    ),
    "W1 integers": (_set("W1", lambda a: a["W1"].astype(np.int32)), ("W1", "int32")),
    "b1 float16": (_set("b1", lambda a: a["b1"].astype(np.float16)), ("b1", "float16")),
    "NaN in W2": (_with_nan("W2", 4, float("nan")), ("W2", "NaN")),
    "inf in b1": (_with_nan("b1", 0, float("inf")), ("b1", "infinite")),
    "missing metadata": (_drop("metadata"), ("metadata", "missing")),
    "metadata not JSON": (_set("metadata", lambda a: np.array("{layers: [4,")), ("JSON",)),
    "metadata a list": (_set("metadata", lambda a: np.array("[4, 5, 3]")), ("JSON object",)),
    "metadata bytes": (_set("metadata", lambda a: np.array(b"{}")), ("metadata",)),
    "foreign format": (_set("metadata", lambda a: metadata_array(format="keras")), ("keras",)),
    "no format": (_set("metadata", lambda a: metadata_array(format=None)), ("format",)),
    "format_version 2": (
        _set("metadata", lambda a: metadata_array(format_version=2)),
        ("version 2", "Retrain"),
    ),
    "no format_version": (
        _set("metadata", lambda a: metadata_array(format_version=None)),
        ("its metadata lacks the field 'format_version'",),
    ),
    "format_version as text": (
        _set("metadata", lambda a: metadata_array(format_version="1")),
        ("its metadata field 'format_version' is '1': expected a whole number",),
    ),
    "no layers": (_set("metadata", lambda a: metadata_array(layers=None)), ("layers",)),
    "bad layers": (_set("metadata", lambda a: metadata_array(layers=[4, 0, 3])), ("layers",)),
    "layers disagree": (
        _set("metadata", lambda a: metadata_array(layers=[4, 4, 3])),
        ("W1", "(4, 4)"),
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_content_is_refused_with_the_path_and_the_problem(saved: Path, damage: str) -> None:
    change, fragments = DAMAGE[damage]
    arrays = members(saved)
    change(arrays)
    write_npz(saved, arrays)
    assert_refused(saved, *fragments)


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"k\udcff": 1}, "'k\\udcff': expected text, which holds no bytes that are not UTF-8"),
        ({"epochs_run": -1}, "epochs_run' is -1: expected a value greater than or equal to 0"),
        ({"best_val_accuracy": 2}, "is 2: expected a value less than or equal to 1"),
    ],
)
def test_metadata_pydantic_refuses_is_said_in_words(
    tmp_path: Path, training: dict[str, Any], expected: str
) -> None:
    path = save_random_model(tmp_path / "model.npz", training=training)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert expected in str(info.value)
    assert "expected a value a" not in str(info.value)


def test_metadata_pydantic_words_without_an_expectation_are_not_called_one(saved: Path) -> None:
    # "List should have at least 2 items ..." is no "Input should be ..." to turn around
    arrays = members(saved)
    arrays["metadata"] = metadata_array(layers=[4])
    error = assert_refused(write_npz(saved, arrays), "'layers' is [4]: ")
    assert "list should have at least 2 items" in str(error)
    assert "expected a value List" not in str(error)


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nothing.npz", "not found")
    assert_refused(tmp_path, "folder")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert_refused(empty)


CENTRAL_DIRECTORY = b"PK\x01\x02"


def _patch_central_entry(raw: bytes, offset: int, value: int) -> bytes:
    """Set a 16-bit field of the first central-directory entry (W1's)."""
    at = raw.index(CENTRAL_DIRECTORY) + offset
    return raw[:at] + struct.pack("<H", value) + raw[at + 2 :]


@pytest.mark.parametrize(
    ("offset", "value"),
    [(10, 99), (6, 0xFF), (8, 0x0001), (8, 0x0020)],
    ids=["compression-method", "version-needed", "encrypted-flag", "patched-data-flag"],
)
def test_damaged_zip_directory_fields_are_refused(saved: Path, offset: int, value: int) -> None:
    saved.write_bytes(_patch_central_entry(saved.read_bytes(), offset, value))
    assert_refused(saved)


# -- atomic saving ----------------------------------------------------------------------------


class InjectedError(Exception):
    """Raised by the tests in the middle of writing a file."""


def _half_then_fail(exc: BaseException) -> Callable[..., None]:
    real_savez = np.savez

    def savez(file: Any, *args: Any, **arrays: Any) -> None:
        buf = io.BytesIO()
        real_savez(buf, *args, **arrays)
        file.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise exc

    return savez


@pytest.mark.parametrize(
    "exc", [InjectedError("disk trouble"), KeyboardInterrupt()], ids=["error", "ctrl-c"]
)
def test_failure_while_saving_leaves_the_previous_file_and_no_temporary(
    saved: Path,
    weights: tuple[list[Any], list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
) -> None:
    before = saved.read_bytes()
    monkeypatch.setattr(np, "savez", _half_then_fail(exc))
    W, b = weights
    with pytest.raises(type(exc)):
        checkpoint.save(saved, [w * 2 for w in W], b, {**META, "hidden_activation": "relu"})
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]
    assert checkpoint.load(saved).meta.hidden_activation == "tanh"


def test_atomic_write_callback_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.jsonl"

    def write(f: Any) -> None:
        f.write(b'{"epoch": 1}\n')
        raise InjectedError("midway")

    with pytest.raises(InjectedError):
        checkpoint.atomic_write(target, write)
    assert os.listdir(target.parent) == []
    target.write_bytes(b"old")
    with pytest.raises(InjectedError):
        checkpoint.atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == [target.name]


def test_saving_again_replaces_the_file_and_leaves_no_temporary(
    saved: Path, weights: tuple[list[Any], list[Any]]
) -> None:
    W, b = weights
    checkpoint.save(saved, [w + 1 for w in W], b, {**META, "hidden_activation": "relu"})
    loaded = checkpoint.load(saved)
    np.testing.assert_array_equal(loaded.weights[0], W[0] + 1)
    assert loaded.meta.hidden_activation == "relu"
    assert os.listdir(saved.parent) == [saved.name]


def test_disk_full_while_saving_is_a_checkpoint_error(
    saved: Path, weights: tuple[list[Any], list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(np, "savez", _half_then_fail(OSError(28, "No space left on device")))
    W, b = weights
    with pytest.raises(CheckpointError, match=re.escape(str(saved))):
        checkpoint.save(saved, W, b, {})


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.ENOSPC, "Free some space"), (errno.EFBIG, "Raise the limit on the size of files")],
)
def test_the_advice_after_a_failed_save_fits_the_error(
    saved: Path,
    weights: tuple[list[Any], list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    advice: str,
) -> None:
    # EFBIG: the file outgrew `ulimit -f`, which no free space or other folder helps
    monkeypatch.setattr(np, "savez", _half_then_fail(OSError(code, os.strerror(code))))
    W, b = weights
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(saved, W, b, {})
    message = str(caught.value)
    assert advice in message
    if code == errno.EFBIG:
        assert "`ulimit -f`" in message
        assert "space" not in message


# -- find_model -------------------------------------------------------------------------------


@pytest.fixture
def runs(tmp_path: Path, saved: Path) -> Path:
    """runs/first/model.npz and runs/second/model.npz; no latest yet."""
    folder = tmp_path / "runs"
    for name in ("first", "second"):
        (folder / name).mkdir(parents=True)
        (folder / name / checkpoint.MODEL_FILE).write_bytes(saved.read_bytes())
    return folder


def test_find_model_accepts_a_run_directory_or_a_file(runs: Path, saved: Path) -> None:
    assert checkpoint.find_model(runs / "first") == runs / "first" / checkpoint.MODEL_FILE
    assert checkpoint.find_model(str(saved)) == saved


def test_find_model_defaults_to_the_latest_symlink(runs: Path) -> None:
    (runs / checkpoint.LATEST).symlink_to("second", target_is_directory=True)
    found = checkpoint.find_model(runs=runs)
    assert found.resolve() == (runs / "second" / checkpoint.MODEL_FILE).resolve()


def test_find_model_follows_a_latest_file_where_symlinks_are_unavailable(runs: Path) -> None:
    (runs / checkpoint.LATEST).write_text("first\n")
    assert checkpoint.find_model(runs=runs) == runs / "first" / checkpoint.MODEL_FILE


def test_find_model_without_any_run_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="`mlp train") as info:
        checkpoint.find_model(runs=tmp_path / "runs")
    assert str(tmp_path / "runs" / checkpoint.LATEST) in str(info.value)


def test_find_model_with_a_dangling_latest_says_how_to_train(runs: Path) -> None:
    (runs / checkpoint.LATEST).symlink_to("deleted", target_is_directory=True)
    with pytest.raises(UsageError, match="`mlp train"):
        checkpoint.find_model(runs=runs)


@pytest.mark.parametrize("target", ["deleted.npz", checkpoint.MODEL_FILE])
def test_find_model_names_a_model_that_is_a_link_to_nowhere(tmp_path: Path, target: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / checkpoint.MODEL_FILE).symlink_to(target)  # gone, or a link to itself
    for given in (run_dir, run_dir / checkpoint.MODEL_FILE):
        with pytest.raises(UsageError) as refused:
            checkpoint.find_model(given)
        assert str(refused.value).startswith(
            f"model '{run_dir / checkpoint.MODEL_FILE}' is a link to nowhere"
        )


def test_find_model_refuses_missing_paths_and_folders_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"gone\.npz"):
        checkpoint.find_model(tmp_path / "gone.npz")
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(UsageError, match="`mlp train`"):
        checkpoint.find_model(tmp_path / "empty-run")
