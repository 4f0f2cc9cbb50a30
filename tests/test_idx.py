"""The strict IDX parser: valid files round-trip, every malformed one raises DataError.

Valid files are encoded here from the format description (magic 0x00 0x00, type code,
number of dimensions, big-endian uint32 sizes, then the payload), independently of the
parser under test.
"""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlp_cli import data
from mlp_cli.errors import DataError

IMAGES = "some/folder/train-images-idx3-ubyte"
LABELS = "some/folder/train-labels-idx1-ubyte"


def header(type_code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def images_file(n: int = 3, seed: int = 0) -> tuple[bytes, np.ndarray]:
    array = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return header(0x08, array.shape) + array.tobytes(), array


def labels_file(values: list[int]) -> bytes:
    return header(0x08, (len(values),)) + bytes(values)


# --------------------------------------------------------------------------- valid


def test_images_round_trip_from_bytes_and_from_a_file(tmp_path: Path) -> None:
    raw, array = images_file(n=5)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(raw)
    for source in (raw, path, str(path)):
        parsed = data.read_idx(source, "t10k-images-idx3-ubyte")
        assert parsed.dtype == np.uint8
        assert parsed.shape == (5, 28, 28)
        np.testing.assert_array_equal(parsed, array)


def test_labels_round_trip_and_share_the_input_buffer() -> None:
    raw = labels_file([0, 9, 3, 3, 7])
    parsed = data.read_idx(raw, LABELS)
    np.testing.assert_array_equal(parsed, [0, 9, 3, 3, 7])
    assert parsed.dtype == np.uint8
    assert np.shares_memory(parsed, np.frombuffer(raw, np.uint8))  # no copy of the payload


def test_an_empty_file_with_a_valid_header_parses_to_zero_items() -> None:
    assert data.read_idx(header(0x08, (0,)), LABELS).shape == (0,)
    assert data.read_idx(header(0x08, (0, 28, 28)), IMAGES).shape == (0, 28, 28)


def test_kind_comes_from_the_header_when_the_name_does_not_say() -> None:
    raw, _ = images_file(n=2)
    assert data.read_idx(raw, "digits.idx").shape == (2, 28, 28)
    assert data.read_idx(labels_file([1, 2]), "digits.idx").shape == (2,)


# --------------------------------------------------------------------------- malformed

GOOD_IMAGES, _ = images_file(n=3)
GOOD_LABELS = labels_file([1, 2, 3])

MALFORMED: dict[str, tuple[str, bytes, str]] = {
    # case: (name, bytes, fragment of the message)
    "empty": (LABELS, b"", "too few for the 4-byte IDX magic"),
    "short magic": (LABELS, b"\x00\x00\x08", "too few for the 4-byte IDX magic"),
    "bad magic": (IMAGES, b"\x01\x00" + GOOD_IMAGES[2:], "expected two zero bytes"),
    "bad second magic byte": (IMAGES, b"\x00\x01" + GOOD_IMAGES[2:], "0x00 0x01, expected two"),
    "gzip instead of IDX": (IMAGES, gzip.compress(GOOD_IMAGES), "gzip-compressed"),
    "type float32": (LABELS, header(0x0D, (3,)) + bytes(12), "0x0d (float32)"),
    "type int8": (LABELS, header(0x09, (3,)) + bytes(3), "0x09 (int8)"),
    "unknown type": (LABELS, header(0x42, (3,)) + bytes(3), "0x42 (not an IDX type)"),
    "images with 2 dims": (IMAGES, header(0x08, (3, 784)) + bytes(3 * 784), "expected 3"),
    "labels with 3 dims": (LABELS, GOOD_IMAGES, "expected 1 for labels"),
    "images as labels": (IMAGES, GOOD_LABELS, "expected 3 for images"),
    "unnamed 2 dims": ("digits.idx", header(0x08, (2, 2)) + bytes(4), "3 (images) or 1"),
    "images 32x32": (IMAGES, header(0x08, (1, 32, 32)) + bytes(1024), "32x32, expected 28x28"),
    "images 28x27": (IMAGES, header(0x08, (1, 28, 27)) + bytes(756), "28x27, expected 28x28"),
    "truncated header": (IMAGES, GOOD_IMAGES[:10], "too few for a header with 3"),
    "truncated payload": (IMAGES, GOOD_IMAGES[:-1], "it is truncated"),
    "extra bytes": (IMAGES, GOOD_IMAGES + b"\x00", "followed by extra bytes"),
    "labels truncated": (LABELS, GOOD_LABELS[:-2], "it is truncated"),
    "absurd count": (IMAGES, header(0x08, (2**31, 28, 28)) + bytes(784), "2147483648x28x28"),
    "max dims": (IMAGES, header(0x08, (2**32 - 1, 28, 28)), "truncated"),
    "label 10": (LABELS, labels_file([1, 10, 2]), "label 10 at index 1"),
    "label 255": (LABELS, labels_file([255]), "label 255 at index 0"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_bytes_raise_data_error_naming_the_file(case: str) -> None:
    name, raw, fragment = MALFORMED[case]
    with pytest.raises(DataError) as info:
        data.read_idx(raw, name)
    message = str(info.value)
    assert message.startswith(name)
    assert fragment in message


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_raise_data_error_naming_the_file(case: str, tmp_path: Path) -> None:
    name, raw, fragment = MALFORMED[case]
    path = tmp_path / Path(name).name
    path.write_bytes(raw)
    with pytest.raises(DataError) as info:
        data.read_idx(path, str(path))
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_a_missing_file_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    with pytest.raises(DataError, match="Cannot read the IDX file"):
        data.read_idx(path, str(path))


def test_absurd_declared_size_is_refused_before_reading_the_payload(tmp_path: Path) -> None:
    payload = 4 * 2**20  # 4 MiB the parser must not read, let alone the 1.7 TB declared
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header(0x08, (2**31, 28, 28)) + bytes(payload))

    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated"):
            data.read_idx(path, str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < payload // 4


def test_image_and_label_counts_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    images, _ = images_file(n=3)
    labels = labels_file([1, 2])
    files = {"t10k-images-idx3-ubyte": images, "t10k-labels-idx1-ubyte": labels}
    hashes = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in files.items()}
    monkeypatch.setattr(data, "MNIST_FILES", {**data.MNIST_FILES, **hashes})
    data.data_dir().mkdir(parents=True)
    for stem, raw in files.items():
        (data.data_dir() / stem).write_bytes(raw)

    with pytest.raises(DataError) as info:
        data.load_mnist("test", download=False)

    message = str(info.value)
    assert "3 images" in message
    assert "2 labels" in message
    for stem in files:
        assert str(data.data_dir() / stem) in message


# --------------------------------------------------------------------------- fuzzing


def check_parses_or_refuses(raw: bytes, name: str) -> None:
    """read_idx either returns a well-formed MNIST array or raises DataError naming `name`."""
    try:
        array = data.read_idx(raw, name)
    except DataError as exc:
        refusal = str(exc)
    else:
        assert array.dtype == np.uint8
        assert array.shape[1:] in ((), (28, 28))
        assert len(raw) == 4 + 4 * array.ndim + array.size
        if array.ndim == 1:
            assert np.all(array <= 9)
        return
    assert name in refusal


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_ever_raise_data_error(raw: bytes) -> None:
    check_parses_or_refuses(raw, "fuzz.idx")


@given(st.binary(max_size=16).map(lambda tail: b"\x00\x00" + tail))
def test_bytes_after_a_valid_magic_only_ever_raise_data_error(raw: bytes) -> None:
    check_parses_or_refuses(raw, "fuzz.idx")


Mutation = Callable[[bytes], bytes]


def mutations() -> st.SearchStrategy[Mutation]:
    """Overwrite a header byte, or cut or extend a valid file."""

    def overwrite(position: int, value: int) -> Mutation:
        return lambda raw: raw[:position] + bytes([value]) + raw[position + 1 :]

    return st.one_of(
        st.builds(overwrite, st.integers(0, 15), st.integers(0, 255)),
        st.integers(0, 2400).map(lambda keep: lambda raw: raw[:keep]),
        st.binary(min_size=1, max_size=8).map(lambda extra: lambda raw: raw + extra),
    )


@settings(max_examples=200)
@given(
    base=st.sampled_from([(GOOD_IMAGES, IMAGES), (GOOD_LABELS, LABELS), (GOOD_IMAGES, "x.idx")]),
    steps=st.lists(mutations(), min_size=1, max_size=3),
)
def test_mutated_valid_files_only_ever_raise_data_error(
    base: tuple[bytes, str], steps: list[Mutation]
) -> None:
    raw, name = base
    for step in steps:
        raw = step(raw)
    check_parses_or_refuses(raw, name)
