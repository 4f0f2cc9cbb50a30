"""The package as a user gets it: a wheel built from this checkout, installed into a fresh
virtualenv and run from an empty folder, far from the repository and its configs/ and
sweeps/.

Installing the dependencies needs the package index (or pip's cache), so this test is slow
and skips, saying so, when they cannot be installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_mnist_bytes, require_real_mnist
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "mlp_cli")  # what a build reads


def _run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )


def _build_and_install(tmp_path: Path) -> Path:
    """Build a wheel from a copy of the sources, install it in a new virtualenv; its bin/."""
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source], tmp_path
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    # No pip inside and no byte-compiling: this pip installs into it, in half the time.
    created = _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    assert created.returncode == 0, created.stderr
    bin_dir = venv / "bin"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", bin_dir / "python"]
    installed = _run([*pip, "install", "-q", "--no-compile", wheel], tmp_path)
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"the wheel's dependencies could not be installed: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    return bin_dir


@pytest.mark.slow
def test_an_installed_wheel_works_from_an_empty_folder(tmp_path: Path) -> None:
    mnist = next(iter(require_real_mnist().values())).parent
    bin_dir = _build_and_install(tmp_path)
    mlp = bin_dir / "mlp"
    # The test's own MLP_DATA_DIR (see conftest), filled from the real MNIST found here.
    imported = _run([mlp, "data", "import", mnist], tmp_path)
    assert imported.returncode == 0, imported.stderr
    raw = real_mnist_bytes("t10k-images-idx3-ubyte")
    first_digit = np.frombuffer(raw, np.uint8, count=784, offset=16).reshape(28, 28)
    label = real_mnist_bytes("t10k-labels-idx1-ubyte")[8]
    image = tmp_path / "digit.png"
    Image.fromarray(255 - first_digit).save(image)  # dark ink on white paper
    work = tmp_path / "empty"
    work.mkdir()

    listed = _run([mlp, "config", "list"], work)
    assert listed.returncode == 0, listed.stderr
    assert "mnist-400-25-10" in listed.stdout
    assert ">= 97.0%" in listed.stdout
    trained = _run(
        [mlp, "train", "--config", "mnist-400-25-10", "--set", "training.epochs=2"], work
    )
    assert trained.returncode == 0, trained.stderr
    evaluated = _run([mlp, "evaluate", "--json"], work)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] > 0.9
    predicted = _run([mlp, "predict", image, "--json"], work)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predictions"][0]["digit"] == label
    # The shipped sweeps, by name, with their base configs found by name too.
    for name, trials in (("depth-width", 16), ("400-25-10-recipe", 30)):
        planned = _run([mlp, "sweep", "plan", name, "--json"], work)
        assert planned.returncode == 0, planned.stderr
        assert len(json.loads(planned.stdout)) == trials
    drawn = _run([mlp, "show", "hidden"], work)
    assert drawn.returncode == 0, drawn.stderr
    assert (work / "runs" / "mnist-400-25-10" / "hidden.png").is_file()

    assert [p.name for p in work.iterdir()] == ["runs"]
    assert (work / "runs" / "mnist-400-25-10" / "model.npz").is_file()
