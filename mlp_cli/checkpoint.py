"""The ``.npz`` weights format: save, load, validate.

A model file is an ordinary NumPy ``.npz`` archive that loads with
``np.load(path, allow_pickle=False)`` and describes itself:

- ``W1 .. WL`` (float32, shape (n_l, n_{l-1})) and ``b1 .. bL`` (float32, shape (n_l,));
- ``metadata``: a 0-d string array holding JSON (format name and version, layer sizes,
  activations, loss, input preprocessing, class names, the resolved config, package version,
  data hashes, training summary).

A training checkpoint is the same plus the optimizer's state (``optimizer/<name>``) and
what resuming needs (``resume/<name>``), described under ``metadata["resume"]``.

Files are written atomically (temporary file in the same folder, flushed and fsynced, then
``os.replace``), so a crash or a full disk leaves the previous file as it was.  Loading
checks the zip header, every member's name, dtype and shape (read from the ``.npy`` headers
before any array data), the format version, and that the values are finite.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from mlp_cli.errors import CheckpointError, UsageError

FORMAT_NAME = "mlp-cli"
FORMAT_VERSION = 1
METADATA_KEY = "metadata"
MAX_METADATA_BYTES = 16 * 2**20  # a config and summaries, never more than a few KiB
EXTRA_PREFIXES = ("optimizer/", "resume/")  # checkpoint-only members
MODEL_FILE = "model.npz"  # a run directory's best model
LATEST = "latest"  # <runs>/latest points at the newest run directory


@dataclass
class SavedModel:
    """What a model file holds: weights, biases and the metadata dictionary."""

    weights: list[NDArray[np.floating]]
    biases: list[NDArray[np.floating]]
    metadata: dict[str, Any]
    extras: dict[str, NDArray[np.generic]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def layers(self) -> list[int]:
        return [int(n) for n in self.metadata["layers"]]


def save(
    path: str | Path,
    weights: list[NDArray[np.floating]],
    biases: list[NDArray[np.floating]],
    metadata: Mapping[str, Any],
    extras: Mapping[str, NDArray[np.generic]] | None = None,
) -> Path:
    """Write a model (and, with ``extras``, a checkpoint) atomically to ``path``."""
    path = Path(path)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    meta["layers"] = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
    arrays: dict[str, NDArray[np.generic]] = {}
    for i, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        arrays[f"W{i}"] = np.ascontiguousarray(w)
        arrays[f"b{i}"] = np.ascontiguousarray(b)
    for name, value in (extras or {}).items():
        if not name.startswith(EXTRA_PREFIXES):
            raise ValueError(f"extra array names start with {EXTRA_PREFIXES}: {name}")
        arrays[name] = np.asarray(value)
    arrays[METADATA_KEY] = np.array(json.dumps(meta))
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
    except OSError as exc:
        raise CheckpointError(
            f"could not write '{path}': {exc.strerror or exc}. The previous file, if any, is "
            "unchanged; free some disk space or choose another output folder."
        ) from None
    return path


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it into place.

    ``np.savez`` appends ``.npz`` to a *path*, which is why it is handed a file object.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A short temporary name: one built from ``path.name`` could exceed NAME_MAX.
    fd, tmp_name = tempfile.mkstemp(prefix=".mlp-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where supported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"'{path}' is not a valid mlp model file: {problem}. Expected a .npz written by "
        f"`mlp train` (arrays W1..WL, b1..bL and a JSON 'metadata' entry)."
    )


def _read_headers(archive: zipfile.ZipFile, path: Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Each member's (shape, dtype), read from the .npy headers without reading the data."""
    headers: dict[str, tuple[tuple[int, ...], Any]] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise _fail(path, f"unexpected member '{info.filename}'")
        name = info.filename[: -len(".npy")]
        try:
            with archive.open(info) as member:
                version = npy_format.read_magic(member)
                if version == (1, 0):
                    shape, _fortran, dtype = npy_format.read_array_header_1_0(member)
                else:
                    shape, _fortran, dtype = npy_format.read_array_header_2_0(member)
        except (
            ValueError,
            OSError,
            zipfile.BadZipFile,
            EOFError,
            NotImplementedError,
            RuntimeError,
        ) as exc:  # the last two: damaged compression/encryption flags
            raise _fail(path, f"member '{name}' is damaged ({exc})") from None
        if dtype.hasobject:
            raise _fail(path, f"member '{name}' holds Python objects, which are never loaded")
        expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if info.file_size < expected_bytes:
            raise _fail(path, f"member '{name}' is truncated")
        headers[name] = (tuple(shape), dtype)
    return headers


def load(path: str | Path, *, checkpoint: bool = False) -> SavedModel:
    """Read and validate a model file (``checkpoint=True`` also returns optimizer/resume arrays)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder; expected a .npz model file")
    if not path.exists():
        raise CheckpointError(f"model file '{path}' not found")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read model file '{path}': {exc.strerror}") from None
    if magic != b"PK\x03\x04":
        raise _fail(path, "it is not a zip/.npz archive")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = _read_headers(archive, path)
        if METADATA_KEY not in headers:
            raise _fail(path, "the 'metadata' entry is missing")
        meta_shape, meta_dtype = headers[METADATA_KEY]
        if meta_shape != () or meta_dtype.kind != "U":
            raise _fail(path, "the 'metadata' entry is not a JSON string")
        if meta_dtype.itemsize > 4 * MAX_METADATA_BYTES:
            raise _fail(path, "the 'metadata' entry is implausibly large")
        with np.load(path, allow_pickle=False) as npz:
            metadata = _parse_metadata(str(npz[METADATA_KEY]), path)
            layers = _check_layers(metadata, path)
            weights: list[NDArray[np.floating]] = []
            biases: list[NDArray[np.floating]] = []
            n_layers = len(layers) - 1
            expected = {f"W{i}" for i in range(1, n_layers + 1)}
            expected |= {f"b{i}" for i in range(1, n_layers + 1)}
            names = set(headers) - {METADATA_KEY}
            extra = {n for n in names - expected if not n.startswith(EXTRA_PREFIXES)}
            if missing := sorted(expected - names):
                raise _fail(path, f"arrays {', '.join(missing)} are missing")
            if extra:
                raise _fail(path, f"unexpected arrays {', '.join(sorted(extra))}")
            for i in range(1, n_layers + 1):
                for name, shape in ((f"W{i}", (layers[i], layers[i - 1])), (f"b{i}", (layers[i],))):
                    got_shape, dtype = headers[name]
                    if got_shape != shape:
                        raise _fail(path, f"{name} has shape {got_shape}, the layers say {shape}")
                    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
                        raise _fail(path, f"{name} has dtype {dtype}, expected float32")
                    array = npz[name]
                    if not np.all(np.isfinite(array)):
                        raise _fail(path, f"{name} holds NaN or infinite values")
                    (weights if name[0] == "W" else biases).append(array)
            extras = {n: npz[n] for n in names - expected} if checkpoint else {}
    except CheckpointError:
        raise
    except (
        zipfile.BadZipFile,
        ValueError,
        OSError,
        EOFError,
        KeyError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise _fail(path, f"it could not be read ({exc})") from None
    return SavedModel(weights, biases, metadata, extras, path)


def _parse_metadata(text: str, path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"its metadata is not valid JSON ({exc.msg})") from None
    if not isinstance(metadata, dict):
        raise _fail(path, "its metadata is not a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise _fail(path, f"its metadata names format {metadata.get('format')!r}")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' uses model format version {version!r}; this mlp reads version "
            f"{FORMAT_VERSION}. Retrain the model, or use the mlp release that wrote it."
        )
    return metadata


def _check_layers(metadata: Mapping[str, Any], path: Path) -> list[int]:
    layers = metadata.get("layers")
    if (
        not isinstance(layers, list)
        or len(layers) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers)
    ):
        raise _fail(path, f"its metadata 'layers' is {layers!r}, expected a list of sizes")
    return layers


def find_model(model: str | Path | None = None, *, runs: str | Path = "runs") -> Path:
    """The model file a command should use: ``model`` (a .npz or a run directory), or the
    newest run (``runs/latest``)."""
    if model is None:
        latest = Path(runs) / LATEST
        if latest.is_file() and not latest.is_symlink():
            latest = Path(runs) / latest.read_text().strip()
        if not latest.exists():
            raise UsageError(
                f"no trained model found: '{Path(runs) / LATEST}' does not exist. Train one "
                "with `mlp train` (`mlp config list` shows the configs it can train), or pass "
                "--model PATH (a .npz file or a run directory)."
            )
        model = latest
    path = Path(model)
    if path.is_dir():
        path = path / MODEL_FILE
        if not path.exists():
            raise UsageError(
                f"'{model}' is a folder without a {MODEL_FILE}; pass a run directory made by "
                "`mlp train` or a .npz file"
            )
    elif not path.exists():
        raise UsageError(f"model '{path}' not found; pass a .npz file or a run directory")
    return path
