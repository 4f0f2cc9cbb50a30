"""The command line where its surroundings are unusual: a `~user` that does not exist in
`MLP_DATA_DIR`, an output encoding without the characters to print, standard output on a
full device or a closed pipe, gradient checks too large to run, and NumPy's warnings in a
diverging run.  Each ends in one clear message and an exit code, never a traceback.

The stream tests run `python -m mlp_cli.cli` in a subprocess, since they concern the real
standard output and the console-script entry point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_train import make_config, make_splits
from tiny_models import save_random_model
from typer.testing import CliRunner

from mlp_cli import checkpoint, cli, data, train
from mlp_cli.errors import TrainingError, UsageError
from mlp_cli.gradcheck import gradcheck

# The command line, training on `make_splits`'s synthetic data instead of MNIST.
ON_SYNTHETIC_DATA = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_train import make_splits
from mlp_cli import cli, data, train
splits = make_splits()
data.prepare_data = lambda cfg, progressbar=False: splits
train.Trainer.write_curves = lambda self: None
cli.main()
"""


def mlp(
    *args: str,
    cwd: Path,
    stdout: int | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
    program: tuple[str, ...] = ("-m", "mlp_cli.cli"),
) -> subprocess.CompletedProcess[bytes]:
    environment = {k: v for k, v in os.environ.items() if k != "MLP_DEBUG"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, *program, *args],
        cwd=cwd,
        env=environment,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
    )


@pytest.mark.parametrize("command", [["data", "path"], ["data", "info"], ["data", "fetch"]])
def test_a_data_dir_naming_an_unknown_user_is_a_usage_error(
    tmp_path: Path, command: list[str]
) -> None:
    value = "~nosuchuser-mlp/x"
    proc = mlp(*command, cwd=tmp_path, env={data.DATA_DIR_ENV: value})
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert data.DATA_DIR_ENV in stderr
    assert value in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_data_dir_naming_an_unknown_user_of_any_length_is_cut_short(tmp_path: Path) -> None:
    value = "~" + "u" * 5000
    proc = mlp("data", "path", cwd=tmp_path, env={data.DATA_DIR_ENV: value})
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "'~" + "u" * 296 + "...'" in "".join(stderr.split())
    assert len(stderr) < 1000


@pytest.mark.parametrize("variable", [data.DATA_DIR_ENV, "XDG_CACHE_HOME"])
def test_a_cache_folder_too_long_for_any_file_system_is_cut_short(
    tmp_path: Path, variable: str
) -> None:
    value = str(tmp_path / ("x" * 5000))
    proc = mlp("data", "path", cwd=tmp_path, env={data.DATA_DIR_ENV: "", variable: value})
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert value[:297] + "..." in "".join(stderr.split())
    assert len(stderr) < 2000


CONFIG_WITH_UMLAUTS = (
    "name: plain\nmodel: {layers: 784-10}\ndata: {mirror: 'http://bücher.example/mnist/'}\n"
)


@pytest.mark.parametrize(
    "env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}], ids=["ascii", "C"]
)
def test_text_the_output_encoding_lacks_is_escaped(tmp_path: Path, env: dict[str, str]) -> None:
    config = tmp_path / "größe.yaml"
    config.write_text(CONFIG_WITH_UMLAUTS, encoding="utf-8")

    shown = mlp("config", "show", str(config), cwd=tmp_path, env=env)
    missing = mlp("config", "show", str(tmp_path / "fehlt-ä.yaml"), cwd=tmp_path, env=env)

    assert shown.returncode == 0, shown.stderr
    assert b"Traceback" not in shown.stderr
    assert b"name: plain" in shown.stdout
    assert "bücher".encode() in shown.stdout or b"b\\xfccher" in shown.stdout
    assert missing.returncode == 2
    assert b"Traceback" not in missing.stderr
    assert b"fehlt-" in missing.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize(
    "command", [["config", "schema"], ["--version"], ["data", "path"], ["data", "info"]]
)
def test_stdout_on_a_full_device_is_one_clear_error(tmp_path: Path, command: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        proc = mlp(*command, cwd=tmp_path, stdout=full.fileno())
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "cannot write to standard output" in stderr
    assert "No space left on device" in stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr


@pytest.mark.parametrize("command", [["config", "schema"], ["--version"], ["--help"]])
def test_a_closed_stdout_is_one_clear_error(tmp_path: Path, command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlp_cli.cli", *command],
        cwd=tmp_path,
        preexec_fn=lambda: os.close(1),  # as `mlp ... >&-` starts it
        stderr=subprocess.PIPE,
        timeout=120,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert stderr == "error: cannot write to standard output: Bad file descriptor.\n"


def test_a_reader_that_closes_the_pipe_ends_mlp_quietly(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: every write fails with EPIPE
    try:
        proc = mlp("config", "schema", cwd=tmp_path, stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == 1
    assert proc.stderr == b""


def _train_into_full_stdout(
    tmp_path: Path, training: str, *flags: str
) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """`mlp train` of a small run on synthetic data into tmp_path/runs/unit, its stdout on
    /dev/full; the process and its stderr as one line of words."""
    config = tmp_path / "unit.yaml"
    config.write_text(
        "data: {input_size: 20, validation_size: 48}\nmodel: {layers: 400-16-10}\n"
        f"training: {training}\n"
    )
    with open("/dev/full", "wb") as full:
        proc = mlp(
            "train",
            "--config",
            str(config),
            *flags,
            cwd=tmp_path,
            stdout=full.fileno(),
            program=("-c", ON_SYNTHETIC_DATA),
        )
    return proc, " ".join(proc.stderr.decode().split())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_training_with_stdout_on_a_full_device_leaves_a_run_that_resumes(
    tmp_path: Path, output: list[str]
) -> None:
    proc, stderr = _train_into_full_stdout(tmp_path, "{epochs: 2, batch_size: 16}", *output)
    assert proc.returncode == 1, stderr
    assert "cannot write to standard output: No space left on device" in stderr
    assert "mlp train --resume runs/unit" in stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr

    resumed = mlp("train", "--resume", "runs/unit", cwd=tmp_path, program=("-c", ON_SYNTHETIC_DATA))
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert len(train.read_metrics(tmp_path / "runs" / "unit" / train.METRICS_FILE)) == 2


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_stdout_on_a_full_device_when_resuming_inside_an_epoch_says_where_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train.Trainer, "write_curves", lambda self: None)
    stops = iter([False] * 8 + [True])  # Ctrl-C before step 3 of epoch 2 (6 steps an epoch)
    trainer = train.start(make_config(tmp_path), make_splits(), tmp_path / "runs" / "unit")
    assert trainer.run(should_stop=lambda: next(stops)).status == "interrupted"

    with open("/dev/full", "wb") as full:
        proc = mlp(
            "train",
            "--resume",
            "runs/unit",
            cwd=tmp_path,
            stdout=full.fileno(),
            program=("-c", ON_SYNTHETIC_DATA),
        )

    stderr = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1, stderr
    assert "cannot write to standard output: No space left on device" in stderr
    assert "the run resumes from its checkpoint at epoch 2, step 2 with: mlp train --resume" in (
        stderr
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_stdout_on_a_full_device_at_the_last_epoch_leaves_a_finished_run(tmp_path: Path) -> None:
    training = "{epochs: 1, batch_size: 16, early_stopping: {restore_best: false}}"
    # --json writes first when the last epoch ends
    proc, stderr = _train_into_full_stdout(tmp_path, training, "--json")
    assert proc.returncode == 1, stderr
    assert "cannot write to standard output: No space left on device" in stderr
    assert "--resume" not in stderr
    assert "Training had ended (completed after epoch 1)" in stderr
    assert "mlp plot runs/unit" in stderr
    run_dir = tmp_path / "runs" / "unit"
    for saved in (checkpoint.load(run_dir / checkpoint.MODEL_FILE), train.load_checkpoint(run_dir)):
        assert saved.meta.training is not None
        assert saved.meta.training.status == "completed"


# The command line in a process whose memory `ulimit -v` caps a little above what it holds
# at the start, with a data set that cannot fit in what is left.
UNDER_A_MEMORY_LIMIT = """
import resource
import numpy as np
from mlp_cli import cli, data
held = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (held + 2**28, resource.RLIM_INFINITY))
data.prepare_data = lambda cfg, progressbar=False: np.ones(2**30, np.uint8)
cli.main()
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="Linux's /proc only")
def test_running_out_of_memory_is_one_clear_error_naming_the_limit(tmp_path: Path) -> None:
    config = tmp_path / "unit.yaml"
    config.write_text("model: {layers: 784-10}\n")
    proc = mlp("train", "--config", str(config), cwd=tmp_path, program=("-c", UNDER_A_MEMORY_LIMIT))
    stderr = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1, stderr
    assert stderr.startswith("error: out of memory: Unable to allocate 1.00 GiB"), stderr
    assert "`ulimit -v` allows it" in stderr
    assert "Traceback" not in stderr


# The command line in a process whose memory is capped, as by `ulimit -v`, just as it loads
# an extension module late (as NumPy loads its random module at a first use): the loader
# cannot map the module's file.
MAPPING_UNDER_A_MEMORY_LIMIT = """
import importlib, importlib.util, resource, sys
from mlp_cli import cli, data
def prepare_data(cfg, progressbar=False):
    names = ("_sqlite3", "_curses", "_dbm", "audioop")  # extension modules mlp never loads
    late = next(m for m in names if m not in sys.modules and importlib.util.find_spec(m))
    held = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (held + 2**16, resource.RLIM_INFINITY))
    try:
        importlib.import_module(late)
    finally:  # room to say so
        resource.setrlimit(resource.RLIMIT_AS, (held + 2**28, resource.RLIM_INFINITY))
data.prepare_data = prepare_data
cli.main()
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="Linux's /proc only")
def test_a_module_that_cannot_be_mapped_under_a_memory_limit_is_out_of_memory(
    tmp_path: Path,
) -> None:
    config = tmp_path / "unit.yaml"
    config.write_text("model: {layers: 784-10}\n")
    program = ("-c", MAPPING_UNDER_A_MEMORY_LIMIT)
    proc = mlp("train", "--config", str(config), cwd=tmp_path, program=program)
    stderr = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1, stderr
    assert stderr.startswith("error: out of memory: "), stderr
    assert "failed to map segment from shared object" in stderr
    assert "`ulimit -v` allows it" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch", "100000000"], "--batch"),
        (["--batch", "20000", "--set", "model.layers=784-800-10"], "--batch"),
    ],
)
def test_gradcheck_refuses_a_check_too_large_to_run(args: list[str], needle: str) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "logistic-784-10.yaml"
    result = CliRunner().invoke(cli.app, ["gradcheck", "--config", str(config), *args])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, message
    assert needle in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("sizes", "batch", "entries"),
    [([784, 3_000_000, 10], 8, 200), ([784, 10], 10**8, 200), ([784, 800, 10], 20_000, 200)],
)
def test_gradcheck_refuses_before_allocating(sizes: list[int], batch: int, entries: int) -> None:
    with pytest.raises(UsageError, match="-".join(map(str, sizes))):
        gradcheck(sizes, "relu", "softmax", "cross_entropy", batch=batch, max_entries=entries)


def test_gradcheck_counts_every_array_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    # A penalty and dropout hold arrays of their own: counting only the parameters, their
    # gradients and one copy, a check that held 64 MB was estimated at 34 MB.
    def check() -> None:
        gradcheck([784, 1000, 10], "relu", "softmax", "cross_entropy", l1=0.1,
                  dropout=[0.5, 0.5], batch=500, max_entries=2)  # fmt: skip

    tracemalloc.start()
    try:
        check()
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    monkeypatch.setattr("mlp_cli.gradcheck.MAX_BYTES", held - 1)
    with pytest.raises(UsageError, match="of memory"):
        check()


def test_a_diverging_run_ends_in_our_message_without_numpy_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train.Trainer, "write_curves", lambda self: None)
    cfg = make_config(
        tmp_path,
        model={"layers": [400, 64, 64, 10]},
        optimizer={"name": "sgd", "lr": 1e6},
        training={"batch_size": 8},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        with pytest.raises(TrainingError, match="not a finite number"):
            train.start(cfg, make_splits(), tmp_path / "run").run()


def test_a_huge_set_value_is_shortened_in_the_message() -> None:
    value = "n" * 100_000
    result = CliRunner().invoke(
        cli.app, ["train", "--config", "mnist-400-25-10", "--set", f"name={value}"]
    )
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "name" in message
    assert "(100,011 characters)" in message
    assert len(result.stderr) < 2_000
    assert "Traceback" not in message


def test_a_command_that_also_asks_for_error_handling_is_wrapped_once() -> None:
    # app.command() gives every command its error handling and --debug; decorating a command
    # with handle_errors as well must not give it a second --debug (which Typer refuses).
    app = cli._Typer()

    @app.command()
    @cli.handle_errors
    def fail() -> None:
        raise UsageError("the message")

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["fail"])
    assert result.exit_code == 2
    assert "error: the message" in result.output


def test_a_zero_terminal_width_still_shows_the_message(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "mlp_cli.cli", "evaluate", "--model", "nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "error: model 'nope' not found" in run.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("COLUMNS", "²"), ("LINES", "9" * 5000), ("TERMINAL_WIDTH", "wide")],
    ids=["superscript-columns", "lines-too-long-for-int", "text-terminal-width"],
)
def test_a_terminal_size_that_is_no_number_is_ignored(
    tmp_path: Path, name: str, value: str
) -> None:
    for args, code, words in (
        (["evaluate", "--model", "nope"], 2, "error: model 'nope' not found"),
        (["--help"], 0, "Usage: "),
    ):
        run = mlp(*args, cwd=tmp_path, env={name: value})
        stderr = run.stderr.decode()
        assert run.returncode == code, stderr
        assert words in run.stdout.decode() + stderr
        assert "Traceback" not in stderr


@pytest.mark.parametrize("name", ["COLUMNS", "TERMINAL_WIDTH"])
def test_a_terminal_wider_than_any_is_not_drawn(tmp_path: Path, name: str) -> None:
    # help pages and usage errors are panels as wide as the terminal: a trillion columns
    # would be a trillion characters a line
    for args, code in ((["evaluate", "--split", "nope"], 2), (["--help"], 0)):
        run = mlp(*args, cwd=tmp_path, env={name: str(10**12)})
        stderr = run.stderr.decode()
        assert run.returncode == code, stderr[-2000:]
        assert "Traceback" not in stderr
        assert len(run.stdout + run.stderr) < 20_000


@pytest.mark.parametrize(
    ("home", "written", "why"),
    [
        ("{tmp}/a-file", "{tmp}/a-file", "it is not a folder"),
        ("/proc", "/proc/.bashrc", "that place does not accept new files"),
    ],
    ids=["home-is-a-file", "home-takes-no-files"],
)
def test_install_completion_where_home_cannot_be_written_is_one_clear_error(
    tmp_path: Path, home: str, written: str, why: str
) -> None:
    (tmp_path / "a-file").write_text("mine")
    home, written = home.format(tmp=tmp_path), written.format(tmp=tmp_path)
    # Typer's own switch: the shell is named instead of detected from the parent process
    env = {"HOME": home, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = mlp("--install-completion", "bash", cwd=tmp_path, env=env)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"cannot install shell completion: '{written}' cannot be written: {why}" in " ".join(
        stderr.split()
    )
    assert (tmp_path / "a-file").read_text() == "mine"


# The command line as a user ID without an entry in /etc/passwd runs it, without HOME.
WITHOUT_A_HOME = """
import os, pwd
def unknown(uid):
    raise KeyError(uid)
pwd.getpwuid = unknown
os.environ.pop("HOME", None)
from mlp_cli import cli
cli.main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no user database to miss a user in")
def test_install_completion_without_a_home_folder_is_one_clear_error(tmp_path: Path) -> None:
    env = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = mlp(
        "--install-completion", "bash", cwd=tmp_path, env=env, program=("-c", WITHOUT_A_HOME)
    )
    stderr = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1, stderr
    assert stderr.startswith("error: cannot install shell completion: it goes in the home"), stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX HOME")
def test_install_completion_with_a_home_that_names_no_folder_quotes_it(tmp_path: Path) -> None:
    # Python takes HOME as it is, for a user the system knows too: '~' expands to nothing
    env = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1", "HOME": "~"}
    proc = mlp("--install-completion", "bash", cwd=tmp_path, env=env)
    stderr = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1, stderr
    assert stderr.startswith("error: cannot install shell completion: it goes in the home"), stderr
    assert "HOME is '~', which names no folder" in stderr
    assert "HOME is not set" not in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="no /bin/sh on this system")
@pytest.mark.parametrize("verb", ["install", "show"])
def test_completion_in_a_shell_typer_makes_none_for_says_which_it_makes(
    tmp_path: Path, verb: str
) -> None:
    # run from sh, which stays mlp's parent (a second command keeps it from exec'ing mlp)
    script = f'"$0" -m mlp_cli.cli --{verb}-completion; exit $?'
    proc = subprocess.run(
        ["/bin/sh", "-c", script, sys.executable],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    stderr = " ".join(proc.stderr.split())
    assert proc.returncode == 1, stderr
    assert stderr.startswith(f"error: cannot {verb} shell completion: the shell mlp runs in is")
    assert "bash, zsh, fish and PowerShell" in stderr
    assert stderr.count("error:") == 1, stderr
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_install_completion_with_stdout_on_a_full_device_blames_stdout_not_home(
    tmp_path: Path,
) -> None:
    env = {"HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    with open("/dev/full", "wb") as full:
        proc = mlp("--install-completion", "bash", cwd=tmp_path, stdout=full.fileno(), env=env)
    assert proc.returncode == 1
    assert (
        proc.stderr.decode() == "error: cannot write to standard output: No space left on device.\n"
    )
    assert "mlp" in (tmp_path / ".bashrc").read_text()  # installed before it was said


def test_gradcheck_refuses_a_negative_seed() -> None:
    result = CliRunner().invoke(cli.app, ["gradcheck", "--seed", "-1"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize("json_", [[], ["--json"]])
def test_predict_refuses_an_empty_path_instead_of_reading_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    model = save_random_model(tmp_path / "model.npz")
    (tmp_path / "seven.png").write_bytes(b"")
    result = CliRunner().invoke(
        cli.app, ["predict", "--model", str(model), *json_, "seven.png", ""]
    )
    assert result.exit_code == 2, result.output
    assert "an empty path names no file or folder" in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_predict_reads_a_tilde_of_a_quoted_glob_and_model_as_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.setenv("HOME", str(tmp_path))
    save_random_model(tmp_path / "model.npz")
    Image.new("L", (28, 28)).save(tmp_path / "seven.png")
    result = CliRunner().invoke(
        cli.app, ["predict", "--model=~/model.npz", "--raw", "--json", "~/*.png"]
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "seven.png") in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--out", ""],
        ["train", "--resume", ""],
        ["evaluate", "--model", "{model}", "--misclassified", ""],
        ["evaluate", "--model", ""],
        ["predict", "--model", "{model}", "--save-input", "", "{model}"],
        ["show", "hidden", "--model", "{model}", "--out", ""],
        ["plot", ""],
        ["sweep", "depth-width", "--out", ""],
        ["sweep", "depth-width", "--storage", ""],
        ["sweep", ""],
        ["sweep", "plan", ""],
        ["sweep", "show", ""],
        ["data", "import", ""],
    ],
    ids=lambda a: "-".join(x.strip("-") for x in a if x and "{" not in x) + "-empty",
)
def test_an_empty_path_is_a_usage_error_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    model = save_random_model(tmp_path / "model.npz")
    result = CliRunner().invoke(cli.app, [a.format(model=model) for a in args])
    assert result.exit_code == 2, result.output
    assert "an empty path names no file or folder" in " ".join(result.output.split())
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--model", "{model}", "--out", "models/"],
        ["export", "--model", "{model}", "--out", "model.onnx/", "--force"],
        ["export", "--model", "{model}", "--out", "model.onnx/."],
        ["show", "hidden", "--model", "{model}", "--out", "hidden.png/"],
        ["plot", "{model}", "--out", "curves.png/"],
        ["evaluate", "--model", "{model}", "--plot", "confusion.png/"],
    ],
    ids=lambda a: "-".join(x.strip("-") for x in a if x and "{" not in x),
)
def test_a_file_to_write_named_with_a_trailing_slash_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.onnx").write_bytes(b"the user's own file")
    monkeypatch.chdir(work)
    model = save_random_model(tmp_path / "model.npz")
    result = CliRunner().invoke(cli.app, [a.format(model=model) for a in args])
    assert result.exit_code == 2, result.output
    assert "a path ending in '/' names a folder" in " ".join(result.output.split())
    assert sorted(p.name for p in work.iterdir()) == ["model.onnx"]
    assert (work / "model.onnx").read_bytes() == b"the user's own file"


def _predict_stopped(
    tmp_path: Path, *flags: str, encoding: str = "utf-8"
) -> tuple[int, bytes, str]:
    """`mlp predict --json` of 600 pictures, its standard streams in ``encoding``, sent
    SIGTERM once its output has begun and the pipe is full (its reader takes 100 bytes, then
    nothing for a second): the exit code, all of stdout and stderr."""
    from PIL import Image

    model = save_random_model(tmp_path / "model.npz")
    picture = tmp_path / "one.png"
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    Image.fromarray(digit).save(picture)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(600):
        (folder / f"{i:04d}.png").write_bytes(picture.read_bytes())
    environment = {k: v for k, v in os.environ.items() if k != "MLP_DEBUG"}
    environment["PYTHONIOENCODING"] = encoding
    command = ["predict", str(folder), "--raw", "--json", "--model", str(model), *flags]
    process = subprocess.Popen(
        [sys.executable, "-m", "mlp_cli.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    try:
        assert process.stdout is not None
        # unbuffered: communicate() below reads the descriptor, not a reader's buffer
        first = os.read(process.stdout.fileno(), 100)  # the output has begun: a pipe full
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, first + out, err.decode(encoding)


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_predict_json_stopped_while_a_slow_reader_holds_the_pipe_full_is_still_whole(
    tmp_path: Path,
) -> None:
    # A batch's predictions go out in one text larger than a pipe holds; a SIGTERM while the
    # reader has not yet taken it cut that text at a point mlp did not know, and left half
    # an object on stdout. The object must be closed instead, as the README says.
    code, out, err = _predict_stopped(tmp_path)
    assert code == 128 + signal.SIGTERM, err
    report = json.loads(out)
    assert 0 < len(report["predictions"]) <= 600
    assert all(p["digit"] in range(10) for p in report["predictions"])
    assert report["failures"] == []


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_predict_json_stopped_while_the_pipe_is_full_is_still_whole_in_utf16(
    tmp_path: Path,
) -> None:
    # Two bytes a character were written in one piece, as before pieces were counted: a
    # SIGTERM cut it where mlp did not know, and the object was left open.
    code, out, err = _predict_stopped(tmp_path, encoding="utf-16")
    assert code == 128 + signal.SIGTERM, err
    report = json.loads(out.decode("utf-16"))
    assert 0 < len(report["predictions"]) <= 600
    assert report["failures"] == []


def test_a_stop_signal_with_debug_shows_the_traceback_and_keeps_the_signals_code(
    tmp_path: Path,
) -> None:
    # Else Typer ended it as a silent exit 130, for SIGTERM too.
    code, _, err = _predict_stopped(tmp_path, "--debug")
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback (most recent call last)" in err
    assert "Terminated: SIGTERM" in err


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_the_stop_signals_are_let_through_again_when_one_is_raised_as_they_are_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlp_cli.stopping import STOP_SIGNALS

    real = signal.pthread_sigmask

    def raising(how: int, mask: object) -> set[int | signal.Signals]:
        old = real(how, mask)  # type: ignore[arg-type]
        if how == signal.SIG_BLOCK and set(mask) == set(STOP_SIGNALS):  # type: ignore[call-overload]
            raise KeyboardInterrupt  # one that came just before, raised as the call returns
        return old

    monkeypatch.setattr(signal, "pthread_sigmask", raising)
    with pytest.raises(KeyboardInterrupt), cli._stop_signals_held():
        pass
    assert not set(STOP_SIGNALS) & real(signal.SIG_BLOCK, ())
