"""`python -m bench`: its arguments are checked before any timing starts (the timing itself
is only run by hand and, in its smoke mode, by CI)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

# The least a run does, should a check be missing: a smoke run of one small network.
QUICK = ["--smoke", "--network", "400-25-10", "--drift-epochs", "0", "--no-memory", "--no-startup"]
BUSY = ["busy", "--smoke", "--no-peers", "--config", "logistic-784-10"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--network", "784-10"], "unknown network '784-10'; the benchmark knows 784-100-10"),
        (["--epochs", "0"], "--epochs takes a whole number of at least 1, not 0"),
        (["--threads", "0"], "--threads takes a whole number of at least 1, not 0"),
        (["--seconds", "-1"], "--seconds takes a number of seconds, 0 or more, not -1.0"),
        (["--seconds", "nan"], "--seconds takes a number of seconds, 0 or more, not nan"),
        ([*QUICK, "--out", "/"], "cannot write the results file '/': it is a folder"),
        ([*QUICK, "--out", "/dev/null/r.json"], "the results folder '/dev/null' is a"),
        ([*BUSY, "--out", "/"], "cannot write the results file '/': it is a folder"),
        (["threads", "--steps", "0"], "--steps takes a whole number of at least 1, not 0"),
        (["threads", "--steps", "1", "--out", "/"], "cannot write the results file '/'"),
        (["startup", "--pairs", "1", "--out", "/"], "cannot write the results file '/'"),
        ([*QUICK, "--out", ""], "argument --out: an empty path names no file"),
        ([*BUSY, "--out", ""], "argument --out: an empty path names no file"),
        (["threads", "--out", ""], "argument --out: an empty path names no file"),
        (["startup", "--out", ""], "argument --out: an empty path names no file"),
        ([*BUSY, "--config", "mnist-784"], "no config named mnist-784 in "),
        ([*BUSY, "--rounds", "0"], "--rounds takes a whole number of at least 1, not 0"),
    ],
)
def test_the_benchmark_refuses_bad_arguments_before_running_anything(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("times", "enough"),
    [
        ([9.0, 0.5, 0.5], False),  # the warm-up's 9 s do not count
        ([9.0, 0.5, 0.5, 0.5], False),  # 3 epochs, but 1.5 of 3 seconds
        ([9.0, *[0.5] * 6], True),  # 3 seconds
        ([9.0, *[0.1] * 14], False),
        ([9.0, *[0.1] * 15], True),  # five times --epochs, however short
        ([9.0, 2.0, 2.0], False),  # 4 s, but fewer than --epochs
        ([9.0, 2.0, 2.0, 2.0], True),
    ],
)
def test_a_network_is_timed_for_its_epochs_and_seconds(times: list[float], enough: bool) -> None:
    from bench.timing import enough_epochs

    assert enough_epochs(times, epochs=3, warmup=1, seconds=3.0) is enough


@pytest.mark.parametrize(
    ("epochs", "warmup", "seconds", "timed"),
    [(1, 0, 0.0, 1), (2, 1, 0.0, 3), (2, 1, float("inf"), 11)],  # 11: warm-up + 5 x 2
)
def test_ours_and_every_peer_train_the_same_epochs_however_many_are_timed(
    epochs: int, warmup: int, seconds: float, timed: int
) -> None:
    import numpy as np

    from bench.timing import time_network
    from bench.workload import Dataset, Network

    class Peer:
        name = "peer"

        def epoch(self) -> float:
            return 0.5

        def details(self) -> dict[str, object]:
            return {}

        def close(self) -> None:
            pass

    rng = np.random.default_rng(0)
    data = Dataset(
        rng.random((256, 400), dtype=np.float32), rng.integers(0, 10, 256, np.uint8), "synthetic"
    )
    net = Network((400, 4, 10), "relu")
    timings = time_network(net, data, [Peer()], epochs, warmup, (), seconds=seconds)
    assert len(timings.epochs["ours"]) == len(timings.epochs["peer"]) == timed


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("sweep", ["--repeats", "0"], "--repeats takes a whole number of at least 1, not 0"),
        ("sweep", ["--epochs", "0"], "--epochs takes a whole number of at least 1, not 0"),
        ("serve", ["--requests", "0"], "--requests takes a whole number of at least 1, not 0"),
        ("serve", ["--clients", "0"], "--clients takes a whole number of at least 1, not 0"),
        ("serve", ["--overhead", "-1"], "--overhead takes a whole number (0 skips), not -1"),
        ("serve", ["--memory", "1000,lots"], "--memory takes request counts separated by commas"),
        ("serve", ["--out", "/"], "cannot write the results file '/': it is a folder"),
        ("serve", ["--out", "{notes}"], "it exists and is not a record of python -m bench"),
        ("serve", ["--out", ""], "argument --out: an empty path names no file"),
        ("augment_overhead", ["--rounds", "0"], "--rounds takes a whole number of at least 1"),
        ("augment_overhead", ["--threads", "0"], "--threads takes a whole number of at least 1"),
        ("ndimage", ["--rounds", "0"], "--rounds takes a whole number of at least 1, not 0"),
    ],
)
def test_the_benchmark_scripts_refuse_bad_arguments_before_running_anything(
    module: str, args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if module == "ndimage":
        pytest.importorskip("scipy", reason="bench.ndimage compares with scipy.ndimage")
    main = importlib.import_module(f"bench.{module}").main
    notes = tmp_path / "notes.txt"  # a file of the user's
    notes.write_text("my notes\n")

    with pytest.raises(SystemExit) as stopped:
        main([arg.format(notes=notes) for arg in args])
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err
    assert notes.read_text() == "my notes\n"


def test_the_benchmark_commands_the_sources_cite_run_the_scripts_as_modules() -> None:
    # The scripts import the bench package, which `python bench/ndimage.py` does not find.
    root = Path(__file__).resolve().parents[1]
    cited = [
        f"{path.relative_to(root)}: {' '.join(command.split())}"
        for path in [root / "README.md", *sorted((root / "mlp_cli").glob("*.py"))]
        for command in re.findall(r"python\s+bench/\w+\.py", path.read_text())
    ]
    assert cited == []


def test_names_from_outside_are_printed_as_they_are(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_public_mirrors: None,
    closed_port_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A results file and a data folder whose names hold rich markup are printed as named."""
    from bench.__main__ import main

    out = tmp_path / "[bold]r.json"
    assert main([*QUICK, "--out", str(out)]) == 0
    assert f"results: {out}" in capsys.readouterr().out.replace("\n", "")
    assert out.is_file()

    cache = tmp_path / "[red]cache"
    monkeypatch.setenv("MLP_DATA_DIR", str(cache))
    monkeypatch.setenv("MLP_MNIST_MIRROR", closed_port_url)
    full = [a for a in QUICK if a != "--smoke"]  # without MNIST, --smoke trains on random digits
    assert main([*full, "--out", str(tmp_path / "none.json")]) == 1
    assert f"({cache})" in capsys.readouterr().out.replace("\n", "")


def test_the_subcommands_print_names_from_outside_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """busy and startup print their results file, and startup the interpreter it timed, as
    named, though the names hold rich markup."""
    from bench.__main__ import main

    monkeypatch.setenv("COLUMNS", "400")  # long paths on one line, in the table too

    out = tmp_path / "[bold]busy.json"
    assert main([*BUSY, "--rounds", "1", "--out", str(out)]) == 0
    assert f"results: {out}" in capsys.readouterr().out.replace("\n", "")

    venv = tmp_path / "[bold]venv"
    venv.symlink_to(Path(sys.prefix))
    python = str(venv / "bin" / "python")
    out = tmp_path / "[bold]startup.json"
    assert main(["startup", "--pairs", "1", "--python", python, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"importtime: {python} ..." in printed
    assert f"mlp --help ({python})" in printed
    assert f"│ {python} │" in printed  # the table's python column
    assert f"results: {out}" in printed.replace("\n", "")


def test_a_results_file_replaces_only_an_earlier_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out naming a file of the user's is refused before the timing and left as it was;
    naming an earlier record of the benchmark, it is replaced."""
    from bench.__main__ import main

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(SystemExit) as stopped:
        main([*QUICK, "--out", str(notes)])
    assert stopped.value.code == 2
    assert "it exists and is not a record of python -m bench" in capsys.readouterr().err
    assert notes.read_text() == "my notes\n"

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"command": "python -m bench startup", "seconds": 1}))
    assert main([*QUICK, "--out", str(earlier)]) == 0
    assert json.loads(earlier.read_text())["command"].startswith("python -m bench --smoke")


def test_a_start_up_timing_that_cannot_run_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interpreter without mlp beside it (a checkout on PYTHONPATH) has no start-up to
    time: the run says so, and writes what it measured before."""
    from bench.__main__ import main

    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python"
    python.symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(python))
    out = tmp_path / "r.json"
    quick = [a for a in QUICK if a != "--no-startup"]
    assert main([*quick, "--out", str(out)]) == 0
    assert "startup: failed (" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert "mlp --help exited with 2" in record["startup"]["error"]
    assert record["networks"][0]["engines"]["ours"]["seconds_per_epoch"] > 0


def test_the_libraries_of_a_command_are_what_it_and_mlps_modules_import_directly() -> None:
    """`libraries_of` keeps the imports made at depth 0 (the program, or a library at run
    time) and those made by mlp_cli's modules, in the order they ended; not mlp_cli's
    modules, nor what a library imports for itself."""
    from bench.startup import libraries_of, parse_importtime

    tree = [  # (depth, module), in -X importtime's order: an import after those it makes
        (0, "site"),
        (2, "click"),
        (1, "typer"),
        (3, "rich.style"),
        (2, "rich.text"),
        (1, "mlp_cli.plain"),
        (1, "json"),
        (0, "mlp_cli.cli"),
        (1, "pydantic"),
        (0, "typer._adapters"),
        (1, "PIL.Image"),
        (0, "mlp_cli.predict"),
    ]
    stderr = "import time: self [us] | cumulative | imported package\n" + "".join(
        f"import time: {10:>9} | {10:>10} | {'  ' * depth}{module}\n" for depth, module in tree
    )
    rows = parse_importtime(stderr)
    assert [row["depth"] for row in rows] == [depth for depth, _ in tree]
    assert libraries_of(rows) == [
        "site",
        "typer",
        "rich.text",
        "json",
        "typer._adapters",
        "PIL.Image",
    ]


def test_the_libraries_alone_end_as_mlp_does_without_collecting_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mlp_cli.cli.main` freezes the objects alive before the process exits, so Python's
    exit does not collect them; the libraries' process does the same, or its time holds a
    cost that mlp does not have and is no floor under the command's."""
    import subprocess

    from bench import startup

    rows = [{"depth": 0, "module": "json", "self_us": 10, "cumulative_us": 10}]
    monkeypatch.setattr(startup, "importtime_rows", lambda argv, env: rows)
    predict = startup.Command("mlp predict IMAGE", [sys.executable, "-c", "pass"])
    command = startup.libraries_command(sys.executable, predict, None)
    assert command.label == startup.LIBRARIES
    python, flag, script = command.argv
    frozen = "import gc, sys; sys.stdout.write(str(gc.get_freeze_count()))"
    done = subprocess.run(
        [python, flag, f"{script}\n{frozen}"], capture_output=True, text=True, check=True
    )
    assert "json" in script
    assert int(done.stdout) > 0
