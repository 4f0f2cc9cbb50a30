"""The README's promises that code can check: its plain-NumPy loader scores a model exactly as
`mlp evaluate` does, for 20x20 and 28x28 inputs alike; its figures for the shipped configs
agree with the configs' headers; its table of config keys states the schema's defaults; and it
installs extras as they can be installed."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_real_mnist
from ruamel.yaml import YAML
from tiny_models import save_model
from typer.testing import CliRunner

from mlp_cli import data
from mlp_cli.cli import app
from mlp_cli.config import config_from_dict

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


def test_the_reproduce_table_states_each_configs_own_floor() -> None:
    from mlp_cli.shipped import shipped_configs

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| ([\w-]+) \| >= ([\d.]+)% \|", readme, re.M))
    for config in shipped_configs():
        assert float(rows[config.name]) == config.expected, config.name


def test_the_readme_installs_extras_from_a_clone_not_an_index() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install 'mlp-cli[" not in readme  # mlp-cli is not on a package index
    assert "pip install '.[export]'" in readme


def test_a_header_quoting_make_reproduce_agrees_with_the_readmes_run() -> None:
    from mlp_cli.shipped import shipped_configs

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = 0
    for config in shipped_configs():
        header = " ".join(line.lstrip("# ") for line in config.path.read_text().splitlines())
        said = re.search(
            r"Measured here \(`make reproduce`\): ([\d.]+)% test accuracy \(best validation "
            r"loss at epoch (\d+) of (\d+)\)",
            header,
        )
        if said is None:
            continue
        got, best, epochs = said.groups()
        assert f"| {config.name} | >= " in readme
        assert re.search(
            rf"^\| {config.name} \| [^|]+ \| {got}% \| {epochs} \(best {best}\) \|", readme, re.M
        ), config.name
        quoted += 1
    assert quoted == 2  # mnist-784-800-10 and mnist-best


@pytest.mark.parametrize(
    "command",
    [
        "evaluate",
        "predict",
        "export",
        "inspect",
        "serve",
        "show hidden",
        "plot",
        "gradcheck",
        "data fetch",
        "sweep",
    ],
)
def test_the_command_table_names_every_option_of_a_command_and_no_other(command: str) -> None:
    import typer.main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## A tour of the commands\n\n", 1)[1].split("\n\n", 1)[0]
    (row,) = re.findall(rf"^\| `mlp {command} .*$", table, re.M)
    named = set(re.findall(r"--[a-z][a-z-]*", row))
    click_command: Any = typer.main.get_command(app)
    for word in command.split():
        click_command = click_command.commands[word]
    options = {
        name: param
        for param in click_command.params
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--") and name not in ("--debug", "--help")
    }
    assert named <= set(options), f"not options of mlp {command}: {named - set(options)}"
    unnamed = {options[name].name for name in set(options) - named} - {
        options[name].name for name in named
    }
    assert not unnamed, f"options of mlp {command} the table leaves out: {unnamed}"


def test_the_model_format_table_names_every_metadata_field() -> None:
    from mlp_cli.checkpoint import ModelMetadata, Preprocessing, TrainingSummary

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = re.findall(r"^\| `metadata` \|.*$", readme, re.M)
    named = set(re.findall(r"`(\w+)`", row))
    # a checkpoint's resume and history are described below the table, with the checkpoint
    fields = set(ModelMetadata.model_fields) - {"resume", "history"}
    for record in (fields, set(Preprocessing.model_fields), set(TrainingSummary.model_fields)):
        assert record <= named, f"the metadata row leaves out {sorted(record - named)}"


def test_the_example_config_says_what_the_shipped_config_of_its_name_trains() -> None:
    from ruamel.yaml import YAML

    from mlp_cli.config import config_from_yaml, load_config
    from mlp_cli.shipped import resolve

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration\n", 1)[1]
    (block,) = re.findall(r"```yaml\n(.*?)```", section.split("\n## ", 1)[0], flags=re.DOTALL)
    example = config_from_yaml(block).model_dump()
    shipped = load_config(resolve(example["name"])).model_dump()

    def leaves(written: dict[str, Any], prefix: str = "") -> list[str]:
        return [
            path
            for key, value in written.items()
            for path in (
                leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
            )
        ]

    def get(tree: dict[str, Any], path: str) -> Any:
        for key in path.split("."):
            tree = tree[key]
        return tree

    for path in leaves(YAML(typ="safe").load(block)):
        assert get(example, path) == get(shipped, path), path


def test_the_api_table_names_every_fact_of_get_api_model(tmp_path: Path) -> None:
    from test_serve import save_model

    from mlp_cli import checkpoint
    from mlp_cli.serve import Served

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = re.findall(r"^\| `GET /api/model\b.*$", readme, re.M)
    named = set(re.findall(r"`(\w+)`", row))
    facts = Served(
        "small", checkpoint.load(save_model(tmp_path / "m.npz", [784, 16, 10], 0))
    ).facts()
    for record in (set(facts), set(facts["units"])):
        assert record <= named, f"the /api/model row leaves out {sorted(record - named)}"


def test_the_api_table_says_how_units_png_scales_a_units_colours(tmp_path: Path) -> None:
    from matplotlib import colormaps
    from PIL import Image

    from mlp_cli import checkpoint
    from mlp_cli.serve import Served
    from mlp_cli.viz import CMAP

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = re.findall(r"^\| `GET /api/units\.png\b.*$", readme, re.M)
    said = row.replace("\\|", "|")
    # a unit whose weights run from -1 to 0.5: scaled by its largest |weight|, 1, only its
    # negative end reaches the map's end; scaled by its largest weight, 0.5 would be full red
    w1 = np.zeros((1, 400), np.float32)
    w1[0, 0], w1[0, 1] = -1.0, 0.5
    weights = [w1, np.ones((10, 1), np.float32)]
    preprocessing = {"input_size": 20, "normalize": None}
    served = Served(
        "one", checkpoint.load(save_model(tmp_path / "m.npz", weights, preprocessing=preprocessing))
    )
    with Image.open(io.BytesIO(served.units_png)) as image:
        pixels = np.asarray(image.convert("RGB"))[0]  # (20, 3), the tile's top row
    lut = colormaps[CMAP](np.linspace(0.0, 1.0, 5), bytes=True)[:, :3]  # -1, -0.5, 0, 0.5, 1
    assert (pixels[0] == lut[0]).all()  # -1: the map's blue end
    assert (pixels[1] == lut[3]).all()  # 0.5: halfway to red, not red's end
    assert (pixels[2] == lut[2]).all()  # a weight of 0
    assert "largest |weight|" in said, row


def _config_table() -> list[tuple[str, str, str]]:
    """(key, default, meaning) of each row of the README's table of config keys."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| key | default | meaning |\n|---|---|---|\n", 1)[1].split("\n\n", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split(" | ", 2)] for line in table.splitlines()
    ]
    return [(key.strip("`"), default, meaning) for key, default, meaning in rows]


@pytest.mark.parametrize("row", _config_table(), ids=lambda row: row[0])
def test_the_config_table_states_each_keys_default_as_the_schema_has_it(
    row: tuple[str, str, str],
) -> None:
    key, default, meaning = row
    if not default.startswith("`"):  # "(required)", "config file's name"
        assert key in ("name", "model.layers")
        return
    # A key of some optimizers only: its default in the first one the row names.
    named = re.match(r"(sgd|adamw|adam|rmsprop)\b", meaning)
    # "`0.1` (sgd), `0.001` (others)": a default per optimizer
    for value, optimizer in re.findall(r"`([^`]*)`(?: \((\w+)\))?", default):
        name = optimizer if optimizer not in ("", "others") else named[1] if named else "adam"
        cfg = config_from_dict(
            {"model": {"layers": [784, 10]}, "optimizer": {"name": name}}, "<README>"
        )
        actual: Any = cfg.model_dump(mode="json")
        for part in key.split("."):
            actual = actual[part]
        assert YAML(typ="safe", pure=True).load(value) == actual, (key, name)


def test_the_sweep_section_says_whose_weights_the_best_trials_test_accuracy_scores() -> None:
    # They are its run's model.npz: the epochs the files table gives for that file are the
    # epochs a sweep reports beside the test accuracy, exceptions included.
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    kept = re.search(r"\| `model\.npz` \| [^|]*\((the last epoch when [^)]*)\)", readme)
    assert kept is not None
    said = readme.split("whose test accuracy is measured", 1)[1].split("results.csv", 1)[0]
    assert kept.group(1) in said, said


def test_the_readme_names_every_runtime_dependency() -> None:
    import tomllib

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    said = readme.split("Runtime dependencies: ", 1)[1].split("Optional, for", 1)[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [
        re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        for requirement in project["dependencies"]
    ]
    left_out = [name for name in names if not re.search(rf"\b{re.escape(name)}\b", said, re.I)]
    assert not left_out, f"pyproject.toml's dependencies the README does not name: {left_out}"


def test_the_config_table_states_the_momentum_updates_sgd_and_rmsprop_make() -> None:
    """The rules the momentum and nesterov rows write out, each followed over two steps whose
    rates differ (as a schedule's do), where sgd's and PyTorch's velocities part ways."""
    from mlp_cli.optim import SGD, RMSprop

    rows = {key: meaning for key, _, meaning in _config_table()}
    momentum, nesterov = rows["optimizer.momentum"], rows["optimizer.nesterov"]
    assert "v ← μ·v − lr·g, then w ← w + v" in momentum
    assert "b ← μ·b + g, then w ← w − lr·b" in momentum  # PyTorch's SGD, which sgd is not
    assert "b ← μ·b + g / (√s + eps), then w ← w − lr·b" in momentum
    assert "v ← μ·v − lr·g, then w ← w + μ·v − lr·g" in nesterov
    mu, rates, rho, eps = 0.9, [0.1, 0.02], 0.9, 1e-8
    grads = [np.array([0.5, -2.0]), np.array([1.5, 0.25])]
    f64 = np.dtype(np.float64)

    start = np.array([1.0, -1.0])

    def run(optimizer: Any) -> np.ndarray:
        w = start.copy()
        for g, lr in zip(grads, rates, strict=True):
            optimizer.step(w, g.copy(), lr)
        return w

    # By the rules as written: each line makes a new array, so the shared starts are safe.
    v = v_n = b = b_rms = s = np.zeros(2)
    w = w_n = w_pt = w_rms = start
    for g, lr in zip(grads, rates, strict=True):
        v = mu * v - lr * g
        w = w + v
        v_n = mu * v_n - lr * g
        w_n = w_n + mu * v_n - lr * g
        b = mu * b + g
        w_pt = w_pt - lr * b
        s = rho * s + (1 - rho) * g * g
        b_rms = mu * b_rms + g / (np.sqrt(s) + eps)
        w_rms = w_rms - lr * b_rms
    assert run(SGD(2, f64, 2, compiled=False, momentum=mu)) == pytest.approx(w, rel=1e-14)
    assert not np.allclose(w, w_pt)  # the two velocities differ once the rate changes
    sgd_nesterov = SGD(2, f64, 2, compiled=False, momentum=mu, nesterov=True)
    assert run(sgd_nesterov) == pytest.approx(w_n, rel=1e-14)
    rmsprop = RMSprop(2, f64, 2, compiled=False, momentum=mu, rho=rho, eps=eps)
    assert run(rmsprop) == pytest.approx(w_rms, rel=1e-14)


def test_the_config_table_says_where_each_schedules_warm_up_ends() -> None:
    from mlp_cli.optim import Schedule

    row = {key: meaning for key, _, meaning in _config_table()}["schedule.warmup_epochs"]
    assert "the schedule's rate times the fraction of the warm-up done" in row
    base, warmup = 0.1, 1.5
    ends = {}
    for name in ("constant", "step", "cosine", "onecycle"):
        shape = Schedule(name, base, epochs=10, step_size=1, gamma=0.5)
        warmed = Schedule(name, base, epochs=10, step_size=1, gamma=0.5, warmup_epochs=warmup)
        if name != "cosine":  # cosine's shape starts after the warm-up, at the base rate
            for p in (0.25, 0.5, 1.0, 1.25):
                assert warmed(p) == pytest.approx(shape(p) * p / warmup, rel=1e-12), name
        ends[name] = warmed(warmup)
    assert ends["constant"] == ends["cosine"] == base  # "rises linearly to lr"
    assert ends["step"] < base  # its cut at epoch 1 came inside the warm-up
    assert ends["onecycle"] < base
    assert "`cosine` starts after the warm-up, so it rises linearly to lr" in row
    assert "`onecycle` rises from 0 to its own rate at the warm-up's end, not to lr" in row
