"""The README's promises that code can check: its plain-NumPy loader scores a model exactly as
`mlp evaluate` does, for 20x20 and 28x28 inputs alike."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import require_real_mnist
from typer.testing import CliRunner

from mlp_cli import data
from mlp_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _numpy_snippet() -> str:
    """The README's Python block that loads a model with plain NumPy."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (snippet,) = [block for block in blocks if "allow_pickle=False" in block]
    return str(snippet)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "side"), [("mnist-400-25-10", 20), ("mnist-784-100-10", 28)], ids=["20x20", "28x28"]
)
def test_the_plain_numpy_snippet_reproduces_evaluate(
    config: str, side: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.import_mnist(next(iter(require_real_mnist().values())).parent)
    monkeypatch.chdir(tmp_path)
    trained = runner.invoke(app, ["train", "--config", config, "--epochs", "1", "--quiet"])
    assert trained.exit_code == 0, trained.output
    scored = runner.invoke(app, ["evaluate", "--json"])
    assert scored.exit_code == 0, scored.output
    reported = json.loads(scored.stdout)["accuracy"]

    namespace: dict[str, object] = {}
    exec(_numpy_snippet(), namespace)  # reads runs/latest/model.npz, as a reader would
    images, labels = data.load_mnist("test", download=False)
    x = namespace["inputs"](images)  # type: ignore[operator]
    assert x.shape == (10_000, side * side)
    predicted = namespace["predict"](x)  # type: ignore[operator]
    assert float(np.mean(predicted == labels)) == reported
