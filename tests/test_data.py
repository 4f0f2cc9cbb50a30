"""Download, cache, integrity and import of MNIST, against loopback mirrors.

Most tests serve small synthetic IDX files (built here, with `MNIST_FILES` patched to
their hashes); one end-to-end test fetches the real local copy through `mnist_mirror`.
Public mirrors are disabled for every test in this file, so nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import importlib.util
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LoopbackServer, ServeFolder, real_mnist_bytes, require_real_mnist

from mlp_cli import data
from mlp_cli.errors import DataError, UsageError

pytestmark = pytest.mark.usefixtures("no_public_mirrors")

STEMS = list(data.MNIST_FILES)
SIZES = {  # items per synthetic file: small, and different per split
    "train-images-idx3-ubyte": 6,
    "train-labels-idx1-ubyte": 6,
    "t10k-images-idx3-ubyte": 4,
    "t10k-labels-idx1-ubyte": 4,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX, written from the format description (not the parser)."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(dim).to_bytes(4, "big") for dim in array.shape)
    return header + array.astype(np.uint8).tobytes()


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def cache_listing() -> list[str]:
    """Every entry in the cache folder, hidden ones included."""
    directory = data.data_dir()
    return sorted(os.listdir(directory)) if directory.exists() else []


@dataclass
class Synthetic:
    arrays: dict[str, np.ndarray]  # stem -> the array the file encodes
    raw: dict[str, bytes]  # stem -> IDX bytes
    folder: Path  # a mirror folder holding <stem>.gz


def make_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for stem, n in SIZES.items():
        shape = (n, 28, 28) if "images" in stem else (n,)
        high = 256 if "images" in stem else 10
        arrays[stem] = rng.integers(0, high, size=shape, dtype=np.uint8)
    return arrays


def write_mirror(folder: Path, raw: dict[str, bytes], *, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, content in raw.items():
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return folder


@pytest.fixture
def synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Synthetic:
    """Four small valid IDX files served as .gz; MNIST_FILES pinned to their hashes."""
    arrays = make_arrays(seed=0)
    raw = {stem: idx_bytes(array) for stem, array in arrays.items()}
    monkeypatch.setattr(
        data, "MNIST_FILES", {stem: sha256(content) for stem, content in raw.items()}
    )
    return Synthetic(arrays, raw, write_mirror(tmp_path / "mirror", raw))


@pytest.fixture
def wrong_folder(tmp_path: Path) -> Path:
    """A mirror folder whose four files are valid IDX with other content than `synthetic`."""
    raw = {stem: idx_bytes(array) for stem, array in make_arrays(seed=1).items()}
    return write_mirror(tmp_path / "wrong", raw)


class TruncatingHandler(SimpleHTTPRequestHandler):
    """Announces a file's full Content-Length, sends half of it, then drops the connection."""

    def do_GET(self) -> None:
        body = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------- locations


def test_data_dir_follows_env_else_pooch_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pooch

    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert data.data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.data_dir() == Path(pooch.os_cache("mlp")) / "mnist"


def test_mirror_list_puts_env_then_argument_then_defaults_without_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data, "DEFAULT_MIRRORS", ("https://a.example/m/", "https://b.example/m"))
    monkeypatch.setenv(data.MIRROR_ENV, "http://env.example/mnist")
    assert data.mirror_list("https://b.example/m/") == [
        "http://env.example/mnist/",
        "https://b.example/m/",
        "https://a.example/m/",
    ]
    monkeypatch.setenv(data.MIRROR_ENV, "  ")
    assert data.mirror_list(None) == ["https://a.example/m/", "https://b.example/m/"]


@pytest.mark.parametrize("bad", ["/work/shared/data/mnist", "ftp://host/mnist/", "http://"])
def test_mirror_list_refuses_what_is_not_an_http_url(bad: str) -> None:
    with pytest.raises(UsageError, match="mlp data import") as info:
        data.mirror_list(bad)
    assert bad in str(info.value)
    assert "(from the config key data.mirror)" in str(info.value)


def test_a_mirror_that_is_no_url_is_cut_short_in_the_error() -> None:
    bad = "ftp://" + "x" * 5000
    with pytest.raises(UsageError) as info:
        data.mirror_list(bad)
    assert repr(bad[:297] + "...") in str(info.value)
    assert len(str(info.value)) < 1000


# --------------------------------------------------------------------------- download


def test_fetch_downloads_verifies_and_caches_only_idx_files(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    server = serve_folder(synthetic.folder)
    assert data.cached_files() == dict.fromkeys(STEMS)

    paths = data.fetch_mnist(mirror=server.url)

    assert paths == {stem: data.data_dir() / stem for stem in STEMS}
    for stem, path in paths.items():
        assert path.read_bytes() == synthetic.raw[stem]
    assert cache_listing() == sorted(STEMS)  # no .gz, no temporary file, no staging folder
    assert data.cached_files() == paths


def test_load_mnist_returns_the_served_arrays(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    server = serve_folder(synthetic.folder)
    for split, (images_stem, labels_stem) in data.SPLITS.items():
        images, labels = data.load_mnist(split, mirror=server.url)  # type: ignore[arg-type]
        assert images.dtype == np.uint8
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(images, synthetic.arrays[images_stem])
        np.testing.assert_array_equal(labels, synthetic.arrays[labels_stem])


def test_load_mnist_downloads_only_its_split(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    server = serve_folder(synthetic.folder)
    data.load_mnist("test", mirror=server.url)
    assert sorted(server.requested) == sorted(f"/{stem}.gz" for stem in data.SPLITS["test"])


def test_fetch_falls_back_when_the_first_mirror_is_down(
    synthetic: Synthetic,
    serve_folder: ServeFolder,
    closed_port_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve_folder(synthetic.folder)
    monkeypatch.setenv(data.MIRROR_ENV, closed_port_url)
    assert data.mirror_list(server.url) == [closed_port_url, server.url]

    paths = data.fetch_mnist(mirror=server.url)

    assert {stem: path.read_bytes() for stem, path in paths.items()} == synthetic.raw
    assert sorted(server.requested) == sorted(f"/{stem}.gz" for stem in STEMS)


def test_unreachable_mirrors_are_all_listed_with_advice(
    synthetic: Synthetic, closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = "http://127.0.0.1:1/mnist/"  # port 1 is privileged and unused
    monkeypatch.setenv(data.MIRROR_ENV, closed_port_url)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=second)

    message = str(info.value)
    assert f"{STEMS[0]}.gz" in message
    assert f"{closed_port_url}: connection failed" in message
    assert f"{second}: connection failed" in message
    assert message.index(closed_port_url) < message.index(second)  # in the order tried
    assert "mlp data import DIR" in message
    assert data.MIRROR_ENV in message
    assert cache_listing() == []


def test_a_full_disk_while_downloading_is_said_at_once_not_blamed_on_the_mirrors(
    synthetic: Synthetic, serve_folder: ServeFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = serve_folder(synthetic.folder), serve_folder(synthetic.folder)
    monkeypatch.setenv(data.MIRROR_ENV, first.url)
    copy = data._Downloader._copy

    def filling_the_disk(self: Any, response: Any, out: Any, deadline: float) -> None:
        copy(self, response, out, deadline)
        with open("/dev/full", "wb") as full:  # the real ENOSPC of a full disk
            full.write(b"\0")

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(data._Downloader, "_copy", filling_the_disk)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=second.url)

    message = str(info.value)
    assert "Free some disk space" in message
    assert "every mirror failed" not in message
    assert len(first.requested) == 1
    assert second.requested == []  # the mirror that worked is not blamed, the next not tried
    assert cache_listing() == []


def test_a_long_mirror_is_cut_short_in_the_list_of_failures(
    synthetic: Synthetic, closed_port_url: str
) -> None:
    mirror = closed_port_url + "x" * 5000 + "/"
    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=mirror)
    message = str(info.value)
    assert f"  - {mirror[:297]}...: connection failed" in message
    assert len(message) < 3000


def test_wrong_bytes_are_refused_and_leave_the_cache_clean(
    synthetic: Synthetic, wrong_folder: Path, serve_folder: ServeFolder
) -> None:
    bad = serve_folder(wrong_folder)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=bad.url)

    message = str(info.value)
    stem = STEMS[0]
    served = gzip.decompress((wrong_folder / f"{stem}.gz").read_bytes())
    assert f"{bad.url}: served a wrong {stem}.gz" in message
    assert sha256(served) in message
    assert data.MNIST_FILES[stem] in message
    assert cache_listing() == []


def test_a_wrong_last_file_leaves_only_verified_files(
    synthetic: Synthetic, wrong_folder: Path, serve_folder: ServeFolder
) -> None:
    last = STEMS[-1]
    (synthetic.folder / f"{last}.gz").write_bytes((wrong_folder / f"{last}.gz").read_bytes())
    server = serve_folder(synthetic.folder)

    with pytest.raises(DataError, match=last):
        data.fetch_mnist(mirror=server.url)

    assert cache_listing() == sorted(STEMS[:-1])
    for stem in STEMS[:-1]:
        assert (data.data_dir() / stem).read_bytes() == synthetic.raw[stem]


def test_wrong_bytes_on_one_mirror_fall_back_to_the_next(
    synthetic: Synthetic,
    wrong_folder: Path,
    serve_folder: ServeFolder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad, good = serve_folder(wrong_folder), serve_folder(synthetic.folder)
    monkeypatch.setenv(data.MIRROR_ENV, bad.url)

    paths = data.fetch_mnist(mirror=good.url)

    assert {stem: path.read_bytes() for stem, path in paths.items()} == synthetic.raw
    assert cache_listing() == sorted(STEMS)


def test_an_interrupted_download_leaves_nothing_and_a_rerun_succeeds(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    dropping = serve_folder(synthetic.folder, handler=TruncatingHandler)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=dropping.url)

    assert f"{dropping.url}: connection dropped before the whole file arrived" in str(info.value)
    assert cache_listing() == []

    good = serve_folder(synthetic.folder)
    paths = data.fetch_mnist(mirror=good.url)
    assert {stem: path.read_bytes() for stem, path in paths.items()} == synthetic.raw
    assert cache_listing() == sorted(STEMS)


def test_not_gzip_and_gzip_bombs_are_refused(
    synthetic: Synthetic, serve_folder: ServeFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stem = STEMS[0]
    folder = tmp_path / "broken"
    folder.mkdir()
    gz = gzip.compress(synthetic.raw[stem])
    (folder / f"{stem}.gz").write_bytes(gz[: len(gz) // 2])  # cut short at the source
    server = serve_folder(folder)
    with pytest.raises(DataError, match=f"served a {stem}.gz that is not a complete gzip file"):
        data.fetch_mnist(mirror=server.url)

    (folder / f"{stem}.gz").write_bytes(gzip.compress(bytes(4096)))
    monkeypatch.setattr(data, "_MAX_IDX_BYTES", 1024)
    with pytest.raises(DataError, match="more than 1,024 bytes"):
        data.fetch_mnist(mirror=server.url)
    assert cache_listing() == []


def test_second_call_is_served_from_the_cache_without_network(
    synthetic: Synthetic, serve_folder: ServeFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pooch

    server = serve_folder(synthetic.folder)
    first = data.fetch_mnist(mirror=server.url)
    server.stop()

    def no_network(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    assert data.fetch_mnist(mirror=server.url) == first
    images, labels = data.load_mnist("train", mirror=server.url)
    np.testing.assert_array_equal(images, synthetic.arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(labels, synthetic.arrays["train-labels-idx1-ubyte"])


def test_fetch_downloads_only_what_is_missing(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    server = serve_folder(synthetic.folder)
    paths = data.fetch_mnist(mirror=server.url)
    paths["t10k-labels-idx1-ubyte"].unlink()
    server.requested.clear()

    data.fetch_mnist(mirror=server.url)

    assert server.requested == ["/t10k-labels-idx1-ubyte.gz"]


def test_fetch_missing_leaves_a_full_cache_unread_and_completes_a_partial_one(
    synthetic: Synthetic, serve_folder: ServeFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve_folder(synthetic.folder)
    paths = data.fetch_mnist(mirror=server.url)

    def no_fetch(**kwargs: Any) -> None:
        raise AssertionError("a full cache needs no fetch")

    with monkeypatch.context() as patched:
        patched.setattr(data, "fetch_mnist", no_fetch)
        data.fetch_missing(mirror=server.url)

    paths["t10k-labels-idx1-ubyte"].unlink()
    server.requested.clear()
    data.fetch_missing(mirror=server.url)
    assert server.requested == ["/t10k-labels-idx1-ubyte.gz"]
    assert data.cached_files() == paths


def test_a_damaged_cache_file_is_moved_aside_then_downloaded_again(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    server = serve_folder(synthetic.folder)
    paths = data.fetch_mnist(mirror=server.url)
    damaged = paths["train-labels-idx1-ubyte"]
    other = idx_bytes(np.zeros(6, dtype=np.uint8))  # same name, not MNIST's bytes
    damaged.write_bytes(other)

    with pytest.raises(DataError, match="mlp data import"):
        data.load_mnist("train", download=False)
    assert not damaged.exists()
    assert damaged.with_name(damaged.name + ".mismatch").read_bytes() == other

    server.requested.clear()
    _, labels = data.load_mnist("train", mirror=server.url)
    np.testing.assert_array_equal(labels, synthetic.arrays["train-labels-idx1-ubyte"])
    assert server.requested == ["/train-labels-idx1-ubyte.gz"]


def test_load_without_download_names_the_missing_files(synthetic: Synthetic) -> None:
    with pytest.raises(DataError) as info:
        data.load_mnist("test", download=False)
    message = str(info.value)
    for stem in data.SPLITS["test"]:
        assert stem in message
    assert "mlp data import DIR" in message


def test_load_refuses_an_unknown_split() -> None:
    with pytest.raises(UsageError, match="'valid'"):
        data.load_mnist("valid", download=False)  # type: ignore[arg-type]


class RecordingBar:
    """The tqdm-like surface pooch drives: total, update, reset, close; plus a label."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.descriptions: list[str] = []
        self.closed = 0
        self.advanced = 0

    @property
    def total(self) -> int:
        return self.totals[-1]

    @total.setter
    def total(self, value: int) -> None:
        self.totals.append(value)

    def set_description(self, text: str) -> None:
        self.descriptions.append(text)

    def update(self, n: int) -> None:
        self.advanced += n

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def test_progressbar_object_is_driven_once_per_file(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    server = serve_folder(synthetic.folder)
    bar = RecordingBar()

    data.fetch_mnist(mirror=server.url, progressbar=bar)

    assert bar.descriptions == [f"{stem}.gz" for stem in STEMS]
    assert bar.totals == [(synthetic.folder / f"{stem}.gz").stat().st_size for stem in STEMS]
    assert bar.closed == len(STEMS)


def test_progressbar_true_without_tqdm_is_a_usage_error(
    synthetic: Synthetic, serve_folder: ServeFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if not installed (a dependency has it)
    assert importlib.util.find_spec("tqdm") is None
    server = serve_folder(synthetic.folder)
    with pytest.raises(UsageError, match="tqdm"):
        data.fetch_mnist(mirror=server.url, progressbar=True)
    assert server.requested == []


def test_fetching_prints_nothing(
    synthetic: Synthetic, serve_folder: ServeFolder, capfd: pytest.CaptureFixture[str]
) -> None:
    server = serve_folder(synthetic.folder)
    data.fetch_mnist(mirror=server.url)
    assert capfd.readouterr() == ("", "")


# --------------------------------------------------------------------------- import


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_import_installs_verified_files(
    synthetic: Synthetic, tmp_path: Path, compress: bool
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw, compress=compress)

    paths = data.import_mnist(source)

    assert paths == {stem: data.data_dir() / stem for stem in STEMS}
    assert {stem: path.read_bytes() for stem, path in paths.items()} == synthetic.raw
    assert cache_listing() == sorted(STEMS)


def test_import_accepts_the_dotted_spelling(synthetic: Synthetic, tmp_path: Path) -> None:
    source = tmp_path / "archive"
    source.mkdir()
    for stem, content in synthetic.raw.items():
        (source / stem.replace("-idx", ".idx")).write_bytes(content)  # train-images.idx3-ubyte

    data.import_mnist(source)

    assert {stem: (data.data_dir() / stem).read_bytes() for stem in STEMS} == synthetic.raw


def test_import_names_missing_files_and_keeps_the_verified_ones(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    missing = "t10k-images-idx3-ubyte"
    (source / f"{missing}.gz").unlink()

    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    message = str(info.value)
    assert f"{missing}: missing" in message
    assert str(source) in message
    assert cache_listing() == sorted(set(STEMS) - {missing})


def test_import_names_a_bad_file_and_does_not_install_it(
    synthetic: Synthetic, wrong_folder: Path, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    bad = "train-labels-idx1-ubyte"
    (source / f"{bad}.gz").write_bytes((wrong_folder / f"{bad}.gz").read_bytes())

    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    assert f"{source / bad}.gz: not the MNIST file {bad}" in str(info.value)
    assert bad not in cache_listing()


def test_names_with_a_line_break_stay_on_their_line_in_imports_and_loads(
    synthetic: Synthetic, wrong_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / "mnist\ncache"))
    source = write_mirror(tmp_path / "off\nline", synthetic.raw)
    bad = "train-labels-idx1-ubyte"
    (source / f"{bad}.gz").write_bytes((wrong_folder / f"{bad}.gz").read_bytes())
    (data.data_dir() / bad).parent.mkdir(parents=True)
    (data.data_dir() / bad).write_bytes(b"another dataset's labels under MNIST's name")
    notes = _Notes()

    with pytest.raises(DataError) as imported:
        data.import_mnist(source, notices=notes)
    with pytest.raises(DataError) as loaded:
        data.load_mnist("train", download=False, progressbar=notes)

    lines = str(imported.value).splitlines()
    assert len(lines) == 3  # the heading, the one bad file, what was installed
    assert lines[1].startswith(f"  - {tmp_path}/off\\nline/{bad}.gz: not the MNIST file")
    assert "\n" not in str(loaded.value)
    assert f"{tmp_path}/mnist\\ncache" in str(loaded.value)
    assert [note.count("\n") for note in notes.notes] == [0]


def test_import_names_the_mnist_file_that_is_under_another_ones_name(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    swapped = dict(synthetic.raw)
    train, test = "train-images-idx3-ubyte", "t10k-images-idx3-ubyte"
    swapped[train], swapped[test] = synthetic.raw[test], synthetic.raw[train]
    source = write_mirror(tmp_path / "offline", swapped)

    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    message = str(info.value)
    assert f"{source / train}.gz: not the MNIST file {train}: it is MNIST's {test}" in message
    assert f"{source / test}.gz: not the MNIST file {test}: it is MNIST's {train}" in message
    assert sorted({train, test} & set(cache_listing())) == []


def test_import_names_what_is_there_instead_of_a_file_rather_than_calling_it_missing(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    fifo, device, broken = STEMS[:3]
    for stem in (fifo, device, broken):
        (source / f"{stem}.gz").unlink()
    os.mkfifo(source / fifo)  # opened as a plain file, it would block the import for ever
    (source / device).symlink_to("/dev/zero")  # read to its end, it would never end
    (source / f"{broken}.gz").symlink_to(tmp_path / "gone.gz")

    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    message = str(info.value)
    assert f"{source / fifo}: cannot be read: it is a named pipe (FIFO), not a regular file" in (
        message
    )
    assert f"{source / device}: cannot be read: it is a character device" in message
    assert f"{source / broken}.gz: is a broken link: it points to '{tmp_path / 'gone.gz'}'" in (
        message
    )
    assert "missing" not in message
    assert cache_listing() == sorted(set(STEMS) - {fifo, device, broken})


class _Notes:
    """Records the data layer's notices, as a quiet progress object does."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def write(self, text: str) -> None:
        self.notes.append(text)


def test_import_cuts_a_broken_links_long_target_short(synthetic: Synthetic, tmp_path: Path) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    (source / f"{STEMS[0]}.gz").unlink()
    target = "/nonexistent" + "/x" * 2000
    (source / f"{STEMS[0]}.gz").symlink_to(target)
    with pytest.raises(DataError) as info:
        data.import_mnist(source)
    assert f"is a broken link: it points to {target[:297] + '...'!r}" in str(info.value)
    assert len(str(info.value)) < 1000


def test_import_moves_a_cached_file_that_is_not_mnists_aside(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    cache = data.data_dir()
    cache.mkdir(parents=True)
    stem = "train-images-idx3-ubyte"
    fashion = b"another dataset's images under MNIST's name"
    (cache / stem).write_bytes(fashion)
    earlier = cache / f"{stem}.mismatch"  # an earlier file moved aside: never overwritten
    earlier.write_bytes(b"moved aside before")
    notes = _Notes()

    data.import_mnist(source, notices=notes)

    assert (cache / stem).read_bytes() == synthetic.raw[stem]
    assert earlier.read_bytes() == b"moved aside before"
    assert (cache / f"{stem}.mismatch-2").read_bytes() == fashion
    assert notes.notes == [
        f"The cached file {cache / stem} is not MNIST's (its sha256 does not match: it is "
        f"damaged, or another dataset's file of the same name); it was moved to "
        f"{cache / stem}.mismatch-2."
    ]


def test_a_cached_mnist_file_under_another_ones_name_is_named_as_it_is_moved_aside(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    cache = data.data_dir()
    cache.mkdir(parents=True)
    train, test = "train-images-idx3-ubyte", "t10k-images-idx3-ubyte"
    (cache / train).write_bytes(synthetic.raw[test])
    notes = _Notes()

    data.import_mnist(source, notices=notes)

    assert (cache / train).read_bytes() == synthetic.raw[train]
    assert (cache / f"{train}.mismatch").read_bytes() == synthetic.raw[test]
    assert notes.notes == [
        f"The cached file {cache / train} is MNIST's {test}, under the wrong name; it was "
        f"moved to {cache / train}.mismatch."
    ]


def test_import_leaves_cached_files_that_already_verify_as_they_are(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    shared = write_mirror(tmp_path / "shared", synthetic.raw, compress=False)
    cache = data.data_dir()
    cache.mkdir(parents=True)
    for stem in STEMS:  # the user's own links to a verified copy, as `mlp data fetch` accepts
        (cache / stem).symlink_to(shared / stem)

    paths = data.import_mnist(source)

    assert paths == {stem: cache / stem for stem in STEMS}
    assert all((cache / stem).is_symlink() for stem in STEMS)
    assert {stem: path.read_bytes() for stem, path in paths.items()} == synthetic.raw


def test_import_names_a_folder_in_place_of_a_cache_file(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    in_the_way = data.data_dir() / "train-labels-idx1-ubyte"
    (in_the_way / "inside").mkdir(parents=True)

    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    message = str(info.value)
    assert f"Cannot install the MNIST file {in_the_way}: a folder of that name" in message
    assert "disk space" not in message
    assert (in_the_way / "inside").is_dir()


def test_import_of_a_file_larger_than_ulimit_f_allows_names_that_limit(
    synthetic: Synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)

    def too_large(fd: int) -> None:  # what writing past RLIMIT_FSIZE gives, SIGXFSZ ignored
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(os, "fsync", too_large)
    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    message = str(info.value)
    assert "`ulimit -f`" in message
    assert "disk space" not in message
    assert not any(data.data_dir().iterdir())


@pytest.mark.parametrize("kind", ["a named pipe (FIFO)", "a link to nowhere"])
def test_import_replaces_no_pipe_or_link_in_place_of_a_cache_file(
    synthetic: Synthetic, tmp_path: Path, kind: str
) -> None:
    source = write_mirror(tmp_path / "offline", synthetic.raw)
    in_the_way = data.data_dir() / "train-labels-idx1-ubyte"
    in_the_way.parent.mkdir(parents=True)
    if kind.startswith("a named pipe"):
        os.mkfifo(in_the_way)
    else:
        in_the_way.symlink_to(tmp_path / "nowhere")

    with pytest.raises(DataError) as info:
        data.import_mnist(source)

    assert f"Cannot install the MNIST file {in_the_way}: {kind} of that name" in str(info.value)
    assert os.path.lexists(in_the_way)
    assert not in_the_way.is_file()


def test_a_folder_in_place_of_a_cache_file_is_named_and_kept() -> None:
    in_the_way = data.data_dir() / "t10k-labels-idx1-ubyte"
    (in_the_way / "inside").mkdir(parents=True)

    with pytest.raises(DataError) as info:
        data.load_mnist("test", download=False)

    assert f"The cached MNIST file {in_the_way} is a folder. Move or rename" in str(info.value)
    assert "permissions" not in str(info.value)
    assert (in_the_way / "inside").is_dir()


@pytest.mark.parametrize("kind", ["a named pipe (FIFO)", "a character device"])
def test_a_pipe_or_device_in_place_of_a_cache_file_is_named_and_kept(kind: str) -> None:
    in_the_way = data.data_dir() / "t10k-labels-idx1-ubyte"
    in_the_way.parent.mkdir(parents=True)
    if kind.startswith("a named pipe"):
        os.mkfifo(in_the_way)
    else:
        in_the_way.symlink_to("/dev/zero")

    with pytest.raises(DataError) as info:
        data.load_mnist("test", download=False)

    message = str(info.value)
    assert f"The cached MNIST file {in_the_way} cannot be read: it is {kind}" in message
    assert "Move or rename it" in message
    assert "permissions" not in message
    assert os.path.lexists(in_the_way)


def test_a_loop_of_links_in_place_of_a_cache_file_is_named_and_kept() -> None:
    in_the_way = data.data_dir() / "t10k-labels-idx1-ubyte"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.symlink_to(in_the_way.name)

    with pytest.raises(DataError) as info:
        data.load_mnist("test", download=False)

    message = str(info.value)
    assert f"The cached MNIST file {in_the_way} cannot be read: " in message
    assert "symbolic links" in message
    assert "Move or rename it" in message
    assert "permissions" not in message
    assert in_the_way.is_symlink()


def test_a_link_to_nowhere_in_place_of_a_cache_file_is_named_before_any_download(
    synthetic: Synthetic, serve_folder: ServeFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's link to a copy on a drive that is not mounted: a download could not be
    # installed over it, and the mirrors are not what is wrong.
    mirror = serve_folder(synthetic.folder)
    monkeypatch.setenv(data.MIRROR_ENV, mirror.url)
    in_the_way = data.data_dir() / "t10k-labels-idx1-ubyte"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.symlink_to("/mnt/no-such-drive/t10k-labels-idx1-ubyte")

    with pytest.raises(DataError) as info:
        data.load_mnist("test")

    message = str(info.value)
    assert (
        f"The cached MNIST file {in_the_way} is a link to "
        "'/mnt/no-such-drive/t10k-labels-idx1-ubyte', which does not exist" in message
    )
    assert mirror.requested == []
    assert in_the_way.is_symlink()


def test_import_refuses_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        data.import_mnist(tmp_path / "nowhere")


def test_import_from_the_home_of_a_user_the_system_does_not_know_is_a_usage_error() -> None:
    # As a shell does, "~name" of an unknown user is left as it is, a name like any other.
    with pytest.raises(UsageError, match="~nosuchuser-mlp/mnist: it is not a folder"):
        data.import_mnist("~nosuchuser-mlp/mnist")


# --------------------------------------------------------------------------- info


def test_cached_files_and_info_describe_the_cache(
    synthetic: Synthetic, serve_folder: ServeFolder
) -> None:
    assert [row["present"] for row in data.mnist_info()] == [False] * 4
    server = serve_folder(synthetic.folder)
    data.fetch_mnist(mirror=server.url)
    damaged = data.data_dir() / "t10k-images-idx3-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-1])

    rows = {row["name"]: row for row in data.mnist_info()}

    for stem, raw in synthetic.raw.items():
        row = rows[stem]
        on_disk = (data.data_dir() / stem).read_bytes()
        assert row["present"]
        assert row["bytes"] == len(on_disk)
        assert row["sha256"] == sha256(on_disk)
        assert row["verified"] == (on_disk == raw)
    assert rows["t10k-images-idx3-ubyte"]["error"] is not None
    assert rows["t10k-images-idx3-ubyte"]["count"] is None
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        assert rows[stem]["count"] == len(synthetic.arrays[stem])
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        expected = [int((synthetic.arrays[stem] == k).sum()) for k in range(10)]
        assert rows[stem]["label_counts"] == expected


def test_info_parses_a_cache_in_a_folder_whose_name_says_labels(
    synthetic: Synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each file is an images or a labels file by its own name, not by the folder's.
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / "mnist-labels"))
    data.import_mnist(synthetic.folder)

    rows = {row["name"]: row for row in data.mnist_info()}

    for stem, array in synthetic.arrays.items():
        assert rows[stem]["error"] is None
        assert rows[stem]["count"] == len(array)


def test_data_hashes_is_a_copy_of_the_registry() -> None:
    hashes = data.data_hashes()
    assert hashes == data.MNIST_FILES
    hashes.clear()
    assert len(data.MNIST_FILES) == 4


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize(("n", "k"), [(10, 0), (10, 3), (1000, 100), (2, 1)])
def test_validation_split_partitions_all_indices(n: int, k: int) -> None:
    train_idx, val_idx = data.validation_split(n, k, seed=7)
    assert train_idx.dtype == np.int64
    assert val_idx.dtype == np.int64
    assert len(val_idx) == k
    assert len(train_idx) == n - k
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(n))


def test_validation_split_is_determined_by_the_seed() -> None:
    a_train, a_val = data.validation_split(1000, 100, seed=3)
    b_train, b_val = data.validation_split(1000, 100, seed=3)
    _, c_val = data.validation_split(1000, 100, seed=4)
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_val, b_val)
    assert not np.array_equal(a_val, c_val)
    expected = set(np.random.default_rng(3).permutation(1000)[:100].tolist())
    assert set(a_val.tolist()) == expected


def test_validation_split_leaves_the_global_rng_alone() -> None:
    before = pickle.dumps(np.random.get_state())
    data.validation_split(100, 10, seed=0)
    assert pickle.dumps(np.random.get_state()) == before


@pytest.mark.parametrize(("n", "k", "seed"), [(10, 10, 0), (10, -1, 0), (0, 0, 0), (10, 2, -1)])
def test_validation_split_refuses_impossible_sizes(n: int, k: int, seed: int) -> None:
    with pytest.raises(UsageError):
        data.validation_split(n, k, seed)


# --------------------------------------------------------------------------- real MNIST


def test_real_mnist_end_to_end(mnist_mirror: LoopbackServer) -> None:
    paths = data.fetch_mnist()

    for stem, path in paths.items():
        original = real_mnist_bytes(stem)
        assert sha256(path.read_bytes()) == sha256(original) == data.MNIST_FILES[stem]
    assert all(row["verified"] for row in data.mnist_info())

    for split, n in [("train", 60000), ("test", 10000)]:
        images, labels = data.load_mnist(split, download=False)  # type: ignore[arg-type]
        assert images.shape == (n, 28, 28)
        assert labels.shape == (n,)
        assert images.dtype == labels.dtype == np.uint8
        # Independent reading: MNIST's IDX headers are 16 (images) and 8 (labels) bytes.
        raw_labels = paths[data.SPLITS[split][1]].read_bytes()[8:]
        expected_counts = np.bincount(np.frombuffer(raw_labels, np.uint8), minlength=10)
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), expected_counts)
        assert expected_counts.sum() == n
        raw_images = paths[data.SPLITS[split][0]].read_bytes()[16:]
        np.testing.assert_array_equal(images.reshape(-1), np.frombuffer(raw_images, np.uint8))


def test_standardization_statistics_are_those_of_the_training_split_alone(
    mnist_mirror: LoopbackServer,
) -> None:
    from mlp_cli.config import config_from_yaml

    cfg = config_from_yaml(
        "model:\n  layers: 784-10\ndata:\n  normalize: standardize\n  validation_size: 30000\n"
    )
    splits = data.prepare_data(cfg)
    images, _ = data.load_mnist("train", download=False)
    train_idx, _ = data.validation_split(60000, 30000, cfg.training.seed)
    pixels = images[train_idx].astype(np.float64) / 255  # (30000, 28, 28)
    stats = splits.preprocessing["normalize"]
    assert stats["mean"] == pytest.approx(pixels.mean(), rel=1e-6)
    assert stats["std"] == pytest.approx(pixels.std(), rel=1e-6)


def _pytest_with(env: dict[str, str], test: str) -> subprocess.CompletedProcess[str]:
    """Run one test of this suite in a fresh pytest with `env` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )


@pytest.mark.slow
def test_real_data_tests_use_mlps_cache_or_say_how_to_enable_them(tmp_path: Path) -> None:
    require_real_mnist()
    test = "tests/test_augment.py::test_elastic_distortion_moves_ink_but_keeps_it"
    elsewhere = str(tmp_path / "no-copy-here")

    cache = tmp_path / "cache"  # what `mlp data fetch` leaves: the four raw, verified files
    cache.mkdir()
    for stem in data.MNIST_FILES:
        (cache / stem).write_bytes(real_mnist_bytes(stem))
    found = _pytest_with({"MLP_TEST_MNIST_DIR": elsewhere, data.DATA_DIR_ENV: str(cache)}, test)
    assert "1 passed" in found.stdout, found.stdout + found.stderr

    (cache / "t10k-labels-idx1-ubyte").write_bytes(b"damaged")
    skipped = _pytest_with({"MLP_TEST_MNIST_DIR": elsewhere, data.DATA_DIR_ENV: str(cache)}, test)
    assert "1 skipped" in skipped.stdout, skipped.stdout + skipped.stderr
    reason = " ".join(skipped.stdout.split())
    assert f"looked in {elsewhere} and in the mlp cache {cache}" in reason
    assert "run `mlp data fetch` or set MLP_TEST_MNIST_DIR" in reason


def test_a_mismatching_cache_file_moved_by_another_process_first_counts_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two mlp processes can read the same file that is not MNIST's; the one that comes
    # second finds it gone when it moves it aside, which is what it wanted.
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    stem = "t10k-labels-idx1-ubyte"
    (tmp_path / stem).write_bytes(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + bytes(10))
    move_aside = data._move_aside

    def moved_first(path: Path) -> Path:
        path.rename(path.with_name(path.name + ".mismatch"))  # the other process
        return move_aside(path)

    monkeypatch.setattr(data, "_move_aside", moved_first)
    assert data._read_cached(stem) is None
    assert (tmp_path / f"{stem}.mismatch").is_file()
    assert not (tmp_path / f"{stem}.mismatch-2").exists()
    with pytest.raises(FileNotFoundError):
        move_aside(tmp_path / stem)
