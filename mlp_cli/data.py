"""MNIST: where it comes from, where it is kept, how it is checked and how it is parsed.

This module owns the dataset registry (`MNIST_FILES`: each file's sha256), the mirror
order, the local cache, offline import, the strict IDX parser and the train/validation
split. Every file is pinned by the sha256 of its *decompressed* IDX bytes, because the
gzip wrapper differs between mirrors (and between re-compressed offline copies) while
the IDX content does not.

Cache layout: `data_dir()` holds the four verified, decompressed IDX files under their
stem (`train-images-idx3-ubyte`, ...). A file only ever gets its final name through an
atomic rename after its hash matched, so the cache never holds a partial or unverified
file under a final name; downloads are staged in a hidden temporary folder next to it.

Left out on purpose: conversion to float and normalization (`mlp_cli.preprocess`),
batching and shuffling (`mlp_cli.train`), any dataset other than MNIST, and all
printing: download progress goes to the progress-bar object the caller supplies.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import numpy as np

from mlp_cli.config import MNIST_TRAINING_IMAGES  # items in MNIST's largest file
from mlp_cli.errors import DataError, UsageError
from mlp_cli.limits import open_regular, read_regular

if TYPE_CHECKING:
    from collections.abc import Iterable

# file stem -> sha256 of the decompressed IDX bytes (identical on every mirror).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# split -> (images stem, labels stem)
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Public mirrors, tried in this order after MLP_MNIST_MIRROR and data.mirror.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

MIRROR_ENV = "MLP_MNIST_MIRROR"  # a mirror tried before all others
DATA_DIR_ENV = "MLP_DATA_DIR"  # overrides the cache folder
IMAGE_SHAPE = (28, 28)  # (height, width) of every MNIST digit
NUM_CLASSES = 10  # labels are 0..9

_IDX_UBYTE = 0x08  # IDX element type code of unsigned bytes, the only one MNIST uses
_IDX_TYPE_NAMES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_MAX_HEADER = 4 + 4 * 255  # magic + at most 255 big-endian uint32 dimensions
# Upper bound on a decompressed file (the largest MNIST file is 47,040,016 bytes): a
# mirror that serves a gzip bomb is stopped here instead of filling the memory.
_MAX_IDX_BYTES = 64 * 2**20
_GZIP_MAGIC = b"\x1f\x8b"
_TIMEOUT_S = 30  # per connect / read, so a black-holed mirror does not hang forever
_CHUNK = 2**16  # download chunk size in bytes

_Kind = Literal["images", "labels"]
_NDIM: dict[_Kind, int] = {"images": 3, "labels": 1}  # IDX dimensions of each kind


class _SourceError(Exception):
    """One source (a mirror, a file to import) did not deliver the right bytes; the
    message says what happened and is gathered into the DataError users see."""


# --------------------------------------------------------------------------- locations


def data_dir() -> Path:
    """The cache folder: `$MLP_DATA_DIR` if set, else `pooch.os_cache("mlp") / "mnist"`.

    Nothing is created here; folders are made when a file is written.
    """
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    import pooch

    return Path(pooch.os_cache("mlp")) / "mnist"


def mirror_list(mirror: str | None = None) -> list[str]:
    """Mirror base URLs in the order they are tried, each ending in "/".

    `$MLP_MNIST_MIRROR` comes first, then `mirror` (the config key data.mirror), then
    `DEFAULT_MIRRORS`; empty values are skipped and repeats dropped. Raises DataError for
    a mirror that is not an http(s) URL.
    """
    candidates = [
        (os.environ.get(MIRROR_ENV), f"the environment variable {MIRROR_ENV}"),
        (mirror, "the mirror argument, i.e. the config key data.mirror"),
        *((url, "DEFAULT_MIRRORS") for url in DEFAULT_MIRRORS),
    ]
    mirrors: list[str] = []
    for url, origin in candidates:
        if url is None or not url.strip():
            continue
        normalized = _normalize_mirror(url.strip(), origin)
        if normalized not in mirrors:
            mirrors.append(normalized)
    return mirrors


def _normalize_mirror(url: str, origin: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DataError(
            f"The MNIST mirror {url!r} (from {origin}) is not an http:// or https:// URL. "
            "A mirror is a web folder holding the four MNIST .gz files, for example "
            "'https://ossci-datasets.s3.amazonaws.com/mnist/'. To use files that are already "
            "on this machine, run `mlp data import DIR` instead."
        )
    return url if url.endswith("/") else url + "/"


# --------------------------------------------------------------------------- cache


def cached_files() -> dict[str, Path | None]:
    """Stem -> cached path, or None when absent. No network and no hashing.

    Presence is enough here because a file only gets its final name after it was
    verified; loaders still re-hash before use.
    """
    directory = data_dir()
    return {
        stem: (directory / stem if (directory / stem).is_file() else None) for stem in MNIST_FILES
    }


def mnist_info() -> list[dict[str, Any]]:
    """One dict per MNIST file describing its cached copy. No network.

    Keys: name, path (Path), present, verified (sha256 matches), bytes (size on disk),
    sha256 (of the cached file), expected_sha256, count (items in the file),
    label_counts (list of 10 ints, label files only), error (why the file does not
    parse). Fields that need the file are None when it is absent; hashing all four
    files takes a fraction of a second.
    """
    directory = data_dir()
    rows: list[dict[str, Any]] = []
    for stem, expected in MNIST_FILES.items():
        path = directory / stem
        row: dict[str, Any] = {
            "name": stem,
            "path": path,
            "present": path.is_file(),
            "verified": False,
            "bytes": None,
            "sha256": None,
            "expected_sha256": expected,
            "count": None,
            "label_counts": None,
            "error": None,
        }
        if row["present"]:
            try:
                raw = read_regular(path, _MAX_IDX_BYTES)
            except OSError as exc:
                row["error"] = f"cannot be read: {exc.strerror or exc}"
                rows.append(row)
                continue
            row["bytes"] = len(raw)
            row["sha256"] = hashlib.sha256(raw).hexdigest()
            row["verified"] = row["sha256"] == expected
            try:
                array = read_idx(raw, str(path))
            except DataError as exc:
                row["error"] = str(exc)
            else:
                row["count"] = int(array.shape[0])
                if array.ndim == 1:
                    row["label_counts"] = np.bincount(array, minlength=NUM_CLASSES).tolist()
        rows.append(row)
    return rows


def data_hashes() -> dict[str, str]:
    """Stem -> sha256 of the decompressed IDX bytes, for checkpoint metadata (a copy)."""
    return dict(MNIST_FILES)


def _read_cached(stem: str) -> bytes | None:
    """The verified bytes of a cached file, or None when it is absent.

    The file is re-hashed on every read rather than trusting a sidecar: hashing all of
    MNIST costs well under 0.2 s, it catches a cache damaged after it was written, and
    the bytes that were hashed are the very bytes that get parsed. A file that no longer
    matches is removed, so the cache only ever holds verified files.
    """
    path = data_dir() / stem
    try:
        raw = _read_idx_file(path, str(path), None, damaged=b"")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataError(
            f"The cached MNIST file {path} cannot be read ({exc}). Check its permissions, "
            f"or point {DATA_DIR_ENV} at a folder you can read and write."
        ) from exc
    if hashlib.sha256(raw).hexdigest() != MNIST_FILES[stem]:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise DataError(
                f"The cached MNIST file {path} is damaged (its sha256 no longer matches) and "
                f"cannot be removed ({exc}). Delete it by hand, or point {DATA_DIR_ENV} at a "
                "folder you can write to."
            ) from exc
        return None
    return raw


def _install(stem: str, raw: bytes) -> Path:
    """Write verified bytes into the cache: temporary file, then an atomic rename."""
    directory = data_dir()
    final = directory / stem
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".tmp")
    except OSError as exc:
        raise _cache_write_error(directory, exc) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private; a cache is ordinary readable data.
        tmp.chmod(0o644)
        tmp.replace(final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cache_write_error(directory, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _cache_write_error(directory: Path, exc: OSError) -> DataError:
    return DataError(
        f"Cannot write to the MNIST cache folder {directory} ({exc}). Free some disk space "
        f"or set {DATA_DIR_ENV} to a folder you can write to."
    )


def _decode(path: Path) -> bytes:
    """The IDX bytes of a downloaded or imported file, gzip-compressed or raw.

    Raises _SourceError for a file that is not valid gzip or is larger than any MNIST
    file.
    """
    try:
        with open_regular(path) as handle:  # a named pipe would block the import forever
            compressed = handle.read(2) == _GZIP_MAGIC
            handle.seek(0)
            raw = b"" if compressed else handle.read(_MAX_IDX_BYTES + 1)
    except OSError as exc:
        raise _SourceError(f"cannot be read ({exc})") from exc
    if compressed:
        try:
            with gzip.open(path, "rb") as stream:
                raw = stream.read(_MAX_IDX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise _SourceError(f"is not a complete gzip file ({exc})") from exc
    if len(raw) > _MAX_IDX_BYTES:
        raise _SourceError(
            f"holds more than {_MAX_IDX_BYTES:,} bytes, far more than any MNIST file"
        )
    return raw


def _hash_problem(raw: bytes, stem: str) -> str | None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest == MNIST_FILES[stem]:
        return None
    return f"its decompressed sha256 is {digest}, expected {MNIST_FILES[stem]}"


# --------------------------------------------------------------------------- download


def fetch_mnist(*, mirror: str | None = None, progressbar: Any = False) -> dict[str, Path]:
    """Make sure all four MNIST files are cached and verified; stem -> cached path.

    Only files missing from the cache (or no longer matching their hash) are downloaded;
    a fully cached dataset needs no network. `progressbar` goes to pooch's
    HTTPDownloader: False, True (needs tqdm) or a tqdm-like object, which is reused for
    each file (pooch sets `.total`, calls `.update`, `.reset` and `.close` per file; when
    it has `set_description`, that is called with the file name first).
    """
    missing = [stem for stem in MNIST_FILES if _read_cached(stem) is None]
    if missing:
        _download(missing, mirror=mirror, progressbar=progressbar)
    directory = data_dir()
    return {stem: directory / stem for stem in MNIST_FILES}


def _download(stems: Iterable[str], *, mirror: str | None, progressbar: Any) -> dict[str, bytes]:
    """Download, verify and install each stem; stem -> verified IDX bytes."""
    import pooch

    # pooch reports every download through its own logger; the library stays silent.
    pooch.get_logger().setLevel("WARNING")
    try:
        downloader = pooch.HTTPDownloader(
            progressbar=progressbar, chunk_size=_CHUNK, timeout=_TIMEOUT_S
        )
    except ValueError as exc:  # progressbar=True without tqdm installed
        raise UsageError(
            f"Cannot show a download progress bar: {exc} Install tqdm, or pass a "
            "progress-bar object or progressbar=False."
        ) from exc
    # A mirror that failed once goes to the back of the queue for the remaining files,
    # so an unreachable first mirror costs one timeout per call, not one per file.
    order = mirror_list(mirror)
    result: dict[str, bytes] = {}
    for stem in stems:
        failures: list[str] = []
        for base in list(order):
            if hasattr(progressbar, "set_description"):
                progressbar.set_description(f"{stem}.gz")
            try:
                raw = _download_from(base, stem, downloader)
            except _SourceError as exc:
                failures.append(f"  - {base}: {exc}")
                order.remove(base)
                order.append(base)
                continue
            _install(stem, raw)
            result[stem] = raw
            break
        else:
            raise _all_mirrors_failed(stem, failures)
    return result


def _download_from(base: str, stem: str, downloader: Any) -> bytes:
    """The verified IDX bytes of `stem` from one mirror; _SourceError says what went wrong.

    The .gz is staged in a temporary folder inside the cache folder (same file system,
    cleaned up whatever happens), so neither a dropped connection nor a wrong file can
    leave anything behind under a final name.
    """
    import pooch
    import requests

    directory = data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = tempfile.TemporaryDirectory(dir=directory, prefix=".download-")
    except OSError as exc:
        raise _cache_write_error(directory, exc) from exc
    with staging as folder:
        try:
            gz_path = pooch.retrieve(
                base + stem + ".gz",
                known_hash=None,  # the .gz differs between mirrors; the IDX hash is checked below
                fname=stem + ".gz",
                path=folder,
                downloader=downloader,
            )
        except requests.RequestException as exc:
            raise _SourceError(_describe_request_error(exc)) from exc
        except OSError as exc:
            raise _SourceError(f"could not be stored while downloading ({exc})") from exc
        try:
            raw = _decode(Path(gz_path))
        except _SourceError as exc:
            raise _SourceError(f"served a {stem}.gz that {exc}") from exc
    problem = _hash_problem(raw, stem)
    if problem is not None:
        raise _SourceError(f"served a wrong {stem}.gz: {problem}; the download was deleted")
    return raw


def _describe_request_error(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"answered HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.Timeout):
        return f"did not answer within {_TIMEOUT_S} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        incomplete = re.search(r"IncompleteRead\([^)]*\)", str(exc))
        detail = incomplete.group(0) if incomplete else _shorten(str(exc))
        return f"connection dropped before the whole file arrived ({detail})"
    if isinstance(exc, requests.ConnectionError):
        # requests nests the useful part ("[Errno 111] Connection refused", "[Errno -2]
        # Name or service not known") deep inside urllib3's wrapper text.
        errno = re.search(r"\[Errno [^\]]*\][^'\")(]*", str(exc))
        reason = errno.group(0).strip() if errno else _shorten(str(exc))
        return f"connection failed ({reason})"
    return f"{type(exc).__name__}: {_shorten(str(exc))}"


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _all_mirrors_failed(stem: str, failures: list[str]) -> DataError:
    tried = "\n".join(failures) if failures else "  (no mirror configured)"
    return DataError(
        f"Could not download the MNIST file {stem}.gz: every mirror failed, tried in this "
        f"order:\n{tried}\nNo partial or unverified file was left in the cache "
        f"({data_dir()}). If this machine has no internet access, copy the four MNIST "
        "files (.gz or raw IDX) into a folder and run `mlp data import DIR`; otherwise set "
        f"{MIRROR_ENV} (or data.mirror in the config) to a mirror you can reach."
    )


# --------------------------------------------------------------------------- import


def import_mnist(src: str | Path) -> dict[str, Path]:
    """Install an offline copy of MNIST from a folder; stem -> cached path.

    The folder holds each file as `<stem>.gz` or raw `<stem>` (the `train-images.idx3-ubyte`
    spelling is accepted too). Each file is verified against `MNIST_FILES` exactly like a
    download. Verified files are installed even when others are missing or wrong; a
    DataError then names every missing or bad file.
    """
    folder = Path(src).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"Cannot import MNIST from {folder}: it is not a folder. Give the folder that "
            f"holds the four files ({', '.join(f'{s}.gz' for s in MNIST_FILES)})."
        )
    installed: dict[str, Path] = {}
    problems: list[str] = []
    for stem in MNIST_FILES:
        candidates = [folder / name for name in _import_names(stem) if (folder / name).is_file()]
        if not candidates:
            problems.append(f"  - {stem}: missing (looked for {stem}.gz and {stem})")
            continue
        file_problems: list[str] = []
        for candidate in candidates:
            try:
                raw = _decode(candidate)
            except _SourceError as exc:
                file_problems.append(f"  - {candidate}: {exc}")
                continue
            problem = _hash_problem(raw, stem)
            if problem is not None:
                file_problems.append(f"  - {candidate}: not the MNIST file {stem}: {problem}")
                continue
            installed[stem] = _install(stem, raw)
            break
        else:
            problems.extend(file_problems)
    if problems:
        done = ", ".join(installed) if installed else "none"
        raise DataError(
            f"Could not import MNIST from {folder}:\n"
            + "\n".join(problems)
            + f"\nFiles verified and installed: {done}. Put the original MNIST files "
            "(from a public mirror, .gz or decompressed) in the folder and run the import "
            "again."
        )
    return installed


def _import_names(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some archives spell it
    return [f"{stem}.gz", stem, f"{dotted}.gz", dotted]


# --------------------------------------------------------------------------- IDX


def read_idx(source: str | Path | bytes, name: str, *, kind: _Kind | None = None) -> np.ndarray:
    """Parse one MNIST IDX file strictly; uint8 (N, 28, 28) images or uint8 (N,) labels.

    `name` is used in error messages (a file name or path). `kind` defaults to what
    `name` says ("images" / "labels" in it), else to what the header's number of
    dimensions says. Every problem raises DataError naming the file: bad magic number,
    element type other than uint8, wrong number of dimensions, images not 28x28,
    payload shorter or longer than the header declares (checked against the file size
    before anything is allocated), labels outside 0..9.

    Bytes are wrapped with np.frombuffer, so the result is a read-only view of the one
    buffer read from disk; copy it to modify it.
    """
    if kind is None:
        kind = "labels" if "labels" in name else "images" if "images" in name else None
    if isinstance(source, bytes | bytearray | memoryview):
        data = source
    else:
        try:
            data = _read_idx_file(Path(source), name, kind)
        except OSError as exc:
            raise DataError(f"Cannot read the IDX file {name} ({exc.strerror or exc}).") from exc
    dims, offset = _parse_header(bytes(data[:_MAX_HEADER]), len(data), name, kind)
    count = int(np.prod(dims, dtype=np.int64))
    array = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset).reshape(dims)
    if array.ndim == 1 and array.size and int(array.max()) >= NUM_CLASSES:
        bad = int(np.flatnonzero(array >= NUM_CLASSES)[0])
        raise _idx_error(
            name, f"label {int(array[bad])} at index {bad} is outside 0..{NUM_CLASSES - 1}"
        )
    return array


def _read_idx_file(
    path: Path, name: str, kind: _Kind | None, *, damaged: bytes | None = None
) -> bytes:
    """Read a regular file after checking its header against its size and against what
    MNIST can hold, so a header that declares gigabytes is refused without reading or
    allocating them. A header that cannot be MNIST's raises DataError, or returns
    `damaged` when that is given. OSError (a missing file, a pipe) is left to the caller."""
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            _parse_header(handle.read(_MAX_HEADER), size, name, kind)
        except DataError:
            if damaged is None:
                raise
            return damaged
        handle.seek(0)
        data = handle.read(size)
    if len(data) != size:
        raise _idx_error(name, f"it changed size while being read ({size} then {len(data)} bytes)")
    return data


def _parse_header(
    head: bytes, size: int, name: str, kind: _Kind | None
) -> tuple[tuple[int, ...], int]:
    """Validate an IDX header; (dims, payload offset). `head` is the file's first bytes,
    `size` its full length."""
    if size < 4:
        raise _idx_error(name, f"it holds {size} bytes, too few for the 4-byte IDX magic number")
    if head[0] != 0 or head[1] != 0:
        hint = " It looks gzip-compressed: decompress it first." if head[:2] == _GZIP_MAGIC else ""
        raise _idx_error(
            name,
            f"its magic number starts with bytes 0x{head[0]:02x} 0x{head[1]:02x}, expected "
            f"two zero bytes.{hint}",
        )
    type_code, ndim = head[2], head[3]
    if type_code != _IDX_UBYTE:
        found = _IDX_TYPE_NAMES.get(type_code, "not an IDX type")
        raise _idx_error(
            name, f"its element type code is 0x{type_code:02x} ({found}), expected 0x08 (uint8)"
        )
    expected_ndim = _NDIM[kind] if kind is not None else None
    if expected_ndim is None and ndim not in (1, 3):
        raise _idx_error(name, f"it has {ndim} dimensions, expected 3 (images) or 1 (labels)")
    if expected_ndim is not None and ndim != expected_ndim:
        raise _idx_error(name, f"it has {ndim} dimensions, expected {expected_ndim} for {kind}")
    offset = 4 + 4 * ndim
    if size < offset:
        raise _idx_error(
            name, f"it holds {size} bytes, too few for a header with {ndim} dimensions"
        )
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and dims[1:] != IMAGE_SHAPE:
        raise _idx_error(
            name, f"its images are {dims[1]}x{dims[2]}, expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}"
        )
    # Python ints cannot overflow, so an absurd declared size is simply unequal to `size`.
    declared = 1
    for dim in dims:
        declared *= dim
    payload = size - offset
    shape = "x".join(str(d) for d in dims)
    if payload != declared:
        verdict = "truncated" if payload < declared else "followed by extra bytes"
        raise _idx_error(
            name,
            f"its header declares shape {shape} ({declared:,} payload bytes) but the file "
            f"holds {payload:,} payload bytes: it is {verdict}",
        )
    if ndim and dims[0] > MNIST_TRAINING_IMAGES:
        raise _idx_error(
            name,
            f"its header declares shape {shape}, {dims[0]:,} items; MNIST files hold at most "
            f"{MNIST_TRAINING_IMAGES:,}",
        )
    return dims, offset


def _idx_error(name: str, problem: str) -> DataError:
    return DataError(
        f"{name} is not a valid MNIST IDX file: {problem}. The file is damaged or is not "
        "MNIST; delete it and download it again (`mlp data fetch`), or import a good "
        "copy with `mlp data import DIR`."
    )


# --------------------------------------------------------------------------- loading


def load_mnist(
    split: Literal["train", "test"],
    *,
    mirror: str | None = None,
    progressbar: Any = False,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels uint8 (N,) of one split, verified and parsed.

    Cached files are re-hashed and used without network; missing ones are downloaded
    when `download` is true (see `fetch_mnist`), otherwise DataError says how to get
    them. Both arrays are read-only views of the bytes read from disk.
    """
    if split not in SPLITS:
        raise UsageError(f"Unknown MNIST split {split!r}: expected 'train' or 'test'.")
    stems = SPLITS[split]
    blobs: dict[str, bytes] = {}
    missing: list[str] = []
    for stem in stems:
        raw = _read_cached(stem)
        if raw is None:
            missing.append(stem)
        else:
            blobs[stem] = raw
    if missing and not download:
        raise DataError(
            f"The MNIST {split} files are not in the cache ({data_dir()}): missing "
            f"{', '.join(missing)}. Download them (`mlp data fetch`) or import an "
            "offline copy (`mlp data import DIR`)."
        )
    if missing:
        blobs.update(_download(missing, mirror=mirror, progressbar=progressbar))
    directory = data_dir()
    images_stem, labels_stem = stems
    images_raw, labels_raw = blobs[images_stem], blobs[labels_stem]
    images = read_idx(images_raw, str(directory / images_stem), kind="images")  # (N, 28, 28)
    labels = read_idx(labels_raw, str(directory / labels_stem), kind="labels")  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"The MNIST {split} files disagree: {directory / images_stem} holds "
            f"{images.shape[0]:,} images but {directory / labels_stem} holds "
            f"{labels.shape[0]:,} labels. Delete both and download them again "
            "(`mlp data fetch`)."
        )
    return images, labels


# --------------------------------------------------------------------------- splits


def validation_split(n: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..n-1 into (train_idx, val_idx), int64, each sorted ascending.

    The validation set is the first `validation_size` entries of
    `np.random.default_rng(seed).permutation(n)`: same arguments, same split. Sorting
    keeps the gather from the image array cache-friendly; shuffling belongs to training.
    """
    if n < 1:
        raise UsageError(f"Cannot split a dataset of {n} examples: it needs at least one.")
    if not 0 <= validation_size < n:
        raise UsageError(
            f"validation_size is {validation_size}, but it must be at least 0 and smaller "
            f"than the {n:,} training examples so that some remain for training."
        )
    if seed < 0:
        raise UsageError(f"The split seed is {seed}; it must be a non-negative integer.")
    permutation = np.random.default_rng(seed).permutation(n)  # (n,)
    val_idx = np.sort(permutation[:validation_size]).astype(np.int64, copy=False)
    train_idx = np.sort(permutation[validation_size:]).astype(np.int64, copy=False)
    return train_idx, val_idx
