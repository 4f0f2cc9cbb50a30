"""MNIST: where it comes from, where it is kept, how it is checked and how it is parsed.

This module owns the dataset registry (`MNIST_FILES`: each file's sha256), the mirror
order, the local cache, offline import, the strict IDX parser, the train/validation
split, and `prepare_data`, which hands a training run its inputs and split. Every file
is pinned by the sha256 of its *decompressed* IDX bytes, because the gzip wrapper
differs between mirrors (and between re-compressed offline copies) while the IDX
content does not.

Cache layout: `data_dir()` holds the four verified, decompressed IDX files under their
stem (`train-images-idx3-ubyte`, ...). A file only ever gets its final name through an
atomic rename after its hash matched, so the cache never holds a partial or unverified
file under a final name; downloads are staged in a hidden temporary folder next to it.

Left out on purpose: how a digit becomes a network input (`mlp_cli.preprocess`, which
`prepare_data` calls), batching and shuffling (`mlp_cli.train`), any dataset other than
MNIST, and all printing: download progress goes to the progress-bar object the caller
supplies.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import importlib
import importlib.util
import math
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

import numpy as np
import numpy.typing as npt

from mlp_cli.config import MNIST_CLASSES
from mlp_cli.errors import DataError, UsageError
from mlp_cli.limits import (
    MNIST_SIDE,
    MNIST_TRAINING_IMAGES,
    NotRegularFileError,
    open_regular,
    read_regular,
    shorten,
)
from mlp_cli.outputs import advice, reason, special_kind
from mlp_cli.plain import shown

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mlp_cli.config import Config

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
MIRROR_KEY = "the config key data.mirror"  # where a mirror given to the library comes from
DATA_DIR_ENV = "MLP_DATA_DIR"  # overrides the cache folder
CACHE_HOME_ENV = "XDG_CACHE_HOME"  # where the OS cache folder lies on Linux, when set
IMAGE_SHAPE = (MNIST_SIDE, MNIST_SIDE)  # (height, width) of every MNIST digit
CLASS_NAMES = [str(d) for d in range(MNIST_CLASSES)]  # what a label k is called: the digit k

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
# Per file, from the first request to the last byte: a mirror that trickles a byte every few
# seconds never trips the read timeout, and is given up at this deadline instead.
_DEADLINE_S = 600
_MAX_REDIRECTS = 5
_CHUNK = 2**16  # download chunk size in bytes
# Decompressed size of each MNIST file (16-byte header + 28x28 pixels per image, 8-byte
# header + one byte per label). A download may be gzip-compressed or not, so it can never
# be larger than this plus gzip's overhead on incompressible data (below 1%).
_IDX_BYTES = {
    "train-images-idx3-ubyte": 16 + MNIST_TRAINING_IMAGES * MNIST_SIDE**2,
    "train-labels-idx1-ubyte": 8 + MNIST_TRAINING_IMAGES,
    "t10k-images-idx3-ubyte": 16 + 10_000 * MNIST_SIDE**2,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}
# Staging folders and temporary files are named with the pid of the process writing them,
# so leftovers of a killed process can be told from those of one still running. Only names
# of exactly the shape mlp gives them (prefix, pid, tempfile's eight random characters,
# suffix) are ever removed, so a user's own `.download-...` file or folder is left alone.
_STAGING_PREFIX = ".download-"
_RANDOM = r"[a-z0-9_]{8}"  # what tempfile puts between prefix and suffix
_STAGING = re.compile(rf"{re.escape(_STAGING_PREFIX)}(\d+)-{_RANDOM}")
_TEMPORARY = re.compile(rf"\.(?:{'|'.join(map(re.escape, MNIST_FILES))})\.(\d+)-{_RANDOM}\.tmp")
_STALE_S = 24 * 3600  # leftovers without a live owner, or older than this, are removed

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
        try:
            path = Path(override).expanduser()
        except RuntimeError:  # "~name/..." for a user this system does not know
            raise _bad_data_dir(
                DATA_DIR_ENV,
                f"{shorten(override, 300)!r}, whose '~' names no home folder on this system",
            ) from None
        _check_data_dir(path, DATA_DIR_ENV, f"'{shorten(shown(path), 300)}'")
        return path
    import pooch

    try:
        path = Path(pooch.os_cache("mlp")) / "mnist"
    except RuntimeError:  # platformdirs: no absolute HOME, and no home folder the system knows
        home = os.environ.get("HOME")
        told = (
            f"HOME is '{shorten(shown(home), 300)}', not an absolute path"
            if home
            else "HOME is not set"
        )
        raise UsageError(
            "The MNIST cache lies in the home folder unless set elsewhere, and this process"
            f" has none: {told}, and the system knows no home folder for this user"
            f" (a user ID without an entry in /etc/passwd). Set {DATA_DIR_ENV} to a folder"
            f" for mlp's data, or HOME or {CACHE_HOME_ENV} to an absolute folder path."
        ) from None
    if (variable := _cache_variable(path)) is not None:
        value = (
            f"'{shorten(shown(os.environ[variable]), 300)}', so the MNIST cache would be"
            f" '{shorten(shown(path), 300)}'"
        )
        _check_data_dir(path, variable, value)
    return path


def _cache_variable(directory: Path) -> str | None:
    """The environment variable that placed the cache folder `directory`, if one did."""
    if os.environ.get(DATA_DIR_ENV, "").strip():
        return DATA_DIR_ENV
    # As platformdirs reads it (pooch's os_cache): an absolute path, taken as it is; any
    # other value ("~/cache", "~nosuchuser/x") is ignored for the default ~/.cache.
    home = os.environ.get(CACHE_HOME_ENV, "")
    if os.path.isabs(home) and directory.is_relative_to(home):
        return CACHE_HOME_ENV
    return None


def _check_data_dir(path: Path, variable: str, value: str) -> None:
    """Refuse a cache folder, set by the environment `variable` to `value` (as it reads in
    a message), where no folder can ever be: a file, a name longer than the file system
    allows, a file in the middle of the path, a loop of links, a link to nothing."""
    try:
        os.stat(path)  # first: a link that leads nowhere is no file either
        if not os.path.isdir(os.path.realpath(path)) and os.path.lexists(path):
            raise _bad_data_dir(variable, f"{value}, which is a file, not a folder")
    except FileNotFoundError:
        # No folder is made through a link to nothing: its target may be a drive not mounted.
        links = (p for p in (path, *path.parents) if os.path.islink(p) and not os.path.exists(p))
        if (link := next(links, None)) is None:
            return  # made when the first file is written
        under = "" if link == path else f" under '{shorten(shown(link), 300)}',"
        raise _bad_data_dir(variable, f"{value},{under} {_link_to_nothing(link)}") from None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP):
            raise _bad_data_dir(
                variable, f"{value}, where no folder can be: {reason(exc)}"
            ) from None


def _link_to_nothing(link: Path) -> str:
    """The words "a link to 'T', which does not exist" for `link`; OSError if it is no link."""
    target, end = os.readlink(link), ""
    # A link to a link to nothing: the name it gives is there; the chain's end is not.
    if os.path.lexists(os.path.join(os.path.dirname(link), target)):
        end = f", which leads to '{shorten(shown(os.path.realpath(link)), 300)}'"
    return f"a link to '{shorten(shown(target), 300)}'{end}, which does not exist"


def _bad_data_dir(variable: str, problem: str) -> UsageError:
    advice = (
        f"Set it to a folder path, for example {DATA_DIR_ENV}=$HOME/mnist, or unset it to use "
        "the default cache."
        if variable == DATA_DIR_ENV
        else f"Set it to a folder path, or set {DATA_DIR_ENV} to a folder for mlp's data alone."
    )
    return UsageError(f"The environment variable {variable} is {problem}. {advice}")


def mirror_list(mirror: str | None = None, mirror_from: str = MIRROR_KEY) -> list[str]:
    """Mirror base URLs in the order they are tried, each ending in "/".

    `$MLP_MNIST_MIRROR` comes first, then `mirror` (from `mirror_from`: the config key
    data.mirror unless the caller says otherwise), then `DEFAULT_MIRRORS`; empty values
    are skipped and repeats dropped. Raises UsageError, naming where it came from, for a
    mirror that is not an http(s) URL.
    """
    candidates = [
        (os.environ.get(MIRROR_ENV), f"the environment variable {MIRROR_ENV}"),
        (mirror, mirror_from),
        *((url, "DEFAULT_MIRRORS") for url in DEFAULT_MIRRORS),
    ]
    normalized = (
        _normalize_mirror(url.strip(), origin) for url, origin in candidates if url and url.strip()
    )
    return list(dict.fromkeys(normalized))  # in order, repeats dropped


def _normalize_mirror(url: str, origin: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address, or port 99999
        parts = urlsplit("")
    # A URL holds no unescaped spaces or control characters.
    plain = url.isprintable() and not any(c.isspace() for c in url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not plain:
        raise UsageError(
            f"The MNIST mirror {shorten(url, 300)!r} (from {origin}) is not a valid http:// or"
            " https:// URL. "
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
    label_counts (one count per class, label files only), error (why the file does not
    parse). Fields that need the file are None when it is absent, and sha256 when it is
    larger than any MNIST file (it is not read). A killed download's
    leftovers are removed first, as by every reader of the cache.
    """
    directory = data_dir()
    remove_leftovers()
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
        rows.append(row)
        if not row["present"]:
            continue
        try:
            row["bytes"] = size = path.stat().st_size
            if size > _MAX_IDX_BYTES:  # no MNIST file is this large: neither read nor hashed
                problem = f"it holds {size:,} bytes, far more than any MNIST file"
                row["error"] = str(_idx_error(str(path), problem))
                continue
            raw = read_regular(path, _MAX_IDX_BYTES)
        except OSError as exc:
            row["error"] = f"cannot be read: {exc.strerror or exc}"
            continue
        row["sha256"] = hashlib.sha256(raw).hexdigest()
        row["verified"] = row["sha256"] == expected
        try:
            array = read_idx(raw, str(path))
        except DataError as exc:
            row["error"] = str(exc)
        else:
            row["count"] = int(array.shape[0])
            if array.ndim == 1:
                row["label_counts"] = np.bincount(array, minlength=MNIST_CLASSES).tolist()
    return rows


def data_hashes() -> dict[str, str]:
    """Stem -> sha256 of the decompressed IDX bytes, for checkpoint metadata (a copy)."""
    return dict(MNIST_FILES)


def _read_cached(stem: str, progressbar: Any = False) -> bytes | None:
    """The verified bytes of a cached file, or None when it is absent.

    The file is re-hashed on every read rather than trusting a sidecar: that catches a
    cache damaged after it was written, and the bytes that were hashed are the very bytes
    that get parsed. A file that does not match is moved aside, never deleted: it may be a
    damaged copy, but also another dataset's file (Fashion-MNIST uses the same names) that
    mlp did not make.
    """
    path = data_dir() / stem
    try:
        raw = _read_idx_file(path, str(path), None, damaged=b"")
    except FileNotFoundError:
        try:
            link = _link_to_nothing(path)
        except OSError:  # absent (or moved aside by another mlp first): to be downloaded
            return None
        # Say so before any download: none could be installed over the link, which may lead
        # to a copy on a drive not mounted.
        raise DataError(
            f"The cached MNIST file {shown(path)} is {link}. Make its target available, or "
            "move or rename the link (mlp leaves alone what it did not make), then run again."
        ) from None
    except OSError as exc:
        if path.is_dir():  # permissions are not the problem, and it may be the user's
            raise DataError(
                f"The cached MNIST file {shown(path)} is a folder. Move or rename that folder "
                "(mlp leaves alone what it did not make), then run again."
            ) from exc
        if isinstance(exc, NotRegularFileError) or exc.errno == errno.ELOOP:
            # A pipe, a device or a loop of links: no permission helps.
            raise DataError(
                f"The cached MNIST file {shown(path)} cannot be read: {reason(exc)}. Move or "
                "rename it (mlp leaves alone what it did not make), then run again."
            ) from exc
        raise DataError(
            f"The cached MNIST file {shown(path)} cannot be read ({exc}). Check its permissions, "
            f"or point {DATA_DIR_ENV} at a folder you can read and write."
        ) from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_FILES[stem]:
        other = _mnist_file_of(digest)
        mismatch = (
            f"The cached file {shown(path)} is not MNIST's (its sha256 does not match: it is "
            "damaged, or another dataset's file of the same name)"
            if other is None
            else f"The cached file {shown(path)} is MNIST's {other}, under the wrong name"
        )
        try:
            aside = _move_aside(path)
        except FileNotFoundError:  # another mlp moved it first: it is missing, as it should be
            return None
        except OSError as exc:
            raise DataError(
                f"{mismatch} and cannot be moved aside ({exc}). Move it away by hand, or point "
                f"{DATA_DIR_ENV} at a folder you can write to."
            ) from exc
        if callable(write := getattr(progressbar, "write", None)):  # as tqdm has
            write(f"{mismatch}; it was moved to {shown(aside)}.")
        return None
    return raw


def _move_aside(path: Path) -> Path:
    """Rename `path` to the first free `<name>.mismatch`, `<name>.mismatch-2`, ... next to
    it and return the new path; an existing file is never overwritten."""
    for number in range(1, 1000):
        aside = path.with_name(path.name + (".mismatch" if number == 1 else f".mismatch-{number}"))
        try:
            # A hard link fails when the name is taken, where a rename would replace it.
            os.link(path, aside)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if not path.exists():
                raise  # `path` itself is gone
            continue
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(aside):
                continue
            path.rename(aside)
            return aside
        path.unlink()
        return aside
    raise OSError(errno.EEXIST, "every name up to .mismatch-999 is taken")


def _install(stem: str, raw: bytes) -> Path:
    """Write verified bytes into the cache: temporary file, then an atomic rename."""
    directory = data_dir()
    final = directory / stem
    # The rename below would replace a folder, a pipe, a device or a link by the file.
    if (kind := special_kind(final)) is not None:
        raise DataError(
            f"Cannot install the MNIST file {shown(final)}: {kind} of that name is in the cache. "
            "Move or rename it (mlp leaves alone what it did not make), then run again."
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=directory, prefix=f".{stem}.{os.getpid()}-", suffix=".tmp"
        )
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
        if exc.errno == errno.EISDIR:  # only the rename can meet a folder
            raise DataError(
                f"Cannot install the MNIST file {shown(final)}: a folder of that name is in the "
                "cache. Move or rename that folder (mlp leaves alone what it did not make), "
                "then run again."
            ) from exc
        raise _cache_write_error(directory, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _cache_write_error(directory: Path, exc: OSError) -> DataError | UsageError:
    """A full disk is a run-time failure; a cache folder that is a file, too long a name or
    a folder without permission is a wrong setting, with the usage code."""
    variable = _cache_variable(directory)
    placed = f" (set by {variable})" if variable is not None else ""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return UsageError(
            f"The MNIST cache folder {shown(directory)}{placed} is a file, or lies under one, "
            f"not a folder. Set {DATA_DIR_ENV} to a folder (new, or one to write into), or unset "
            "it to use the default cache."
        )
    # ENOENT: a place that takes no new folders, such as /proc.
    if exc.errno in (errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        return UsageError(
            f"Cannot write to the MNIST cache folder {shown(directory)}{placed}: {reason(exc)}. "
            f"Set {DATA_DIR_ENV} to a folder you can write to."
        )
    if exc.errno == errno.EFBIG:  # no other folder takes a file larger than `ulimit -f`
        return DataError(
            f"Cannot write to the MNIST cache folder {shown(directory)}: {reason(exc)}. "
            f"{advice(exc)}"
        )
    return DataError(
        f"Cannot write to the MNIST cache folder {shown(directory)}: {reason(exc)}. Free some disk "
        f"space or set {DATA_DIR_ENV} to a folder you can write to."
    )


def _decode(path: Path) -> bytes:
    """The IDX bytes of a downloaded or imported file, gzip-compressed or raw.

    Raises _SourceError for a file that is not valid gzip or is larger than any MNIST
    file.
    """
    compressed = False
    try:
        with open_regular(path) as handle:  # a named pipe would block the import forever
            compressed = handle.read(2) == _GZIP_MAGIC
            handle.seek(0)
            stream = gzip.GzipFile(fileobj=handle, mode="rb") if compressed else handle
            raw = stream.read(_MAX_IDX_BYTES + 1)
    except FileNotFoundError as exc:
        problem = f"cannot be read ({exc})"
        with contextlib.suppress(OSError):  # readlink fails unless `path` is a link itself
            target = os.readlink(path)
            shown_target = shorten(target, 300)  # a link's target may be thousands long
            problem = f"is a broken link: it points to {shown_target!r}, which does not exist"
        raise _SourceError(problem) from exc
    except NotRegularFileError as exc:  # a pipe would hang the read, a device never end it
        raise _SourceError(f"cannot be read: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        problem = "is not a complete gzip file" if compressed else "cannot be read"
        raise _SourceError(f"{problem} ({exc})") from exc
    if len(raw) > _MAX_IDX_BYTES:
        raise _SourceError(
            f"holds more than {_MAX_IDX_BYTES:,} bytes, far more than any MNIST file"
        )
    return raw


def _hash_problem(raw: bytes, stem: str) -> str | None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest == MNIST_FILES[stem]:
        return None
    if (other := _mnist_file_of(digest)) is not None:
        return f"it is MNIST's {other}, under the wrong name"
    return f"its decompressed sha256 is {digest}, expected {MNIST_FILES[stem]}"


def _mnist_file_of(digest: str) -> str | None:
    """The MNIST file whose decompressed sha256 is `digest`, if any: train and test, or
    images and labels, swapped under each other's names, which a hash alone would not tell."""
    return next((stem for stem, known in MNIST_FILES.items() if known == digest), None)


# --------------------------------------------------------------------------- download


def fetch_mnist(
    *, mirror: str | None = None, progressbar: Any = False, mirror_from: str = MIRROR_KEY
) -> dict[str, Path]:
    """Make sure all four MNIST files are cached and verified; stem -> cached path.

    Only files missing from the cache (or no longer matching their hash) are downloaded;
    a fully cached dataset needs no network. `progressbar` is False, True (needs tqdm) or
    a tqdm-like object, which is reused for each file (`.total` is set, `.update`,
    `.reset` and `.close` are called per file; `set_description` is called with the file
    name first, and `write` with a notice such as a damaged cache file being removed,
    when the object has them). A falsy object with `write` gets the notices only.
    `mirror_from` says where `mirror` came from, for the error about a bad one.
    """
    _verified(list(MNIST_FILES), mirror, progressbar, download=True, mirror_from=mirror_from)
    directory = data_dir()
    return {stem: directory / stem for stem in MNIST_FILES}


def fetch_missing(*, mirror: str | None = None, progressbar: Any = False) -> None:
    """`fetch_mnist` when some file is missing from the cache, all four at once; a full
    cache is not hashed here, since its loaders hash what they read anyway."""
    if any(path is None for path in cached_files().values()):
        fetch_mnist(mirror=mirror, progressbar=progressbar)


def _verified(
    stems: list[str],
    mirror: str | None,
    progressbar: Any,
    *,
    download: bool,
    mirror_from: str = MIRROR_KEY,
) -> dict[str, bytes]:
    """Stem -> verified IDX bytes, from the cache, else downloaded when `download` is true;
    without it, the stems the cache lacks are left out."""
    # A bad mirror is refused whether or not anything is missing.
    mirrors = mirror_list(mirror, mirror_from) if download else []
    remove_leftovers()
    found = {stem: raw for stem in stems if (raw := _read_cached(stem, progressbar)) is not None}
    if download and (missing := [stem for stem in stems if stem not in found]):
        found.update(_download(missing, mirrors, progressbar=progressbar))
    return found


def _download(stems: Iterable[str], mirrors: list[str], *, progressbar: Any) -> dict[str, bytes]:
    """Download, verify and install each stem from the first of ``mirrors`` (`mirror_list`)
    that delivers it; stem -> verified IDX bytes."""
    if progressbar is True and importlib.util.find_spec("tqdm") is None:
        raise UsageError(
            "Cannot show a download progress bar: the package tqdm is not installed. Install "
            "tqdm, or pass a progress-bar object or progressbar=False."
        )
    # A mirror that failed once goes to the back of the queue for the remaining files,
    # so an unreachable first mirror costs one timeout per call, not one per file.
    order = list(mirrors)
    result: dict[str, bytes] = {}
    for stem in stems:
        failures: list[str] = []
        for base in list(order):
            if hasattr(progressbar, "set_description"):
                progressbar.set_description(f"{stem}.gz")
            try:
                raw = _download_from(base, stem, _Downloader(stem, progressbar))
            except _SourceError as exc:
                failures.append(f"  - {shorten(base, 300)}: {exc}")
                order.remove(base)
                order.append(base)
                continue
            _install(stem, raw)
            result[stem] = raw
            break
        else:
            tried = "\n".join(failures)  # mirror_list always ends with DEFAULT_MIRRORS
            raise DataError(
                f"Could not download the MNIST file {stem}.gz: every mirror failed, tried in this "
                f"order:\n{tried}\nThe failed downloads left nothing behind in the cache "
                f"({shown(data_dir())}). If this machine has no internet access, copy the four "
                "MNIST files (.gz or raw IDX) into a folder and run `mlp data import DIR`; "
                f"otherwise set {MIRROR_ENV} (or data.mirror in the config) to a mirror you can "
                "reach."
            )
    return result


def _download_from(base: str, stem: str, downloader: Any) -> bytes:
    """The verified IDX bytes of `stem` from one mirror; _SourceError says what went wrong
    with the mirror, and the error of `_cache_write_error` what went wrong storing it.

    The .gz is staged in a temporary folder inside the cache folder (same file system,
    cleaned up whatever happens, Ctrl-C, SIGTERM and SIGHUP included), so neither a dropped
    connection nor a wrong file can leave anything behind under a final name.
    """
    import pooch

    # pooch reports every download through its own logger; the library stays silent.
    pooch.get_logger().setLevel("WARNING")
    directory = data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = tempfile.TemporaryDirectory(
            dir=directory, prefix=f"{_STAGING_PREFIX}{os.getpid()}-"
        )
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
        except OSError as exc:  # the cache's disk, not the mirror: no other mirror would help
            raise _cache_write_error(directory, exc) from exc
        try:
            raw = _decode(Path(gz_path))
        except _SourceError as exc:
            raise _SourceError(f"served a {stem}.gz that {exc}") from exc
    problem = _hash_problem(raw, stem)
    if problem is not None:
        raise _SourceError(f"served a wrong {stem}.gz: {problem}; the download was deleted")
    return raw


def _download_limit(stem: str) -> int:
    """The most bytes any copy of `stem` (gzip-compressed or not) can take."""
    size = _IDX_BYTES.get(stem, _MAX_IDX_BYTES)
    return size + size // 100 + 2**16


class _DeadlineExpired(BaseException):
    """A download's time is up (a BaseException, so no library on the way swallows it)."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise `_DeadlineExpired` wherever the main thread is after ``seconds``, even inside
    a blocking read that a trickling server keeps alive.  Elsewhere (another thread, no
    SIGALRM) this does nothing, and the download loop's own clock check remains."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _DeadlineExpired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Downloader:
    """A pooch downloader for one MNIST file: a streaming GET with a deadline for the whole
    file (`_DEADLINE_S`), a cap on the bytes read (`_download_limit`), and redirects
    followed one by one, so an error names the host that really failed.  Every failure
    is a `_SourceError`."""

    def __init__(self, stem: str, progressbar: Any) -> None:
        self.stem, self.progressbar = stem, progressbar
        self.limit = _download_limit(stem)

    def __call__(self, url: str, output_file: str, pooch: Any, check_only: bool = False) -> None:
        deadline = time.monotonic() + _DEADLINE_S
        self.url = self.current = url  # current: where the redirects have led so far
        self.received = self.total = 0
        try:
            with _alarm(_DEADLINE_S):
                response = self._get(deadline)
                with response, open(output_file, "wb") as out:
                    self._copy(response, out, deadline)
        except _DeadlineExpired:
            expected = f" of {self.total:,}" if self.total else ""
            raise _SourceError(
                f"{self._where()}did not deliver {self.stem}.gz within {_DEADLINE_S} s "
                f"({self.received:,}{expected} bytes arrived); it is too slow"
            ) from None
        except _SourceError as exc:
            raise _SourceError(f"{self._where()}{exc}") from None

    def _where(self) -> str:
        if self.current == self.url:
            return ""
        # A Location can be a header line of 64 KiB: the error shows its start.
        target, host = shorten(self.current, 300), shorten(urlsplit(self.current).netloc, 100)
        return f"redirected to {target} (host {host}), which "

    def _get(self, deadline: float) -> Any:
        """The response to a GET of `current`, redirects followed one at a time."""
        import requests
        from urllib3.exceptions import LocationParseError

        class Session(requests.Session):
            def get_redirect_target(self, resp: Any) -> None:
                # requests reads a redirect's whole body into memory and parses its Location
                # to prepare the next request even with allow_redirects=False: an endless
                # body would fill the memory, a bad Location raise. The loop below follows.
                return None

        for _ in range(_MAX_REDIRECTS + 1):
            try:
                with Session() as session:
                    response = session.get(
                        self.current, timeout=_TIMEOUT_S, stream=True, allow_redirects=False
                    )
            # urllib3 refuses a host with an empty or over-long label ("a..b") only when it
            # connects, past requests' own wrapping of its errors.
            except (requests.RequestException, LocationParseError) as exc:
                raise _SourceError(_describe_request_error(exc)) from None
            if response.is_redirect:
                location = response.headers.get("location", "")
                response.close()
                try:
                    target = urljoin(self.current, location)
                except ValueError:  # e.g. an unclosed '[' of an IPv6 address
                    raise _SourceError(
                        f"redirected to {shorten(location, 300)!r}, which is not a valid URL"
                    ) from None
                if urlsplit(target).scheme not in ("http", "https"):
                    raise _SourceError(
                        f"redirected to {shorten(target, 300)!r}, not an http(s) URL"
                    )
                self.current = target
            elif response.status_code >= 400:
                response.close()
                reason = shorten(response.reason or "", 300)
                raise _SourceError(f"answered HTTP {response.status_code} {reason}".strip())
            else:
                return response
            if time.monotonic() > deadline:
                raise _DeadlineExpired
        raise _SourceError(f"redirected more than {_MAX_REDIRECTS} times")

    def _copy(self, response: Any, out: Any, deadline: float) -> None:
        from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

        declared = response.headers.get("content-length", "").lstrip("0") or "0"
        number = declared.isascii() and declared.isdigit()  # str.isdigit alone takes "²"
        # More digits than the limit has are more bytes (and int() refuses 4,301 digits).
        over = number and len(declared) > len(str(self.limit))
        self.total = int(declared) if number and not over else 0
        if over or self.total > self.limit:
            length = shorten(declared, 40) if over else f"{self.total:,}"
            raise _SourceError(
                f"announced {length} bytes for {self.stem}.gz, more than the {self.limit:,} "
                "any copy of it can take"
            )
        bar = self.progressbar
        if bar is True:
            tqdm = importlib.import_module("tqdm").tqdm
            bar = tqdm(total=self.total, unit="B", unit_scale=True, leave=True, ncols=79)
        elif bar:
            bar.total = self.total
        while True:
            if time.monotonic() > deadline:  # where no alarm could be set (not the main thread)
                raise _DeadlineExpired
            try:
                chunk = response.raw.read1(_CHUNK, decode_content=True)
            except ReadTimeoutError:
                raise _SourceError(f"stopped sending for {_TIMEOUT_S} s") from None
            except (ProtocolError, HTTPError) as exc:
                plain = _plain_connection_problem(exc, self.received, self.total)
                raise _SourceError(
                    plain
                    or f"connection dropped before the whole file arrived ({shorten(exc, 300)})"
                ) from None
            if not chunk:
                break
            self.received += len(chunk)
            if self.received > self.limit:
                raise _SourceError(
                    f"sent more than {self.limit:,} bytes for {self.stem}.gz, more than any "
                    "copy of it can take"
                )
            out.write(chunk)
            if bar:
                bar.update(len(chunk))
        if bar:
            bar.reset()
            bar.update(self.total or self.received)
            bar.close()


def remove_leftovers() -> None:
    """Remove staging folders and temporary files a killed process left in the cache folder
    (those whose process is gone, or older than a day).

    Only a folder named like a staging folder and a regular file named like a temporary
    file qualify; anything else in the cache folder is the user's and stays."""
    try:
        entries = list(data_dir().iterdir())
    except OSError:
        return
    now = time.time()
    for entry in entries:
        match = _STAGING.fullmatch(entry.name) or _TEMPORARY.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        # mlp stages in folders and writes regular files; anything else so named is not its.
        ours = stat.S_ISDIR if match.re is _STAGING else stat.S_ISREG
        pid = int(match.group(1))
        if not ours(info.st_mode) or pid == os.getpid():
            continue
        if now - info.st_mtime <= _STALE_S and _running(pid):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's, or no pid at all
        return True
    return True


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (requests and urllib3 nest the real one in their
    arguments, ``reason``, ``__cause__`` or ``__context__``), outermost first."""
    found: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(found) < 20:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is f for f in found):
            continue
        found.append(item)
        todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return found


def _plain_connection_problem(exc: BaseException, received: int = 0, total: int = 0) -> str | None:
    """What went wrong on the connection, in words, when the underlying exception is one
    of http.client's (whose names mean nothing to a user); else None."""
    import http.client

    from urllib3.exceptions import IncompleteRead

    for cause in _causes(exc):
        if isinstance(cause, http.client.IncompleteRead | IncompleteRead):
            of = f" of {total:,}" if total else ""
            return (
                "connection dropped before the whole file arrived (the connection closed "
                f"after {received:,}{of} bytes)"
            )
        if isinstance(cause, http.client.LineTooLong):
            longest: int = getattr(http.client, "_MAXLINE", 65536)  # what http.client reads
            return f"the server sent a header line longer than {longest:,} bytes"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "the server closed the connection without answering"
        if isinstance(cause, http.client.HTTPException) and "headers" in str(cause):
            most: int = getattr(http.client, "_MAXHEADERS", 100)
            return f"the server sent more than {most} header lines"
        if isinstance(cause, http.client.BadStatusLine):
            return "the server answered with something that is not HTTP"
    return None


def _describe_request_error(exc: Exception) -> str:
    import requests

    if (plain := _plain_connection_problem(exc)) is not None:
        return plain
    if isinstance(exc, requests.Timeout):
        return f"did not answer within {_TIMEOUT_S} s"
    if isinstance(exc, requests.ConnectionError):
        # requests nests the useful part ("[Errno 111] Connection refused", "[Errno -2]
        # Name or service not known") deep inside urllib3's wrapper text.
        errno = re.search(r"\[Errno [^\]]*\][^'\")(]*", str(exc))
        reason = errno.group(0).strip() if errno else shorten(exc, 300)
        return f"connection failed ({reason})"
    return f"{type(exc).__name__}: {shorten(exc, 300)}"


# --------------------------------------------------------------------------- import


def import_mnist(src: str | Path, *, notices: Any = False) -> dict[str, Path]:
    """Install an offline copy of MNIST from a folder; stem -> cached path.

    The folder holds each file as `<stem>.gz` or raw `<stem>` (the `train-images.idx3-ubyte`
    spelling is accepted too). Each file is verified against `MNIST_FILES` exactly like a
    download. Verified files are installed even when others are missing or wrong; a
    DataError then names every missing or bad file (a folder holding none of them, or no
    folder, raises UsageError). A cached file that is not MNIST's is
    moved aside first, as by a download, and told to `notices.write` when it has one; one
    that already verifies is left as it is.
    """
    folder = Path(src)
    with contextlib.suppress(RuntimeError):  # "~name" of an unknown user stays, as in a shell
        folder = folder.expanduser()
    if not folder.is_dir():  # the argument itself is wrong: a usage error, as in every command
        raise UsageError(
            f"Cannot import MNIST from {shown(folder)}: it is not a folder. Give the folder that "
            f"holds the four files ({', '.join(f'{s}.gz' for s in MNIST_FILES)})."
        )
    remove_leftovers()
    installed: dict[str, Path] = {}
    problems: list[str] = []
    missing = 0
    for stem in MNIST_FILES:
        # Whatever is there under a name is tried, so that a pipe, a device or a broken link
        # is reported as such rather than as missing.
        dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some archives spell it
        names = [f"{stem}.gz", stem, f"{dotted}.gz", dotted]
        candidates = [folder / name for name in names if os.path.lexists(folder / name)]
        if not candidates:
            problems.append(f"  - {stem}: missing (looked for {stem}.gz and {stem})")
            missing += 1
            continue
        file_problems: list[str] = []
        for candidate in candidates:
            try:
                raw = _decode(candidate)
            except _SourceError as exc:
                file_problems.append(f"  - {shown(candidate)}: {exc}")
                continue
            problem = _hash_problem(raw, stem)
            if problem is not None:
                file_problems.append(
                    f"  - {shown(candidate)}: not the MNIST file {stem}: {problem}"
                )
                continue
            final = data_dir() / stem
            # A cached file that verifies stays as it is (it may be the user's link to a copy);
            # one that does not is moved aside, so _install never replaces a file mlp did not make.
            if final.is_file() and _read_cached(stem, notices) is not None:
                installed[stem] = final
            else:
                installed[stem] = _install(stem, raw)
            break
        else:
            problems.extend(file_problems)
    if missing == len(MNIST_FILES):
        # The argument names the wrong folder, as a path that is no folder does: a usage
        # error; missing or damaged files in a folder that holds some are a failed import.
        raise UsageError(
            f"Cannot import MNIST from {shown(folder)}: the folder holds none of the four "
            f"files ({', '.join(f'{s}.gz' for s in MNIST_FILES)}, or the same names without "
            ".gz). Give the folder that holds them."
        )
    if problems:
        done = ", ".join(installed) if installed else "none"
        raise DataError(
            f"Could not import MNIST from {shown(folder)}:\n"
            + "\n".join(problems)
            + f"\nFiles verified and installed: {done}. Put the original MNIST files "
            "(from a public mirror, .gz or decompressed) in the folder and run the import "
            "again."
        )
    return installed


# --------------------------------------------------------------------------- IDX


def read_idx(source: str | Path | bytes, name: str, *, kind: _Kind | None = None) -> np.ndarray:
    """Parse one MNIST IDX file strictly; uint8 (N, 28, 28) images or uint8 (N,) labels.

    `name` is used in error messages (a file name or path). `kind` defaults to what
    the file's own name says ("images" / "labels" in the last part of `name`, whatever
    its folders are called), else to what the header's number of dimensions says.
    Every problem raises DataError naming the file: bad magic number, element type
    other than uint8, wrong number of dimensions, images not 28x28, payload shorter
    or longer than the header declares (checked against the file size before
    anything is allocated), labels outside 0..9.

    Bytes are wrapped with np.frombuffer, so the result is a read-only view of the one
    buffer read from disk; copy it to modify it.
    """
    if kind is None:
        own = Path(name).name
        kind = "labels" if "labels" in own else "images" if "images" in own else None
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
    if array.ndim == 1 and array.size and int(array.max()) >= MNIST_CLASSES:
        bad = int(np.flatnonzero(array >= MNIST_CLASSES)[0])
        raise _idx_error(
            name, f"label {int(array[bad])} at index {bad} is outside 0..{MNIST_CLASSES - 1}"
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
    if kind is None and ndim not in (1, 3):
        raise _idx_error(name, f"it has {ndim} dimensions, expected 3 (images) or 1 (labels)")
    if kind is not None and ndim != _NDIM[kind]:
        raise _idx_error(name, f"it has {ndim} dimensions, expected {_NDIM[kind]} for {kind}")
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
    declared = math.prod(dims)
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
    blobs = _verified(list(stems), mirror, progressbar, download=download)
    if missing := [stem for stem in stems if stem not in blobs]:
        raise DataError(
            f"The MNIST {split} files are not in the cache ({shown(data_dir())}): missing "
            f"{', '.join(missing)}. Download them (`mlp data fetch`) or import an "
            "offline copy (`mlp data import DIR`)."
        )
    directory = data_dir()
    images_stem, labels_stem = stems
    images_raw, labels_raw = blobs[images_stem], blobs[labels_stem]
    images = read_idx(images_raw, shown(directory / images_stem), kind="images")  # (N, 28, 28)
    labels = read_idx(labels_raw, shown(directory / labels_stem), kind="labels")  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"The MNIST {split} files disagree: {shown(directory / images_stem)} holds "
            f"{images.shape[0]:,} images but {shown(directory / labels_stem)} holds "
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
    if not 0 <= validation_size < n:  # an empty dataset too: nothing would remain
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


# --------------------------------------------------------------------------- training data


@dataclass
class Splits:
    """The training images, held once, and index arrays for the training/validation split."""

    X: npt.NDArray[np.float32]  # (60000, input_size**2), model inputs
    y: npt.NDArray[np.uint8]  # (60000,)
    train_idx: npt.NDArray[np.int64]
    val_idx: npt.NDArray[np.int64]
    preprocessing: dict[str, Any]
    data_hashes: dict[str, str]


def prepare_data(cfg: Config, *, progressbar: Any = False) -> Splits:
    """Load MNIST's training set and turn it into model inputs and a validation split.

    Missing files are fetched all four at once, the test set too, so that `mlp evaluate`
    after training needs no network.
    """
    from mlp_cli.preprocess import digits_to_inputs, input_statistics, normalize_inputs

    fetch_missing(mirror=cfg.data.mirror, progressbar=progressbar)
    images, labels = load_mnist("train", mirror=cfg.data.mirror, progressbar=progressbar)
    size = cfg.data.input_size
    X = digits_to_inputs(images, size)
    train_idx, val_idx = validation_split(len(labels), cfg.data.validation_size, cfg.training.seed)
    preprocessing: dict[str, Any] = {
        "input_size": size,
        "source": "28x28 MNIST-form digit, pixel/255, area-averaged to input_size",
        "normalize": None,
    }
    if cfg.data.normalize == "standardize":
        # Statistics of the training split only: validation and test stay unseen.
        preprocessing["normalize"] = input_statistics(X, train_idx)
        normalize_inputs(X, preprocessing)
    return Splits(X, labels, train_idx, val_idx, preprocessing, data_hashes())
