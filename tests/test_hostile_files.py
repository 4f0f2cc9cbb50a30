"""Hostile and damaged files handed to every loader: configs, model files, IDX files, images.

Each loader is fuzzed with hypothesis from the bytes of a file on disk: whatever the bytes,
it returns a valid object or raises our own `MLPError`, never another exception, and its
peak traced memory stays within a few tens of MB. Crafted ``.npz`` archives whose members
declare huge shapes (stored, deflate, bzip2, LZMA) are refused before anything is
decompressed. Named pipes and devices are refused without blocking. Through the command
line, each case exits with the right code and one message naming the file, no traceback,
in a process whose peak resident memory stays low.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import struct
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from mlp_cli import checkpoint, data, preprocess
from mlp_cli.config import Config, load_config
from mlp_cli.errors import CheckpointError, DataError, ImageError, MLPError
from mlp_cli.limits import MAX_CONFIG_BYTES
from mlp_cli.preprocess import mnist_style, open_image

T = TypeVar("T")
MB = 2**20
PEAK_LIMIT = 40 * MB  # traced allocations of one load of a small hostile file
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def within_memory(call: Callable[[], T], limit: int = PEAK_LIMIT) -> T | MLPError:
    """``call()``'s result or the MLPError it raised; any other exception propagates, and
    the peak of memory traced while it ran must stay under ``limit``."""
    tracemalloc.start()
    try:
        try:
            return call()
        except MLPError as exc:
            return exc
        finally:
            _, peak = tracemalloc.get_traced_memory()
            assert peak < limit, f"peak traced memory {peak / MB:.0f} MB"
    finally:
        tracemalloc.stop()


# -- model files ------------------------------------------------------------------------------

LAYERS = [4, 3, 2]
META = {
    "format": "mlp-cli",
    "format_version": 1,
    "layers": LAYERS,
    "hidden_activation": "relu",
    "output_activation": "softmax",
    "loss": "cross_entropy",
    "preprocessing": {"input_size": 2, "normalize": None},
    "class_names": ["no", "yes"],
}


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def good_model_bytes(method: int = zipfile.ZIP_STORED, meta: dict[str, Any] = META) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for i in (1, 2):
            shape = (LAYERS[i], LAYERS[i - 1])
            archive.writestr(f"W{i}.npy", npy_bytes(rng.normal(size=shape).astype(np.float32)))
            archive.writestr(f"b{i}.npy", npy_bytes(np.zeros(LAYERS[i], np.float32)))
        archive.writestr("metadata.npy", npy_bytes(np.array(json.dumps(meta))))
    return buf.getvalue()


GOOD_MODEL = good_model_bytes()


def _patch_sizes(raw: bytearray, name: str, size: int) -> None:
    """Make the local and central zip headers of member ``name`` declare ``size`` bytes
    uncompressed, as a bomb's would (the CRC is left alone: it is only checked at the end)."""
    encoded = name.encode()
    # (signature, offsets of the name's length, the name and the uncompressed size)
    headers = ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24))
    for signature, length_at, name_at, size_at in headers:
        at = 0
        while (at := raw.find(signature, at)) >= 0:
            length = struct.unpack_from("<H", raw, at + length_at)[0]
            if raw[at + name_at : at + name_at + length] == encoded:
                struct.pack_into("<I", raw, at + size_at, size)
            at += 4


def crafted_npz(
    shapes: dict[str, tuple[int, ...]],
    method: int,
    layers: list[int] | None = None,
    descr: str = "<f4",
) -> bytes:
    """An .npz of a few KB whose members' headers declare ``shapes`` and whose zip entries
    claim the matching uncompressed sizes; ``layers`` is what the metadata says."""
    buf = io.BytesIO()
    itemsize = np.dtype(descr).itemsize
    sizes = {}
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for name, shape in shapes.items():
            header = npy_header(shape, descr)
            archive.writestr(f"{name}.npy", header + bytes(4096))
            sizes[f"{name}.npy"] = len(header) + int(np.prod(shape, dtype=object)) * itemsize
        if layers is not None:
            side = round(layers[0] ** 0.5)
            meta = {
                **META,
                "layers": layers,
                "preprocessing": {"input_size": side, "normalize": None},
                "class_names": [str(i) for i in range(min(layers[-1], 16))],
            }
            archive.writestr("metadata.npy", npy_bytes(np.array(json.dumps(meta))))
    raw = bytearray(buf.getvalue())
    for name, size in sizes.items():
        _patch_sizes(raw, name, min(size, 0xFFFFFFFE))
    return bytes(raw)


def huge_model(method: int) -> bytes:
    """Layers 784-1,000,000-10 with members claiming their full size (about 3.1 GB for W1)."""
    layers = [784, 1_000_000, 10]
    shapes = {"W1": (layers[1], layers[0]), "b1": (layers[1],)}
    shapes |= {"W2": (layers[2], layers[1]), "b2": (layers[2],)}
    return crafted_npz(shapes, method, layers)


METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]


@pytest.fixture
def model_file(tmp_path: Path) -> Callable[[bytes], Path]:
    def write(raw: bytes) -> Path:
        path = tmp_path / "model.npz"
        path.write_bytes(raw)
        return path

    return write


def load_model(path: Path) -> Any:
    return within_memory(lambda: checkpoint.load(path, checkpoint=True))


def test_the_fuzzed_reference_model_is_valid(model_file: Callable[[bytes], Path]) -> None:
    saved = load_model(model_file(GOOD_MODEL))
    assert isinstance(saved, checkpoint.SavedModel)
    assert saved.layers == LAYERS
    for method in METHODS[:2]:
        assert isinstance(load_model(model_file(good_model_bytes(method))), checkpoint.SavedModel)


@pytest.mark.parametrize("method", METHODS, ids=["stored", "deflate", "bzip2", "lzma"])
def test_members_declaring_huge_shapes_are_refused_before_decompressing(
    model_file: Callable[[bytes], Path], method: int
) -> None:
    path = model_file(huge_model(method))
    assert path.stat().st_size < 64 * 1024
    error = load_model(path)
    assert isinstance(error, CheckpointError)
    assert str(path) in str(error)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_load_or_raise_our_error(
    model_file: Callable[[bytes], Path], raw: bytes
) -> None:
    load_model(model_file(raw))
    load_model(model_file(b"PK\x03\x04" + raw))


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    raw = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw) - 1))
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if kind == "set":
            raw[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 8))]
        else:
            del raw[at:]
        if not raw:
            break
    return bytes(raw)


@FUZZ
@given(st.sampled_from([GOOD_MODEL, good_model_bytes(zipfile.ZIP_DEFLATED)]).flatmap(mutated))
def test_mutated_model_files_load_or_raise_our_error(
    model_file: Callable[[bytes], Path], raw: bytes
) -> None:
    load_model(model_file(raw))


DIMS = st.one_of(st.integers(0, 8), st.integers(0, 2**40))


@FUZZ
@given(
    shapes=st.dictionaries(
        st.sampled_from(["W1", "b1", "W2", "b2", "optimizer/m", "resume/perm"]),
        st.lists(DIMS, max_size=3).map(tuple),
        min_size=1,
    ),
    method=st.sampled_from(METHODS),
    layers=st.one_of(st.none(), st.just(LAYERS), st.lists(DIMS, min_size=2, max_size=4)),
    descr=st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|u1", "<U10", "<c16", "|V8"]),
)
def test_crafted_archives_with_huge_declared_shapes_raise_our_error(
    model_file: Callable[[bytes], Path],
    shapes: dict[str, tuple[int, ...]],
    method: int,
    layers: list[int] | None,
    descr: str,
) -> None:
    if layers is not None and layers[0] < 1:
        layers = [1, *layers[1:]]
    load_model(model_file(crafted_npz(shapes, method, layers, descr)))


def test_npy_header_claiming_gigabytes_of_header_is_refused(
    model_file: Callable[[bytes], Path],
) -> None:
    # Version 2 headers state their length in 4 bytes: 4 GB of "header" must not be read.
    member = npy_format.MAGIC_PREFIX + b"\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.npy", member + bytes(2**20))
    error = load_model(model_file(buf.getvalue()))
    assert isinstance(error, CheckpointError)
    assert "header" in str(error)


def test_metadata_string_claiming_gigabytes_is_refused(model_file: Callable[[bytes], Path]) -> None:
    raw = crafted_npz({"metadata": ()}, zipfile.ZIP_DEFLATED, None, descr="<U300000000")
    error = load_model(model_file(raw))
    assert isinstance(error, CheckpointError)
    assert "metadata" in str(error)


def _with_member(name: str, member: bytes) -> bytes:
    """GOOD_MODEL with the member ``name`` replaced by ``member``'s bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(GOOD_MODEL)) as good, zipfile.ZipFile(buf, "w") as archive:
        for info in good.infolist():
            archive.writestr(info.filename, member if info.filename == name else good.read(info))
    return buf.getvalue()


def _npy_with_header(text: str) -> bytes:
    """A .npy member whose header dictionary is ``text``, as written, and a few data bytes."""
    header = text.encode("latin1") + b" " * (-(len(text) + 11) % 64) + b"\n"
    return (
        npy_format.MAGIC_PREFIX + b"\x01\x00" + struct.pack("<H", len(header)) + header + bytes(64)
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (
            lambda: _with_member("W1.npy", npy_header((LAYERS[1], 400_000_000)) + bytes(64)),
            f"W1 has shape ({LAYERS[1]}, 400000000), the layers say ({LAYERS[1]}, {LAYERS[0]})",
        ),
        (
            lambda: _with_member(
                "metadata.npy",
                _npy_with_header("{'descr': '<U536870912', 'fortran_order': False, 'shape': ()}"),
            ),
            "member 'metadata' declares the text dtype <U536870912, larger than NumPy can hold",
        ),
        (  # 4 * (2**30 + 1) bytes: NumPy 1.26 wraps this around to one character
            lambda: _with_member(
                "metadata.npy",
                _npy_with_header("{'descr': '<U1073741825', 'fortran_order': False, 'shape': ()}"),
            ),
            "member 'metadata' declares the text dtype <U1073741825, larger than NumPy can hold",
        ),
        (
            lambda: _with_member(
                "W1.npy",
                _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (10**10,)}"),
            ),
            "member 'W1' has a .npy header whose shape or dtype is not written as plain numbers",
        ),
    ],
    ids=["shape-against-layers", "huge-text-dtype", "wrapping-text-dtype", "expression-in-shape"],
)
def test_damaged_members_are_described_as_what_is_wrong_with_them(
    model_file: Callable[[bytes], Path], raw: Callable[[], bytes], words: str
) -> None:
    path = model_file(raw())
    error = load_model(path)
    assert isinstance(error, CheckpointError)
    assert str(path) in str(error)
    assert words in str(error)
    assert "truncated" not in str(error)
    assert "object at 0x" not in str(error)


# -- configs --------------------------------------------------------------------------------

GOOD_CONFIG = b"model: {layers: 784-30-10}\ntraining: {epochs: 1, batch_size: 32}\n"


def load_config_bytes(tmp_path: Path, raw: bytes) -> Any:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    return within_memory(lambda: load_config(path))


def test_the_fuzzed_reference_config_is_valid(tmp_path: Path) -> None:
    assert isinstance(load_config_bytes(tmp_path, GOOD_CONFIG), Config)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=512),
        st.sampled_from([GOOD_CONFIG]).flatmap(mutated),
        st.lists(st.sampled_from([b"&a [", b"*a, ", b"]", b"model:", b" {", b"}", b"\n  "])).map(
            b"".join
        ),
    )
)
def test_arbitrary_config_bytes_load_or_raise_our_error(tmp_path: Path, raw: bytes) -> None:
    load_config_bytes(tmp_path, raw)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    error = load_config_bytes(tmp_path, ("\n".join(lines) + "\nmodel: *a11\n").encode())
    assert isinstance(error, MLPError)


def test_yaml_merge_bomb_is_read_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 10)}]}}" for i in range(1, 12)]
    error = load_config_bytes(tmp_path, ("\n".join(lines) + "\nmodel: {layers: 784-10}\n").encode())
    assert isinstance(error, MLPError)
    assert "unknown key 'a0'" in str(error)


def test_dense_yaml_is_refused_as_it_is_read(tmp_path: Path) -> None:
    # "[], " is four bytes of YAML and a node of about a kilobyte to ruamel
    raw = b"model: [" + b"[], " * (MAX_CONFIG_BYTES // 5) + b"[]]\n"
    error = load_config_bytes(tmp_path, raw)
    assert isinstance(error, MLPError)
    assert "more than 20,000 values and keys" in str(error)


def test_a_config_larger_than_the_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.write(GOOD_CONFIG)
        f.truncate(200 * MB)  # sparse: the disk holds almost nothing
    error = within_memory(lambda: load_config(path), limit=MAX_CONFIG_BYTES + 8 * MB)
    assert isinstance(error, MLPError)
    assert str(path) in str(error)
    assert "larger than" in str(error)


# -- IDX files ------------------------------------------------------------------------------


def idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def read_idx_file(tmp_path: Path, raw: bytes, name: str) -> Any:
    path = tmp_path / name
    path.write_bytes(raw)
    return within_memory(lambda: data.read_idx(path, name))


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=256),
        st.tuples(st.lists(st.integers(0, 2**32 - 1), max_size=4), st.binary(max_size=64)).map(
            lambda t: idx_header(tuple(t[0])) + t[1]
        ),
    ),
    name=st.sampled_from(["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "x.idx"]),
)
def test_arbitrary_idx_files_parse_or_raise_our_error(
    tmp_path: Path, raw: bytes, name: str
) -> None:
    result = read_idx_file(tmp_path, raw, name)
    assert isinstance(result, MLPError | np.ndarray)


def test_idx_file_with_more_items_than_mnist_is_refused(tmp_path: Path) -> None:
    raw = idx_header((60001,)) + bytes(60001)
    error = read_idx_file(tmp_path, raw, "train-labels-idx1-ubyte")
    assert isinstance(error, DataError)
    assert "60,000" in str(error)


def test_oversized_cached_file_is_not_read_whole(tmp_path: Path) -> None:
    cache = data.data_dir()
    cache.mkdir(parents=True)
    stem = "train-images-idx3-ubyte"
    with (cache / stem).open("wb") as f:
        f.write(idx_header((10**6, 28, 28)))
        f.truncate(16 + 10**6 * 784)  # a consistent header and 784 MB, sparse on disk
    result = within_memory(lambda: data._read_cached(stem))
    assert result is None  # damaged, like any file whose hash does not match
    assert not (cache / stem).exists()


def test_info_gives_an_oversized_cached_files_real_size_without_reading_it_whole() -> None:
    cache = data.data_dir()
    cache.mkdir(parents=True)
    stem = "train-images-idx3-ubyte"
    size = 16 + 10**5 * 784  # a consistent header: complete, but more images than MNIST's
    with (cache / stem).open("wb") as f:
        f.write(idx_header((10**5, 28, 28)))
        f.truncate(size)  # sparse on disk
    rows = within_memory(data.mnist_info)
    assert isinstance(rows, list)
    row = rows[0]
    assert row["name"] == stem
    assert row["bytes"] == size
    assert row["sha256"] is None  # not read whole, so not hashed
    assert not row["verified"]
    assert f"{size:,} bytes" in row["error"]
    assert "truncated" not in row["error"]


# -- images -----------------------------------------------------------------------------------


def _png() -> bytes:
    from PIL import Image

    pixels = np.full((40, 30), 255, np.uint8)
    pixels[8:32, 13:17] = 0
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


GOOD_PNG = _png()


def image_from_bytes(tmp_path: Path, raw: bytes) -> Any:
    path = tmp_path / "fuzz.png"
    path.write_bytes(raw)
    return within_memory(lambda: mnist_style(open_image(path), source=str(path)))


def test_the_fuzzed_reference_image_is_valid(tmp_path: Path) -> None:
    digit = image_from_bytes(tmp_path, GOOD_PNG)
    assert isinstance(digit, np.ndarray)
    assert digit.shape == (28, 28)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=512),
        st.sampled_from([GOOD_PNG]).flatmap(mutated),
        st.binary(max_size=64).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
        st.binary(max_size=64).map(lambda tail: b"GIF89a" + tail),
        st.binary(max_size=64).map(lambda tail: b"BM" + tail),
    )
)
def test_arbitrary_image_bytes_give_a_digit_or_our_error(tmp_path: Path, raw: bytes) -> None:
    image_from_bytes(tmp_path, raw)


def test_a_chunk_that_claims_more_than_the_file_holds_costs_no_memory(tmp_path: Path) -> None:
    # a 30x40 PNG whose image data chunk claims 48 MiB and holds nothing
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x1e\x00\x00\x00(\x08\x00\x00\x00"
    raw = header + b"\x00\xccx\x15\xce\x03\x00\x00\x00IDAT\x00\x00"
    error = image_from_bytes(tmp_path, raw)
    assert isinstance(error, ImageError)
    assert "truncated or corrupt" in str(error)


def test_an_image_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.write(GOOD_PNG)
        file.truncate(preprocess.MAX_FILE_BYTES + 1)  # sparse: no disk space used
    error = within_memory(lambda: open_image(path))
    assert isinstance(error, ImageError)
    assert str(path) in str(error)
    assert "larger than 67.1 MB" in str(error)


# -- named pipes and devices --------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


def test_loaders_refuse_a_named_pipe_without_blocking(fifo: Path) -> None:
    for load in (load_config, checkpoint.load, open_image):
        with pytest.raises(MLPError, match="named pipe") as info:
            load(fifo)
        assert str(fifo) in str(info.value)
    with pytest.raises(OSError, match="named pipe"):
        data._read_idx_file(fifo, str(fifo), None)


# -- through the command line -------------------------------------------------------------------

RSS_LIMIT_KB = 400 * 1024  # far below the gigabyte a refused file must never approach
ADDRESS_SPACE = 3 * 2**30  # a hard cap: allocating a declared huge shape would fail loudly


def run_mlp(*args: str, cwd: Path, timeout: float = 120) -> tuple[int, str, int]:
    """Run ``mlp ARGS`` in a child with a capped address space; (exit code, stderr, peak
    resident memory in KB of that child alone)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        resource.setrlimit(resource.RLIMIT_CPU, (int(timeout), int(timeout)))

    err = cwd / "stderr.txt"
    env = {**os.environ, "COLUMNS": "200", "MLP_DEBUG": "", "OPENBLAS_NUM_THREADS": "1"}
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlp_cli.cli", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=limit,
            env=env,
        )
        # A child waiting on a pipe uses no CPU: the wall-clock limit makes a hang a failure.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err.read_text(), usage.ru_maxrss


def assert_refused(code: int, stderr: str, rss_kb: int, expected: int, *fragments: str) -> None:
    assert code == expected, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: ")
    flat = " ".join(stderr.split())
    for fragment in fragments:
        assert fragment in flat, stderr
    assert rss_kb < RSS_LIMIT_KB, f"peak RSS {rss_kb / 1024:.0f} MB"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("method", METHODS[1:3], ids=["deflate", "bzip2"])
def test_inspect_refuses_a_crafted_model_quickly_and_in_little_memory(
    scratch: Path, method: int
) -> None:
    (scratch / "crafted.npz").write_bytes(huge_model(method))
    code, stderr, rss = run_mlp("inspect", "--model", "crafted.npz", cwd=scratch)
    assert_refused(code, stderr, rss, 1, "crafted.npz")


def test_inspect_names_the_file_and_the_field_of_bad_metadata(scratch: Path) -> None:
    bad = {**META, "preprocessing": {"input_size": 2, "normalize": 7.0}}
    (scratch / "bad.npz").write_bytes(good_model_bytes(meta=bad))
    code, stderr, rss = run_mlp("inspect", "--model", "bad.npz", cwd=scratch)
    assert_refused(code, stderr, rss, 1, "bad.npz", "preprocessing.normalize")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_model_file_whose_reading_fails_is_named_with_the_reason(scratch: Path) -> None:
    # /proc/self/mem is a regular file whose first bytes give an I/O error, as a bad disk does
    (scratch / "model.npz").symlink_to("/proc/self/mem")
    code, stderr, rss = run_mlp("inspect", "--model", "model.npz", cwd=scratch)
    assert_refused(code, stderr, rss, 1, "cannot read model file 'model.npz': Input/output")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["inspect", "--model", "pipe"], 1),
        (["predict", "--model", "model.npz", "pipe"], 1),
        (["config", "show", "pipe"], 2),
        (["train", "--config", "pipe"], 2),
    ],
    ids=["model", "image", "config show", "train"],
)
def test_a_named_pipe_is_refused_not_waited_on(
    scratch: Path, command: list[str], code: int
) -> None:
    os.mkfifo(scratch / "pipe")
    (scratch / "model.npz").write_bytes(GOOD_MODEL)
    got, stderr, rss = run_mlp(*command, cwd=scratch, timeout=60)
    assert_refused(got, stderr, rss, code, "pipe", "named pipe")


@pytest.mark.parametrize(
    ("content", "size"),
    [(b"\xff\xfe not text\n", 0), (b"r1", 3 * 2**30), (b"../elsewhere\n", 0)],
    ids=["binary", "large", "path"],
)
def test_a_latest_file_that_is_no_link_is_refused_in_little_memory(
    scratch: Path, content: bytes, size: int
) -> None:
    # Where symlinks are not available `mlp train` writes runs/latest as a file naming the
    # run; anything else there is read no further than a link's size (the large one is a
    # valid name followed by 3 GB of zeros, more than the child may allocate).
    (scratch / "runs" / "r1").mkdir(parents=True)
    (scratch / "runs" / "r1" / "model.npz").write_bytes(GOOD_MODEL)
    latest = scratch / "runs" / "latest"
    latest.write_bytes(content)
    if size:
        os.truncate(latest, size)
    for command in (["evaluate"], ["predict", "missing.png"], ["inspect"]):
        code, stderr, rss = run_mlp(*command, cwd=scratch)
        assert_refused(code, stderr, rss, 2, "runs/latest", "is a file, but not the link")


RECORD = (
    '{"epoch": %d, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.6, "val_acc": 0.7,'
    ' "lr": 0.01}\n'
)


def test_plot_follows_a_latest_file_naming_a_run(scratch: Path) -> None:
    (scratch / "runs" / "r1").mkdir(parents=True)
    (scratch / "runs" / "r1" / "metrics.jsonl").write_text(RECORD % 1 + RECORD % 2)
    (scratch / "runs" / "latest").write_text("r1\n")
    code, stderr, _ = run_mlp("plot", cwd=scratch)
    assert code == 0, stderr
    assert (scratch / "runs" / "r1" / "curves.png").is_file()


@pytest.mark.parametrize(
    ("content", "size", "fragment"),
    [
        ("[" * 200_000 + "\n", 0, "line 1: not valid JSON (nested too deeply)"),
        (RECORD % 1, 3 * 2**30, "is larger than"),
        # 30 MB of empty lists: some 64 bytes of memory for every 3 of the file
        ("[" + "[]," * 10_000_000 + "[]]\n", 0, "more JSON values than"),
    ],
    ids=["deep", "large", "dense"],
)
def test_a_metrics_file_is_read_in_bounded_memory(
    scratch: Path, content: str, size: int, fragment: str
) -> None:
    run = scratch / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(content)
    if size:
        os.truncate(run / "metrics.jsonl", size)
    code, stderr, rss = run_mlp("plot", "run", cwd=scratch)
    assert_refused(code, stderr, rss, 1, "run/metrics.jsonl", fragment)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"epoch": "x", "train_loss": 0.5}\n', "Metrics record 1 has epoch = 'x'"),
        (RECORD % 2 + RECORD % 1, "mix more than one run"),
        (RECORD.replace('"train_acc": 0.8', '"train_acc": 80') % 1, "train_acc reaches 80"),
    ],
    ids=["text", "backwards", "percent"],
)
def test_a_metrics_file_of_records_no_run_writes_fails_as_a_damaged_file(
    scratch: Path, content: str, fragment: str
) -> None:
    # As a line that is not JSON does (exit code 1), not as a usage mistake: the folder is
    # a run's, and its file is damaged.
    run = scratch / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(content)
    code, stderr, rss = run_mlp("plot", "run", cwd=scratch)
    assert_refused(code, stderr, rss, 1, "The metrics file run/metrics.jsonl", fragment)
    assert [p.name for p in run.iterdir()] == ["metrics.jsonl"]


def test_a_named_pipe_where_the_curves_go_is_refused_not_opened(scratch: Path) -> None:
    run = scratch / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(RECORD % 1)
    (run / "config.yaml").write_text("model: {layers: 784-10}\n")
    os.mkfifo(run / "curves.png")
    code, stderr, rss = run_mlp("plot", "run", cwd=scratch, timeout=60)
    assert_refused(code, stderr, rss, 2, "run/curves.png", "named pipe")


def test_a_latest_file_naming_a_run_finds_its_model(scratch: Path) -> None:
    (scratch / "runs" / "r1").mkdir(parents=True)
    (scratch / "runs" / "r1" / "model.npz").write_bytes(GOOD_MODEL)
    (scratch / "runs" / "latest").write_text("r1\n")
    code, stderr, _ = run_mlp("inspect", cwd=scratch)
    assert code == 0, stderr


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model.layers=784-1000000000000-10", ("model.layers", "3.2 PB", "weights")),
        ("training.batch_size=1000000000000", ("training.batch_size", "1,000,000,000,000")),
        ("training.batch_size=50000", ("training.batch_size", "activations")),
    ],
    ids=["layers", "batch", "batch-memory"],
)
def test_absurd_sizes_are_refused_before_any_work(
    scratch: Path, override: str, fragments: tuple[str, ...]
) -> None:
    config = scratch / "c.yaml"
    config.write_text(
        "model: {layers: 784-4000-4000-10}\ndata: {validation_size: 1000}\n"
        "training: {epochs: 1, batch_size: 32}\noutput: {dir: runs}\n"
    )
    (scratch / "runs").mkdir()
    (scratch / "runs" / "latest").write_text("mine\n")
    code, stderr, rss = run_mlp("train", "--config", "c.yaml", "--set", override, cwd=scratch)
    assert_refused(code, stderr, rss, 2, f"--set {override}")
    flat = " ".join(stderr.split())
    for fragment in fragments:
        assert fragment in flat
    assert sorted(p.name for p in (scratch / "runs").iterdir()) == ["latest"]
    assert (scratch / "runs" / "latest").read_text() == "mine\n"


def _memory_config(layers: str, batch: int, **sections: Any) -> Config:
    from mlp_cli.config import config_from_dict

    settings: dict[str, Any] = {
        "data": {"input_size": 20, "validation_size": 1000},
        "model": {"layers": layers},
        "training": {"epochs": 1, "batch_size": batch},
    }
    return config_from_dict(settings | sections, "test")


def test_the_memory_estimate_counts_what_training_allocates_not_only_activations() -> None:
    from mlp_cli.errors import ConfigError
    from mlp_cli.limits import MAX_TRAINING_BYTES, parameter_count, training_memory

    with pytest.raises(ConfigError) as info:
        _memory_config("400-2000-2000-10", 25_000)
    flat = " ".join(str(info.value).split())
    assert "training.batch_size" in flat
    assert "weights, gradients, optimizer state" in flat
    needed = re.search(r"would need about ([\d.]+) GB of memory", flat)
    assert needed is not None, flat
    assert float(needed.group(1)) > 1.0, flat
    suggested = re.search(r"use a batch_size of at most ([\d,]+)", flat)
    assert suggested is not None, flat
    most = int(suggested.group(1).replace(",", ""))

    cfg = _memory_config("400-2000-2000-10", most)  # the suggestion is accepted...
    fixed, per_example = training_memory(cfg)
    assert fixed + most * per_example <= MAX_TRAINING_BYTES
    with pytest.raises(ConfigError):  # ...and is the largest batch that is
        _memory_config("400-2000-2000-10", most + 1)
    # Adam keeps two moments per parameter, SGD one: the weights' share differs by one copy.
    sgd, _ = training_memory(_memory_config("400-2000-2000-10", most, optimizer={"name": "sgd"}))
    assert fixed - sgd == 4 * parameter_count(cfg.model.layers)


def test_the_memory_estimate_counts_the_elastic_fields_and_not_the_affine_warp() -> None:
    from mlp_cli.limits import training_memory

    def per_example(augment: dict[str, Any]) -> int:
        return training_memory(_memory_config("400-25-10", 1000, augment=augment))[1]

    plain = per_example({"enabled": False})
    # The affine warp works on a fixed number of images at a time: nothing per example.
    assert per_example({"enabled": True}) == plain
    # An elastic field is noise and its smoothed copy, 2 x 400 float32 each per example, for
    # the full batch and the epoch's shorter last one.
    assert per_example({"enabled": True, "elastic_alpha": 34.0}) - plain == 2 * (2 * 2 * 400) * 4


def _large_picture(path: Path, mode: str, side: int) -> None:
    """A `side` x `side` picture of a thick stroke in `mode`, saved losslessly at `path`."""
    from PIL import Image, ImageDraw

    sheet = Image.new("L", (side, side), 255)
    ImageDraw.Draw(sheet).line([(side // 4, side // 4), (side // 2, 3 * side // 4)], 0, side // 20)
    if mode == "F":
        floats = Image.fromarray(np.asarray(sheet, np.float32) / 255)
        floats.save(path, format="TIFF", compression="tiff_adobe_deflate")
    elif mode == "P":  # the paper is the palette's transparent colour
        sheet.convert("P").save(path, format="PNG", transparency=255)
    else:
        sheet.convert(mode).save(path, format="PNG")


@pytest.mark.parametrize("mode", ["P", "RGBA", "F"])
def test_a_large_picture_is_read_in_bounded_memory(scratch: Path, mode: str) -> None:
    """25 megapixels are reduced before any step copies them (each copy was 100 MB or more)."""
    _large_picture(scratch / "large.img", mode, 5000)
    (scratch / "model.npz").write_bytes(GOOD_MODEL)
    code, stderr, rss = run_mlp("predict", "--model", "model.npz", "large.img", cwd=scratch)
    assert code == 0, stderr
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss / 1024:.0f} MB"


def test_a_picture_of_too_many_pixels_is_refused_from_its_header(scratch: Path) -> None:
    _large_picture(scratch / "huge.png", "L", 7200)  # 51.8 megapixels, a 90 KB file
    (scratch / "model.npz").write_bytes(GOOD_MODEL)
    code, stderr, rss = run_mlp("predict", "--model", "model.npz", "huge.png", cwd=scratch)
    assert_refused(code, stderr, rss, 1, "huge.png", "7200x7200 pixels", "50 million")


def test_counts_percentages_sizes_and_cut_text_read_as_said() -> None:
    from mlp_cli.limits import counted, format_bytes, percent, shorten

    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(1024, "unit") == "1,024 units"
    # Only a share strictly between none and all is kept off "0.00%" and "100.00%".
    assert [percent(s) for s in (0.0, 1.0, 0.00004, 0.99996)] == [
        "0.00%", "100.00%", "<0.01%", ">99.99%"
    ]  # fmt: skip
    assert [format_bytes(n) for n in (999, 1000, 999_949, 999_950, 4 * 10**12)] == [
        "999 bytes", "1.0 kB", "999.9 kB", "1.0 MB", "4.0 TB"
    ]  # fmt: skip
    assert shorten("abcdefghij", 10) == "abcdefghij"
    assert shorten("abcdefghijk", 10) == "abcdefg..."  # ten characters in all


def test_a_network_too_large_is_refused_with_its_size_worked_out() -> None:
    from mlp_cli.limits import network_size_problem

    # (784 + 1) * 100,000 + (100,000 + 1) * 10 weights and biases, 4 bytes each
    assert network_size_problem([784, 100_000, 10]) == (
        "784-100000-10 has 79,500,010 parameters, which would need 318.0 MB for its weights"
        " alone; mlp handles networks of at most 33,554,432 parameters (134.2 MB)"
    )
    assert network_size_problem([31, 2**20]) is None  # (31 + 1) * 2**20: exactly the most
    assert network_size_problem([1, 2**20 + 1]) == (
        "has a layer of 1,048,577 units; a layer has at most 1,048,576"
    )


def test_the_memory_estimate_of_a_small_network_worked_out_by_hand() -> None:
    from mlp_cli.limits import training_memory

    # 400-25-10 with Adam: (400 + 1) * 25 + (25 + 1) * 10 = 10,285 parameters, held five
    # times (weights, gradients, two moments, a saved copy); 60,000 training inputs and
    # 1,000 validation inputs of 400 floats; scoring the 1,000 takes 2 * 35 + 10 floats
    # each; the shuffling order and the split's indices are 60,000 int64 each.
    fixed = 4 * (5 * 10_285 + 60_000 * 400 + 1_000 * 400 + 1_000 * (2 * 35 + 10)) + 8 * 2 * 60_000
    # Per example: its input, each layer's activations and deltas, the logits; twice.
    per_example = 2 * 4 * (400 + 2 * 35 + 10)
    assert training_memory(_memory_config("400-25-10", 100)) == (fixed, per_example)
    # An L2 penalty adds one scratch vector of the parameters.
    l2 = _memory_config("400-25-10", 100, regularization={"l2": 0.001})
    assert training_memory(l2) == (fixed + 4 * 10_285, per_example)
    # Dropout on the inputs (rate 0.2) and none on the hidden layer: 400 mask and dropped
    # values more per example.
    dropped = _memory_config("400-25-10", 100, model={"layers": "400-25-10", "dropout": [0.2, 0]})
    assert training_memory(dropped) == (fixed, per_example + 2 * 4 * 2 * 400)


def test_a_batch_refused_for_memory_names_the_largest_that_fits() -> None:
    from mlp_cli.errors import ConfigError

    # Five layers of 2**20 units between layers of one: a batch of one fits in memory,
    # a batch of two does not.
    layers = "784-" + "1-1048576-" * 5 + "1-10"
    _memory_config(layers, 1, data={"input_size": 28, "validation_size": 0})
    with pytest.raises(ConfigError) as info:
        _memory_config(layers, 2, data={"input_size": 28, "validation_size": 0})
    flat = " ".join(str(info.value).split())
    assert "use a batch_size of at most 1" in flat
    assert "even a batch of 1" not in flat


def test_a_batch_may_hold_every_training_image_and_no_more() -> None:
    from mlp_cli.errors import ConfigError

    # 60,000 - 59,990 = 10 training images
    _memory_config("400-25-10", 10, data={"input_size": 20, "validation_size": 59_990})
    with pytest.raises(ConfigError) as info:
        _memory_config("400-25-10", 11, data={"input_size": 20, "validation_size": 59_990})
    assert "is 11 but only 10 training images remain" in " ".join(str(info.value).split())


def test_the_count_of_json_values_is_an_upper_bound() -> None:
    from mlp_cli.limits import json_values_at_most

    assert json_values_at_most(b"5") == 1
    assert json_values_at_most(b"[1, 2, 3]") == 4  # the list and its three numbers
    # one more than the ",", "[" and "{" in it: 4 values (a key and its value count once)
    assert json_values_at_most(b'{"a": [1], "b": {}}') == 5


def test_a_file_that_grew_since_its_size_was_taken_is_read_as_far_as_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import limits

    path = tmp_path / "c.yaml"
    path.write_bytes(b"0123456789")
    fstat = os.fstat

    def smaller(fd: int) -> os.stat_result:  # the size before the last 7 bytes were written
        st = fstat(fd)
        return os.stat_result((*st[:6], 3, *st[7:]))

    monkeypatch.setattr(os, "fstat", smaller)
    assert limits.read_regular(path, 100) == b"0123456789"
    assert limits.read_regular(path, 5) == b"012345"  # one byte more than the limit: too large
