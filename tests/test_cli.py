"""The command line, driven through Typer's CliRunner: exit codes, messages, side effects.

Bad input must give a one-paragraph message, the right exit code, no traceback, and must
neither download nor write anything.  The end-to-end tests at the bottom train on the real
MNIST served from a loopback mirror (the `mnist_mirror` fixture).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LoopbackServer
from numpy.typing import NDArray
from tiny_models import save_random_model
from typer.testing import CliRunner

from mlp_cli import __version__
from mlp_cli.cli import app
from mlp_cli.errors import CheckpointError, ConfigError, OutputError

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


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "²", "9" * 5000])
def test_threads_option_takes_a_number_or_auto(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, GOOD, "good.yaml")
    code, out, err = run("train", "--config", str(config), "--threads", value)
    assert code == 2
    assert "--threads takes a number of threads (1 or more) or auto" in err
    assert repr(value if len(value) <= 40 else value[:37] + "...") in err
    assert "Traceback" not in out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.yaml"]


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_file_line_and_key(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_data_dir: Path
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
    assert not isolated_data_dir.exists()  # no data was fetched for a config refused first


def test_missing_config_file(tmp_path: Path) -> None:
    code, _, err = run("train", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err
    assert "Traceback" not in err


def test_data_import_of_a_folder_that_is_not_there_is_a_usage_error(
    tmp_path: Path, isolated_data_dir: Path
) -> None:
    (tmp_path / "a-file").write_text("not MNIST")
    for where in (tmp_path / "nope", tmp_path / "a-file"):
        code, _, err = run("data", "import", str(where))
        assert code == 2, err
        assert f"Cannot import MNIST from {where}: it is not a folder" in " ".join(err.split())
        assert "Traceback" not in err
    assert not isolated_data_dir.exists()  # nothing imported


def test_data_import_of_a_folder_holding_no_mnist_file_is_a_usage_error(
    tmp_path: Path, isolated_data_dir: Path
) -> None:
    # The wrong folder, as a path that is no folder is, or `--model DIR` without a model.npz.
    where = tmp_path / "photos"
    where.mkdir()
    (where / "holiday.jpg").write_bytes(b"not MNIST")
    code, _, err = run("data", "import", str(where))
    assert code == 2, err
    said = " ".join(err.split())
    assert f"Cannot import MNIST from {where}: the folder holds none of the four files" in said
    assert "Traceback" not in err
    assert not isolated_data_dir.exists()  # nothing imported
    assert [p.name for p in where.iterdir()] == ["holiday.jpg"]


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


def test_config_list_shows_each_shipped_config_with_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.shipped import shipped_configs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run("config", "list")
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    for config in shipped_configs():
        assert f">= {config.expected:.1f}%" in rows[config.name]
    assert ">= 97.0%" in rows["mnist-400-25-10"]
    assert "20x20 pixels" in rows["mnist-400-25-10"]
    assert "mlp config show NAME > my.yaml" in out
    assert list(tmp_path.iterdir()) == []


def test_config_show_name_starts_a_config_of_ones_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.config import load_config

    monkeypatch.chdir(tmp_path)
    code, out, _ = run("config", "show", "mnist-400-25-10", "--set", "training.epochs=7")
    assert code == 0
    assert out.startswith("# The network of the classic handwritten-digit exercise")
    assert "# expected: >= 97.0% test accuracy\n" in out
    assert "# then overridden with --set training.epochs=7\n" in out
    mine = load_config(write(tmp_path, out, "my.yaml"))
    shipped = load_config("mnist-400-25-10", ["training.epochs=7"])
    assert mine == shipped.model_copy(update={"name": "my"})
    assert mine.training.epochs == 7


def test_config_show_comments_every_line_of_an_override_that_holds_line_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.config import load_config

    monkeypatch.chdir(tmp_path)
    # a quoted value may hold a line break: uncommented, the rest would be read as YAML
    override = 'output.dir="runs\n\ntraining: {epochs: 99}"'
    code, out, _ = run("config", "show", "mnist-400-25-10", "--set", override)
    assert code == 0
    assert '# then overridden with --set output.dir="runs\n#\n# training: {epochs: 99}"\n' in out
    mine = load_config(write(tmp_path, out, "my.yaml"))
    assert mine == load_config("mnist-400-25-10", [override]).model_copy(update={"name": "my"})


def test_a_shown_config_saved_under_another_name_runs_under_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.config import load_config

    monkeypatch.chdir(tmp_path)
    # an empty name falls back to the file's own, so it names nothing either
    for overrides in ([], ["--set", "model.layers=784-40-10"], ["--set", "name="]):
        code, out, _ = run("config", "show", "mnist-784-100-10", *overrides)
        assert code == 0
        assert re.search(r"^name:", out, re.MULTILINE) is None
        assert load_config(write(tmp_path, out, "my.yaml")).name == "my"
    for name in ("x", "mnist-784-100-10"):  # a name asked for is kept, even the file's own
        code, out, _ = run("config", "show", "mnist-784-100-10", "--set", f"name={name}")
        assert code == 0
        assert f"\nname: {name}\n" in out
        assert load_config(write(tmp_path, out, "my.yaml")).name == name
    named = write(tmp_path, "name: plain\nmodel: {layers: 784-10}\n", "other.yaml")
    code, out, _ = run("config", "show", str(named))
    assert code == 0
    assert out.startswith("name: plain\n")


def test_without_a_run_evaluate_suggests_a_command_that_works_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("evaluate")
    assert code == 2
    assert "Train one with `mlp train`" in " ".join(err.split())
    assert "configs/" not in err
    code, out, _ = run("train", "--help")
    assert "mnist-400-25-10" in out


def test_evaluate_refuses_a_model_without_ten_outputs_naming_its_layers(
    tmp_path: Path,
) -> None:
    from test_hostile_files import GOOD_MODEL  # a valid 4-3-2 model of two classes

    model = tmp_path / "two.npz"
    model.write_bytes(GOOD_MODEL)
    code, _, err = run("evaluate", "--model", str(model))
    message = " ".join(err.split())
    assert code == 2, message
    assert f"the model '{model}' has layers 4-3-2" in message
    assert "MNIST has 10 digits" in message
    assert "Traceback" not in err


def test_config_schema_is_json() -> None:
    code, out, _ = run("config", "schema")
    schema = json.loads(out)
    assert code == 0
    assert "model" in schema["properties"]


def test_debug_shows_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "train", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert result.exception is not None


def test_train_shortcut_flags_are_set_overrides_applied_after_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import cli
    from mlp_cli.errors import UsageError

    seen: dict[str, Any] = {}

    def stop_before_loading_data(cfg: Any, quiet: bool) -> None:
        seen["cfg"] = cfg
        raise UsageError("stopped before loading data")

    monkeypatch.setattr(cli, "_load_training_data", stop_before_loading_data)
    config = write(tmp_path, GOOD, "tiny.yaml")
    flags = ["--epochs", "3", "--lr", "3e-3", "--batch-size", "32", "--seed", "4"]
    code, _, err = run(
        "train", "-c", str(config), "--set", "training.epochs=9", *flags, "--layers", "784-20-10"
    )
    assert code == 2
    assert "stopped before loading data" in err
    cfg = seen["cfg"]
    assert (cfg.training.epochs, cfg.training.batch_size, cfg.training.seed) == (3, 32, 4)
    assert cfg.optimizer.lr == pytest.approx(3e-3)
    assert cfg.model.layers == [784, 20, 10]

    seen.clear()
    code, _, err = run("train", "-c", str(config), "--epochs", "0")
    assert code == 2
    assert "--epochs 0: training.epochs: expected an integer greater than or equal to 1" in err
    assert seen == {}  # refused before anything else happened


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("epochs=5", "did you mean 'training.epochs'?"),
        ("lr=0.1", "did you mean 'optimizer.lr'?"),
        ("model.epochs=5", "did you mean 'training.epochs'?"),
        ("model.hidden_activation=ReLU", "did you mean 'relu'?"),
    ],
)
def test_set_suggests_the_full_key_path_and_the_spelling_of_a_choice(
    override: str, suggestion: str
) -> None:
    code, _, err = run("config", "show", "mnist-400-25-10", "--set", override)
    assert code == 2
    assert suggestion in " ".join(err.split())


def test_debug_works_after_the_command_name_too(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    result = runner.invoke(app, ["train", "--debug", "--config", missing])
    assert isinstance(result.exception, ConfigError)
    result = runner.invoke(app, ["train", "--config", missing])  # and only for that run
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)


def test_help_names_what_each_option_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    _, train_help, _ = run("train", "--help")
    _, predict_help, _ = run("predict", "--help")
    _, evaluate_help, _ = run("evaluate", "--help")
    _, root_help, _ = run("--help")
    for text in (train_help, predict_help, evaluate_help, root_help):
        assert "<list[str]>" not in text
        assert "<bool>" not in text  # Typer's own --help and completion flags too
        # No help text lost to markup, as '[default: ...]' was ("a run directory .").
        assert re.search(r"\w \.\s", text) is None
    assert "--set      -s      KEY=VALUE" in train_help
    assert "--epochs            N      Same as --set training.epochs=N." in train_help
    # The brackets around the metavar and the choices are Typer's: "{IMAGE}..." and
    # "<test|val|train>" from 0.29 on, "IMAGE" and "[test|val|train]" before.
    assert re.search(r"Usage: mlp predict \[OPTIONS\] \{?IMAGE\b", predict_help)
    assert re.search(r"IMAGE +Image files, folders or glob patterns\.", predict_help)
    assert "FILE|DIR  A .npz model or a run directory (default: runs/latest" in predict_help
    assert "test|val|train" in evaluate_help


@pytest.mark.parametrize(
    ("command", "metavar", "help"),
    [
        (["predict"], "IMAGE", "Image files, folders or glob patterns."),
        (["plot"], "RUN_DIR", "A run directory made by `mlp train`"),
        (["data", "import"], "DIR", "Folder with the four MNIST files."),
        (["config", "show"], "NAME|FILE", "A shipped config's name or a YAML file."),
        (["sweep"], "[plan|show] FILE|DIR", "A sweep file to run"),
    ],
)
def test_help_shows_an_argument_by_its_metavar_alone(
    monkeypatch: pytest.MonkeyPatch, command: list[str], metavar: str, help: str
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(*command, "--help")
    assert code == 0
    # (bracketed when optional, by some Typers) and no type after it: not "IMAGE  <str>"
    assert re.search(rf"{re.escape(metavar)}\]? +{re.escape(help)}", out), out


@pytest.mark.parametrize(
    ("command", "metavar", "name"),
    [
        (["predict"], "IMAGE", "paths"),
        (["plot"], "RUN_DIR", "run_dir"),
        (["data", "import"], "DIR", "directory"),
        (["config", "show"], "NAME|FILE", "file"),
        (["sweep"], "[plan|show] FILE|DIR", "target"),
    ],
)
def test_help_never_shows_an_arguments_name_in_python(
    monkeypatch: pytest.MonkeyPatch, command: list[str], metavar: str, name: str
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(*command, "--help")
    assert code == 0
    # Its row starts with the metavar, not with the name ("paths  IMAGE  Image files...").
    arguments = out[out.index("Arguments") : out.index("Options")]
    assert re.search(rf"^│\s+(\*\s+)?\[?{re.escape(metavar)}", arguments, re.MULTILINE), out
    assert not re.search(rf"^│\s+(\*\s+)?{name}\s", arguments, re.MULTILINE), out


@pytest.mark.parametrize(
    ("command", "option", "accepted"),
    [
        (["evaluate"], "--plot", "figure"),
        (["plot"], "--out", "figure"),
        (["show", "hidden"], "--out", "image"),
    ],
)
def test_a_pictures_help_names_the_formats_it_can_be_written_in(
    command: list[str], option: str, accepted: str
) -> None:
    import typer.main

    from mlp_cli.outputs import FIGURE_SUFFIXES, IMAGE_SUFFIXES

    suffixes = FIGURE_SUFFIXES if accepted == "figure" else IMAGE_SUFFIXES
    click_command: Any = typer.main.get_command(app)
    for word in command:
        click_command = click_command.commands[word]
    (help_text,) = [p.help for p in click_command.params if option in p.opts]
    # ".svg" or "SVG": the formats the help names, of those any picture may take
    named = {s for s in FIGURE_SUFFIXES if s in help_text or s[1:].upper() in help_text}
    assert named == set(suffixes), help_text


def test_train_out_help_states_the_folder_a_run_without_out_goes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer.main

    from mlp_cli.config import load_config
    from mlp_cli.train import new_run_dir

    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path, GOOD + "output: {dir: elsewhere}\n", "tiny.yaml"))
    group: Any = typer.main.get_command(app)
    (help_text,) = [p.help for p in group.commands["train"].params if "--out" in p.opts]
    stated = re.search(r"\(default: ([^)]*)\)", help_text)
    assert stated is not None, help_text
    folder = stated[1].replace("<output.dir>", cfg.output.dir).replace("<name>", cfg.name or "")
    assert new_run_dir(cfg) == Path(folder), help_text


def test_the_usage_line_says_that_predict_takes_several_images() -> None:
    _, help_page, _ = run("predict", "--help")
    code, _, usage_error = run("predict")  # no image: the usage line and the error
    assert code == 2
    for text in (help_page, usage_error):
        assert re.search(r"Usage: mlp predict \[OPTIONS\] \{?IMAGE\}?\.\.\.", text), text


def test_the_usage_line_of_an_error_keeps_the_brackets_of_a_metavar() -> None:
    code, _, err = run("sweep", "--engine", "dask")
    assert code == 2
    # "[plan|show]" reads as a rich style tag, which some Typers dropped from this line
    assert re.search(r"Usage: mlp sweep \[OPTIONS\] \[?\[plan\|show\] FILE\|DIR", err), err


def test_a_choice_not_offered_is_refused_in_plain_words() -> None:
    code, _, err = run("evaluate", "--split", "foo")
    assert code == 2
    said = " ".join(err.replace("│", " ").split())
    assert "Invalid value for '--split': 'foo' is not one of 'test', 'val', 'train'." in said


@pytest.mark.parametrize(
    "args", [["evaluate", "--count", "abc"], ["gradcheck", "--seed", "x"], ["serve", "--port", "y"]]
)
def test_a_number_option_given_text_says_that_it_takes_an_integer(args: list[str]) -> None:
    code, _, err = run(*args)
    assert code == 2
    said = " ".join(err.replace("│", " ").split())
    assert f"Invalid value for '{args[1]}'" in said
    assert "valid integer" in said
    assert "int range" not in said


def test_an_unknown_option_is_named_with_the_options_it_may_have_meant() -> None:
    code, _, err = run("train", "--bogus")
    assert code == 2
    said = " ".join(err.replace("│", " ").split())
    assert "No such option: --bogus (Possible options: --out)" in said


@pytest.mark.parametrize("group", [[], ["config"], ["data"], ["show"]])
def test_a_wide_command_list_gives_each_command_one_line(
    monkeypatch: pytest.MonkeyPatch, group: list[str]
) -> None:
    # a line break inside a docstring's first paragraph is kept in rich markup mode
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(*group, "--help")
    assert code == 0
    panel = out[out.index("Commands") :]
    rows = panel[: panel.index("╰")].splitlines()[1:]
    assert rows
    for row in rows:
        assert re.match(r"│ [a-z]", row), out


def test_show_hidden_help_says_what_a_layer_past_the_hidden_ones_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run("show", "hidden", "--help")
    assert code == 0
    said = " ".join(out.replace("│", " ").split())
    assert "the one after the last hidden layer draws the output units" in said
    assert "W2·W1 for one hidden layer" in said


@pytest.mark.parametrize(
    ("layers", "said"), [((784, 1, 10), "1 unit drawn"), ((784, 2, 10), "2 units drawn")]
)
def test_show_hidden_counts_the_units_it_drew_in_words(
    tmp_path: Path, layers: tuple[int, ...], said: str
) -> None:
    model = save_random_model(tmp_path / "model.npz", layers)
    code, out, _ = run("show", "hidden", "--model", str(model), "--no-terminal")
    assert code == 0
    assert f"{said} to " in out


def test_split_is_a_choice_the_shell_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    completion = runner.invoke(
        app,
        [],
        prog_name="mlp",
        env={
            "_MLP_COMPLETE": "complete_bash",
            "COMP_WORDS": "mlp evaluate --split ",
            "COMP_CWORD": "3",
        },
    )
    assert completion.output.split() == ["test", "val", "train"]
    code, _, err = run("evaluate", "--split", "testing")
    assert code == 2
    assert "'testing' is not one of 'test', 'val', 'train'" in " ".join(err.split())


def test_gradcheck_command_passes() -> None:
    code, out, _ = run("gradcheck", "--config", str(ROOT / "configs/mnist-400-25-10.yaml"))
    assert code == 0, out
    assert "W1" in out
    assert "b2" in out
    assert "FAIL" not in out
    # 200 of W1's 25x400 weights, written as every other count mlp shows
    assert re.search(rf"W1 +│ +200/{25 * 400:,} ", out)


def test_gradcheck_command_checks_the_configs_dropout() -> None:
    code, out, _ = run(
        "gradcheck", "--config", "mnist-best", "--set", "model.layers=784-30-30-10"
    )  # fmt: skip
    assert code == 0, out
    assert "dropout through fixed masks" in " ".join(out.split())
    assert "FAIL" not in out


def test_gradcheck_command_names_the_entries_it_left_out_at_a_kink() -> None:
    # Seed 36 samples a weight within h of 0, where the L1 penalty's |w| bends: a difference
    # quotient across it made W2 FAIL with correct backprop.
    code, out, _ = run(
        "gradcheck", "--config", "mnist-784-100-10", "--set", "regularization.l1=0.001",
        "--seed", "36",
    )  # fmt: skip
    assert code == 0, out
    assert "FAIL" not in out
    assert "199/1,000" in out
    assert "not compared: 1 sampled entry" in " ".join(out.split())


def test_data_path_and_info_use_mlp_data_dir(tmp_path: Path) -> None:
    code, out, _ = run("data", "path")
    assert code == 0
    assert out.strip().startswith(str(tmp_path))
    code, out, _ = run("data", "info", "--json")
    info = json.loads(out)
    assert code == 0
    assert len(info["files"]) == 4
    assert not any(f["present"] for f in info["files"])


def test_data_info_gives_an_empty_cached_files_size_as_0() -> None:
    cache = Path(run("data", "path")[1].strip())
    cache.mkdir(parents=True)
    (cache / "train-labels-idx1-ubyte").write_bytes(b"")

    code, out, _ = run("data", "info")

    assert code == 0, out
    row = next(line for line in out.splitlines() if "train-labels-idx1-ubyte" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "train-labels-idx1-ubyte",
        "yes",
        "no",
        "0",
    ]


def test_fetch_without_any_mirror_says_what_to_do(
    no_public_mirrors: None, closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLP_MNIST_MIRROR", closed_port_url)
    code, _, err = run("data", "fetch")
    assert code == 1
    assert "mlp data import" in err
    assert "MLP_MNIST_MIRROR" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["option", "environment"])
def test_a_bad_mirror_is_a_usage_error_naming_where_it_came_from(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "option":
        monkeypatch.delenv("MLP_MNIST_MIRROR", raising=False)
        code, _, err = run("data", "fetch", "--mirror", "ftp://x/")
        origin = "the --mirror option"
    else:
        monkeypatch.setenv("MLP_MNIST_MIRROR", "ftp://x/")
        code, _, err = run("data", "fetch")
        origin = "the environment variable MLP_MNIST_MIRROR"
    assert code == 2, err
    err = " ".join(err.split())  # the message is wrapped to the terminal
    assert f"'ftp://x/' (from {origin})" in err
    assert "data.mirror" not in err
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


def test_plot_asks_for_a_run_folder_and_its_advice_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("plot")
    said = " ".join(err.split())
    assert code == 2
    assert "no trained model found" in said
    assert "Train one with `mlp train`" in said
    code, _, err = run("plot", "digits")
    said = " ".join(err.split())
    assert code == 2
    assert "run folder digits does not exist" in said
    assert "metrics.jsonl" not in said
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    code, _, err = run("plot", str(run_dir))
    assert code == 2
    assert "give the run folder" in " ".join(err.split())
    record = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.6, "val_acc": 0.7}
    (run_dir / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    for given in (run_dir, run_dir / "metrics.jsonl"):
        code, out, err = run("plot", str(given))
        assert code == 0, err
        assert str(run_dir / "curves.png") in out.replace("\n", "")
        (run_dir / "curves.png").unlink()


def test_invalid_model_file_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"definitely not a zip archive")
    for args in (("inspect",), ("evaluate",), ("show", "hidden")):
        code, _, err = run(*args, "--model", str(bad))
        assert code == 1, err
        assert str(bad) in err
        assert "Traceback" not in err


# -- end to end on the real MNIST ---------------------------------------------------------


@pytest.mark.slow
def test_train_fetches_the_test_set_too_so_evaluate_works_offline(
    mnist_mirror: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import data

    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, GOOD, "tiny.yaml")
    code, _, err = run("train", "--config", str(config))
    assert code == 0, err
    assert sorted(mnist_mirror.requested) == sorted(f"/{stem}.gz" for stem in data.MNIST_FILES)
    for stem in data.MNIST_FILES:  # one progress display names every file it fetched
        assert f"{stem}.gz" in err

    monkeypatch.delenv(data.MIRROR_ENV)  # offline from here on: no mirror at all
    code, out, err = run("evaluate", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 10_000
    assert len(mnist_mirror.requested) == len(data.MNIST_FILES)


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
    assert report["model"]["path"] == str(trained / "model.npz")
    assert report["model"]["format_version"] == 1
    assert report["model"]["package_version"] == report["mlp_version"] == __version__
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
    predicted = json.loads(out)
    assert predicted["model"]["path"] == str(trained / "model.npz")
    assert predicted["mlp_version"] == __version__
    good = predicted["predictions"]
    assert len(good) == 5  # ... the others were still predicted
    assert [f["file"] for f in predicted["failures"]] == [str(folder / "notes.png")]
    assert "notes.png" in err
    assert "Traceback" not in err
    for r in good:
        assert set(r) >= {"file", "digit", "class_name", "probability", "probabilities"}
        assert r["class_name"] == str(r["digit"])
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    hits = sum(r["digit"] == int(Path(r["file"]).stem.split("-")[1]) for r in good)
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
    answers = json.loads(out)["predictions"]
    assert len(answers) == 25 * len(userlike.RENDERERS)
    agree = [r["digit"] == on_originals[int(Path(r["file"]).name[:5])] for r in answers]
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
    return save_random_model(tmp_path / "random.npz")


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
    report = json.loads(result.stdout)
    assert [r["file"] for r in report["predictions"]] == [str(good)]
    errors = result.stderr
    assert "Traceback" not in errors
    for path in bad:
        assert path.name in errors, path.name
    assert "*.jpeg" in errors  # a glob that matches nothing
    assert len(report["failures"]) == len(bad) + 1
    assert all(set(f) == {"file", "error"} for f in report["failures"])


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


def test_predict_show_and_save_input(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from mlp_cli import cli

    monkeypatch.setattr(cli, "console", Console(color_system="truecolor"))  # as in a terminal
    stdout, pixels = _predict_and_saved_input(random_model, tmp_path, "--show")
    assert "▀" in stdout  # the 28x28 input drawn with half blocks
    assert pixels.shape == (28, 28)
    assert pixels.max() > 200  # light ink on black, as MNIST
    assert pixels[0].max() == 0


@pytest.mark.parametrize("side", [20, 28])
def test_predict_show_says_when_the_network_sees_the_input_smaller_than_drawn(
    tmp_path: Path, side: int
) -> None:
    model = save_random_model(
        tmp_path / "model.npz",
        (side * side, 16, 10),
        preprocessing={"input_size": side, "normalize": None},
    )
    stdout, pixels = _predict_and_saved_input(model, tmp_path, "--show")
    assert pixels.shape == (28, 28)  # the picture drawn is the 28x28 one, whatever the model's
    note = "the network sees this 28x28 picture area-averaged to 20x20 pixels"
    assert (note in " ".join(stdout.split())) == (side == 20), stdout


def test_a_saved_input_of_a_long_name_in_multibyte_letters_is_cut_to_fit(
    random_model: Path, tmp_path: Path
) -> None:
    # 125 two-byte letters: a 254-byte file name, whose "-input.png" would make 260
    good = _digit_png(tmp_path / ("é" * 125 + ".png"))
    out = tmp_path / "inputs"
    code, _, err = run("predict", str(good), "--model", str(random_model), "--save-input", str(out))
    assert code == 0, err
    (saved,) = out.iterdir()
    assert saved.name == "é" * 100 + "-input.png"  # the stem cut to 200 bytes


def test_predict_show_without_colour_draws_the_input_in_characters(
    random_model: Path, tmp_path: Path
) -> None:
    from mlp_cli.render import RAMP

    stdout, pixels = _predict_and_saved_input(random_model, tmp_path, "--show")  # piped
    assert "▀" not in stdout
    drawn = [line for line in stdout.splitlines() if len(line) == 28 and set(line) <= set(RAMP)]
    assert len(drawn) == 14  # 28 pixel rows, two to a text row
    inked = np.array([[c != RAMP[0] for c in line] for line in drawn])  # (14, 28)
    ink = pixels.reshape(14, 2, 28).mean(axis=1) / 255  # the saved input, two rows a cell
    assert inked[ink > 0.1].all()
    assert not inked[ink == 0].any()
    assert inked.sum() > 20


def test_predict_raw_skips_preprocessing(random_model: Path, tmp_path: Path) -> None:
    _, pixels = _predict_and_saved_input(random_model, tmp_path, "--raw")
    assert pixels[0, 0] == 255  # the white paper is kept: no inversion, no centring


# -- predict: many images --------------------------------------------------------------------


def _digit_folder(folder: Path, names: list[str]) -> Path:
    """PNGs of dark printed digits on white paper, one per name (its first character drawn)."""
    from PIL import Image, ImageDraw

    folder.mkdir()
    for name in names:
        image = Image.new("L", (12, 14), 255)
        ImageDraw.Draw(image).text((3, 1), name[0], fill=0)
        image.resize((60, 70), Image.Resampling.NEAREST).save(folder / name)
    return folder


SIX = ["0.png", "1.png", "2.png", "3.png", "[bold]4[red].png", "5.png"]


def _predict_in(folder: Path, model: Path, *flags: str) -> tuple[int, str, str]:
    """Predict ``folder`` (a file or folder in the current one) as a user would type it."""
    target = str(folder.relative_to(Path.cwd()))
    result = runner.invoke(
        app, ["predict", target, "--model", str(model), *flags], env={"COLUMNS": "120"}
    )
    return result.exit_code, result.stdout, result.stderr


def test_predicting_a_folder_prints_one_row_per_image_and_a_summary(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _digit_folder(tmp_path / "digits", SIX)
    monkeypatch.chdir(tmp_path)
    code, out, err = _predict_in(folder, random_model, "--json")
    assert code == 0, err
    answers = json.loads(out)["predictions"]
    code, out, err = _predict_in(folder, random_model)
    assert code == 0, err
    assert "top 3" not in out  # no detailed view ...
    assert "█" not in out
    lines = out.splitlines()
    assert lines[0].split() == ["file", "digit", "probability", "runner-up", "probability"]
    rows = [line.split() for line in lines if line.startswith("digits/")]
    expected = []
    for a in answers:
        (first, p1), (second, p2) = sorted(
            ((int(k), v) for k, v in a["probabilities"].items()), key=lambda kv: -kv[1]
        )[:2]
        assert first == a["digit"]
        expected.append(
            [a["file"], str(first), f"{100 * p1:.2f}%", str(second), f"{100 * p2:.2f}%"]
        )
    assert rows == expected  # ... one row per image, the file name as it is
    assert sorted(r[0] for r in rows) == sorted(f"digits/{name}" for name in SIX)
    assert re.fullmatch(r"6 images predicted, 0 failed, in \d+\.\ds", lines[-1])
    assert len(lines) == 2 + 6 + 1  # header, rule, rows, summary


def test_predicting_a_folder_with_a_bad_file_counts_it_and_exits_1(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _digit_folder(tmp_path / "digits", SIX)
    (folder / "notes.png").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    code, out, err = _predict_in(folder, random_model)
    assert code == 1
    assert len([line for line in out.splitlines() if line.startswith("digits/")]) == 6
    assert re.search(r"^6 images predicted, 1 failed \(errors below\), in ", out, re.M)
    assert err.startswith("error: ")
    assert "digits/notes.png" in err
    assert "Traceback" not in err


def test_a_file_that_failed_is_reported_once_however_many_batches_follow(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import checkpoint, predict

    folder = _digit_folder(tmp_path / "digits", SIX)
    (folder / "0-notes.png").write_text("not an image")  # the folder's first file
    monkeypatch.setattr(predict, "BATCH", 2)
    files, _ = predict.image_files([folder])
    batches = list(predict.predict_batches(checkpoint.load(random_model), files))
    assert [f.file for _, failures in batches for f in failures] == [str(folder / "0-notes.png")]
    assert [p.file for predictions, _ in batches for p in predictions] == [
        str(folder / name) for name in sorted(SIX)
    ]


def test_few_images_or_verbose_show_each_image_in_detail(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _digit_folder(tmp_path / "digits", SIX)
    monkeypatch.chdir(tmp_path)
    code, out, _ = _predict_in(folder, random_model, "--verbose")
    assert code == 0
    assert out.count("top 3: ") == 6
    assert "[bold]4[red].png: " in out  # a file name is printed as it is, never as markup
    assert out.splitlines()[-1].startswith("6 images predicted, 0 failed, in ")
    three = _digit_folder(tmp_path / "three", SIX[:3])
    code, out, _ = _predict_in(three, random_model)
    assert code == 0
    assert out.count("top 3: ") == 3
    assert out.count("█") >= 3
    assert "runner-up" not in out
    code, out, _ = _predict_in(three / "0.png", random_model)
    assert code == 0
    assert out.count("three/0.png: ") == 1
    assert "predicted" not in out  # one image: no summary


def test_many_images_are_predicted_a_batch_at_a_time_with_the_same_output(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import predict

    folder = _digit_folder(tmp_path / "digits", SIX)
    (folder / "notes.png").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    flags = [[], ["--json"], ["--verbose"], ["--save-input", "inputs", "--json"]]
    at_once = [_predict_in(folder, random_model, *f) for f in flags]
    sizes: list[int] = []  # the pictures of each forward pass
    inputs = predict.network_inputs

    def counted(saved: Any, digits: list[NDArray[np.float32]]) -> NDArray[np.float32]:
        sizes.append(len(digits))
        return inputs(saved, digits)

    monkeypatch.setattr(predict, "BATCH", 4)
    monkeypatch.setattr(predict, "network_inputs", counted)
    in_batches = [_predict_in(folder, random_model, *f) for f in flags]
    assert sizes == [4, 2] * len(flags)  # never more than BATCH pictures held
    for (code, out, err), (code_b, out_b, err_b) in zip(at_once, in_batches, strict=True):
        assert code == code_b == 1  # notes.png
        assert err == err_b
        assert re.sub(r"in \d+\.\ds", "", out) == re.sub(r"in \d+\.\ds", "", out_b)
    assert json.loads(in_batches[1][1])["predictions"][0]["file"] == "digits/0.png"


@pytest.mark.parametrize("failing", ["save-input", "forward pass"])
def test_predict_json_stopped_after_its_first_batch_is_still_one_json_object(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    from mlp_cli import outputs, predict

    folder = _digit_folder(tmp_path / "digits", SIX)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(predict, "BATCH", 4)
    calls = {"n": 0}
    if failing == "save-input":
        save = outputs.save_image

        def full_after_a_batch(image: Any, path: Path, what: str) -> Path:
            calls["n"] += 1
            if calls["n"] > 4:
                raise OutputError(f"cannot write {what} '{path}': No space left on device")
            return save(image, path, what)

        monkeypatch.setattr(outputs, "save_image", full_after_a_batch)
    else:
        proba = predict.checked_proba

        def not_finite_after_a_batch(saved: Any, X: NDArray[np.float32]) -> NDArray[np.float32]:
            calls["n"] += 1
            if calls["n"] > 1:
                raise CheckpointError("the model's outputs are not finite")
            return proba(saved, X)

        monkeypatch.setattr(predict, "checked_proba", not_finite_after_a_batch)

    code, out, err = _predict_in(folder, random_model, "--json", "--save-input", "inputs")

    assert code == 1
    report = json.loads(out)
    assert [p["file"] for p in report["predictions"]] == [f"digits/{n}" for n in sorted(SIX)[:4]]
    assert report["failures"] == []
    assert ("No space left" if failing == "save-input" else "not finite") in err


def test_predict_json_writes_bytes_of_names_that_are_not_utf8_as_escapes(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _digit_folder(tmp_path / "digits", ["7.png"])
    try:
        (folder / "7.png").rename(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
        Path(os.fsdecode(bytes(folder) + b"/not\xff.png")).write_text("not an image")
    except OSError:  # a file system that takes only UTF-8 names (macOS)
        pytest.skip("this file system refuses names that are not UTF-8")
    monkeypatch.chdir(tmp_path)
    code, out, _ = _predict_in(folder, random_model, "--json")
    assert code == 1
    report = json.loads(out)
    json.dumps(report, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere
    assert [r["file"] for r in report["predictions"]] == ["digits/caf\\xe9.png"]
    [failure] = report["failures"]
    assert failure["file"] == "digits/not\\xff.png"
    assert "digits/not\\xff.png" in failure["error"]


def test_predict_json_has_numeric_digits_and_names_the_model(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _digit_folder(tmp_path / "digits", SIX)
    monkeypatch.chdir(tmp_path)
    code, out, _ = _predict_in(folder, random_model, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["model"] == {
        "path": str(random_model),
        "format_version": 1,
        "package_version": None,  # this file was not written by `mlp train`
    }
    assert report["mlp_version"] == __version__
    assert report["failures"] == []
    assert len(report["predictions"]) == 6
    for r in report["predictions"]:
        assert type(r["digit"]) is int
        assert r["class_name"] == str(r["digit"])
        assert r["probability"] == max(r["probabilities"].values())
        assert [type(t["digit"]) for t in r["top3"]] == [int, int, int]
        assert r["top3"][0]["digit"] == r["digit"]


def test_predictions_rank_equal_probabilities_lower_class_first_as_argmax_does() -> None:
    from mlp_cli.predict import predictions_from

    probabilities = np.array([[0.1, 0.3, 0.3, 0.3]])
    (p,) = predictions_from(["p.png"], [np.zeros((28, 28), np.float32)], probabilities)
    assert (p.digit, p.probability) == (1, 0.3)
    assert p.top() == [(1, 0.3), (2, 0.3), (3, 0.3)]
    assert [t["class_name"] for t in p.to_json(["a", "b", "c", "d"])["top3"]] == ["b", "c", "d"]


def test_a_network_without_hidden_layers_says_so(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from mlp_cli.config import load_config
    from mlp_cli.render import TrainDisplay

    shown = io.StringIO()
    display = TrainDisplay(Console(file=shown, width=200), load_config(write(tmp_path, GOOD)))
    info = {"epochs": 1, "parameters": 7850, "n_train": 59000, "n_val": 1000, "start_epoch": 0}
    display.on_train_start(info | {"run_dir": tmp_path / "run"})
    display.close()
    assert "tiny: 784-10 (no hidden layer, softmax output, cross_entropy)" in shown.getvalue()

    model = save_random_model(tmp_path / "linear.npz", layers=(784, 10))
    code, out, _ = run("inspect", "--model", str(model))
    assert code == 0
    assert "no hidden layer, softmax output" in out
    assert "relu hidden" not in out


def test_suggested_commands_are_never_broken_across_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from mlp_cli.render import print_train_summary
    from mlp_cli.train import TrainResult

    run_dir = Path("runs") / "a-rather-long-run-name-mnist-784-100-10"
    shown = io.StringIO()
    result = TrainResult(run_dir, "completed", [{"epoch": 1}], 1, 0.9, 2.0)
    print_train_summary(Console(file=shown, width=40), result)
    assert f"next: mlp evaluate --model {run_dir}\n" in shown.getvalue()

    history = [
        {"epoch": 1, "val_loss": 0.5, "val_acc": 0.8},
        {"epoch": 2, "val_loss": 0.6, "val_acc": 0.9},
    ]
    switch = "--set training.early_stopping.monitor=val_acc"
    for restore_best, model_epoch in ((True, 1), (False, 0)):
        shown = io.StringIO()
        result = TrainResult(
            run_dir, "interrupted", history, 1, 0.8, 2.0, best_loss=0.5,
            model_epoch=model_epoch, restore_best=restore_best,
        )  # fmt: skip
        print_train_summary(Console(file=shown, width=40), result)
        keep = switch + ("" if restore_best else " --set training.early_stopping.restore_best=true")
        assert f"to keep that epoch instead: {keep}\n" in shown.getvalue()

    monkeypatch.setenv("COLUMNS", "40")
    code, out, _ = run("config", "list")
    assert code == 0
    assert "start your own from one with: mlp config show NAME > my.yaml\n" in out


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


@pytest.mark.usefixtures("no_public_mirrors")  # MNIST is not there: it must not be needed
@pytest.mark.parametrize("count", ["5", "50"])  # the default, given, is a choice too
def test_evaluate_refuses_count_without_misclassified_before_reading_mnist(
    tmp_path: Path, count: str
) -> None:
    model = save_random_model(tmp_path / "m.npz")
    code, out, err = run("evaluate", "--model", str(model), "--count", count)
    assert code == 2, err
    assert out == ""
    said = " ".join(err.split())
    assert "--count goes with --misclassified" in said
    assert "Traceback" not in err


@pytest.mark.parametrize("drawn", [["--show"], ["--verbose"], ["--show", "-v"]])
def test_predict_refuses_json_with_options_that_draw_in_the_terminal(
    random_model: Path, tmp_path: Path, drawn: list[str]
) -> None:
    image = _digit_png(tmp_path / "one.png")
    inputs = tmp_path / "inputs"
    args = ["predict", str(image), "--model", str(random_model), "--save-input", str(inputs)]
    code, out, err = run(*args, "--json", *drawn)
    assert code == 2, err
    assert out == ""
    said = " ".join(err.split())
    flags = " and ".join("--verbose" if flag == "-v" else flag for flag in drawn)
    assert f"{flags} cannot be combined with --json" in said
    assert not inputs.exists()  # refused before anything was written


@pytest.mark.parametrize("command", [["--help"], ["config", "--help"]])
def test_the_config_groups_help_names_what_each_of_its_commands_does(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(*command)
    assert code == 0
    said = " ".join(out.replace("│", " ").split())
    # the group's own sentence, in the root's command list and atop its own page
    if command == ["config", "--help"]:
        group = said.split("[ARGS]... ", 1)[1]
    else:
        group = said[said.index(" config ") :]
    sentence = group[: group.index(".") + 1]
    for purpose in ("List the shipped configs", "show a config resolved", "config schema"):
        assert purpose in sentence, sentence
    # and each of those is one of its commands
    _, page, _ = run("config", "--help")
    for name in ("list", "show", "schema"):
        assert re.search(rf"│ {name} ", page), page


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_the_help_of_quiet_says_what_json_makes_of_it(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # --json prints JSON and nothing else, with --quiet or without: no summary, no table
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(command, "--help")
    assert code == 0
    row = next(line for line in out.splitlines() if "--quiet" in line)
    assert "(with --json, " in row, row


def test_the_help_of_serve_model_names_the_runs_folder_its_default_comes_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlp_cli import checkpoint

    # what serve does: with no --model, the newest run of --runs, wherever that is
    run_dir = tmp_path / "elsewhere" / "r1"
    run_dir.mkdir(parents=True)
    save_random_model(run_dir / checkpoint.MODEL_FILE)
    (tmp_path / "elsewhere" / checkpoint.LATEST).symlink_to("r1")
    found = checkpoint.find_model(None, runs=tmp_path / "elsewhere")
    assert found == tmp_path / "elsewhere" / checkpoint.LATEST / checkpoint.MODEL_FILE
    # and what its help says of it
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run("serve", "--help")
    assert code == 0
    said = " ".join(out.replace("│", " ").split())
    assert "(default: the newest run of --runs, runs/latest unless --runs says otherwise)" in said


def test_show_prints_every_image_in_detail_as_its_help_says(
    random_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _digit_folder(tmp_path / "digits", SIX)  # more than 3: a table without --show
    monkeypatch.chdir(tmp_path)
    code, out, _ = _predict_in(folder, random_model, "--show")
    assert code == 0
    assert out.count("top 3: ") == 6
    assert "runner-up" not in out
    monkeypatch.setenv("COLUMNS", "200")
    _, page, _ = run("predict", "--help")
    said = " ".join(page.replace("│", " ").split())
    assert "Draw the 28x28 input the network sees, each image in detail as with --verbose" in said
