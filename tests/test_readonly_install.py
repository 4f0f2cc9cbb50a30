"""Training as an ordinary user of a system-wide install: the package folder cannot be
written, the home folder cannot be written, and neither can `NUMBA_CACHE_DIR`.

Tests run as root in CI, where permission bits stop nothing, so "cannot be written" is
made of paths that no one can create: a folder below a regular file, and the package's
`__pycache__` replaced by a regular file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import mnist_cache  # noqa: F401  (a fixture)
from test_viz import history

import mlp_cli
from mlp_cli import data

TRAIN_ON_SYNTHETIC_DATA = """
from pathlib import Path
import numpy as np
import mlp_cli
from mlp_cli import data, train
from mlp_cli.config import config_from_dict

assert Path(mlp_cli.__file__).parent == Path({package!r}), mlp_cli.__file__
rng = np.random.default_rng(0)
X = rng.random((64, 400), dtype=np.float32)
y = rng.integers(0, 10, 64).astype(np.uint8)
pre = {{"input_size": 20, "source": "synthetic", "normalize": None}}
splits = data.Splits(X, y, np.arange(48), np.arange(48, 64), pre, {{}})
for name in ("adam", "sgd", "rmsprop"):
    cfg = config_from_dict({{
        "data": {{"input_size": 20, "validation_size": 16}},
        "model": {{"layers": [400, 8, 10], "hidden_activation": "relu"}},
        "optimizer": {{"name": name}},
        "training": {{"epochs": 1, "batch_size": 16}},
    }})
    trainer = train.Trainer(cfg, Path({run_dir!r}) / name, splits)
    trainer.write_curves = lambda: None
    trainer.run_dir.mkdir()
    assert trainer.run().status == "completed"
print("trained")
"""


def unwritable_install(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the package nobody can add a cache to, and an environment whose home,
    user cache, user settings folder and NUMBA_CACHE_DIR cannot be created."""
    site = tmp_path / "site"
    package = site / "mlp_cli"
    shutil.copytree(
        Path(mlp_cli.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    (package / "__pycache__").write_text("not a folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "MLP_", "MPL"))}
    env.update(
        PYTHONPATH=str(site),
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(blocker / "home"),
        XDG_CACHE_HOME=str(blocker / "cache"),
        XDG_CONFIG_HOME=str(blocker / "config"),
        NUMBA_CACHE_DIR=str(blocker / "numba"),
    )
    return package, env


def cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_kernels_compile_without_a_writable_cache(tmp_path: Path) -> None:
    package, env = unwritable_install(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    script = TRAIN_ON_SYNTHETIC_DATA.format(package=str(package), run_dir=str(runs))

    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == "trained"
    assert cache_files(tmp_path) == []


def test_pictures_are_drawn_quietly_without_a_writable_home(tmp_path: Path) -> None:
    _, env = unwritable_install(tmp_path)
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the folder matplotlib needs goes instead
    (tmp_path / "tmp").mkdir()
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in history(3)))
    command = [sys.executable, "-m", "mlp_cli.cli", "plot", str(metrics), "--out", "curves.png"]

    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # matplotlib warns of its folder when it has to make one
    assert (tmp_path / "curves.png").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []  # removed at exit


@pytest.mark.slow
def test_mlp_train_works_from_a_read_only_install(
    tmp_path: Path,
    mnist_cache: Path,  # noqa: F811
) -> None:
    _, env = unwritable_install(tmp_path)
    env[data.DATA_DIR_ENV] = str(mnist_cache)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\ndata: {input_size: 28, validation_size: 1000}\n"
        "model: {layers: 784-16-10, hidden_activation: relu}\ntraining: {epochs: 1}\n"
    )
    command = [sys.executable, "-m", "mlp_cli.cli", "train", "--config", str(config), "--quiet"]

    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (tmp_path / "runs" / "tiny" / "model.npz").is_file()
    assert (tmp_path / "runs" / "latest").resolve() == (tmp_path / "runs" / "tiny").resolve()
    assert cache_files(tmp_path) == []
