"""What `mlp` loads to start: `mlp --help` and `mlp predict` import only what they use.

How long they take is measured by ``python -m bench startup``; these tests hold the imports
that decide it, which, unlike timings, are the same on every run.  Each command runs in a
fresh interpreter, which then reports its exit code and every module it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from tiny_models import save_random_model

# Neither help pages nor predictions need these: the config stack, training, plotting,
# downloads, the markdown and traceback renderers of rich.
NEVER = {
    "ruamel",
    "yaml",
    "matplotlib",
    "scipy",
    "numba",
    "optuna",
    "pooch",
    "threadpoolctl",
    "markdown_it",
    "pygments",
    "attr",
    "rich.markdown",
    "rich.traceback",
    "rich.progress",
    "mlp_cli.config",
    "mlp_cli.train",
    "mlp_cli.optim",
    "mlp_cli.data",
    "mlp_cli.viz",
    "mlp_cli.serve",
}
# Nor do help pages need what validates option values, models and images.
NOT_FOR_HELP = {
    "pydantic",
    "pydantic_core",
    "numpy",
    "PIL",
    "mlp_cli.checkpoint",
    "mlp_cli.predict",
    "mlp_cli.render",
}


def run_mlp(*args: str, before: str = "") -> tuple[int, str, set[str]]:
    """Exit code, standard output and loaded modules (each with its parent packages) of
    ``mlp ARGS`` in a fresh interpreter that first runs ``before``."""
    code = f"""
import contextlib, io, json, sys
{before}
from mlp_cli.cli import app
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        app({list(args)!r}, prog_name="mlp")
        status = 0
    except SystemExit as exc:
        status = exc.code or 0
print(json.dumps([status, out.getvalue(), sorted(sys.modules)]))
"""
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    status, out, modules = json.loads(done.stdout.splitlines()[-1])
    return status, out, {m.rsplit(".", i)[0] for m in modules for i in range(m.count(".") + 1)}


def test_help_loads_neither_models_nor_markdown() -> None:
    # `mlp` alone shows the help too, as a usage error
    for args, expected in ((["--help"], 0), ([], 2)):
        status, out, modules = run_mlp(*args)
        assert status == expected, args
        assert "Usage: mlp [OPTIONS] COMMAND" in out
        assert sorted(modules & (NEVER | NOT_FOR_HELP)) == [], args
    for args in (["data", "--help"], ["predict", "--help"], ["train", "--help"]):
        status, out, modules = run_mlp(*args)
        assert status == 0
        assert f"Usage: mlp {args[0]} [OPTIONS]" in out
        assert sorted(modules & (NEVER | NOT_FOR_HELP)) == [], args


def test_predict_loads_no_training_stack(tmp_path: Path) -> None:
    model = save_random_model(tmp_path / "m.npz")
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(8, 6), (20, 6), (12, 24)], fill=255, width=3)
    image.save(tmp_path / "seven.png")
    status, out, modules = run_mlp("predict", str(tmp_path / "seven.png"), "--model", str(model))
    assert status == 0
    assert "seven.png: " in out
    assert {"numpy", "PIL", "pydantic", "mlp_cli.checkpoint"} <= modules  # it did predict
    assert sorted(modules & NEVER) == []


def test_help_pages_are_the_same_with_rich_markdown_loaded() -> None:
    """The stand-ins `mlp_cli.richhelp` puts in place of rich.markdown and rich.traceback
    change nothing in what Typer draws."""
    for args in (["--help"], ["train", "--help"], ["predict", "--help"]):
        status, out, modules = run_mlp(*args)
        assert status == 0
        assert "rich.markdown" not in modules
        full = run_mlp(*args, before="import typer.rich_utils")
        assert "rich.markdown" in full[2]
        assert (status, out) == full[:2], args


def test_stand_ins_hand_over_to_the_real_modules() -> None:
    code = """
import sys
from mlp_cli.richhelp import load_rich_utils
load_rich_utils()
import typer.rich_utils as utils
print("rich.markdown" in sys.modules, "rich.traceback" in sys.modules)
text = utils._make_rich_text(text="*one* two", style="", markup_mode="markdown")
import rich.markdown, rich.traceback
print(type(text) is rich.markdown.Markdown)
print(utils.Traceback.from_exception == rich.traceback.Traceback.from_exception)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False", "True", "True"]


def test_a_missing_value_is_what_typer_makes_of_it() -> None:
    """Every option and argument of every command, given no value, comes out as Typer's own
    `process_value` makes it (which builds the type's validator first)."""
    from typer.core import TyperArgument, TyperOption
    from typer.main import get_command

    from mlp_cli.cli import app

    checked = 0

    def walk(command: Any, ctx: Any) -> None:
        nonlocal checked
        for param in command.get_params(ctx):
            typer_class = TyperOption if isinstance(param, TyperOption) else TyperArgument
            assert type(param) is not typer_class, param.name  # ours, with the shortcut
            if not param.required:
                ours = param.process_value(ctx, None)
                assert ours == typer_class.process_value(param, ctx, None), param.name
                checked += 1
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))

    root = get_command(app)
    walk(root, root.make_context("mlp", [], resilient_parsing=True))
    assert checked > 50


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pairs", "0"], "--pairs takes a whole number of at least 1"),
        (["--python", "/nonexistent/python"], "expected an interpreter with an installed mlp"),
        (["--model", "/nonexistent/run"], "no such model file or run folder"),
    ],
)
def test_the_start_up_benchmark_refuses_bad_arguments_before_running_anything(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import startup

    with pytest.raises(SystemExit) as stopped:
        startup.main(args)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err


def test_the_start_up_benchmark_names_a_model_mlp_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --model that `mlp predict` refuses stops the benchmark with predict's own message,
    as a usage error, not a traceback."""
    from bench import startup

    model = tmp_path / "notes.txt"
    model.write_text("not a model\n")
    out = tmp_path / "startup.json"
    assert startup.main(["--pairs", "1", "--model", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "python -m bench startup: error: " in err
    assert "is not a valid mlp model file" in err
    assert "Traceback" not in err
    assert not out.exists()
