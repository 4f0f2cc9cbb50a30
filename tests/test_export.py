"""`mlp export`: the ONNX graph computes what our forward pass computes, the file is one that
runtimes load, and bad input gives a clean error with nothing written.

The graph is compared with `mlp_cli.evaluate.evaluate` (the forward pass of `mlp evaluate`)
on random networks of every hidden activation x output function x input transform, through
onnx's reference evaluator and through onnxruntime.  Tests that need `onnx` or
`onnxruntime` skip, saying so, where the export extra is not installed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from tiny_models import save_random_model
from typer.testing import CliRunner

from mlp_cli import checkpoint, data, export
from mlp_cli.activations import ACTIVATIONS
from mlp_cli.checkpoint import SavedModel
from mlp_cli.cli import app
from mlp_cli.evaluate import evaluate
from mlp_cli.losses import OUTPUTS
from mlp_cli.preprocess import digits_to_inputs, model_inputs

HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx is not installed (pip install onnx)")
needs_ort = pytest.mark.skipif(
    not HAVE_ORT, reason="onnxruntime is not installed (pip install onnxruntime)"
)
RUNTIMES = [
    pytest.param("reference", marks=needs_onnx),
    pytest.param("onnxruntime", marks=[needs_onnx, needs_ort]),
]
STANDARDIZE = {"mean": 0.1307, "std": 0.3081}  # about MNIST's training-pixel statistics

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    # rich wraps long lines at the terminal width; compare words, not line breaks
    return result.exit_code, " ".join(result.stdout.split()), " ".join(result.stderr.split())


def random_digits(n: int, seed: int = 1) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """MNIST-form uint8 images (n, 28, 28) of random ink, from faint to dense, with a blank
    one among them; and random labels."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.6, (n, 1, 1))
    ink = rng.integers(0, 256, (n, 28, 28)) * (rng.random((n, 28, 28)) < density)
    images = ink.astype(np.uint8)
    images[0] = 0
    return images, rng.integers(0, 10, n).astype(np.uint8)


def random_model(
    path: Path,
    *,
    hidden: str = "relu",
    output: str = "softmax",
    input_size: int = 28,
    normalize: bool = True,
    sizes: tuple[int, ...] = (12, 8, 10),
    seed: int = 0,
) -> SavedModel:
    """A model file with random weights, written and read back through `checkpoint` like a
    trained one.

    Each layer is scaled so that its pre-activations on `random_digits` spread around zero
    with a standard deviation of 2: no unit is stuck in a flat part of its activation, the
    outputs are far from uniform, and none saturates to a tie at 1.
    """
    rng = np.random.default_rng(seed)
    preprocessing = {"input_size": input_size, "normalize": STANDARDIZE if normalize else None}
    a: NDArray[np.floating] = model_inputs(random_digits(64)[0], preprocessing).astype(np.float64)
    weights, biases = [], []
    for l, n_out in enumerate(sizes, start=1):
        W = rng.normal(0.0, 1.0, (n_out, a.shape[1]))
        z = a @ W.T  # (64, n_out)
        W *= 2.0 / np.maximum(z.std(axis=0), 1e-6)[:, None]
        z = a @ W.T
        b = rng.normal(0.0, 0.5, n_out) - z.mean(axis=0)
        weights.append(W.astype(np.float32))
        biases.append(b.astype(np.float32))
        if l < len(sizes):
            a = ACTIVATIONS[hidden].forward(z + b, np.empty_like(z))
    meta = {
        "hidden_activation": hidden,
        "output_activation": output,
        "loss": "cross_entropy",
        "preprocessing": preprocessing,
        "class_names": [str(d) for d in range(sizes[-1])],
        "training": {"status": "completed", "epochs_run": 3, "best_epoch": 2},
        "data_hashes": dict(data.MNIST_FILES),
    }
    return checkpoint.load(checkpoint.save(path, weights, biases, meta))


def onnx_inputs(
    saved: SavedModel, images: NDArray[np.uint8], preprocessing: bool
) -> NDArray[np.float32]:
    if preprocessing:
        return digits_to_inputs(images, 28)
    return model_inputs(images, saved.meta.preprocessing.model_dump())


def test_operator_tables_cover_every_activation() -> None:
    assert set(export.HIDDEN_OPS) == set(ACTIVATIONS)
    assert set(export.OUTPUT_OPS) == set(OUTPUTS)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("preprocessing", [True, False], ids=["in-graph", "no-preprocessing"])
@pytest.mark.parametrize(
    ("input_size", "normalize"),
    [(28, False), (28, True), (20, False), (20, True)],
    ids=["28-none", "28-standardize", "20-none", "20-standardize"],
)
@pytest.mark.parametrize("output", sorted(OUTPUTS))
@pytest.mark.parametrize("hidden", sorted(ACTIVATIONS))
def test_graph_equals_our_forward_pass(
    tmp_path: Path,
    hidden: str,
    output: str,
    input_size: int,
    normalize: bool,
    preprocessing: bool,
    runtime: str,
) -> None:
    saved = random_model(
        tmp_path / "m.npz", hidden=hidden, output=output, input_size=input_size, normalize=normalize
    )
    images, labels = random_digits(64)
    ours = evaluate(saved, images, labels, "test")
    model = export.build_onnx(saved, preprocessing=preprocessing)

    probabilities, predicted = export.run(
        model.SerializeToString(), onnx_inputs(saved, images, preprocessing), runtime=runtime
    )

    assert probabilities.shape == (64, 10)
    assert probabilities.dtype == np.float32
    assert predicted.dtype == np.int64
    np.testing.assert_allclose(probabilities, ours.probabilities, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(predicted, ours.predictions)
    # The labels are decided (no near-ties, which rounding could break either way), and the
    # outputs are far from uniform.
    top_two = np.sort(ours.probabilities, axis=1)[:, -2:]
    assert np.min(top_two[:, 1] - top_two[:, 0]) > 1e-4
    assert len(set(ours.predictions.tolist())) > 3


@needs_onnx
@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_the_label_of_equal_probabilities_is_the_first_class_as_ours(
    tmp_path: Path, output: str
) -> None:
    saved = random_model(tmp_path / "m.npz", output=output)
    zero = dataclasses.replace(
        saved,
        weights=[np.zeros_like(W) for W in saved.weights],
        biases=[np.zeros_like(b) for b in saved.biases],
    )  # every output the same for every image
    images, labels = random_digits(8)
    model = export.build_onnx(zero)
    _, predicted = export.run(
        model.SerializeToString(), digits_to_inputs(images, 28), runtime="reference"
    )
    assert predicted.tolist() == evaluate(zero, images, labels, "test").predictions.tolist()
    assert predicted.tolist() == [0] * 8


@needs_onnx
def test_logistic_model_without_hidden_layer(tmp_path: Path) -> None:
    saved = random_model(tmp_path / "m.npz", sizes=(10,))
    images, labels = random_digits(32)
    model = export.build_onnx(saved)
    probabilities, predicted = export.run(
        model.SerializeToString(), digits_to_inputs(images, 28), runtime="reference"
    )
    ours = evaluate(saved, images, labels, "test")
    np.testing.assert_allclose(probabilities, ours.probabilities, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(predicted, ours.predictions)
    assert [n.op_type for n in model.graph.node] == ["Sub", "Mul", "Gemm", "Softmax", "ArgMax"]


@needs_onnx
@pytest.mark.parametrize("input_size", [28, 20])
def test_written_file_is_checked_pinned_and_self_describing(
    tmp_path: Path, input_size: int
) -> None:
    import onnx

    saved = random_model(tmp_path / "m.npz", hidden="tanh", input_size=input_size)
    out = export.export(saved, tmp_path / "m.onnx")
    model = onnx.load(str(out))

    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == export.IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", export.OPSET)]
    assert export.OPSET >= 17
    # The pinned IR version can express the pinned opset (onnx's own table) ...
    min_ir = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", export.OPSET)])
    assert min_ir <= export.IR_VERSION
    (given,) = model.graph.input
    assert given.name == "pixels"
    assert given.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value or d.dim_param for d in given.type.tensor_type.shape.dim] == ["N", 784]
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert outputs["probabilities"].elem_type == onnx.TensorProto.FLOAT
    assert outputs["label"].elem_type == onnx.TensorProto.INT64
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Gemm") == 3
    assert ops.count("Tanh") == 2
    assert ("MatMul" in ops) == (input_size == 20)

    props = {p.key: p.value for p in model.metadata_props}
    assert props["format"] == checkpoint.FORMAT_NAME
    assert props["format_version"] == str(checkpoint.FORMAT_VERSION)
    assert props["layers"] == f"[{input_size**2}, 12, 8, 10]"
    assert props["hidden_activation"] == "tanh"
    assert props["output_activation"] == "softmax"
    assert props["class_names"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert '"best_epoch": 2' in props["training"]
    for stem, digest in data.MNIST_FILES.items():
        assert f'"{stem}": "{digest}"' in props["data_hashes"]
    assert props["preprocessing_in_graph"] == "true"


@needs_onnx
@pytest.mark.parametrize(
    ("input_size", "normalize", "given"),
    [
        (28, False, "(N, 784): MNIST-form pixels in [0, 1]."),
        (
            20,
            True,
            "(N, 400): MNIST-form pixels in [0, 1], area-averaged to 20x20, then standardised "
            "with the preprocessing property's mean and std.",
        ),
    ],
)
def test_doc_string_names_the_input_transform_left_out_of_the_graph(
    tmp_path: Path, input_size: int, normalize: bool, given: str
) -> None:
    saved = random_model(tmp_path / "m.npz", input_size=input_size, normalize=normalize)
    model = export.build_onnx(saved, preprocessing=False)
    assert f"Input 'pixels': the network's inputs {given}" in model.doc_string


@needs_onnx
def test_undecodable_bytes_in_the_metadata_are_written_as_escapes(tmp_path: Path) -> None:
    # ONNX holds UTF-8 text only; a name read back from a file's JSON may hold lone
    # surrogates (an undecodable byte), which the export writes as mlp's JSON output does.
    import onnx

    saved = random_model(tmp_path / "m.npz")
    meta = saved.meta.model_dump(mode="json", exclude_unset=True)
    meta |= {"created": "2026-12-04 \udcff", "class_names": [f"c\udcff{d}" for d in range(10)]}
    meta["data_hashes"] = {"t10k\udcff": "\udcfe"}  # in keys as in values
    edited = checkpoint.load(
        checkpoint.save(tmp_path / "edited.npz", saved.weights, saved.biases, meta)
    )
    model = onnx.load(str(export.export(edited, tmp_path / "m.onnx")))

    props = {p.key: p.value for p in model.metadata_props}
    assert props["created"] == "2026-12-04 \\xff"
    assert props["class_names"].startswith('["c\\\\xff0", "c\\\\xff1"')
    assert props["data_hashes"] == '{"t10k\\\\xff": "\\\\xfe"}'


@needs_onnx
def test_a_number_json_lacks_in_the_metadata_is_written_null(tmp_path: Path) -> None:
    # a key a later mlp adds to 'training' is kept unchecked, and json.loads reads NaN and
    # 1e400; the properties stay JSON that any reader parses
    import onnx

    saved = random_model(tmp_path / "m.npz")
    meta = saved.meta.model_dump(mode="json", exclude_unset=True)
    meta["training"] = {"status": "completed", "later": [float("nan"), {"x": float("inf")}]}
    edited = checkpoint.load(
        checkpoint.save(tmp_path / "edited.npz", saved.weights, saved.biases, meta)
    )
    model = onnx.load(str(export.export(edited, tmp_path / "m.onnx")))

    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["training"]) == {
        "status": "completed",
        "later": [None, {"x": None}],
    }


@needs_onnx
@needs_ort
def test_onnxruntime_loads_the_pinned_file(tmp_path: Path) -> None:
    """... and the installed onnxruntime accepts it (a file with the newest IR of the
    installed onnx may be newer than a runtime knows)."""
    onnxruntime = importlib.import_module("onnxruntime")

    out = export.export(random_model(tmp_path / "m.npz"), tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["probabilities", "label"]
    meta = session.get_modelmeta()
    assert meta.producer_name == checkpoint.FORMAT_NAME
    assert meta.custom_metadata_map["layers"] == "[784, 12, 8, 10]"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_file_whose_name_is_not_utf8_is_verified(tmp_path: Path, runtime: str) -> None:
    out = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.onnx"))
    try:
        out.write_bytes(b"")
    except OSError:  # a file system that takes only UTF-8 names (macOS)
        pytest.skip("this file system refuses names that are not UTF-8")
    saved = random_model(tmp_path / "m.npz")
    export.export(saved, out, force=True)
    images, labels = random_digits(32)
    assert export.verify(out, saved, images, labels, runtime=runtime).passed


# -- the command: good and bad input -----------------------------------------------------------


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    saved = random_model(tmp_path / "model.npz")
    assert saved.path is not None
    return saved.path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_onnx
def test_export_writes_a_file_and_refuses_to_replace_it_without_force(
    model_file: Path, tmp_path: Path
) -> None:
    import onnx

    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    code, stdout, err = run("export", "--model", str(model_file), "--out", str(out))
    assert code == 0, err
    assert f"to {out}" in stdout
    assert "opset 17" in stdout
    onnx.checker.check_model(onnx.load(str(out)))

    out.write_bytes(b"someone else's file")
    code, _, err = run("export", "--model", str(model_file), "--out", str(out))
    assert code == 2
    assert str(out) in err
    assert "--force" in err
    assert "Traceback" not in err
    assert out.read_bytes() == b"someone else's file"

    code, _, err = run("export", "--model", str(model_file), "--out", str(out), "--force")
    assert code == 0, err
    onnx.checker.check_model(onnx.load(str(out)))
    assert files_in(out.parent) == ["m.onnx"]  # no temporary file left behind


@needs_onnx
def test_the_exported_line_keeps_a_long_path_whole(model_file: Path, tmp_path: Path) -> None:
    # Rich folded the line at the console's width (80 columns when not a terminal), so a
    # long --out was printed split across two lines, and copying it gave a wrong path.
    out = tmp_path / ("a-folder-with-a-long-name-for-the-exported-model-" * 2) / "model.onnx"
    out.parent.mkdir()
    result = runner.invoke(app, ["export", "--model", str(model_file), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert len(str(out)) > 80
    assert str(out) in result.stdout
    assert len(result.stdout.splitlines()) == 1


def test_damaged_model_is_a_clean_error_and_writes_nothing(
    model_file: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(model_file.read_bytes()[:300])
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run("export", "--model", str(damaged), "--out", str(out / "m.onnx"))
    assert code == 1
    assert str(damaged) in err
    assert "not a valid mlp model file" in err
    assert "Traceback" not in err
    assert files_in(out) == []


@needs_onnx
@pytest.mark.parametrize("hard_links", [True, False], ids=["hard-links", "no-hard-links"])
def test_export_does_not_replace_a_file_another_export_wrote_meanwhile(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    # Two `mlp export --out SAME` at once both find the name free; the one that finished
    # second replaced the other's file, and both said they had written it.
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    build = export.build_onnx

    def built_while_the_other_export_writes(*args: Any, **kwargs: Any) -> Any:
        onnx_model = build(*args, **kwargs)
        out.write_bytes(b"the other export's file")
        return onnx_model

    def no_hard_links(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted")  # as on FAT or some network shares

    monkeypatch.setattr(export, "build_onnx", built_while_the_other_export_writes)
    if not hard_links:
        monkeypatch.setattr(os, "link", no_hard_links)
    code, _, err = run("export", "--model", str(model_file), "--out", str(out))
    assert code == 2
    assert f"'{out}' already exists; pass --force" in err
    assert out.read_bytes() == b"the other export's file"
    assert files_in(out.parent) == ["m.onnx"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing/m.onnx", "does not exist"),
        ("model.npz", "already exists"),
        ("folder", "is a folder"),
        ("a-file/m.onnx", "is not a folder"),
    ],
)
def test_bad_out_is_a_usage_error_and_writes_nothing(
    model_file: Path, tmp_path: Path, name: str, expected: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = run("export", "--model", str(model_file), "--out", str(tmp_path / name))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_out_that_is_the_model_itself_is_refused_even_with_force(model_file: Path) -> None:
    before = model_file.read_bytes()
    code, _, err = run("export", "--model", str(model_file), "--out", str(model_file), "--force")
    assert code == 2
    assert "the model file itself" in err
    assert model_file.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.npz", "the model file itself"),
        ("copy.npz", "never replaces, even with --force"),
        ("copy.onnx", "never replaces, even with --force"),  # a model by its content
    ],
)
def test_out_that_force_would_not_replace_is_not_offered_force(
    model_file: Path, name: str, expected: str
) -> None:
    out = model_file.with_name(name)
    if not out.exists():
        out.write_bytes(model_file.read_bytes())
    before = out.read_bytes()
    code, _, err = run("export", "--model", str(model_file), "--out", str(out))
    assert code == 2
    assert expected in err
    assert "pass --force" not in err
    assert out.read_bytes() == before


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["", "force"])
def test_a_model_named_onnx_is_not_answered_with_a_name_ending_in_onnx(
    model_file: Path, force: list[str]
) -> None:
    # The refusal advised "choose a name ending in .onnx" for a model whose name already did.
    out = model_file.with_name("copy.onnx")
    out.write_bytes(model_file.read_bytes())
    code, _, err = run("export", "--model", str(model_file), "--out", str(out), *force)
    assert code == 2
    assert f"--out '{out}' is an mlp model or checkpoint" in err
    assert "ending in .onnx" not in err
    assert "choose another path" in err
    assert out.read_bytes() == model_file.read_bytes()


def writable(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (os.access answers yes to root)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@needs_onnx
def test_unwritable_out_folder_is_a_clean_error(model_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    if writable(folder):  # root ignores permissions; Linux's /sys refuses new files even then
        folder = Path("/sys")
        if not folder.is_dir() or writable(folder):
            pytest.skip("no folder here is unwritable for this user")
    try:
        code, _, err = run("export", "--model", str(model_file), "--out", str(folder / "m.onnx"))
    finally:
        (tmp_path / "read-only").chmod(0o700)
    assert code == 2
    assert f"cannot write the folder for --out '{folder}'" in err
    assert "Traceback" not in err
    assert not (folder / "m.onnx").exists()


@pytest.mark.parametrize(("fmt", "shown"), [("tflite", "tflite"), ("x" * 5000, "x" * 37 + "...")])
def test_unknown_format_is_a_usage_error(
    model_file: Path, tmp_path: Path, fmt: str, shown: str
) -> None:
    code, _, err = run(
        "export", "--model", str(model_file), "--format", fmt, "--out", str(tmp_path / "m")
    )
    assert code == 2
    assert f"unknown export format '{shown}'" in err
    assert "onnx" in err
    assert not (tmp_path / "m").exists()


@needs_onnx
def test_failed_write_leaves_the_previous_file_whole(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up halfway: the old file stays as it was, no temporary file is left."""
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    out.write_bytes(b"previous export")
    real_write = checkpoint.atomic_write

    def fill_up(path: Path, write: Callable[[Any], None]) -> None:
        def half(f: Any) -> None:
            f.write(b"\0" * 100)
            raise OSError(28, "No space left on device")

        real_write(path, half)

    monkeypatch.setattr("mlp_cli.export.atomic_write", fill_up)
    code, _, err = run("export", "--model", str(model_file), "--out", str(out), "--force")
    assert code == 1
    assert "No space left on device" in err
    assert out.read_bytes() == b"previous export"
    assert files_in(out.parent) == ["m.onnx"]


@needs_onnx
def test_model_too_large_for_one_onnx_file_is_refused(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "MAX_BYTES", 1000)  # the real limit is 2 GiB of weights
    out = tmp_path / "m.onnx"
    code, _, err = run("export", "--model", str(model_file), "--out", str(out))
    assert code == 1
    assert "at most 1,000 bytes" in err
    assert not out.exists()


def test_missing_onnx_says_how_to_install_it(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    out = tmp_path / "m.onnx"
    code, _, err = run("export", "--model", str(model_file), "--out", str(out))
    assert code == 2  # a usage error, as `mlp sweep --engine ray` without its extra
    assert export.INSTALL_HINT in err
    assert "mlp-cli[" not in err  # mlp is on no package index: pip would find nothing
    assert "Traceback" not in err
    assert not out.exists()


def test_the_install_hints_name_the_extras_requirements_as_pyproject_declares_them() -> None:
    import tomllib

    from mlp_cli import sweep_ray

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for hint, extra in ((export.INSTALL_HINT, "export"), (sweep_ray.INSTALL_HINT, "ray")):
        assert hint.split()[:2] == ["pip", "install"]
        assert [word.strip("'") for word in hint.split()[2:]] == extras[extra]


def test_missing_onnx_is_said_before_the_mnist_test_set_is_fetched(
    mnist_mirror: Any, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    out = tmp_path / "m.onnx"
    code, _, err = run("export", "--model", str(model_file), "--out", str(out), "--verify")
    assert code == 2
    assert export.INSTALL_HINT in err
    assert mnist_mirror.requested == []
    assert not out.exists()


def test_help_imports_neither_onnx_nor_onnxruntime(imports_of: Callable[[str], set[str]]) -> None:
    for argv in (["--help"], ["export", "--help"]):
        code = f"from mlp_cli.cli import app\ntry:\n    app({argv!r})\nexcept SystemExit:\n    pass"
        assert sorted(imports_of(code) & {"onnx", "onnxruntime"}) == [], argv


# -- --verify on the real MNIST test set --------------------------------------------------------


@needs_onnx
@pytest.mark.parametrize(
    ("input_size", "flags", "runtime"),
    [(20, [], "onnxruntime"), (28, ["--no-preprocessing"], "onnxruntime"), (28, [], "reference")],
)
def test_verify_on_the_mnist_test_set(
    mnist_mirror: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    input_size: int,
    flags: list[str],
    runtime: str,
) -> None:
    if runtime == "reference":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)
    elif not HAVE_ORT:
        pytest.skip("onnxruntime is not installed (pip install 'mlp-cli[export]')")
    saved = random_model(tmp_path / "m.npz", hidden="sigmoid", input_size=input_size)
    out = tmp_path / "m.onnx"
    code, stdout, err = run(
        "export", "--model", str(saved.path), "--out", str(out), "--verify", *flags
    )
    assert code == 0, err
    expected_runtime = "onnxruntime" if runtime == "onnxruntime" else "onnx.reference"
    assert f"verified with {expected_runtime}" in stdout
    assert "labels agree 10,000/10,000" in stdout
    difference = float(stdout.split("largest probability difference ")[1].split(",")[0])
    assert difference <= export.TOLERANCE


def test_verify_of_a_model_without_ten_outputs_is_refused_before_the_file_is_written(
    tmp_path: Path,
) -> None:
    saved = random_model(tmp_path / "m.npz", sizes=(12, 8, 3))
    out = tmp_path / "m.onnx"
    code, _, err = run("export", "--model", str(saved.path), "--out", str(out), "--verify")
    assert code == 2, err
    assert "has layers 784-12-8-3" in " ".join(err.split())
    assert not out.exists()


@needs_onnx
@needs_ort
def test_verify_counts_a_label_tied_within_the_tolerance_as_agreeing(
    mnist_mirror: Any, tmp_path: Path
) -> None:
    # Eight narrow ReLU layers of small random weights answer nearly 10% for every class:
    # which of those near-ties is the largest is rounding noise, in ONNX as in ours.
    path = save_random_model(tmp_path / "m.npz", (784, *[8] * 8, 10))
    code, stdout, err = run(
        "export", "--model", str(path), "--out", str(tmp_path / "m.onnx"), "--verify"
    )
    assert code == 0, err
    assert "labels agree 10,000/10,000" in stdout


def test_verify_passes_only_when_every_label_agrees_too() -> None:
    agreeing = export.Verification("onnx.reference", 10, 0.0, 10, 0.9, 0.9)
    assert agreeing.passed
    assert not dataclasses.replace(agreeing, labels_agree=9).passed
    assert not dataclasses.replace(agreeing, max_difference=2 * export.TOLERANCE).passed


@needs_onnx
def test_verify_reports_the_largest_difference_of_any_one_probability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = random_model(tmp_path / "m.npz")
    out = export.export(saved, tmp_path / "m.onnx")
    real_run = export.run

    def one_off(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        probabilities, labels = real_run(*args, **kwargs)
        probabilities[3, 2] += np.float32(1e-3)  # one probability of one image
        return probabilities, labels

    monkeypatch.setattr(export, "run", one_off)
    images, labels = random_digits(16)
    result = export.verify(out, saved, images, labels, runtime="reference")
    assert result.max_difference == pytest.approx(1e-3, abs=export.TOLERANCE)
    assert not result.passed


@needs_onnx
def test_verify_scores_the_onnx_labels_against_the_true_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = random_model(tmp_path / "m.npz")
    out = export.export(saved, tmp_path / "m.onnx")
    images, labels = random_digits(16)
    real_run = export.run

    def right_every_time(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        probabilities, _ = real_run(*args, **kwargs)
        return probabilities, labels.astype(np.int64)

    monkeypatch.setattr(export, "run", right_every_time)
    result = export.verify(out, saved, images, labels, runtime="reference")
    ours = evaluate(saved, images, labels, "test")
    assert (result.accuracy_onnx, result.accuracy_ours) == (1.0, ours.accuracy)
    assert ours.accuracy < 1.0


@needs_onnx
def test_verify_that_finds_a_difference_exits_1(
    mnist_mirror: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = export.run

    def off_by_a_little(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        probabilities, labels = real_run(*args, **kwargs)
        return probabilities + np.float32(1e-3), labels

    monkeypatch.setattr(export, "run", off_by_a_little)
    saved = random_model(tmp_path / "m.npz")
    code, stdout, err = run(
        "export", "--model", str(saved.path), "--out", str(tmp_path / "m.onnx"), "--verify"
    )
    assert code == 1
    assert "largest probability difference 1.00e-03" in stdout
    assert "should not be used" in err
