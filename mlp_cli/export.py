"""Export a saved model to ONNX, and check the exported file against our own forward pass.

The graph is built straight from the saved weights with the `onnx` package's helper API:

    pixels (N, 784) in [0, 1]                     MNIST-form digits, as `mlp predict --raw` takes
      -> MatMul(R, .) -> MatMul(., R^T)           20x20 models only: the area reduction 28 -> 20
      -> Sub(mean) -> Mul(1 / std)                models trained on standardised inputs only
      -> Gemm(., W_l, b_l, transB=1) -> g         per hidden layer l, g the hidden activation
      -> Gemm(., W_L, b_L, transB=1) -> Softmax or Sigmoid     probabilities (N, 10)
      -> ArgMax(axis=1)                                         label (N,), int64

The input transform is the one `mlp_cli.preprocess` applies, operation for operation: the
same area matrix R (`area_matrix`, two products as in `_area_resize`) and the same
float32 mean and reciprocal std.  With ``preprocessing=False`` it is left out and the graph
takes the network's own inputs (N, input_size**2), already reduced and standardised.

The file names a fixed opset and IR version instead of the newest ones the installed `onnx`
knows, because runtimes refuse models whose IR version is newer than their own; metadata
properties carry what the ``.npz`` metadata says (format, layers, activations, class names,
preprocessing, training summary, data hashes), as JSON where a value is structured.

`onnx` and `onnxruntime` are an optional extra (``export``), imported only here
and only when asked for.  Left out on purpose: other formats, quantisation, and graph
optimisation (runtimes fuse Gemm and activation themselves).
"""

from __future__ import annotations

import errno
import importlib
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mlp_cli import __version__
from mlp_cli.activations import LEAKY_SLOPE
from mlp_cli.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_KEY,
    SavedModel,
    atomic_write,
)
from mlp_cli.errors import ExportError, UsageError
from mlp_cli.evaluate import evaluate
from mlp_cli.limits import MNIST_SIDE, layers_text, shorten
from mlp_cli.model import MLP
from mlp_cli.outputs import (
    advice,
    check_folder,
    check_name,
    check_replaceable,
    reason,
    temp_path,
)
from mlp_cli.plain import decodable, json_text, shown
from mlp_cli.predict import checked_proba
from mlp_cli.preprocess import area_matrix, digits_to_inputs, model_inputs

if TYPE_CHECKING:
    import onnx

FORMATS = ("onnx",)  # what `mlp export --format` accepts
OPSET = 17  # ONNX operator set: Softmax/ArgMax as used here are unchanged since 13
IR_VERSION = 8  # the IR version that opset 17 came with (onnx 1.12); onnxruntime >= 1.13 loads it
INPUT, PROBABILITIES, LABEL = "pixels", "probabilities", "label"
TOLERANCE = 1e-5  # largest probability difference `verify` accepts from our forward pass
# The export extra's requirements, which pip can install wherever mlp came from (mlp itself
# is on no package index, so `pip install 'mlp-cli[export]'` would find nothing).
INSTALL_HINT = "pip install 'onnx>=1.14' 'onnxruntime>=1.16'"
MAX_BYTES = 2**31 - 2**24  # protobuf's 2 GiB message limit, less room for the graph itself

# Our activation name -> (ONNX operator, its attributes).  Tests hold these tables equal to
# `activations.ACTIVATIONS` and `losses.OUTPUTS`, so a new activation cannot be forgotten.
HIDDEN_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "relu": ("Relu", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
}
OUTPUT_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "softmax": ("Softmax", {"axis": 1}),
    "sigmoid": ("Sigmoid", {}),
}


def _require(name: str) -> ModuleType:
    """Import an optional dependency, or say how to install it (a UsageError, as for the Ray
    extra: the command cannot run as asked here)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(
            f"exporting to ONNX needs the '{name}' package, which is not installed "
            f"({exc}). Install the export extra's packages with `{INSTALL_HINT}` (in a "
            "clone of mlp, `pip install '.[export]'`) and run the command again."
        ) from None


def check_format(fmt: str) -> str:
    """``fmt`` if it is an export format we write, else a UsageError naming the choices."""
    if fmt not in FORMATS:
        raise UsageError(
            f"unknown export format {shorten(fmt, 40)!r}; the formats are: {', '.join(FORMATS)} "
            "(for example `mlp export --format onnx --out model.onnx`)."
        )
    return fmt


def check_installed() -> None:
    """Refuse (UsageError) an export where `onnx` is not installed, before any work."""
    _require("onnx")


def _is_model_file(path: Path) -> bool:
    """Whether `path` is a .npz archive holding mlp's metadata entry, whatever its name."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return f"{METADATA_KEY}.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def check_out(out: Path, *, force: bool, model_path: Path | None = None) -> Path:
    """Refuse an output path that cannot or should not be written, before any work is done."""
    out = Path(out)
    folder = out.parent
    if os.path.isdir(out) and not os.path.islink(out):
        raise UsageError(f"--out '{shown(out)}' is a folder; give the path of the file to write.")
    # Even with --force: the write ends in a rename, which would replace a device, a FIFO or
    # a link (not what it points to) by a file.
    check_replaceable(out, "ONNX file")
    try:
        folder_is_dir = stat.S_ISDIR(os.stat(folder).st_mode)
    except FileNotFoundError:
        raise UsageError(
            f"the folder '{shown(folder)}' for --out '{shown(out)}' does not exist; create it "
            "first or choose another path."
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot use --out '{shown(out)}': {reason(exc)}.") from None
    if not folder_is_dir:
        raise UsageError(f"'{shown(folder)}' in --out '{shown(out)}' is not a folder.")
    exists = os.path.lexists(out)  # a link to nowhere exists too
    # Files --force does not replace first, so that their error does not offer --force.
    if model_path is not None and exists and out.resolve() == model_path.resolve():
        raise UsageError(
            f"--out '{shown(out)}' already exists: it is the model file itself; choose another "
            "path."
        )
    if out.suffix.lower() == ".npz":
        raise UsageError(
            f"--out '{shown(out)}' names an mlp model or checkpoint (.npz), which an ONNX "
            "file never replaces, even with --force; choose a name ending in .onnx."
        )
    # A model under another name: its name may already end in .onnx, so advise another path.
    if _is_model_file(out):
        raise UsageError(
            f"--out '{shown(out)}' is an mlp model or checkpoint (a .npz archive under another "
            "name), which an ONNX file never replaces, even with --force; choose another path."
        )
    if exists and not force:
        raise _taken(out)
    check_folder(folder, "folder for --out")  # writable: read-only mounts, /proc, /sys...
    check_name(out, "ONNX file")
    return out


# -- building the graph ------------------------------------------------------------------------


def _metadata_props(saved: SavedModel, model: MLP, preprocessing_in_graph: bool) -> dict[str, str]:
    """The ONNX metadata properties: the ``.npz`` metadata's description of the model,
    strings as they are and structured values as JSON, undecodable bytes written ``\\xff``
    (ONNX holds UTF-8 text only)."""
    # As the file holds them: keys it does not have stay out, rather than taking defaults.
    # Not mode="json": there pydantic writes an undecodable byte in a dict key as U+FFFDs.
    meta = saved.meta.model_dump(exclude_unset=True)
    props: dict[str, Any] = {
        "format": FORMAT_NAME,  # the loader has checked the file's format name and version
        "format_version": FORMAT_VERSION,
        "layers": model.sizes,
        "hidden_activation": model.hidden if model.n_layers > 1 else None,
        "output_activation": model.output,
        **{key: meta.get(key) for key in ("loss", "class_names", "preprocessing")},
        "preprocessing_in_graph": preprocessing_in_graph,
        **{key: meta.get(key) for key in ("training", "data_hashes", "package_version", "created")},
    }
    return {
        key: decodable(value) if isinstance(value, str) else json_text(_finite(value))
        for key, value in props.items()
        if value is not None
    }


def _finite(value: Any) -> Any:
    """`value` with each NaN or infinity as None, as pydantic's JSON mode writes them: JSON
    has no such numbers, and a key `training` keeps unchecked may hold one."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def build_onnx(saved: SavedModel, *, preprocessing: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``saved``: input `pixels`, outputs `probabilities` and `label`.

    With ``preprocessing`` the input is MNIST-form pixels (N, 784) in [0, 1] and the
    model's input transform is part of the graph; without it, the input is the network's
    own (N, input_size**2).  Raises UsageError if `onnx` is missing.
    """
    onnx = _require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    model = MLP.from_saved(saved)  # the loader's reading of weights and activations
    if model.params.nbytes > MAX_BYTES:
        raise ExportError(
            f"the model has {model.params.size:,} parameters ({model.params.nbytes:,} bytes); "
            f"a single ONNX file holds at most {MAX_BYTES:,} bytes of weights."
        )
    prep = saved.meta.preprocessing
    nodes: list[Any] = []
    initializers: list[Any] = []

    def constant(name: str, value: NDArray[Any]) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    side = prep.input_size
    n_in = model.sizes[0]
    x = INPUT
    if preprocessing:
        n_in = MNIST_SIDE * MNIST_SIDE
        if side != MNIST_SIDE:
            R = area_matrix(MNIST_SIDE, side)  # (side, 28), rows sum to 1
            shape = np.array([-1, MNIST_SIDE, MNIST_SIDE], dtype=np.int64)
            x = node("Reshape", [x, constant("image_shape", shape)], "images")  # (N, 28, 28)
            x = node("MatMul", [constant("area_rows", R), x], "area_rows_out")  # (N, side, 28)
            x = node("MatMul", [x, constant("area_cols", R.T)], "area_out")  # (N, side, side)
            flat = np.array([-1, side * side], dtype=np.int64)
            x = node("Reshape", [x, constant("input_shape", flat)], "resized")  # (N, side^2)
        norm = prep.normalize
        if norm:
            mean = np.array(np.float32(norm.mean))
            inv_std = np.array(np.float32(1.0 / norm.std))  # as `normalize_inputs` does
            x = node("Sub", [x, constant("mean", mean)], "centred")
            x = node("Mul", [x, constant("inv_std", inv_std)], "standardised")

    L = model.n_layers
    for l in range(1, L + 1):
        W = constant(f"W{l}", np.asarray(model.W[l - 1], dtype=np.float32))  # (n_l, n_{l-1})
        b = constant(f"b{l}", np.asarray(model.b[l - 1], dtype=np.float32))  # (n_l,)
        x = node("Gemm", [x, W, b], f"z{l}", transB=1)  # x W_l^T + b_l: (N, n_l)
        op, attrs = HIDDEN_OPS[model.hidden] if l < L else OUTPUT_OPS[model.output]
        x = node(op, [x], f"a{l}" if l < L else PROBABILITIES, **attrs)
    node("ArgMax", [PROBABILITIES], LABEL, axis=1, keepdims=0)

    n_out = model.sizes[-1]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", n_in])],
        [
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", n_out]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"]),
        ],
        initializer=initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=FORMAT_NAME,
        producer_version=__version__,
        doc_string=_doc(saved, preprocessing, n_in),
    )
    helper.set_model_props(onnx_model, _metadata_props(saved, model, preprocessing))
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the ONNX graph built from the model failed its check: {exc}") from None
    return onnx_model


def _doc(saved: SavedModel, preprocessing: bool, n_in: int) -> str:
    if preprocessing:
        given = f"MNIST-form pixels (N, {n_in}) in [0, 1], white ink on black, row by row"
    else:  # only the steps this model's inputs take: a reader would apply each one named
        prep = saved.meta.preprocessing
        given = f"the network's inputs (N, {n_in}): MNIST-form pixels in [0, 1]"
        if prep.input_size != MNIST_SIDE:
            given += f", area-averaged to {prep.input_size}x{prep.input_size}"
        if prep.normalize:
            given += ", then standardised with the preprocessing property's mean and std"
    return (
        f"mlp {layers_text(saved.layers)} network. Input '{INPUT}': {given}. Outputs "
        f"'{PROBABILITIES}' (N, {saved.layers[-1]}) and '{LABEL}' (N,), the index of the largest "
        "probability into the class_names metadata property."
    )


def _taken(out: Path) -> UsageError:
    return UsageError(
        f"'{shown(out)}' already exists; pass --force to replace it, or choose another --out."
    )


def _write_new(out: Path, data: bytes) -> None:
    """`atomic_write` of `data` at `out` that raises FileExistsError, replacing nothing, where
    a file of that name has appeared since it was checked (another export at once)."""
    tmp = temp_path(out.parent)
    try:
        atomic_write(tmp, lambda f: f.write(data))
        try:
            os.link(tmp, out)  # unlike a rename, fails where the name is taken
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(out):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(out)) from None
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_onnx(onnx_model: onnx.ModelProto, out: Path, *, force: bool = True) -> Path:
    """Write ``onnx_model`` to ``out`` atomically: the file appears whole or not at all;
    without `force`, never in place of a file that appeared since `check_out`."""
    data = onnx_model.SerializeToString()
    check_replaceable(out, "ONNX file")  # again: something may have appeared since the check
    try:
        if force:
            atomic_write(out, lambda f: f.write(data))
        else:
            _write_new(out, data)
    except FileExistsError:
        raise _taken(out) from None
    except PermissionError as exc:
        raise UsageError(
            f"cannot write '{shown(out)}': {exc.strerror or exc}. Choose a folder you can write to."
        ) from None
    except OSError as exc:
        raise ExportError(
            f"could not write '{shown(out)}': {reason(exc)}. The previous file, if any, is "
            f"unchanged. {advice(exc)}"
        ) from None
    return out


def export(
    saved: SavedModel, out: Path, *, force: bool = False, preprocessing: bool = True
) -> Path:
    """Build, check and atomically write the ONNX file of ``saved`` at ``out``."""
    out = check_out(out, force=force, model_path=saved.path)
    _check_finite(saved)
    return write_onnx(build_onnx(saved, preprocessing=preprocessing), out, force=force)


def _check_finite(saved: SavedModel) -> None:
    """Refuse a model whose forward pass overflows float32 on a blank and on a fully inked
    picture (the two ends of the input range): its exported graph would answer NaN."""
    ends = np.zeros((2, MNIST_SIDE, MNIST_SIDE), np.uint8)
    ends[1] = 255
    inputs = model_inputs(ends, saved.meta.preprocessing.model_dump())
    checked_proba(saved, inputs)


# -- running and verifying ---------------------------------------------------------------------


def default_runtime() -> str:
    """The runtime `run` uses unless told: onnxruntime when installed, else onnx's own
    reference evaluator (slower, but enough to check a file)."""
    try:
        _require("onnxruntime")
    except UsageError:
        return "reference"
    return "onnxruntime"


def runtime_version(runtime: str) -> str:
    """``runtime`` with the version of the package behind it, e.g. "onnxruntime 1.20.1"."""
    if runtime == "onnxruntime":
        return f"onnxruntime {_require('onnxruntime').__version__}"
    return f"onnx.reference {_require('onnx').__version__}"


def run(
    model: Path | bytes, inputs: NDArray[np.float32], *, runtime: str | None = None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """(probabilities (N, K), labels (N,)) of an ONNX model (a file or serialized bytes)
    for ``inputs`` (N, n_0), computed by ``runtime`` ("onnxruntime" or "reference")."""
    runtime = runtime or default_runtime()
    feed = {INPUT: np.ascontiguousarray(inputs, dtype=np.float32)}
    # the file's bytes, not its name: onnxruntime takes only names that are UTF-8
    source = model.read_bytes() if isinstance(model, Path) else model
    if runtime == "onnxruntime":
        ort = _require("onnxruntime")
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        probabilities, labels = session.run([PROBABILITIES, LABEL], feed)
    elif runtime == "reference":
        _require("onnx")
        from onnx.reference import ReferenceEvaluator  # it reads a file name or bytes itself

        # Its Sigmoid evaluates both branches of a where(); the overflowing one is discarded.
        with np.errstate(over="ignore", invalid="ignore"):
            probabilities, labels = ReferenceEvaluator(source).run([PROBABILITIES, LABEL], feed)
    else:
        raise UsageError(f"unknown ONNX runtime {runtime!r}; one of onnxruntime, reference")
    return np.asarray(probabilities), np.asarray(labels)


@dataclass
class Verification:
    """How the exported file's outputs compare with our forward pass on a set of digits."""

    runtime: str
    n: int
    max_difference: float  # largest |p_onnx - p_ours| over all images and classes
    labels_agree: int  # images whose ONNX label is ours, or ties with it within TOLERANCE
    accuracy_onnx: float  # against the true labels
    accuracy_ours: float

    @property
    def passed(self) -> bool:
        return self.max_difference <= TOLERANCE and self.labels_agree == self.n


def verify(
    path: Path,
    saved: SavedModel,
    images: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    *,
    preprocessing: bool = True,
    runtime: str | None = None,
) -> Verification:
    """Run the ONNX file at ``path`` on MNIST-form ``images`` (n, 28, 28) and compare it with
    `mlp evaluate`'s forward pass of ``saved``."""
    ours = evaluate(saved, images, labels, "export")
    if preprocessing:  # what the graph takes: pixel / 255, flattened, or the network's inputs
        inputs = digits_to_inputs(images, MNIST_SIDE)
    else:
        inputs = model_inputs(images, saved.meta.preprocessing.model_dump())
    runtime = runtime or default_runtime()
    probabilities, predicted = run(path, inputs, runtime=runtime)
    n = len(labels)
    difference = np.abs(probabilities.astype(np.float64) - ours.probabilities)
    # a label agrees when our probability of it ties with our largest within the tolerance:
    # which of two such near-ties is the larger is rounding noise, in the runtime as in ours
    rows = np.arange(n)
    ours_of_theirs = ours.probabilities[rows, predicted]  # (n,)
    tied = ours_of_theirs >= ours.probabilities[rows, ours.predictions] - TOLERANCE
    return Verification(
        runtime=runtime_version(runtime),
        n=n,
        max_difference=float(difference.max()) if n else 0.0,
        labels_agree=int(np.count_nonzero(tied)),
        accuracy_onnx=float(np.count_nonzero(predicted == labels)) / n if n else 0.0,
        accuracy_ours=ours.accuracy,
    )
