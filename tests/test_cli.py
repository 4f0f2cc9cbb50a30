"""The command line, driven through Typer's CliRunner: exit codes, messages, side effects.

Bad input must give a one-paragraph message, the right exit code, no traceback, and must
neither download nor write anything.  The end-to-end tests at the bottom train on the real
MNIST served from a loopback mirror (the `mnist_mirror` fixture).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from typer.testing import CliRunner

from mlp_cli import __version__
from mlp_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """\
name: tiny
data: {input_size: 28, validation_size: 1000}
model: {layers: 784-10}
optimizer: {name: adam, lr: 1e-3}
training: {epochs: 1, batch_size: 128}
"""


def test_version_and_help() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert __version__ in out
    code, out, _ = run("--help")
    assert code == 0
    for command in ("train", "evaluate", "predict", "data", "config", "gradcheck", "inspect"):
        assert command in out


def test_help_imports_no_heavy_modules(imports_of: Callable[[str], set[str]]) -> None:
    """`mlp --help` must stay fast: no NumPy, pooch, Pillow, matplotlib or numba."""
    code = "from mlp_cli.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    heavy = {"numpy", "pooch", "PIL", "matplotlib", "numba"}
    assert sorted(imports_of(code) & heavy) == []


BAD_CONFIGS = {
    "typo": (GOOD.replace("optimizer: {name: adam", "optimizer: {nme: adam"), ":4:", "nme"),
    "wrong type": (GOOD.replace("epochs: 1", "epochs: many"), ":5:", "training.epochs"),
    "negative lr": (GOOD.replace("lr: 1e-3", "lr: -0.1"), ":4:", "optimizer.lr"),
    "layer mismatch": (GOOD.replace("784-10", "400-10"), ":3:", "model.layers"),
    "duplicate key": (GOOD + "name: again\n", ":6:", "name"),
    "syntax error": (GOOD.replace("{layers: 784-10}", "{layers: [784, 10}"), ":3:", ""),
    "python tag": (GOOD + "loss: !!python/object/apply:os.system ['true']\n", ":6:", ""),
}


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "²"])
def test_threads_option_takes_a_number_or_auto(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, GOOD, "good.yaml")
    code, out, err = run("train", "--config", str(config), "--threads", value)
    assert code == 2
    assert "--threads takes a number of threads (1 or more) or auto" in err
    assert "Traceback" not in out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.yaml"]


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_file_line_and_key(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, line, key = BAD_CONFIGS[case]
    path = write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run("train", "--config", str(path))
    assert code == 2, (out, err)
    assert f"{path}{line}" in err
    assert key in err
    assert "Traceback" not in err + out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/ folder
    data_dir = Path(tmp_path / "data")
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_missing_config_file(tmp_path: Path) -> None:
    code, _, err = run("train", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err
    assert "Traceback" not in err


def test_bad_override_exits_2() -> None:
    code, _, err = run(
        "config", "show", "configs/mnist-400-25-10.yaml", "--set", "training.epoch=3"
    )
    assert code == 2
    assert "--set training.epoch=3" in err
    assert "epochs" in err


def test_config_show_round_trips_and_applies_overrides(tmp_path: Path) -> None:
    from mlp_cli.config import load_config

    code, out, _ = run(
        "config", "show", str(ROOT / "configs/mnist-784-100-10.yaml"), "--set", "optimizer.lr=3e-4"
    )
    assert code == 0
    resolved = write(tmp_path, out, "resolved.yaml")
    cfg = load_config(resolved)
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.model.layers == [784, 100, 10]


def test_config_schema_is_json() -> None:
    code, out, _ = run("config", "schema")
    schema = json.loads(out)
    assert code == 0
    assert "model" in schema["properties"]


def test_debug_shows_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "train", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert result.exception is not None


def test_gradcheck_command_passes() -> None:
    code, out, _ = run("gradcheck", "--config", str(ROOT / "configs/mnist-400-25-10.yaml"))
    assert code == 0, out
    assert "W1" in out
    assert "b2" in out
    assert "FAIL" not in out


def test_data_path_and_info_use_mlp_data_dir(tmp_path: Path) -> None:
    code, out, _ = run("data", "path")
    assert code == 0
    assert out.strip().startswith(str(tmp_path))
    code, out, _ = run("data", "info", "--json")
    info = json.loads(out)
    assert code == 0
    assert len(info["files"]) == 4
    assert not any(f["present"] for f in info["files"])


def test_fetch_without_any_mirror_says_what_to_do(
    no_public_mirrors: None, closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLP_MNIST_MIRROR", closed_port_url)
    code, _, err = run("data", "fetch")
    assert code == 1
    assert "mlp data import" in err
    assert "MLP_MNIST_MIRROR" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("evaluate",), "mlp train"),
        (("predict", "x.png"), "mlp train"),
        (("inspect",), "mlp train"),
        (("show", "hidden"), "mlp train"),
    ],
)
def test_commands_without_a_model_say_how_to_get_one(
    args: tuple[str, ...], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(*args)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_invalid_model_file_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"definitely not a zip archive")
    for args in (("inspect",), ("evaluate",), ("show", "hidden")):
        code, _, err = run(*args, "--model", str(bad))
        assert code == 1, err
        assert str(bad) in err
        assert "Traceback" not in err


# -- end to end on the real MNIST ---------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of a quick 784-30-10 model trained on real MNIST (filled lazily)."""
    return tmp_path_factory.mktemp("e2e") / "run"


@pytest.mark.slow
def test_end_to_end_train_evaluate_predict(
    mnist_mirror: object, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(
        tmp_path,
        GOOD.replace("784-10", "784-30-10").replace("epochs: 1", "epochs: 2"),
        "e2e.yaml",
    )
    code, out, err = run("train", "--config", str(config), "--out", str(trained), "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for name in ("config.yaml", "metrics.jsonl", "model.npz", "checkpoint.npz", "curves.png"):
        assert (trained / name).exists(), name

    code, out, err = run("evaluate", "--model", str(trained), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 10_000
    assert 0.85 < report["accuracy"] <= 1.0
    assert set(report) >= {"accuracy", "loss", "n", "per_class", "confusion"}
    confusion = np.array(report["confusion"])
    assert confusion.sum() == 10_000
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 10_000)

    # An independent forward pass with plain NumPy over the saved weights agrees exactly.
    from mlp_cli import data
    from mlp_cli.preprocess import digits_to_inputs

    f = np.load(trained / "model.npz", allow_pickle=False)
    images, labels = data.load_mnist("test")
    a = digits_to_inputs(images, 28)
    a = np.maximum(a @ f["W1"].T + f["b1"], 0)
    z = a @ f["W2"].T + f["b2"]
    assert report["accuracy"] == pytest.approx(float(np.mean(z.argmax(1) == labels)), abs=2e-4)

    from PIL import Image

    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(255 - images[i]).resize((140, 140)).save(folder / f"d{i}-{labels[i]}.png")
    (folder / "notes.png").write_text("not an image")
    code, out, err = run("predict", str(folder), "--model", str(trained), "--json")
    assert code == 1  # one file failed ...
    rows = json.loads(out)
    good = [r for r in rows if "digit" in r]
    assert len(good) == 5  # ... the others were still predicted
    assert "notes.png" in err
    assert "Traceback" not in err
    for r in good:
        assert set(r) >= {"file", "digit", "probability", "probabilities"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    hits = sum(r["digit"] == Path(r["file"]).stem.split("-")[1] for r in good)
    assert hits >= 4

    # Users' pictures of the same digits (ink on paper, photos, JPEG, transparent PNG,
    # palette, 16-bit, EXIF-rotated ...) get the same answers as the MNIST originals.
    sys.path.insert(0, str(ROOT / "tests"))
    import userlike

    rng = np.random.default_rng(1)
    pick = rng.choice(len(labels), 25, replace=False)
    users = tmp_path / "users"
    for i in pick:
        userlike.save_all(images[i], rng, users, prefix=f"{i:05d}-")
    code, out, err = run("predict", str(users), "--model", str(trained), "--json")
    assert code == 0, err
    on_originals = {int(i): int(d) for i, d in zip(pick, z[pick].argmax(1), strict=True)}
    answers = json.loads(out)
    assert len(answers) == 25 * len(userlike.RENDERERS)
    agree = [int(r["digit"]) == on_originals[int(Path(r["file"]).name[:5])] for r in answers]
    assert np.mean(agree) >= 0.9

    code, out, _ = run("inspect", "--model", str(trained))
    assert code == 0
    assert "784-30-10" in out
    code, out, _ = run("show", "hidden", "--model", str(trained), "--out", str(tmp_path / "h.png"))
    assert code == 0
    assert (tmp_path / "h.png").exists()
    code, _, _ = run("plot", str(trained), "--out", str(tmp_path / "c.png"))
    assert code == 0
    assert (tmp_path / "c.png").exists()


# -- predict: bad input of every kind ------------------------------------------------------


@pytest.fixture
def random_model(tmp_path: Path) -> Path:
    """A valid 784-16-10 model file with random weights: enough to exercise predict."""
    from mlp_cli import checkpoint

    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.1, (16, 784)).astype(np.float32)]
    weights.append(rng.normal(0, 0.1, (10, 16)).astype(np.float32))
    biases = [np.zeros(16, np.float32), np.zeros(10, np.float32)]
    meta = {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": 28, "normalize": None},
        "class_names": [str(d) for d in range(10)],
    }
    return checkpoint.save(tmp_path / "random.npz", weights, biases, meta)


def _digit_png(path: Path) -> Path:
    from PIL import Image

    pixels = np.full((60, 40), 255, np.uint8)
    pixels[10:50, 17:23] = 0  # a dark "1" on white paper
    Image.fromarray(pixels).save(path)
    return path


def test_predict_reports_each_bad_file_and_still_predicts_the_rest(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    good = _digit_png(tmp_path / "good.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "text.png"
    text.write_text("hello")
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    huge = tmp_path / "huge.png"
    Image.new("L", (200, 200), 255).save(huge)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 pixels: a "bomb" here
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    bad = [tmp_path / "missing.png", truncated, text, blank, huge, empty_dir]
    args = [str(good), *map(str, bad), str(tmp_path / "*.jpeg")]

    result = runner.invoke(app, ["predict", *args, "--model", str(random_model), "--json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [r["file"] for r in rows if "digit" in r] == [str(good)]
    errors = result.stderr
    assert "Traceback" not in errors
    for path in bad:
        assert path.name in errors, path.name
    assert "*.jpeg" in errors  # a glob that matches nothing
    assert len([r for r in rows if "error" in r]) == len(bad) + 1


def _predict_and_saved_input(
    model: Path, tmp_path: Path, *flags: str
) -> tuple[str, NDArray[np.uint8]]:
    """Predict a drawn "1" with ``flags`` and --save-input: stdout and the saved input."""
    from PIL import Image

    good = _digit_png(tmp_path / "one.png")
    out = tmp_path / "inputs"
    code, stdout, _ = run(
        "predict", str(good), "--model", str(model), *flags, "--save-input", str(out)
    )
    assert code == 0
    with Image.open(out / "one-input.png") as image:
        return stdout, np.asarray(image)


def test_predict_show_and_save_input(random_model: Path, tmp_path: Path) -> None:
    stdout, pixels = _predict_and_saved_input(random_model, tmp_path, "--show")
    assert "▀" in stdout  # the 28x28 input drawn with half blocks
    assert pixels.shape == (28, 28)
    assert pixels.max() > 200  # light ink on black, as MNIST
    assert pixels[0].max() == 0


def test_predict_raw_skips_preprocessing(random_model: Path, tmp_path: Path) -> None:
    _, pixels = _predict_and_saved_input(random_model, tmp_path, "--raw")
    assert pixels[0, 0] == 255  # the white paper is kept: no inversion, no centring


@pytest.mark.slow
def test_train_shows_its_thread_choice_and_caps_more_threads_than_cores(
    mnist_mirror: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.threads import usable_cores

    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, GOOD, "good.yaml")
    code, out, err = run("train", "--config", str(config), "--out", "auto")
    assert code == 0, err
    assert "threads: 1 (auto: 784-10 is small)" in out
    cores = usable_cores()
    args = ("--out", "capped", "--threads", "10000", "--quiet")
    code, out, err = run("train", "--config", str(config), *args)
    assert code == 0, err
    assert f"threads: {cores} (10,000 asked, capped at the {cores} core" in err
