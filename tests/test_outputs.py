"""Where `mlp` writes, through the command line: nothing it did not make is replaced, every
destination is checked before the work, write errors are named, user text stays text.

Each test runs the real Typer app (CliRunner) and asserts the exit code, a message naming
the path, no traceback, and, with `treesnap`, that every file that was there before is
byte-identical afterwards.  Training and evaluation run on small synthetic data (the
`fake_data` fixture), so no test needs MNIST; a full disk is the real ENOSPC of /dev/full.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import stat
import tempfile
import types
from pathlib import Path
from typing import IO, Any

import locks
import numpy as np
import pytest
import treesnap
from PIL import Image
from tiny_models import save_random_model
from typer.testing import CliRunner

from mlp_cli import checkpoint, data, outputs, train
from mlp_cli.cli import app
from mlp_cli.data import Splits
from mlp_cli.errors import MLPError, OutputError, UsageError
from mlp_cli.evaluate import MISTAKES_LOCK

runner = CliRunner()

CONFIG = """\
name: tiny
data: {input_size: 20, validation_size: 48}
model: {layers: 400-16-10}
training: {epochs: 1, batch_size: 32}
"""
LONG = "a" * 300  # longer than any file system's 255-byte name limit


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


def synthetic_splits() -> Splits:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 144).astype(np.uint8)
    X = rng.random((144, 400), dtype=np.float32)
    prep = {"input_size": 20, "source": "synthetic test data", "normalize": None}
    order = rng.permutation(144).astype(np.int64)
    return Splits(X, y, np.sort(order[48:]), np.sort(order[:48]), prep, {"synthetic": "0"})


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder for the command."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Training and evaluation on small synthetic data; returns the data asked for."""
    asked: list[str] = []

    def prepare(cfg: Any, **kwargs: Any) -> Splits:
        asked.append("train")
        return synthetic_splits()

    def split_images(saved: Any, split: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        asked.append(split)
        rng = np.random.default_rng(1)
        return rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40)

    monkeypatch.setattr(data, "prepare_data", prepare)
    monkeypatch.setattr("mlp_cli.evaluate.split_images", split_images)
    return asked


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder as `mlp train` leaves it: a random 784-16-10 model, a checkpoint and
    three epochs of metrics."""
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    save_random_model(folder / checkpoint.MODEL_FILE)
    save_random_model(folder / train.CHECKPOINT_FILE)
    records = [
        {"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": 1 / e, "val_acc": 0.5}
        for e in (1, 2, 3)
    ]
    (folder / train.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / train.CONFIG_FILE).write_text(CONFIG)
    return folder


def digit_png(path: Path) -> Path:
    pixels = np.full((60, 40), 255, np.uint8)
    pixels[10:50, 17:23] = 0  # a dark "1" on white paper
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every picture's write fails as on a full disk (the real ENOSPC of /dev/full), inside
    the real `outputs.atomic_write`, so its temporary file is made and must be cleaned up."""
    atomic_write = outputs.atomic_write

    def filling_the_disk(path: Path, write: Any) -> None:
        def write_until_full(f: IO[bytes]) -> None:
            write(f)
            with builtins.open("/dev/full", "wb") as full:
                full.write(b"\0")

        atomic_write(path, write_until_full)

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(outputs, "atomic_write", filling_the_disk)  # what save_picture calls


# -- class 1: a user's file is never replaced ---------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "folder"])
@pytest.mark.parametrize("where", ["--out", "output.dir"])
def test_a_latest_that_mlp_did_not_make_is_refused_before_anything_is_written(
    work: Path, fake_data: list[str], kind: str, where: str
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    parent = work / "P"
    parent.mkdir()
    if kind == "file":
        (parent / "latest").write_text("my notes\n")
    else:
        (parent / "latest").mkdir()
        (parent / "latest" / "inside.txt").write_text("mine")
    before = treesnap.snapshot(work)
    place = ["--out", parent / "run1"] if where == "--out" else ["--set", f"output.dir={parent}"]
    code, _, err = run("train", "--config", "tiny.yaml", *place)
    assert code == 2
    assert f"'{Path('P') / 'latest'}'" in err or str(parent / "latest") in err
    assert f"is a {kind}" in err
    assert treesnap.snapshot(work) == before  # no run folder, no temporary link
    assert fake_data == []  # refused before any data was loaded


def test_latest_link_moves_to_each_new_run_and_resume_keeps_it_a_link(
    work: Path, fake_data: list[str]
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    assert run("train", "-c", "tiny.yaml", "--out", "P/run1", "-q")[0] == 0
    assert run("train", "-c", "tiny.yaml", "--out", "P/run2", "-q")[0] == 0
    link = work / "P" / "latest"
    assert os.readlink(link) == "run2"
    code, _, err = run("train", "--resume", "P/latest", "--set", "training.epochs=2", "-q")
    assert code == 0, err
    assert os.readlink(link) == "run2"  # never a link to itself
    assert sorted(p.name for p in (work / "P").iterdir()) == ["latest", "run1", "run2"]


def test_a_link_mlp_made_to_a_run_folder_with_a_line_break_is_its_own(
    work: Path, fake_data: list[str]
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    assert run("train", "-c", "tiny.yaml", "--out", "P/a\nb", "-q")[0] == 0
    link = work / "P" / "latest"
    assert os.readlink(link) == "a\nb"
    code, _, err = run("train", "--resume", "P/a\nb", "--set", "training.epochs=2", "-q")
    assert code == 0, err
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "P/c", "-q")
    assert code == 0, err
    assert os.readlink(link) == "c"


def test_the_plain_file_mlp_writes_without_symlinks_is_replaced(tmp_path: Path) -> None:
    for name in ("run1", "run2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / train.CONFIG_FILE).write_text("name: x\n")
    (tmp_path / "latest").write_text("run1")  # what update_latest writes without symlinks
    train.update_latest(tmp_path / "run2")
    assert os.readlink(tmp_path / "latest") == "run2"


@pytest.mark.parametrize(
    "command",
    [
        ["show", "hidden", "--model", "{run}", "--out", "{target}", "--no-terminal"],
        ["plot", "{run}", "--out", "{target}"],
        ["evaluate", "--model", "{run}", "--plot", "{target}"],
    ],
    ids=["show-hidden", "plot", "evaluate-plot"],
)
@pytest.mark.parametrize("target", ["model.npz", "checkpoint.npz", "config.yaml", "mine.png"])
def test_picture_writers_never_replace_a_model_or_a_users_file(
    run_dir: Path, fake_data: list[str], command: list[str], target: str
) -> None:
    (run_dir / "config.yaml").write_text("name: r1\n")
    digit_png(run_dir / "mine.png")  # a real picture, but not one mlp drew
    before = treesnap.snapshot(run_dir.parent)
    path = run_dir / target
    args = [a.format(run=run_dir, target=path) for a in command]
    code, _, err = run(*args)
    assert code == 2
    assert str(path) in err
    assert ("not a picture format" in err) == (target != "mine.png")
    assert treesnap.snapshot(run_dir.parent) == before
    assert fake_data == []  # refused before evaluating


def test_a_link_put_where_plot_draws_is_named_as_the_picture_not_the_metrics(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The picture's path is checked again as it is written; a link that appeared there
    # meanwhile is a mistake about that path (exit code 2), not a damaged metrics.jsonl.
    from mlp_cli import viz

    target, elsewhere = tmp_path / "c.png", tmp_path / "notes.txt"
    elsewhere.write_text("the user's own notes")
    save = viz._save_figure

    def link_first(fig: Any, out: Path) -> Path:
        out.symlink_to(elsewhere)
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", link_first)
    code, _, err = run("plot", run_dir, "--out", target)
    said = " ".join(err.split())
    assert code == 2, said
    assert f"cannot write the figure '{target}': it is a link" in said
    assert "metrics" not in said
    assert target.is_symlink()
    assert elsewhere.read_text() == "the user's own notes"


def test_mlp_replaces_its_own_pictures(run_dir: Path, fake_data: list[str]) -> None:
    for _ in range(2):
        code, out, _ = run("show", "hidden", "--model", run_dir, "--no-terminal")
        assert code == 0
        assert f"drawn to {run_dir / 'hidden.png'}" in out.replace("\n", "")
        code, _, _ = run("plot", run_dir, "--out", run_dir / "c.svg")
        assert code == 0
        code, _, _ = run("evaluate", "--model", run_dir, "--plot", run_dir / "c.pdf")
        assert code == 0
    for name in ("hidden.png", "c.svg", "c.pdf"):
        assert outputs.is_own_picture(run_dir / name), name


def test_save_input_gives_two_images_of_one_name_two_files_and_says_which(
    tmp_path: Path, run_dir: Path
) -> None:
    first = digit_png(tmp_path / "a" / "x.png")
    second = digit_png(tmp_path / "b" / "x.png")
    Image.open(second).rotate(90).save(second)  # a different picture of the same name
    folder = tmp_path / "inputs"
    code, out, _ = run("predict", first, second, "--model", run_dir, "--save-input", folder)
    assert code == 0
    text = out.replace("\n", "")
    assert f"{first} saved as {folder / 'x-input.png'}" in text
    assert f"{second} saved as {folder / 'x-2-input.png'}" in text
    one, two = (np.asarray(Image.open(folder / n)) for n in ("x-input.png", "x-2-input.png"))
    assert not np.array_equal(one, two)

    code, out, _ = run(
        "predict", first, second, "--model", run_dir, "--save-input", folder, "--json"
    )
    assert code == 0
    rows = json.loads(out)["predictions"]
    assert [r["input_saved_as"] for r in rows] == [
        str(folder / "x-input.png"),
        str(folder / "x-2-input.png"),
    ]


@pytest.mark.parametrize("option", ["--save-input", "--misclassified"])
def test_a_users_file_in_the_way_of_a_picture_is_refused_before_writing_any(
    tmp_path: Path, run_dir: Path, fake_data: list[str], option: str
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    taken = "x-input.png" if option == "--save-input" else "gallery.png"
    (folder / taken).write_bytes(b"my own file")
    args: list[str | Path]
    if option == "--save-input":
        args = ["predict", digit_png(tmp_path / "x.png"), "--save-input", folder]
    else:
        args = ["evaluate", "--misclassified", folder, "--count", "3"]
    before = treesnap.snapshot(tmp_path)
    code, _, err = run(*args, "--model", run_dir)
    assert code == 2
    assert str(folder / taken) in err
    assert "not a picture mlp drew" in err
    assert treesnap.snapshot(tmp_path) == before  # not one of the other pictures either


def test_misclassified_again_removes_only_the_earlier_pictures_mlp_wrote(
    tmp_path: Path, run_dir: Path, fake_data: list[str]
) -> None:
    folder = tmp_path / "out"
    code, _, err = run("evaluate", "--model", run_dir, "--misclassified", folder, "--count", "5")
    assert code == 0, err
    first = sorted(p.name for p in folder.iterdir())
    assert len(first) == 6  # five mistakes and the gallery
    mine = ["009-index1-true1-pred2.png", "notes.txt"]  # the user's, one named like ours
    for name in mine:
        (folder / name).write_bytes(b"my own file")

    code, _, err = run("evaluate", "--model", run_dir, "--misclassified", folder, "--count", "2")

    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == sorted([*first[:2], "gallery.png", *mine])
    assert all((folder / name).read_bytes() == b"my own file" for name in mine)


def test_misclassified_into_a_folder_another_evaluation_is_writing_is_refused(
    tmp_path: Path, run_dir: Path, fake_data: list[str]
) -> None:
    # Two at once would each remove only the pictures there before either began: both sets
    # of mistakes were left, or one failed removing a picture the other had removed.
    folder = tmp_path / "out"
    code, _, err = run("evaluate", "--model", run_dir, "--misclassified", folder, "--count", "5")
    assert code == 0, err
    with locks.held(folder / MISTAKES_LOCK):  # as the other evaluation holds it
        held = treesnap.snapshot(folder)
        code, out, err = run(
            "evaluate", "--model", run_dir, "--misclassified", folder, "--count", "2"
        )
        said = " ".join(err.split())
        assert code == 2, out
        assert (
            f"the folder for --misclassified '{folder}' is in use by another mlp process "
            "(pid 4242), which is writing its pictures of mistakes" in said
        )
        assert treesnap.snapshot(folder) == held
    (folder / MISTAKES_LOCK).unlink()
    code, _, err = run("evaluate", "--model", run_dir, "--misclassified", folder, "--count", "2")
    assert code == 0, err
    assert len(list(folder.iterdir())) == 3  # two mistakes and the gallery, no lock left


def test_evaluate_json_names_the_pictures_it_wrote_as_the_human_output_does(
    tmp_path: Path, run_dir: Path, fake_data: list[str]
) -> None:
    folder, plot = tmp_path / "out", tmp_path / "confusion.png"
    args = ("evaluate", "--model", run_dir, "--misclassified", folder, "--count", "3")
    code, out, err = run(*args, "--plot", plot, "--json")
    assert code == 0, err
    report = json.loads(out)
    written = sorted(folder.iterdir())
    assert len(written) == 4  # three mistakes and the gallery
    assert sorted(report["misclassified"]) == [str(p) for p in written]
    assert report["plot"] == str(plot)
    assert plot.is_file()
    code, out, err = run(*args, "--json")
    assert code == 0, err
    assert "plot" not in json.loads(out)  # no --plot, no picture to name


# -- class 6: output paths are checked before the work; write errors are named ----------------


def _destinations(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-file").write_text("x")
    return {
        "under-a-file": tmp_path / "a-file" / "sub",
        "under-proc": Path("/proc/mlp-test-out"),
        "long-name": tmp_path / LONG,
        # short names, but a path longer than the system's limit (4096 bytes on Linux)
        "long-path": tmp_path.joinpath(*["d"] * (os.pathconf(tmp_path, "PC_PATH_MAX") // 2)),
    }


@pytest.mark.parametrize(
    "place", ["under-a-file", "under-proc", "long-name", "long-path", "read-only"]
)
@pytest.mark.parametrize(
    "command",
    [
        ["train", "--config", "{config}", "--out", "{dest}"],
        ["evaluate", "--model", "{run}", "--misclassified", "{dest}"],
        ["evaluate", "--model", "{run}", "--plot", "{dest}/c.png"],
        ["predict", "{image}", "--model", "{run}", "--save-input", "{dest}"],
        ["show", "hidden", "--model", "{run}", "--out", "{dest}/h.png"],
        ["plot", "{run}", "--out", "{dest}/c.png"],
    ],
    ids=["train", "misclassified", "evaluate-plot", "save-input", "show-hidden", "plot"],
)
def test_an_unwritable_destination_is_refused_before_the_work(
    tmp_path: Path,
    run_dir: Path,
    fake_data: list[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    place: str,
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    image = digit_png(tmp_path / "one.png")
    dest = _destinations(tmp_path).get(place, tmp_path / "new")
    if place == "read-only":
        monkeypatch.setattr(
            outputs,
            "tempfile",
            types.SimpleNamespace(mkdtemp=_erofs, mkstemp=_erofs),
        )
    before = treesnap.snapshot(tmp_path)
    args = [a.format(config=config, dest=dest, run=run_dir, image=image) for a in command]
    code, _, err = run(*args)
    assert code == 2
    assert str(dest)[:60] in err.replace("\n", "")
    expected = {
        "under-a-file": "is a file, not a folder",
        "long-name": "ENAMETOOLONG",
        "long-path": "ENAMETOOLONG",
        "read-only": "read-only",
        "under-proc": "cannot write",
    }[place]
    assert expected in err.replace("\n", " ")
    assert treesnap.snapshot(tmp_path) == before
    assert fake_data == []  # nothing was loaded, trained or evaluated


def _erofs(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_out_naming_an_existing_file_says_so(work: Path, fake_data: list[str]) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    (work / "notes.txt").write_text("mine")
    before = treesnap.snapshot(work)
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "notes.txt")
    assert code == 2
    assert "'notes.txt' is a file, not a folder" in err
    assert "not empty" not in err
    assert "--resume" not in err
    assert treesnap.snapshot(work) == before


def test_a_full_disk_while_drawing_curves_keeps_the_trained_model_and_exits_1(
    work: Path, fake_data: list[str], full_disk: None
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "R", "-q")
    assert code == 1  # a failure at run time, not a usage mistake
    err = err.replace("\n", " ")
    assert str(Path("R") / train.CURVES_FILE) in err
    assert "disk is full" in err
    assert "mlp plot R" in err
    saved = checkpoint.load(work / "R" / checkpoint.MODEL_FILE)
    assert saved.meta.training is not None
    assert saved.meta.training.status == "completed"
    assert sorted(p.name for p in (work / "R").iterdir()) == [
        "checkpoint.npz",
        "config.yaml",
        "metrics.jsonl",
        "model.npz",
    ]  # no half-written picture, no temporary file


@pytest.mark.parametrize(
    "command",
    [
        ["show", "hidden", "--model", "{run}", "--no-terminal"],
        ["plot", "{run}", "--out", "{run}/hidden.png"],
        ["evaluate", "--model", "{run}", "--plot", "{run}/hidden.png"],
        ["evaluate", "--model", "{run}", "--misclassified", "{run}", "--count", "2"],
        ["predict", "{image}", "--model", "{run}", "--save-input", "{run}"],
    ],
    ids=["show-hidden", "plot", "evaluate-plot", "misclassified", "save-input"],
)
def test_a_full_disk_while_writing_a_picture_exits_1_and_keeps_the_old_one(
    tmp_path: Path,
    run_dir: Path,
    fake_data: list[str],
    request: pytest.FixtureRequest,
    command: list[str],
) -> None:
    assert run("show", "hidden", "--model", run_dir, "--no-terminal")[0] == 0
    image = digit_png(tmp_path / "one.png")
    before = treesnap.snapshot(tmp_path)
    request.getfixturevalue("full_disk")
    code, _, err = run(*[a.format(run=run_dir, image=image) for a in command])
    assert code == 1
    assert str(run_dir) in err.replace("\n", "")
    assert "disk is full" in err.replace("\n", " ")
    assert treesnap.snapshot(tmp_path) == before


# -- class 5: user text is printed as text ------------------------------------------------------


MARKUP_NAMES = ["a[/]b[red].png", "x\x1b[31my.png", "[bold]z[/bold].png"]


def test_file_names_with_markup_and_escapes_are_printed_as_they_are(
    tmp_path: Path, run_dir: Path
) -> None:
    images = [digit_png(tmp_path / name) for name in MARKUP_NAMES]
    folder = tmp_path / "in[red]puts"
    code, out, _ = run("predict", *images, "--model", run_dir, "--save-input", folder)
    assert code == 0
    assert "\x1b" not in out
    text = out.replace("\n", "")
    for image in images:
        assert str(image).replace("\x1b", "\\x1b") in text
    assert str(folder / "x\\x1b[31my-input.png") in text
    assert (folder / "x\x1b[31my-input.png").is_file()


def test_names_with_line_breaks_and_tabs_stay_on_their_line(tmp_path: Path, run_dir: Path) -> None:
    for name in ("a\nb.png", "c\td.png"):
        digit_png(tmp_path / name)
    (tmp_path / "not\nan.png").write_bytes(b"text")
    folder = tmp_path / "in\nputs"
    code, out, err = run("predict", tmp_path, "--model", run_dir, "--save-input", folder)
    assert code == 1  # one of the three is no image
    for name in ("a\\nb.png", "c\\td.png"):
        assert any(line.startswith(f"{tmp_path}/{name}: ") for line in out.splitlines()), out
        assert f"{folder}/{name[:-4]}-input.png".replace("\n", "\\n") in out.replace("\n", "")
    assert "\t" not in out
    assert f"{tmp_path}/not\\nan.png is not an image" in err.replace("\n", "")
    for command in (["evaluate", "--model"], ["predict", "x.png", "--model"]):
        code, _, err = run(*command, tmp_path / "no\nmodel")
        assert code == 2
        assert err.startswith(f"error: model '{tmp_path}/no\\nmodel' not found"), err
    (tmp_path / "a\nfile").write_text("in the way")
    code, _, err = run("evaluate", "--model", run_dir, "--plot", tmp_path / "a\nfile" / "c.png")
    assert code == 2
    assert f"{tmp_path}/a\\nfile" in err.replace("\n", "")  # rich folds long lines
    assert "a\nfile" not in err


def test_names_with_line_breaks_stay_on_the_line_of_every_commands_error(
    work: Path, run_dir: Path
) -> None:
    (work / "a\nfile").write_text("in the way")
    commands: list[tuple[list[str | Path], int, str]] = [
        (["plot", "no\nrun"], 2, "The run folder no\\nrun does not exist"),
        (["train", "--resume", "no\nrun"], 2, "'no\\nrun' is not a run directory"),
        (["train", "--out", "a\nfile"], 2, "--out 'a\\nfile' is a file"),
        (["data", "import", "no\nmnist"], 2, "Cannot import MNIST from no\\nmnist"),
        (["export", "-o", "a\nfile/m.onnx", "-m", run_dir], 2, "'a\\nfile' in --out"),
        (["sweep", "show", "no\nsweep"], 2, "'no\\nsweep' is not a sweep folder"),
    ]
    for args, exit_code, said in commands:
        code, _, err = run(*args)
        assert code == exit_code, (args, err)
        assert said in err.replace("\n", ""), (args, err)  # rich folds long lines
        assert not any(f"{a}\n{b}" in err for a, b in ("or", "af", "os", "om")), err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc on this system")
def test_names_with_line_breaks_stay_on_the_line_of_path_limit_and_cache_errors(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, closed_port_url: str
) -> None:
    # short names, but a path that leaves no room for a file inside it
    deep = tmp_path.joinpath("a\nb", *["d"] * (os.pathconf(tmp_path, "PC_PATH_MAX") // 2 - 8))
    code, _, err = run("evaluate", "--model", run_dir, "--misclassified", deep)
    assert code == 2, err
    assert f"'{tmp_path}/a\\nb/d/d/" in err.replace("\n", ""), err  # rich folds long lines
    assert "leaves no room for the names inside it" in " ".join(err.split())
    assert "a\nb" not in err

    monkeypatch.setenv(data.DATA_DIR_ENV, "/proc/no\ncache")
    code, _, err = run("data", "fetch", "--mirror", closed_port_url)
    assert code == 2, err
    assert "cache folder /proc/no\\ncache (set by MLP_DATA_DIR)" in " ".join(err.split())
    assert "no\ncache" not in err


def test_paths_with_markup_in_train_evaluate_inspect_show_and_plot(
    tmp_path: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short relative paths: the output lines are not folded
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = Path("R[red]x[/]\x1b[2J")
    shown = str(out).replace("\x1b", "\\x1b")
    code, stdout, err = run("train", "-c", config, "--out", out)
    assert code == 0, err
    assert f"run directory: {shown}" in stdout.replace("\n", "")
    assert f"mlp evaluate --model '{shown}'" in stdout.replace("\n", "")  # shell-quoted
    commands: list[list[str | Path]] = [
        ["evaluate", "--model", out, "--plot", out / "conf[/].png"],
        ["inspect", "--model", out],
        ["show", "hidden", "--model", out, "--no-terminal"],
        ["plot", out],
    ]
    for args in commands:
        code, stdout, err = run(*args)
        assert code == 0, (args, err)
        assert shown in stdout.replace("\n", ""), args
        assert "\x1b" not in stdout


def test_paths_with_line_breaks_stay_on_their_line_in_train_show_plot_and_export(
    tmp_path: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short relative paths: the output lines are not folded
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = Path("R\nx")
    code, stdout, err = run("train", "-c", config, "--out", out)
    assert code == 0, err
    said = stdout.splitlines()
    assert "learning curves written to R\\nx/curves.png" in said
    assert any(line.startswith("model: R\\nx/model.npz ") for line in said), stdout
    assert any(line.endswith("run directory: R\\nx") for line in said), stdout
    commands: list[tuple[list[str | Path], str]] = [
        (["show", "hidden", "--model", out, "--no-terminal"], "units drawn to R\\nx/hidden.png"),
        (["plot", out], "learning curves written to R\\nx/curves.png"),
        (["export", "--model", out, "--out", out / "m.onnx"], "exported R\\nx/model.npz to R"),
    ]
    for args, line in commands:
        if args[0] == "export":
            pytest.importorskip("onnx")  # the export extra; the other commands were checked
        code, stdout, err = run(*args)
        assert code == 0, (args, err)
        assert any(line in said for said in stdout.splitlines()), (args, stdout)
        assert "R\nx" not in stdout, args


def test_a_config_name_with_markup_is_an_error_that_quotes_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.replace("name: tiny", 'name: "[bold]x[/]"'))
    code, _, err = run("train", "-c", config)
    assert code == 2
    assert "[bold]x[/]" in err
    code, _, err = run("train", "-c", tmp_path / "c.yaml", "--set", "name=[red]y[/red]")
    assert code == 2
    assert "[red]y[/red]" in err


def test_an_env_var_with_markup_and_escapes_is_printed_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "c[red]a[/]\x1b[31m"
    monkeypatch.setenv("MLP_DATA_DIR", str(cache))
    for command in (["data", "info"], ["data", "path"]):
        code, out, _ = run(*command)
        assert code == 0
        assert "\x1b" not in out
        assert "c[red]a[/]\\x1b[31m" in out.replace("\n", "")


def test_model_metadata_with_markup_is_printed_as_text() -> None:
    import io

    from rich.console import Console

    from mlp_cli.checkpoint import ModelMetadata, Preprocessing, SavedModel, TrainingSummary
    from mlp_cli.predict import Prediction
    from mlp_cli.render import print_model_summary, print_prediction

    names = [f"[red]c{i}[/]" for i in range(3)]
    meta: dict[str, Any] = {
        "format": "[bold]f",
        "format_version": 1,
        "layers": [4, 3],
        "hidden_activation": "relu",
        "output_activation": "[/]soft\x1b[2Jmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": 2, "normalize": None},
        "class_names": names,
        "training": {"status": "[blink]done", "epochs_run": 1},
        "package_version": "[/]",
        "created": "\x1b]0;title\x07",
        "data_hashes": {"[red]f": "[/]"},
    }
    # Values the schema would refuse, built without validation: the printing is under test.
    meta["preprocessing"] = Preprocessing.model_construct(**meta["preprocessing"])
    meta["training"] = TrainingSummary.model_construct(**meta["training"])
    typed = ModelMetadata.model_construct(**meta)
    saved = SavedModel([np.zeros((3, 4), np.float32)], [np.zeros(3, np.float32)], typed)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_model_summary(console, saved)
    image = np.zeros((28, 28), np.float32)
    print_prediction(console, Prediction("[b]p.png", 1, 0.5, [0.2, 0.5, 0.3], image), names, False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for value in ("[bold]f", "[/]soft\\x1b[2Jmax", "[blink]done", "\\x1b]0;title\\x07", "[red]f"):
        assert value in text, value
    assert "[red]c0[/]" in text
    assert "[b]p.png" in text
    assert "\x1b" not in text


# -- the mechanisms themselves ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_every_figure_format_carries_the_mark_and_a_users_picture_does_not(
    tmp_path: Path, suffix: str
) -> None:
    from mlp_cli import viz

    records = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "lr": 0.1}]
    ours = viz.plot_curves(records, tmp_path / f"c{suffix}")
    assert outputs.is_own_picture(ours)
    viz.plot_curves(records, ours)  # its own picture is replaced
    theirs = tmp_path / f"theirs{suffix}"
    digit_png(tmp_path / "x.png").rename(theirs)
    assert not outputs.is_own_picture(theirs)
    (tmp_path / "link.png").symlink_to(ours)
    assert not outputs.is_own_picture(tmp_path / "link.png")  # a link is not mlp's


def test_unique_names_number_repeats_also_across_letter_case() -> None:
    names = outputs.unique_names(["x", "x", "X", "x-2", "y"])
    assert names == [
        "x-input.png",
        "x-2-input.png",
        "X-3-input.png",
        "x-2-2-input.png",
        "y-input.png",
    ]


def test_a_link_to_nowhere_is_no_folder(tmp_path: Path) -> None:
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="link to nowhere"):
        outputs.check_folder(tmp_path / "gone" / "sub")


def test_start_leaves_no_run_folder_when_the_latest_link_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli.config import config_from_dict

    def fail(run_dir: Path) -> None:
        raise OutputError("no link today")

    monkeypatch.setattr(train, "update_latest", fail)
    cfg = config_from_dict(
        {
            "name": "t",
            "model": {"layers": [400, 10]},
            "data": {"input_size": 20},
            "output": {"dir": str(tmp_path / "runs")},
        }
    )
    with pytest.raises(OutputError):
        train.start(cfg, synthetic_splits())
    assert list((tmp_path / "runs").iterdir()) == []


def test_names_in_figures_are_drawn_as_text_not_tex(tmp_path: Path) -> None:
    from mlp_cli import viz

    names = ["$\\frac$", "a\x1b[2J", "$x^"]
    title = "run $\\undefined{$ [red]x[/]"
    viz.plot_confusion(np.eye(3), tmp_path / "c.png", class_names=names, title=title)
    viz.plot_curves([{"epoch": 1, "train_loss": 1.0}], tmp_path / "l.png", title=title)
    assert outputs.is_own_picture(tmp_path / "c.png")
    assert outputs.is_own_picture(tmp_path / "l.png")


def test_a_disk_found_full_before_training_exits_1_before_any_data_is_loaded(
    work: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (work / "tiny.yaml").write_text(CONFIG)
    monkeypatch.setattr(outputs, "tempfile", types.SimpleNamespace(mkdtemp=full, mkstemp=full))
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "R")
    assert code == 1
    assert "'R'" in err
    assert "disk is full" in err
    assert sorted(p.name for p in work.iterdir()) == ["tiny.yaml"]
    assert fake_data == []


def test_a_runs_curves_drawn_before_pictures_were_marked_are_redrawn(
    tmp_path: Path, run_dir: Path
) -> None:
    from matplotlib.figure import Figure

    legacy = run_dir / train.CURVES_FILE
    # what curves.png was before the mark: the curves figure, 14 x 4.8 inches at 120 dpi
    Figure(figsize=(14, 4.8), dpi=120).savefig(legacy, format="png")
    other = tmp_path / "chart.png"
    Figure().savefig(other, format="png")  # a user's own matplotlib chart
    kept = other.read_bytes()
    assert run("plot", run_dir)[0] == 0
    assert outputs.is_own_picture(legacy)
    code, _, err = run("plot", run_dir, "--out", other)
    assert code == 2
    assert str(other) in err
    assert other.read_bytes() == kept


def test_a_users_own_matplotlib_chart_saved_as_a_runs_curves_is_kept(run_dir: Path) -> None:
    from matplotlib.figure import Figure

    before = treesnap.snapshot(run_dir)
    users = run_dir / train.CURVES_FILE
    Figure().savefig(users, format="png")  # matplotlib's default size, not the curves figure
    kept = users.read_bytes()
    code, _, err = run("plot", run_dir)
    assert code == 2
    assert str(users) in err.replace("\n", "")
    assert "Traceback" not in err
    assert users.read_bytes() == kept
    users.unlink()
    assert treesnap.snapshot(run_dir) == before


def test_plot_leaves_the_curves_of_a_run_being_trained_to_its_trainer(
    run_dir: Path, tmp_path: Path
) -> None:
    before = treesnap.snapshot(run_dir)
    with locks.held(run_dir / train.LOCK_FILE):  # as the trainer holds it
        held = treesnap.snapshot(run_dir)
        into_run: list[list[str | Path]] = [[], ["--out", run_dir / train.CURVES_FILE]]
        for options in into_run:
            code, out, err = run("plot", run_dir, *options)
            said = " ".join(err.split())
            assert code == 2, out
            assert f"the run folder '{run_dir}' is in use by another mlp process (pid 4242)" in said
            assert f"mlp plot {run_dir} --out FILE" in said
            assert treesnap.snapshot(run_dir) == held  # no curves.png, the lock file as it was
        elsewhere = tmp_path / "so-far.png"
        code, _, err = run("plot", run_dir, "--out", elsewhere)
        assert code == 0, err
        assert outputs.is_own_picture(elsewhere)
    (run_dir / train.LOCK_FILE).unlink()
    assert run("plot", run_dir)[0] == 0
    assert not (run_dir / train.LOCK_FILE).exists()
    assert treesnap.snapshot(run_dir) != before  # curves.png is drawn now
    assert outputs.is_own_picture(run_dir / train.CURVES_FILE)


@pytest.mark.parametrize("kind", ["folder", "link-to-file"])
def test_a_lock_file_that_is_no_regular_file_is_refused_with_what_to_do_about_it(
    run_dir: Path, tmp_path: Path, kind: str
) -> None:
    lock = run_dir / train.LOCK_FILE
    if kind == "folder":
        lock.mkdir()
    else:
        (tmp_path / "mine").write_text("mine")
        lock.symlink_to(tmp_path / "mine")
    before = treesnap.snapshot(tmp_path)
    code, _, err = run("plot", run_dir)
    said = " ".join(err.split())
    assert code == 2
    assert f"cannot write the lock file of the run folder '{lock}'" in said
    assert "mlp keeps the run folder's lock at that name, so remove or rename it" in said
    assert "choose another path" not in said  # the lock's path is mlp's, not the user's
    assert treesnap.snapshot(tmp_path) == before
    # An output the user named is refused as before: another path is theirs to choose.
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "mine.png")
    code, _, err = run("plot", run_dir, "--out", link)
    assert code == 2
    assert "mlp replaces only regular files it may overwrite; choose another path" in " ".join(
        err.split()
    )


def _special(kind: str, folder: Path, name: str) -> Path:
    """Something at ``folder/name`` that a rename must never replace."""
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-fifo":
        os.mkfifo(folder / "a-fifo")
        path.symlink_to("a-fifo")
    elif kind == "link-to-nowhere":
        path.symlink_to("nowhere")
    elif kind == "link-to-folder":
        (folder / "mine").mkdir()
        path.symlink_to("mine")
    elif kind == "link-to-file":
        (folder / "mine.bin").write_bytes(b"mine")
        path.symlink_to("mine.bin")
    return path


@pytest.mark.parametrize(
    "kind", ["fifo", "link-to-fifo", "link-to-nowhere", "link-to-folder", "link-to-file"]
)
@pytest.mark.parametrize(
    "command",
    [
        ["export", "--model", "{run}", "--out", "{target}.onnx", "--force"],
        ["export", "--model", "{run}", "--out", "{target}.onnx"],
        ["plot", "{run}", "--out", "{target}.png"],
        ["show", "hidden", "--model", "{run}", "--out", "{target}.png", "--no-terminal"],
        ["evaluate", "--model", "{run}", "--plot", "{target}.png"],
    ],
    ids=["export-force", "export", "plot", "show-hidden", "evaluate-plot"],
)
def test_no_writer_replaces_a_fifo_a_folder_or_a_link(
    tmp_path: Path, run_dir: Path, fake_data: list[str], kind: str, command: list[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    name = "t.onnx" if "export" in command else "t.png"
    target = _special(kind, out, name)
    before = treesnap.snapshot(tmp_path)
    args = [a.format(run=run_dir, target=out / "t") for a in command]
    code, _, err = run(*args)
    assert code == 2, err
    assert str(target) in err.replace("\n", "")
    assert treesnap.snapshot(tmp_path) == before
    assert fake_data == []


def test_save_picture_refuses_a_fifo_that_appeared_after_the_check(tmp_path: Path) -> None:
    target = tmp_path / "p.png"
    os.mkfifo(target)
    with pytest.raises(UsageError, match="FIFO"):
        outputs.save_picture(target, "picture", lambda f: f.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == ["p.png"]  # no temporary file left either
    assert stat.S_ISFIFO(os.lstat(target).st_mode)


def test_a_picture_refused_after_its_check_is_named_as_the_check_names_it(
    tmp_path: Path,
) -> None:
    from mlp_cli import viz

    target = tmp_path / "p.png"
    os.mkfifo(target)  # appeared after the command's check_picture
    with pytest.raises(UsageError) as hidden:
        viz.save_hidden_png(np.ones((1, 4)), 2, target, "layer 1 units")
    with pytest.raises(UsageError) as figure:
        viz.plot_confusion(np.eye(2), target)
    assert f"cannot write the picture of hidden units '{target}'" in str(hidden.value)
    assert f"cannot write the figure '{target}'" in str(figure.value)


def test_a_fifo_is_described_alike_where_mlp_would_read_and_where_it_would_write(
    run_dir: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code, _, read_err = run("config", "show", fifo)
    assert code == 2
    code, _, write_err = run("plot", run_dir, "--out", fifo)
    assert code == 2
    for err in (read_err, write_err):
        assert "it is a named pipe (FIFO)" in " ".join(err.split())


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_written_in_place_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    """Not mkstemp's private 0600: a model in a shared runs folder is as readable as any
    file the user makes there."""
    before = os.umask(umask)
    try:
        path = tmp_path / "model.npz"
        outputs.atomic_write(path, lambda f: f.write(b"x"))
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    finally:
        os.umask(before)


# -- latest: only mlp's own link to a run beside it is replaced --------------------------------


@pytest.mark.parametrize(
    "link", ["to-a-file", "to-a-folder", "to-nowhere-below", "to-itself", "absolute-elsewhere"]
)
@pytest.mark.parametrize("where", ["--out", "output.dir"])
def test_a_users_link_named_latest_is_never_replaced(
    work: Path, fake_data: list[str], link: str, where: str
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    parent = work / "P"
    parent.mkdir()
    latest = parent / "latest"
    if link == "to-a-file":
        (parent / "user.txt").write_text("mine")
        latest.symlink_to("user.txt")
    elif link == "to-a-folder":
        (parent / "mine").mkdir()
        (parent / "mine" / "notes.txt").write_text("mine")
        latest.symlink_to("mine")
    elif link == "to-nowhere-below":  # not a sibling: not the link mlp makes
        latest.symlink_to(os.path.join("sub", "nowhere"))
    elif link == "to-itself":
        latest.symlink_to("latest")
    else:
        (work / "elsewhere").mkdir()
        (work / "elsewhere" / "config.yaml").write_text("name: not-a-sibling\n")
        latest.symlink_to(work / "elsewhere")
    before = treesnap.snapshot(work)
    place = ["--out", parent / "run1"] if where == "--out" else ["--set", f"output.dir={parent}"]
    code, _, err = run("train", "--config", "tiny.yaml", *place)
    assert code == 2
    assert str(latest) in err.replace("\n", "")
    assert "link" in err
    assert treesnap.snapshot(work) == before
    assert fake_data == []


def test_latest_naming_a_run_beside_it_is_replaced_and_resume_through_it_keeps_it(
    work: Path, fake_data: list[str]
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    assert run("train", "-c", "tiny.yaml", "--out", "P/a", "-q")[0] == 0
    os.remove(work / "P" / "latest")
    (work / "P" / "latest").symlink_to(work / "P" / "a")  # a sibling by its absolute path
    assert run("train", "-c", "tiny.yaml", "--out", "P/b", "-q")[0] == 0
    assert os.readlink(work / "P" / "latest") == "b"


def test_latest_linking_to_a_deleted_run_is_replaced(work: Path, fake_data: list[str]) -> None:
    """A run folder deleted by hand leaves mlp's link naming nothing: the next run replaces
    it (a plain file naming nothing is not: it may be a user's notes, as above)."""
    (work / "tiny.yaml").write_text(CONFIG)
    assert run("train", "-c", "tiny.yaml", "--out", "P/a", "-q")[0] == 0
    shutil.rmtree(work / "P" / "a")
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "P/b", "-q")
    assert code == 0, err
    assert os.readlink(work / "P" / "latest") == "b"


def test_a_plain_file_latest_naming_a_deleted_run_is_refused_saying_what_it_names(
    work: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where symlinks are not available mlp writes latest as a file naming the run; once
    that run is deleted, the refusal says what the file names and that it may be mlp's
    own (it may be a user's notes too, so it stays)."""
    (work / "tiny.yaml").write_text(CONFIG)

    def no_symlinks(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "symlinks are not available")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "symlink_to", no_symlinks)
        assert run("train", "-c", "tiny.yaml", "--out", "P/a", "-q")[0] == 0
    assert (work / "P" / "latest").read_text() == "a"  # mlp's plain-file link
    shutil.rmtree(work / "P" / "a")
    before = treesnap.snapshot(work)
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "P/b", "-q")
    assert code == 2
    text = " ".join(err.split())
    assert (
        "'P/latest' is a file naming 'a', which is no run folder beside it (a file that mlp did"
        " not make, or its link to a run deleted since)" in text
    )
    assert treesnap.snapshot(work) == before


@pytest.mark.parametrize("where", ["--out", "name"])
def test_the_reserved_name_latest_is_refused_before_data_is_loaded(
    work: Path, fake_data: list[str], where: str
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    (work / "P").mkdir()
    before = treesnap.snapshot(work)
    place = ["--out", "P/latest"] if where == "--out" else ["--set", "name=latest"]
    code, _, err = run("train", "-c", "tiny.yaml", "--set", "output.dir=P", *place)
    assert code == 2
    assert "'latest'" in err
    assert "link to the newest run" in err
    assert "did not make" not in err
    assert treesnap.snapshot(work) == before
    assert fake_data == []


def test_a_parent_that_cannot_take_the_latest_link_is_refused_before_the_work(
    work: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    parent = work / "P"
    (parent / "empty").mkdir(parents=True)
    real = tempfile
    monkeypatch.setattr(
        outputs,
        "tempfile",
        types.SimpleNamespace(
            mkstemp=lambda *a, **k: _only(real.mkstemp, parent, *a, **k),
            mkdtemp=lambda *a, **k: _only(real.mkdtemp, parent, *a, **k),
        ),
    )
    before = treesnap.snapshot(work)
    code, _, err = run("train", "-c", "tiny.yaml", "--out", parent / "empty")
    assert code == 2
    assert str(parent) in err
    assert "read-only" in err
    assert "Free some space" not in err
    assert treesnap.snapshot(work) == before
    assert fake_data == []


def _only(make: Any, refused: Path, *args: Any, **kwargs: Any) -> Any:
    """`make` (mkstemp or mkdtemp), failing as a read-only mount would in `refused`."""
    if Path(kwargs["dir"]) == refused:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    return make(*args, **kwargs)


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "Free some space"),
        (errno.EROFS, "Choose a place you can write to"),
        (errno.ENAMETOOLONG, "Choose a shorter name"),
        (errno.EFBIG, "Raise the limit on the size of files (`ulimit -f`)"),
    ],
)
def test_the_advice_after_a_write_error_fits_the_error(code: int, advice: str) -> None:
    with pytest.raises(OutputError) as caught, outputs.writing("/x/y.png", "the picture"):
        raise OSError(code, os.strerror(code))
    message = str(caught.value)
    assert "'/x/y.png'" in message
    assert advice in message
    if code != errno.ENOSPC:
        assert "Free some space" not in message


# -- over-long input paths: one message, never a traceback -------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--resume", LONG],
        ["train", "--config", f"{LONG}.yaml"],
        ["config", "show", f"{LONG}.yaml"],
        ["inspect", "--model", LONG],
        ["evaluate", "--model", LONG],
        ["show", "hidden", "--model", LONG],
        ["export", "--model", LONG, "--out", "x.onnx"],
        ["export", "--model", "{run}", "--out", f"x/{LONG}.onnx"],
        ["predict", f"{LONG}.png", "--model", "{run}"],
        ["data", "import", LONG],
        ["plot", LONG],
        ["data", "info"],
    ],
    ids=lambda a: "-".join(x for x in a if LONG not in x and "{" not in x),
)
def test_an_over_long_path_is_refused_with_one_message(
    work: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    if args == ["data", "info"]:
        monkeypatch.setenv("MLP_DATA_DIR", str(work / LONG))
    (work / "x").mkdir()
    before = treesnap.snapshot(work.parent)
    code, _, err = run(*(a.format(run=run_dir) for a in args))
    assert code == 2, err
    assert LONG[:60] in err.replace("\n", "")
    assert treesnap.snapshot(work.parent) == before


def test_a_glob_under_an_over_long_folder_matches_nothing_and_says_so(
    work: Path, run_dir: Path
) -> None:
    code, _, err = run("predict", f"d/{LONG}/*.png", "--model", run_dir)
    assert code == 1
    assert LONG[:60] in err.replace("\n", "")


# -- names as long as the file system allows can be written ------------------------------------


def test_a_name_of_the_largest_allowed_length_is_written(tmp_path: Path, run_dir: Path) -> None:
    out = tmp_path / "H"
    out.mkdir()
    limit = os.pathconf(out, "PC_NAME_MAX")
    commands: list[tuple[list[str | Path], Path]] = []
    writers: list[tuple[str, list[str | Path]]] = [
        (".png", ["plot", run_dir, "--out"]),
        (".png", ["show", "hidden", "--model", run_dir, "--no-terminal", "--out"]),
        (".onnx", ["export", "--model", run_dir, "--out"]),
    ]
    for suffix, command in writers:
        target = out / (str(len(commands)) * (limit - len(suffix)) + suffix)
        commands.append(([*command, target], target))
    long = out / ("z" * limit)
    checkpoint.atomic_write(long, lambda f: f.write(b"data"))
    assert long.read_bytes() == b"data"
    for args, target in commands:
        if args[0] == "export":
            pytest.importorskip("onnx")  # the export extra; the pictures were checked
        code, _, err = run(*args)
        assert code == 0, err
        assert target.is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [t.name for _, t in commands] + [long.name]
    )


# -- text that is not UTF-8 or holds controls reaches the terminal escaped -----------------------


def test_undecodable_bytes_of_a_name_are_shown_as_escapes() -> None:
    from mlp_cli.plain import escape_controls

    name = os.fsdecode(b"bad\x9b\xff\x1b[2J.png")
    assert escape_controls(name) == "bad\\x9b\\xff\\x1b[2J.png"
    assert escape_controls("\ud800") == "\\ud800"
    assert escape_controls("ok é\t\n") == "ok é\t\n"


def test_json_output_writes_undecodable_bytes_as_escapes_in_tuples_and_keys_too() -> None:
    from mlp_cli.plain import json_text

    name = os.fsdecode(b"bad\xff.png")
    written = r"bad\xff.png"  # as a backslash, an x and two hex digits
    assert json.loads(json_text({name: (name, [name])})) == {written: [written, [written]]}


def test_an_undecodable_file_name_in_an_error_is_escaped(tmp_path: Path, run_dir: Path) -> None:
    bad = tmp_path / os.fsdecode(b"bad\x9b\xff.txt")
    code, _, err = run("plot", run_dir, "--out", bad)
    assert code == 2
    assert "bad\\x9b\\xff.txt" in err
    assert "\udc9b" not in err
    assert "\x9b" not in err


def test_data_info_json_is_ascii_and_writes_a_strange_folder_name_as_predict_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = str(tmp_path / "dd\x9b\x1b[31m") + os.fsdecode(b"\xff")
    monkeypatch.setenv("MLP_DATA_DIR", folder)
    code, out, _ = run("data", "info", "--json")
    assert code == 0
    assert out.isascii()
    # The byte 0xff is written as predict --json writes it, not as the surrogate "\udcff".
    shown = str(tmp_path / "dd\x9b\x1b[31m") + "\\xff"
    info = json.loads(out)
    assert info["data_dir"] == shown
    assert {Path(f["path"]).parent for f in info["files"]} == {Path(shown)}


# -- resume checks its curves.png before training ----------------------------------------------


@pytest.mark.parametrize(
    "name", [train.CURVES_FILE, train.METRICS_FILE, checkpoint.MODEL_FILE, train.CONFIG_FILE]
)
def test_resume_refuses_what_it_must_not_replace_before_loading_data(
    work: Path, fake_data: list[str], name: str
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    assert run("train", "-c", "tiny.yaml", "--out", "R/run", "-q")[0] == 0
    target = work / "R" / "run" / name
    if name == train.CURVES_FILE:
        target.unlink()
        digit_png(target)  # the user's own picture, under that name
    elif name == train.CONFIG_FILE:
        target.rename(work / "R" / "mine.yaml")
        target.symlink_to("../mine.yaml")  # read through the link, replaced by the rename
    else:
        target.unlink()
        os.mkfifo(target)
    fake_data.clear()
    before = treesnap.snapshot(work)
    code, _, err = run("train", "--resume", "R/run", "--set", "training.epochs=2")
    assert code == 2
    assert str(Path("R") / "run" / name) in err
    assert treesnap.snapshot(work) == before
    assert fake_data == []


def test_a_failure_to_draw_curves_reads_as_sentences(
    work: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import viz

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OutputError("could not draw the curves")

    monkeypatch.setattr(viz, "plot_curves", fail)
    (work / "tiny.yaml").write_text(CONFIG)
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "R/my run", "-q")
    assert code == 1
    text = " ".join(err.split())
    assert "could not draw the curves. The weights are safe" in text
    assert "mlp plot 'R/my run'" in text


# -- one command's outputs never overwrite each other ------------------------------------------


@pytest.mark.parametrize(
    ("plot", "refused"),
    [("gallery.png", True), ("001-index7-true1-pred2.png", True), ("confusion.png", False)],
)
def test_a_plot_where_misclassified_writes_is_refused_before_the_work(
    tmp_path: Path, run_dir: Path, fake_data: list[str], plot: str, refused: bool
) -> None:
    folder = tmp_path / "M9"
    before = treesnap.snapshot(tmp_path)
    code, _, err = run(
        "evaluate", "--model", run_dir, "--misclassified", folder, "--count", "2",
        "--plot", folder / plot,
    )  # fmt: skip
    if not refused:
        assert code == 0, err
        assert outputs.is_own_picture(folder / plot)
        assert outputs.is_own_picture(folder / "gallery.png")
        return
    assert code == 2
    assert str(folder / plot) in err.replace("\n", "")
    assert treesnap.snapshot(tmp_path) == before
    assert fake_data == []


@pytest.mark.parametrize("folder", ["mistakes.png", "mistakes.png/worst"])
def test_a_plot_where_misclassified_makes_its_folder_is_refused_before_the_work(
    tmp_path: Path, run_dir: Path, fake_data: list[str], folder: str
) -> None:
    plot = tmp_path / "mistakes.png"
    before = treesnap.snapshot(tmp_path)
    code, _, err = run(
        "evaluate", "--model", run_dir, "--misclassified", tmp_path / folder, "--count", "2",
        "--plot", plot,
    )  # fmt: skip
    assert code == 2
    assert f"the --plot file '{plot}' is where --misclassified" in " ".join(err.split())
    assert treesnap.snapshot(tmp_path) == before
    assert fake_data == []


def test_the_heatmap_of_runs_latest_names_the_run_it_links_to(
    tmp_path: Path, run_dir: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import viz

    (run_dir.parent / "latest").symlink_to(run_dir.name)
    titles: list[str] = []
    draw = viz.plot_confusion

    def plot_confusion(*args: Any, **kwargs: Any) -> Path:
        titles.append(kwargs["title"])
        return draw(*args, **kwargs)

    monkeypatch.setattr(viz, "plot_confusion", plot_confusion)
    code, _, err = run(
        "evaluate", "--model", run_dir.parent / "latest", "--plot", tmp_path / "c.png"
    )
    assert code == 0, err
    [title] = titles
    assert title.startswith(f"{run_dir.name}: test split, accuracy ")


def test_the_heatmap_of_a_model_file_outside_a_run_names_the_file_not_its_folder(
    tmp_path: Path, fake_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import viz

    (tmp_path / "models").mkdir()
    model = save_random_model(tmp_path / "models" / "deep.npz")
    titles: list[str] = []
    draw = viz.plot_confusion

    def plot_confusion(*args: Any, **kwargs: Any) -> Path:
        titles.append(kwargs["title"])
        return draw(*args, **kwargs)

    monkeypatch.setattr(viz, "plot_confusion", plot_confusion)
    code, _, err = run("evaluate", "--model", model, "--plot", tmp_path / "c.png")
    assert code == 0, err
    [title] = titles
    assert title.startswith("deep.npz: test split, accuracy ")


# -- small things: what a path is, the cache folder, commands to copy ----------------------------


def test_out_on_a_link_to_nowhere_says_so(work: Path, fake_data: list[str]) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    (work / "dl").symlink_to("nowhere")
    before = treesnap.snapshot(work)
    code, _, err = run("train", "-c", "tiny.yaml", "--out", "dl")
    assert code == 2
    assert "'dl' is a link to nowhere" in err
    assert treesnap.snapshot(work) == before


def test_a_cache_folder_that_is_a_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.write_text("mine")
    (tmp_path / "src").mkdir()
    monkeypatch.setenv("MLP_DATA_DIR", str(cache))
    before = treesnap.snapshot(tmp_path)
    for command in (["data", "import", tmp_path / "src"], ["data", "info"], ["data", "fetch"]):
        code, _, err = run(*command)
        assert code == 2
        assert str(cache) in err.replace("\n", "")
        assert "is a file, not a folder" in err.replace("\n", " ")
        assert "Free some" not in err
    assert treesnap.snapshot(tmp_path) == before


def test_commands_printed_to_copy_are_shell_quoted(work: Path, fake_data: list[str]) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    out = "my runs/a;touch PWNED #"
    code, stdout, err = run("train", "-c", "tiny.yaml", "--out", out)
    assert code == 0, err
    assert "next: mlp evaluate --model 'my runs/a;touch PWNED #'" in stdout.replace("\n", "")
    code, _, err = run("train", "-c", "tiny.yaml", "--out", out)
    assert code == 2
    assert "mlp train --resume 'my runs/a;touch PWNED #'" in err.replace("\n", "")


@pytest.mark.parametrize("name", ["checkpoint.npz", "model-copy.bin", "new.npz"])
def test_export_never_replaces_a_model_or_checkpoint_even_with_force(
    run_dir: Path, name: str
) -> None:
    target = run_dir / name
    if name == "model-copy.bin":
        target.write_bytes((run_dir / checkpoint.MODEL_FILE).read_bytes())
    before = treesnap.snapshot(run_dir)
    code, _, err = run("export", "--model", run_dir, "--out", target, "--force")
    assert code == 2
    assert str(target) in err.replace("\n", "")
    assert "model or checkpoint" in err
    assert treesnap.snapshot(run_dir) == before


@pytest.mark.parametrize(
    ("code", "exit_code"), [(errno.ENAMETOOLONG, 2), (errno.ENOTDIR, 2), (errno.EIO, 1)]
)
def test_a_stray_os_error_naming_a_path_is_one_message(
    monkeypatch: pytest.MonkeyPatch, code: int, exit_code: int
) -> None:
    import mlp_cli.cli

    def fail(model: Any) -> Any:
        raise OSError(code, os.strerror(code), "/some/where/model.npz")

    monkeypatch.setattr(mlp_cli.cli, "_load_model", fail)
    status, _, err = run("inspect")
    assert status == exit_code
    assert "'/some/where/model.npz'" in err
    assert os.strerror(code) in err


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{a}"],
        ["predict", "{a}", "{b}"],
        ["predict", "{a}", "{b}", "--json"],
        ["evaluate", "--model", "{run}", "--json"],
        ["evaluate", "--model", "{run}"],
        ["export", "--model", "{run}", "--out", "{run}/model.onnx"],
    ],
    ids=["predict-one", "predict-two", "predict-json", "evaluate-json", "evaluate", "export"],
)
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_a_model_whose_forward_pass_overflows_is_refused_on_every_path(
    tmp_path: Path, run_dir: Path, fake_data: list[str], command: list[str], output: str
) -> None:
    # Finite float32 weights whose products overflow in the first layer: a sigmoid output
    # turns the infinite logits into probabilities of exactly 1, which look like numbers.
    saved = checkpoint.load(run_dir / checkpoint.MODEL_FILE)
    weights = [w.copy() for w in saved.weights]
    weights[0][...] = 3e38
    weights[1][...] = np.abs(weights[1])  # every logit +inf, none NaN
    meta = {
        k: v
        for k, v in saved.meta.model_dump(mode="json", exclude_unset=True).items()
        if k not in ("format", "format_version")
    }
    if output == "sigmoid":
        meta |= {"output_activation": "sigmoid", "loss": "mse"}
    checkpoint.save(run_dir / checkpoint.MODEL_FILE, weights, saved.biases, meta)
    pictures = {"a": digit_png(tmp_path / "a.png"), "b": digit_png(tmp_path / "b.png")}
    args = [a.format(run=run_dir, **pictures) for a in command]
    if args[0] == "predict":
        args += ["--model", str(run_dir)]
    if args[0] == "export":
        pytest.importorskip("onnx")
    before = treesnap.snapshot(tmp_path)

    code, out, err = run(*args)

    assert code == 1, out + err
    message = " ".join(err.split())
    assert "computes outputs that are not finite numbers" in message
    assert str(run_dir / checkpoint.MODEL_FILE) in message
    assert "NaN" not in out
    assert "Infinity" not in out
    assert treesnap.snapshot(tmp_path) == before


def test_a_model_whose_outputs_are_not_finite_is_named_on_one_line() -> None:
    from mlp_cli.predict import check_logits

    saved = types.SimpleNamespace(path=Path("runs/two\nlines/model.npz"))
    with pytest.raises(MLPError) as refused:
        check_logits(saved, np.array([[np.inf, 0.0]], np.float32))  # type: ignore[arg-type]
    assert "'runs/two\\nlines/model.npz' computes outputs that are not finite" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "command", [["data", "info"], ["data", "path"], ["train", "-c", "tiny.yaml"]]
)
def test_an_xdg_cache_home_where_no_folder_can_be_is_a_usage_error(
    work: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    (work / "tiny.yaml").write_text(CONFIG)
    (work / "file").write_text("mine")
    monkeypatch.delenv(data.DATA_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(work / "file"))
    before = treesnap.snapshot(work)

    code, out, err = run(*command)

    message = " ".join(err.split())
    assert code == 2, out + err
    assert f"XDG_CACHE_HOME is '{work / 'file'}'" in message
    assert "where no folder can be" in message
    assert treesnap.snapshot(work) == before


@pytest.mark.parametrize("value", ["~nosuchuser-mlp/cache", "~"])
def test_an_xdg_cache_home_that_is_not_absolute_is_ignored_as_the_os_cache_ignores_it(
    work: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV)
    monkeypatch.setenv("HOME", str(work))
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    (work / ".cache").write_text("mine")  # the default cache's trouble, not the variable's
    before = treesnap.snapshot(work)

    code, out, err = run("data", "path")

    assert code == 0, out + err
    assert out == f"{work / '.cache' / 'mlp' / 'mnist'}\n"
    assert treesnap.snapshot(work) == before


@pytest.mark.parametrize(
    "command", [["data", "info"], ["data", "path"], ["train", "-c", "tiny.yaml"]]
)
def test_no_home_folder_for_the_default_cache_is_a_usage_error(
    work: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # As for a user ID without an entry in /etc/passwd (`env -i`, a container's random
    # user): no HOME, and no home folder the system knows.
    (work / "tiny.yaml").write_text(CONFIG)
    pwd = pytest.importorskip("pwd")
    for variable in (data.DATA_DIR_ENV, "HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)

    def unknown(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    before = treesnap.snapshot(work)

    code, out, err = run(*command)

    message = " ".join(err.split())
    assert code == 2, out + err
    assert "HOME is not set, and the system knows no home folder for this user" in message
    assert f"Set {data.DATA_DIR_ENV} to a folder" in message
    assert treesnap.snapshot(work) == before


@pytest.mark.parametrize("home", ["relative/home", "~"])
def test_a_relative_home_without_a_home_folder_is_named_as_such(
    work: Path, monkeypatch: pytest.MonkeyPatch, home: str
) -> None:
    # platformdirs takes HOME only as an absolute path: a relative one counts as none
    pwd = pytest.importorskip("pwd")
    for variable in (data.DATA_DIR_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", home)

    def unknown(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    before = treesnap.snapshot(work)

    code, out, err = run("data", "path")

    message = " ".join(err.split())
    assert code == 2, out + err
    assert f"HOME is '{home}', not an absolute path, and the system knows no home" in message
    assert "HOME is not set" not in message
    assert treesnap.snapshot(work) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc on this system")
@pytest.mark.parametrize("variable", [data.DATA_DIR_ENV, "XDG_CACHE_HOME"])
def test_a_cache_variable_naming_a_place_without_new_files_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str, variable: str
) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV)
    monkeypatch.setenv(variable, "/proc/mlp-cache")

    code, out, err = run("data", "fetch", "--mirror", closed_port_url)

    message = " ".join(err.split())
    assert code == 2, out + err
    assert "/proc/mlp-cache" in message
    assert f"(set by {variable})" in message


@pytest.mark.parametrize("kind", ["name-too-long", "dev-null", "file"])
@pytest.mark.parametrize("command", [["data", "info"], ["data", "path"]], ids=["info", "path"])
def test_a_cache_variable_where_no_folder_can_be_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, command: list[str]
) -> None:
    (tmp_path / "file").write_text("mine")
    value = {"name-too-long": "x" * 5000, "dev-null": "/dev/null", "file": str(tmp_path / "file")}
    monkeypatch.setenv("MLP_DATA_DIR", value[kind])
    before = treesnap.snapshot(tmp_path)

    code, out, err = run(*command)

    message = " ".join(err.split())
    assert code == 2, out + err
    assert "MLP_DATA_DIR" in message
    expected = "is a file, not a folder" if kind != "name-too-long" else "where no folder can be"
    assert expected in message
    assert out == ""
    assert treesnap.snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [["data", "info"], ["data", "path"]], ids=["info", "path"])
def test_a_cache_variable_naming_a_link_to_no_folder_says_so_not_that_it_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "unmounted").symlink_to(tmp_path / "drive" / "mnist")
    (tmp_path / "renamed").symlink_to(tmp_path / "unmounted")  # 'unmounted' is there, a link
    before = treesnap.snapshot(tmp_path)
    expected = {
        "loop": "where no folder can be",
        "unmounted": f"a link to '{tmp_path / 'drive' / 'mnist'}', which does not exist",
        "renamed": f"a link to '{tmp_path / 'unmounted'}', which leads to "
        f"'{tmp_path / 'drive' / 'mnist'}', which does not exist",
        "unmounted/mnist": f"under '{tmp_path / 'unmounted'}', a link to '{tmp_path / 'drive'}",
    }
    for name, said in expected.items():
        monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / name))

        code, out, err = run(*command)

        message = " ".join(err.split())
        assert code == 2, out + err
        assert said in message
        assert "is a file" not in message
        assert out == ""
    assert treesnap.snapshot(tmp_path) == before


def test_a_new_folder_may_be_named_as_long_as_the_file_system_allows(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    outputs.check_folder(tmp_path / ("d" * limit) / "run")
    with pytest.raises(UsageError) as info:
        outputs.check_folder(tmp_path / ("d" * (limit + 1)) / "run")
    assert f"is {limit + 1} bytes long, and this file system allows at most {limit}" in str(
        info.value
    )


def _path_of(base: Path, size: int) -> Path:
    """A path below `base` of `size` bytes, in names of at most 200."""
    path = str(base)
    while len(path) < size:
        path += "/" + "p" * min(200, size - len(path) - 1)
    return Path(path)


def test_a_folder_is_refused_only_when_a_file_in_it_could_not_be_named(tmp_path: Path) -> None:
    # A file in the folder is its path, a "/" and a name of up to PC_NAME_MAX bytes, and a
    # path holds PC_PATH_MAX bytes with its terminating NUL.
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    most = os.pathconf(tmp_path, "PC_PATH_MAX") - 1 - limit - 1
    outputs.check_folder(_path_of(tmp_path, most))
    with pytest.raises(UsageError) as info:
        outputs.check_folder(_path_of(tmp_path, most + 1))
    assert f"its path is {most + 1} bytes long" in " ".join(str(info.value).split())


@pytest.mark.parametrize(
    ("code", "system", "said"),
    [
        (errno.EACCES, "Permission denied", "Permission denied"),  # said once, not twice
        (errno.ENOSPC, "No space left on device", "the disk is full (No space left on device)"),
        (errno.EIO, "Input/output error", "Input/output error"),
    ],
)
def test_a_write_error_is_said_in_words_once(code: int, system: str, said: str) -> None:
    assert outputs.reason(OSError(code, system)) == said


def test_a_link_is_named_by_what_it_points_to(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    for name in ("folder", "file", "pipe", "nowhere"):
        (tmp_path / f"to-{name}").symlink_to(tmp_path / name)
    assert [outputs.special_kind(tmp_path / f"to-{name}") for name in ("folder", "file")] == [
        "a link to a folder",
        "a link to a file",
    ]
    assert outputs.special_kind(tmp_path / "to-pipe") == "a link to a named pipe (FIFO)"
    assert outputs.special_kind(tmp_path / "to-nowhere") == "a link to nowhere"
    assert outputs.special_kind(tmp_path / "file") is None


def test_a_pictures_mark_is_found_at_either_end_of_a_large_file(tmp_path: Path) -> None:
    # A PDF's metadata, where the mark is, comes at its end.
    mark, filler = outputs.PICTURE_MARK.encode(), b"\0" * 200_000
    places = {"head": mark + filler, "tail": filler + mark, "middle": filler + mark + filler}
    for name, content in places.items():
        (tmp_path / f"{name}.pdf").write_bytes(content)
    found = {name: outputs.is_own_picture(tmp_path / f"{name}.pdf") for name in places}
    assert found == {"head": True, "tail": True, "middle": False}  # only the ends are read


def test_a_pictures_suffix_is_read_in_any_case_and_a_missing_one_is_said(tmp_path: Path) -> None:
    assert outputs.picture_format(Path("curves.PNG"), "figure") == "png"
    assert outputs.picture_format(Path("curves.Pdf"), "figure") == "pdf"
    with pytest.raises(UsageError) as info:
        outputs.picture_format(Path("curves"), "figure")
    assert str(info.value) == (
        "cannot write the figure 'curves': a name without a suffix is not a picture format mlp "
        "writes here; use a name ending in .png, .svg, .pdf"
    )


@pytest.mark.parametrize("letter", ["p", "é"])  # "é" is two bytes in UTF-8
def test_a_picture_name_one_byte_too_long_is_refused_before_the_work(
    tmp_path: Path, letter: str
) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    count = (limit + 1 - len(".png")) // len(letter.encode())
    name = letter * count + "p" * (limit + 1 - len(".png") - len((letter * count).encode()))
    path = tmp_path / f"{name}.png"
    assert len(os.fsencode(path.name)) == limit + 1
    with pytest.raises(UsageError) as info:
        outputs.check_picture(path)
    assert f"its name is {limit + 1} bytes long, and this file system allows at most {limit}" in (
        str(info.value)
    )


def test_two_outputs_told_apart_only_by_case_are_one_place(tmp_path: Path) -> None:
    # They are one file on a case-insensitive file system (macOS, Windows).
    with pytest.raises(UsageError) as info:
        outputs.check_distinct((tmp_path / "out.png", "figure"), (tmp_path / "OUT.png", "gallery"))
    assert "the gallery" in str(info.value)
    assert "is the same file as the figure" in str(info.value)
    outputs.check_distinct((tmp_path / "out.png", "figure"), (tmp_path / "out2.png", "gallery"))


def test_names_told_apart_only_by_case_are_made_unique_in_either_order() -> None:
    assert outputs.unique_names(["A", "a", "b", "B", "b"]) == [
        "A-input.png",
        "a-2-input.png",
        "b-input.png",
        "B-2-input.png",
        "b-3-input.png",
    ]


def test_a_file_where_a_folder_should_be_is_named_as_the_problem(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError) as info:
        outputs.check_folder(tmp_path / "notes.txt", "run folder")
    assert str(info.value) == (
        f"the run folder '{tmp_path}/notes.txt' is a file, not a folder; give the path of a "
        "folder (new, or one to write into)"
    )
    with pytest.raises(UsageError) as info:
        outputs.check_folder(tmp_path / "notes.txt" / "run", "run folder")
    assert str(info.value) == (
        f"cannot create the run folder '{tmp_path}/notes.txt/run': '{tmp_path}/notes.txt' is a "
        "file, not a folder"
    )


def test_a_folder_held_twice_by_one_process_stays_locked_until_both_let_go(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".lock"
    outer = outputs.FolderLock(path, "run folder", "training").acquire()
    inner = outputs.FolderLock(path, "run folder", "training").acquire()
    inner.release()
    assert path.is_file()  # still held by `outer`
    outer.release()
    assert not path.exists()


def test_a_file_being_written_has_a_hidden_short_temporary_name(tmp_path: Path) -> None:
    name = outputs.temp_path(tmp_path / ("x" * 200)).name
    assert name.startswith(".mlp-")  # hidden from ls while it is written
    assert name.endswith(".tmp")
    assert len(name) == len(".mlp-") + 12 + len(".tmp")  # whatever the destination's name


def test_a_write_error_gives_the_callers_hint_in_place_of_the_usual_advice() -> None:
    with pytest.raises(OutputError) as info, outputs.writing(Path("s.json"), "the state", "Hint."):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == (
        "could not write the state 's.json': the disk is full (No space left on device). Hint."
    )
