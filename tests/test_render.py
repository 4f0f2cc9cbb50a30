"""Tests for mlp_cli.render's pictures in the terminal: half blocks, grid width, labels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import colormaps
from rich.console import Console
from test_evaluate import scored
from tiny_models import save_random_model

from mlp_cli import checkpoint, data, viz
from mlp_cli.evaluate import Evaluation
from mlp_cli.predict import Prediction
from mlp_cli.render import (
    RAMP,
    PredictionRows,
    TrainDisplay,
    confusion_table,
    plan_table,
    prediction_summary,
    print_evaluation,
    print_model_summary,
    print_prediction,
    probability_bars,
    render_hidden_terminal,
    sweep_reasons,
    sweep_table,
)
from mlp_cli.sweep import Sweep, Trial

LUT = colormaps[viz.CMAP](np.arange(256), bytes=True)[:, :3]  # (256, 3) the colour map's table
RED, BLUE, MIDDLE = LUT[255], LUT[0], LUT[128]  # colours of +max, -max and 0


def render(renderable: Any, width: int = 80) -> tuple[Console, list[str]]:
    console = Console(width=width, record=True, file=io.StringIO(), color_system="truecolor")
    console.print(renderable)
    return console, console.export_text().splitlines()


def unit_labels(lines: list[str]) -> list[int]:
    """The numbers on the lines made of numbers only: the unit index above each tile."""
    numeric = [line.split() for line in lines if line.split() and line.replace(" ", "").isdigit()]
    return [int(tok) for tokens in numeric for tok in tokens]


@pytest.mark.parametrize(("n", "side"), [(25, 20), (36, 28), (10, 28), (3, 20)])
def test_terminal_grid_fits_80_columns_and_labels_every_unit(n: int, side: int) -> None:
    patterns = np.random.default_rng(11).standard_normal((n, side * side))
    _, lines = render(render_hidden_terminal(patterns, side))
    assert max(len(line) for line in lines) <= 80
    assert unit_labels(lines) == list(range(n))
    assert sum(line.count("▀") for line in lines) > 0


@pytest.mark.parametrize("side", [1, 2])
def test_tiles_narrower_than_their_index_are_labelled_with_all_of_it(side: int) -> None:
    patterns = np.random.default_rng(14).standard_normal((16, side * side))  # a model file's
    _, lines = render(render_hidden_terminal(patterns, side))
    assert unit_labels(lines) == list(range(16))


def test_terminal_shows_the_first_max_units_and_says_so() -> None:
    patterns = np.random.default_rng(12).standard_normal((50, 784))
    _, lines = render(render_hidden_terminal(patterns, 28, max_units=36))
    text = " ".join(" ".join(lines).split())  # the caption may wrap
    assert unit_labels(lines) == list(range(36))
    assert "first 36 of 50" in text
    _, lines = render(render_hidden_terminal(np.ones((1100, 4)), 2, max_units=36))
    assert "first 36 of 1,100 units" in " ".join(" ".join(lines).split())


def test_terminal_half_blocks_put_upper_pixel_in_front_and_lower_behind() -> None:
    stripes = np.where(np.arange(20)[:, None] % 2 == 0, 1.0, -1.0) * np.ones((1, 20))
    patterns = np.stack([stripes.ravel(), -stripes.ravel(), np.zeros(400)])
    console = Console(width=80, file=io.StringIO(), color_system="truecolor")
    renderable = render_hidden_terminal(patterns, 20)
    rows = console.render_lines(renderable, console.options, pad=False)
    cells = [
        [(ch, seg.style) for seg in row for ch in seg.text]
        for row in rows
        if any("▀" in seg.text for seg in row)
    ]
    assert len(cells) == 10  # 20 pixel rows, two per text row: 3 small tiles need no shrinking
    for row in cells:
        # unit 0 spans columns 0..19, one gap column, then unit 1
        for x, (want_fg, want_bg) in ((0, (RED, BLUE)), (21, (BLUE, RED)), (42, (MIDDLE,) * 2)):
            for ch, style in row[x : x + 20]:
                assert ch == "▀"
                assert style is not None
                assert style.color is not None
                assert style.bgcolor is not None
                assert tuple(style.color.get_truecolor()) == tuple(want_fg)
                assert tuple(style.bgcolor.get_truecolor()) == tuple(want_bg)
    assert all(ch == " " for row in cells for ch, _ in (row[20], row[41]))


@pytest.mark.parametrize("color_system", ["truecolor", None])
def test_weights_beyond_float32_draw_as_their_shape_when_tiles_are_shrunk(
    color_system: Any,
) -> None:
    # A deeper layer's product of weights can be finite in float64 but not in float32.
    patterns = np.random.default_rng(13).standard_normal((16, 784))
    drawn = []
    for scale in (1.0, 1e300):
        console = Console(width=80, record=True, file=io.StringIO(), color_system=color_system)
        console.print(render_hidden_terminal(patterns * scale, 28))
        drawn.append(console.export_text(styles=True))
    assert "19x19" in drawn[0]
    assert drawn[1] == drawn[0]


class _AsciiFile(io.StringIO):
    encoding = "ascii"  # as stdout is under PYTHONIOENCODING=ascii


@pytest.mark.parametrize("console_kind", ["no colour system", "NO_COLOR", "ascii encoding"])
def test_without_colour_the_tiles_are_a_character_ramp(console_kind: str) -> None:
    # Half blocks are drawn by their colours alone: without colour they would all look alike.
    stripes = np.where(np.arange(20)[:, None] % 2 == 0, 1.0, 0.0) * np.ones((1, 20))
    patterns = np.stack([stripes.ravel(), -np.ones(400), np.zeros(400)])
    if console_kind == "NO_COLOR":
        console = Console(width=80, file=io.StringIO(), color_system="truecolor", no_color=True)
    elif console_kind == "ascii encoding":
        console = Console(width=80, file=_AsciiFile(), color_system="truecolor")
    else:
        console = Console(width=80, file=io.StringIO(), color_system=None)
    console.print(render_hidden_terminal(patterns, 20))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert not any("▀" in line for line in lines)
    tiles = [line for line in lines if len(line) >= 62 and "@" in line]
    assert len(tiles) == 10  # 20 pixel rows, two to a text row, as with half blocks
    half = RAMP[round(0.5 * (len(RAMP) - 1))]  # a full row averaged with an empty one
    for line in tiles:
        assert line[:20] == half * 20
        assert line[21:41] == RAMP[-1] * 20  # -max draws as much ink as +max
        assert line[42:62] == RAMP[0] * 20
    assert "red" not in " ".join(lines)  # the caption does not speak of colours not shown
    assert "denser characters" in " ".join(" ".join(lines).split())


def test_an_ascii_console_gets_a_model_summary_in_ascii_with_whole_digests(
    tmp_path: Path,
) -> None:
    path = save_random_model(tmp_path / "model.npz", data_hashes=dict(data.MNIST_FILES))
    console = Console(width=80, file=_AsciiFile(), color_system=None)
    print_model_summary(console, checkpoint.load(path))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii()
    rows = text.split("sha256")[-1].splitlines()[2:-1]  # the digests' table, below its header
    digests = "".join(line.split("|")[2].strip() for line in rows)
    assert all(digest in digests for digest in data.MNIST_FILES.values())


@pytest.mark.parametrize("width", [30, 45])
def test_a_narrow_ascii_console_gets_the_model_summary_folded_never_cut(
    tmp_path: Path, width: int
) -> None:
    path = save_random_model(tmp_path / "model.npz", data_hashes=dict(data.MNIST_FILES))
    console = Console(width=width, file=_AsciiFile(), color_system=None)
    print_model_summary(console, checkpoint.load(path))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii()  # no "…" of a cut cell, which an ASCII console prints as "\u2026"
    cells = "".join(line.split("|")[-2].strip() for line in text.splitlines() if "|" in line)
    assert "softmax" in cells  # the output layer's activation, last column, folded whole


def test_class_names_with_line_breaks_and_tabs_stay_on_their_line(tmp_path: Path) -> None:
    names = ["a\nb", "c\td", "e"]
    image = np.zeros((28, 28), np.float32)
    prediction = Prediction("p.png", 1, 0.9, [0.05, 0.9, 0.05], image)
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    print_prediction(console, prediction, names, False)
    lines = console.export_text().splitlines()
    assert lines[0] == "p.png: c\\td (90.0%)   top 3: c\\td 90.0%, a\\nb 5.0%, e 5.0%"
    assert [line.split()[0] for line in lines[1:]] == ["a\\nb", "c\\td", "e"]  # one per class
    PredictionRows(console, names, ["p.png", "q.png"]).print([prediction] * 2)
    rows = [line.split() for line in console.export_text().splitlines()]
    assert rows[:1] + rows[2:] == [
        ["file", "digit", "probability", "runner-up", "probability"],
        ["p.png", "c\\td", "90.00%", "a\\nb", "5.00%"],
        ["p.png", "c\\td", "90.00%", "a\\nb", "5.00%"],
    ]
    path = save_random_model(tmp_path / "m.npz", (784, 3), class_names=names)
    print_model_summary(console, checkpoint.load(path))
    summary = [line.rstrip() for line in console.export_text().splitlines()]
    assert "classes       a\\nb, c\\td, e" in summary


@pytest.mark.parametrize("width", [20, 40, 80])
def test_the_probability_bars_fit_a_narrow_console_on_one_line_each(width: int) -> None:
    image = np.zeros((28, 28), np.float32)
    prediction = Prediction("p.png", 1, 0.9, [0.05, 0.9, 0.05], image)
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    print_prediction(console, prediction, ["0", "1", "2"], False)
    bars = console.export_text().splitlines()[-3:]
    assert [line.split()[0] for line in bars] == ["0", "1", "2"]  # no line wrapped
    assert [line.split()[-1] for line in bars] == ["5.0%", "90.0%", "5.0%"]
    assert all(len(line) <= width for line in bars)
    assert bars[1].count("█") == round(0.9 * min(30, width - 11))


def test_the_prediction_table_of_a_one_output_model_has_no_runner_up() -> None:
    image = np.zeros((28, 28), np.float32)
    predictions = [Prediction(f"digit-{i}.png", 0, 0.7, [0.7], image) for i in range(4)]
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    PredictionRows(console, ["yes"], [p.file for p in predictions]).print(predictions)
    rows = [line.split() for line in console.export_text().splitlines()]
    assert rows[2:] == [[f"digit-{i}.png", "yes", "70.00%"] for i in range(4)]


def test_a_model_summary_says_what_the_file_does_not_record(tmp_path: Path) -> None:
    path = save_random_model(tmp_path / "model.npz")  # no training, version or date
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    print_model_summary(console, checkpoint.load(path))
    summary = [line.rstrip() for line in console.export_text().splitlines()]
    assert "training      not recorded in the file" in summary
    assert "written by    mlp (version not recorded) on (date not recorded)" in summary


@pytest.mark.parametrize(
    ("training", "shown"),
    [
        ({}, "training      (status not recorded), (epochs not recorded)"),
        ({"status": "completed", "epochs_run": 3}, "training      completed, 3 epochs"),
        ({"status": "completed", "epochs_run": 1}, "training      completed, 1 epoch"),
        (
            {"epochs_run": 3, "seconds": 75.0},
            "training      (status not recorded), 3 epochs in 1m15s",
        ),
    ],
)
def test_a_model_summary_says_which_training_facts_the_file_does_not_record(
    tmp_path: Path, training: dict[str, Any], shown: str
) -> None:
    path = save_random_model(tmp_path / "model.npz", training=training)
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    print_model_summary(console, checkpoint.load(path))
    summary = [line.rstrip() for line in console.export_text().splitlines()]
    assert shown in summary
    assert "None" not in console.export_text()


def test_a_narrow_ascii_console_gets_the_prediction_table_in_ascii() -> None:
    image = np.zeros((28, 28), np.float32)
    predictions = [Prediction(f"digit-{i}.png", 1, 0.9, [0.05, 0.9, 0.05], image) for i in range(4)]
    console = Console(width=50, file=_AsciiFile(), color_system=None)
    PredictionRows(console, ["0", "1", "2"], [p.file for p in predictions]).print(predictions)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii(), text
    assert "90.00%" in text


def test_an_evaluation_says_which_precision_and_recall_are_0_over_0() -> None:
    # "b" has no examples and "c" is never predicted: their recall and precision are 0/0.
    confusion = np.array([[5, 0, 0], [0, 0, 0], [2, 0, 0]])
    result = Evaluation(
        split="val",
        n=7,
        accuracy=5 / 7,
        loss=0.5,
        confusion=confusion,
        probabilities=np.full((7, 3), 1 / 3, np.float32),
        predictions=np.zeros(7, np.int64),
        labels=np.array([0] * 5 + [2] * 2, np.uint8),
        seconds=0.0,
        class_names=["a", "b", "[red]c"],
    )
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    print_evaluation(console, result, Path("model.npz"))
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert "│ b │ 0.00% │ 0.00% │ 0.00% │ 0 │" in lines  # as scikit-learn gives them
    assert (
        "0/0 is shown as 0, as scikit-learn does: the precision of b, [red]c (never "
        "predicted) and the recall of b (no examples)"
    ) in lines


def test_an_ascii_console_gets_evaluation_and_prediction_in_ascii() -> None:
    confusion = np.array([[5, 2, 0], [0, 4, 1], [0, 0, 3]])
    result = scored(confusion, ["0", "1", "2"])
    console = Console(width=100, file=_AsciiFile(), color_system=None)
    print_evaluation(console, result, Path("model.npz"))
    image = np.zeros((28, 28), np.float32)
    print_prediction(
        console, Prediction("p.png", 1, 0.9, [0.05, 0.9, 0.05], image), ["0", "1", "2"], False
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii()
    assert "0->1 (2)" in text
    assert "#" * 27 in text  # the bar of the 90% class


@pytest.mark.parametrize("width", [50, 60])
def test_a_narrow_console_folds_the_evaluation_tables_never_cutting_a_number(width: int) -> None:
    # Four-digit counts ("1,135") in eleven columns need 75 columns; narrower, a count cut to "1…"
    # would read as another number, and an ASCII console cannot print "…" at all.
    confusion = np.diag([1135, 980, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    result = scored(confusion, [str(d) for d in range(10)], loss=0.1)
    console = Console(width=width, file=_AsciiFile(), color_system=None)
    print_evaluation(console, result, Path("model.npz"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii()
    lines = text.split("confusion matrix")[1].splitlines()
    body = lines[[line.startswith("|-") for line in lines].index(True) + 1 :]  # under the header
    rows = [line.split("|") for line in body if line.count("|") == 12]
    cells = ["".join(row[d + 2] for row in rows).replace(" ", "") for d in range(10)]
    assert [cell.replace(".", "") for cell in cells] == [f"{c:,}" for c in np.diag(confusion)]


def test_a_sweep_of_one_trial_says_trial_not_trials() -> None:
    trials = [Trial(f"t{i:03d}", {"optimizer.lr": 0.1 * i}, {}, epochs=1) for i in range(5)]
    _, lines = render(plan_table(Sweep("s", Path("runs/s"), "val_acc", "maximize", trials[:1])))
    assert "sweep s: 1 trial (grid), into runs/s" in " ".join(" ".join(lines).split())
    for i, trial in enumerate(trials):
        trial.status, trial.best, trial.epoch = "completed", i / 10, 1
    sweep = Sweep("s", Path("runs/s"), "val_acc", "maximize", trials)
    _, lines = render(sweep_table(sweep, width=200, height=12), width=200)  # room for 4 rows
    assert "1 more trial: mlp sweep show DIR" in [line.strip() for line in lines]


@pytest.mark.parametrize("color_system", ["truecolor", None])
@pytest.mark.parametrize("width", [10, 20, 27])
def test_the_input_shown_in_a_console_narrower_than_it_is_shrunk_not_cut(
    color_system: Any, width: int
) -> None:
    image = np.zeros((28, 28), np.float32)
    image[:, 24:] = 1.0  # a stroke at the right edge, which cutting would lose
    prediction = Prediction("p.png", 1, 0.9, [0.05, 0.9, 0.05], image)
    console = Console(width=width, record=True, file=io.StringIO(), color_system=color_system)
    print_prediction(console, prediction, ["0", "1", "2"], True)
    lines = console.export_text(styles=False).splitlines()
    picture = [line for line in lines if line and set(line) <= {"▀", *RAMP}]
    assert len(picture) == (width + 1) // 2  # two pixel rows a line, as wide as the console
    assert all(len(line) == width for line in picture)
    if color_system is None:  # the stroke is still there, at the right
        assert all(line[-1] != " " for line in picture)


def test_a_narrow_ascii_console_gets_the_sweep_plan_folded_never_cut() -> None:
    layers = ["784-100-10", "784-300-100-10"]
    trials = [
        Trial(f"t00{i}", {"model.layers": v, "model.hidden_activation": "sigmoid"}, {}, epochs=10)
        for i, v in enumerate(layers)
    ]
    console = Console(width=40, file=_AsciiFile(), color_system=None)
    console.print(plan_table(Sweep("s", Path("runs/s"), "val_acc", "maximize", trials)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii()  # no "…" of a cut cell, which an ASCII console prints as "\u2026"
    rows = [line.split("|") for line in text.splitlines() if line.count("|") == 5]
    shown = "".join(row[2].strip() for row in rows)  # the layers column, top to bottom
    assert "".join(layers) in shown


@pytest.mark.parametrize("width", [40, 50, 56, 62])
def test_a_narrow_ascii_console_gets_the_ranked_sweep_table_folded_never_cut(width: int) -> None:
    best = Trial("t000", {"optimizer.lr": 0.01}, {}, "completed", epoch=1, epochs=1)
    best.last = best.best = 0.908
    best.best_epoch, best.seconds, best.test_acc = 1, 0.4, 0.9158
    failed = Trial("t001", {"optimizer.lr": 1e30}, {}, "failed", "diverged", epochs=1)
    sweep = Sweep("s", Path("runs/s"), "val_acc", "maximize", [best, failed])
    console = Console(width=width, file=_AsciiFile(), color_system=None)
    console.print(sweep_table(sweep, ranked=True, width=width))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.isascii()  # no "…" of a cut cell, which an ASCII console prints as "\u2026"
    assert max(map(len, text.splitlines())) <= width  # nothing cut at the console's edge
    rows = [line.split("|") for line in text.splitlines()[2:] if "|" in line]
    body = rows[[row[0].strip() == "1" for row in rows].index(True) :]  # the trials
    column = ["".join(row[i].strip() for row in body) for i in range(len(body[0]))]
    assert column[-1] == "91.58%"  # the best trial's test accuracy, whole
    assert "completedfailed" in column  # the statuses


def test_a_ranked_sweep_table_with_a_column_per_setting_holds_each_trial_on_one_line() -> None:
    # The widest cells a trial has: its status, three-digit epochs and the test accuracy with
    # the epoch whose weights it scores. A console wide enough for a column per setting by
    # the table's own reckoning shows every cell whole, a trial a line.
    done = Trial("t001", {"optimizer.lr": 1.0}, {}, "completed", epoch=200, epochs=200)
    done.last = done.best = 0.9042
    done.best_epoch, done.seconds, done.test_acc, done.test_epoch = 171, 26.9, 0.9084, 128
    stopped = Trial("t000", {"optimizer.lr": 2.0}, {}, "early_stopped", epoch=114, epochs=200)
    stopped.last = stopped.best = 0.8986
    stopped.best_epoch, stopped.seconds = 94, 16.5
    sweep = Sweep("es", Path("runs/es"), "val_acc", "maximize", [done, stopped])
    apart = 0
    for width in range(60, 121):
        _, lines = render(sweep_table(sweep, ranked=True, width=width), width=width)
        if "lr" not in " ".join(lines).split():  # one column of settings, folded by design
            continue
        apart += 1
        header, *rows = [" ".join(line.split()) for line in lines[1:] if line.strip("─ ")]
        assert header == "# trial lr status epoch best (epoch) time test (epoch)", width
        assert rows == [
            "1 t001 1 completed 200/200 90.42% (171) 26.9s 90.84% (128)",
            "2 t000 2 early_stopped 114/200 89.86% (94) 16.5s",
        ], width
    assert apart


def test_a_sweep_table_at_its_widest_cells_gets_its_setting_columns_just_where_they_fit() -> None:
    # One to four settings, each trial at the widest cells the table reserves room for: the
    # ranked table, rendered at its natural width, is where the settings get columns, and a
    # character less folds them into one.
    values: dict[str, list[Any]] = {
        "optimizer.lr": [0.001, 0.0003],
        "training.batch_size": [128, 64],
        "model.layers": ["784-1200-1200-10", "784-800-10"],
        "model.activation": ["relu", "sigmoid"],
    }
    for n in range(1, len(values) + 1):
        trials = []
        for i in range(2):
            params = {key: column[i] for key, column in list(values.items())[:n]}
            trial = Trial(f"t{i:03d}", params, {}, "early_stopped", epoch=200, epochs=200)
            trial.last = trial.best = 0.9812
            trial.best_epoch, trial.seconds = 171, 6000.0
            trial.test_acc, trial.test_epoch = 0.9805, 171
            trials.append(trial)
        sweep = Sweep("wide", Path("runs/wide"), "val_acc", "maximize", trials)
        _, lines = render(sweep_table(sweep, ranked=True, width=1000), width=1000)
        natural = max(len(line.rstrip()) for line in lines[1:])  # the table's, not the title's
        for width, apart in ((natural, True), (natural - 1, False)):
            _, lines = render(sweep_table(sweep, ranked=True, width=width), width=width)
            assert ("lr" in lines[1].split()) is apart, (n, width)
            assert max(len(line.rstrip()) for line in lines) <= width, (n, width)


def test_an_accuracy_short_of_100_percent_is_never_shown_as_100() -> None:
    # 57,999 of 58,000 training images right is 99.998%: "100.00%" would say all of them.
    confusion = np.array([[28_999, 1], [0, 29_000]])
    result = scored(confusion, ["0", "1"], split="train", loss=0.01)
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    print_evaluation(console, result, Path("model.npz"))
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert "accuracy >99.99% (57,999/58,000)" in lines[0]
    # precision 28,999/28,999 is 100% exactly; recall 28,999/29,000 is not
    assert "│ 0 │ 100.00% │ >99.99% │ >99.99% │ 29,000 │" in lines
    assert "100.00%" not in lines[0]


def test_a_probability_short_of_1_is_never_shown_as_100_percent() -> None:
    # As a trained model gives them: 0.9999923 is not certainty, 6.5e-6 is not impossible.
    image = np.zeros((28, 28), np.float32)
    prediction = Prediction("p.png", 1, 0.9999923, [1.2e-6, 0.9999923, 6.5e-6], image)
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    print_prediction(console, prediction, ["0", "1", "2"], False)
    lines = console.export_text().splitlines()
    assert " ".join(lines[0].split()) == "p.png: 1 (>99.9%) top 3: 1 >99.9%, 2 <0.1%, 0 <0.1%"
    assert [line.split()[-1] for line in lines[-3:]] == ["<0.1%", ">99.9%", "<0.1%"]
    assert len({len(line) for line in lines[-3:]}) == 1  # the percentages stay in a column


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0s"),
        (59.94, "59.9s"),
        (59.95, "1m00s"),  # a tenth of a second short of a minute rounds to one, not "60.0s"
        (119.6, "2m00s"),  # rounded to the second, not cut: 1m59.6s is nearer 2m00s
        (3_900.0, "1h05m"),
        (3_659.0, "1h01m"),  # to the nearest minute, not cut: 1h00m59s is nearer 1h01m
        (7_195.0, "2h00m"),
    ],
)
def test_durations_read_as_seconds_minutes_or_hours(seconds: float, shown: str) -> None:
    assert prediction_summary(2, 1, seconds) == (
        f"2 images predicted, 1 failed (errors below), in {shown}"
    )
    assert prediction_summary(0, 0, seconds) == f"0 images predicted, 0 failed, in {shown}"


def test_an_epochs_row_shows_each_figure_in_its_own_format() -> None:
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    display = TrainDisplay(console, None)  # type: ignore[arg-type]  # rows need no config
    record = {
        "epoch": 3,
        "train_loss": 0.123456,
        "train_acc": 0.95124,
        "val_loss": None,
        "val_acc": None,
        "lr": 0.00123456,
        "time": 75.0,
        "samples_per_sec": 12_345.6,
    }
    display.on_epoch_end(record)
    display.on_epoch_end({**record, "epoch": 4, "samples_per_sec": None, "best": True})
    rows = [line.split() for line in console.export_text().splitlines()]
    assert rows == [
        ["3", "0.1235", "95.12%", "-", "-", "0.00123", "1m15s", "12,346"],
        ["4", "0.1235", "95.12%", "-", "-", "0.00123", "1m15s", "-", "*"],
    ]


def test_the_live_loss_is_a_moving_average_of_the_batches() -> None:
    console = Console(width=120, file=io.StringIO(), color_system=None)
    display = TrainDisplay(console, None)  # type: ignore[arg-type]  # steps need no config
    display.on_epoch_start(1, 10, 0)
    display.on_step(1, 1.0)
    display.on_step(2, 3.0)  # 0.95 of the average so far, 0.05 of the new batch's loss
    assert display.progress.tasks[0].fields["loss"] == "1.1000"
    assert display.progress.tasks[0].completed == 2


def test_an_evaluation_counts_the_right_answers_and_colours_mistakes_by_count() -> None:
    # 29 of 100 right: 0.29 * 100 is 28.999999999999996 in floating point.
    confusion = np.array([[29, 10, 3], [1, 0, 0], [57, 0, 0]])
    result = scored(confusion, ["a", "b", "c"])
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    print_evaluation(console, result, Path("model.npz"))
    assert "accuracy 29.00% (29/100)" in console.export_text().splitlines()[0]
    # Each mistake's colour follows its share of the largest (57): above a half, above 0.15.
    columns = [list(column.cells) for column in confusion_table(result).columns[1:]]
    assert columns[0] == ["[bold green]29[/]", "[yellow]1[/]", "[bold red]57[/]"]
    assert columns[1] == ["[red]10[/]", "[bold green]0[/]", "[dim]·[/]"]
    assert columns[2] == ["[yellow]3[/]", "[dim]·[/]", "[bold green]0[/]"]


def test_an_evaluation_writes_every_count_with_thousands_separators() -> None:
    # The training split's counts: the matrix and the confusions as the support column.
    confusion = np.array([[5586, 1234], [2808, 4000]])
    result = scored(confusion, ["0", "1"])
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    print_evaluation(console, result, Path("model.npz"))
    text = console.export_text()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "(9,586/13,628)" in lines[0]
    assert any(line.startswith("│ 0 │") and line.endswith("│ 6,820 │") for line in lines)
    assert "│ 0 │ 5,586 │ 1,234 │" in lines
    assert "│ 1 │ 2,808 │ 4,000 │" in lines
    assert "most frequent confusions (true→predicted): 1→0 (2,808), 0→1 (1,234)" in lines


def test_a_probability_bar_is_rounded_to_the_nearest_character() -> None:
    bars = probability_bars([0.99, 0.01], ["a", "b"]).plain.splitlines()
    assert bars[0].count("█") == 30  # 0.99 of 30 characters is 29.7
    assert bars[1].count("█") == 0  # 0.3 of a character


@pytest.mark.parametrize(("width", "tile"), [(80, 12), (20, 3)])
def test_the_terminals_hidden_units_caption_says_only_what_was_done(width: int, tile: int) -> None:
    # Six tiles a row for 36 units: (80 + 1) // 6 - 1 = 12 columns each fit in 80 columns;
    # in 20 only 2 would, and a tile is never drawn smaller than 3x3.
    patterns = np.random.default_rng(3).standard_normal((36, 784))
    _, lines = render(render_hidden_terminal(patterns, 28, max_units=36, width=width))
    text = " ".join(" ".join(lines).split())
    assert "showing the first" not in text  # all 36 are shown
    assert f"tiles shrunk from 28x28 to {tile}x{tile} pixels." in text


def test_a_model_summary_states_input_layers_and_the_best_epoch_as_the_file_records_them(
    tmp_path: Path,
) -> None:
    path = save_random_model(
        tmp_path / "model.npz",
        (784, 16, 10),
        preprocessing={"input_size": 28, "normalize": {"mean": 0.13066, "std": 0.30811}},
        training={"status": "interrupted", "epochs_run": 0, "best_epoch": 2, "best_val_loss": 0.5},
    )
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    print_model_summary(console, checkpoint.load(path))
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert "input 28x28 pixels in [0, 1], standardized (mean 0.1307, std 0.3081)" in lines
    assert "training interrupted, 0 epochs" in lines
    # no weights_from_epoch recorded: nothing is said about which epoch's weights these are
    assert "best epoch 2 (lowest validation loss): validation loss 0.5000, accuracy -" in lines
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if "│" in line]
    assert rows == [  # the rows of the layers table, below its header
        ["1", "16x784", "16", "12,560", "relu"],  # W1 is (units, inputs): 16 * 784 + 16
        ["2", "10x16", "10", "170", "softmax"],  # 10 * 16 + 10
        ["total", "", "", "12,730", ""],
    ]


def _trial(tid: str, params: dict[str, Any], **progress: Any) -> Trial:
    trial = Trial(tid, params, {}, epochs=3)
    for key, value in progress.items():
        setattr(trial, key, value)
    return trial


def test_a_sweep_table_names_each_setting_and_shows_each_figure() -> None:
    # Two swept keys end in "lr": both keep their full names; "batch_size" is alone.
    trials = [
        _trial(
            "t000",
            {"optimizer.lr": 0.1, "schedule.lr": 0.5, "training.batch_size": 32},
            status="completed",
            epoch=3,
            last=0.25,
            best=0.2,
            best_epoch=2,
            seconds=75.0,
            test_acc=0.9,
            test_epoch=3,
        ),
        _trial(
            "t001",
            {"optimizer.lr": 0.2, "schedule.lr": 0.6, "training.batch_size": 64},
            status="running",
            epoch=1,
        ),
    ]
    sweep = Sweep("s", Path("runs/s"), "val_loss", "minimize", trials)
    _, lines = render(sweep_table(sweep, width=200), width=200)
    assert lines[1].split() == [
        "trial", "optimizer.lr", "schedule.lr", "batch_size", "status", "epoch", "val_loss",
        "best", "(epoch)", "time",
    ]  # fmt: skip
    assert lines[3].split() == [
        "t000", "0.1", "0.5", "32", "completed", "3/3", "0.2500", "0.2000", "(2)", "1m15s"
    ]  # fmt: skip
    assert lines[4].split() == ["t001", "0.2", "0.6", "64", "running", "1/3", "-", "-", "-"]
    _, lines = render(sweep_table(sweep, ranked=True, width=200), width=200)
    assert lines[3].split()[-2:] == ["90.00%", "(3)"]  # the test accuracy, of epoch 3
    # Too narrow for a column each: the settings share one, and the time stays
    _, lines = render(sweep_table(sweep, width=80), width=80)
    assert lines[1].split() == [
        "trial", "settings", "status", "epoch", "val_loss", "best", "(epoch)", "time"
    ]  # fmt: skip


@pytest.mark.parametrize(("width", "apart"), [(80, True), (79, False)])
def test_a_sweep_tables_settings_get_columns_of_their_own_where_they_fit(
    width: int, apart: bool
) -> None:
    # "lr" over values of 4 characters, and 3 between columns: 7 beside the 73 of the rest
    trials = [_trial(f"t00{i}", {"optimizer.lr": lr}) for i, lr in enumerate((0.01, 0.02))]
    sweep = Sweep("s", Path("runs/s"), "val_acc", "maximize", trials)
    table = sweep_table(sweep, width=width)
    assert ("lr" in [str(column.header) for column in table.columns]) is apart


def test_a_sweep_says_why_each_trial_failed_or_was_interrupted() -> None:
    trials = [
        _trial("t000", {}, status="failed", reason="diverged"),
        _trial("t001", {}, status="interrupted", reason="Ctrl-C"),
        _trial("t002", {}, status="completed", reason="ignored"),
        _trial("t003", {}, reason="a worker died"),
        _trial("t004", {}, reason="a worker died"),
    ]
    sweep = Sweep("s", Path("runs/s"), "val_acc", "maximize", trials)
    assert [line.plain for line in sweep_reasons(sweep)] == [
        "t000 failed: diverged",
        "t001 interrupted: Ctrl-C",
        "2 trials not started: a worker died",
    ]


def test_a_summary_suggests_val_acc_only_where_another_epoch_was_more_accurate() -> None:
    from mlp_cli.render import print_train_summary
    from mlp_cli.train import TrainResult

    def summary(accuracies: list[float]) -> str:
        history = [{"epoch": i, "val_acc": a} for i, a in enumerate(accuracies, start=1)]
        result = TrainResult(
            Path("runs/r"), "completed", history, 1, accuracies[0], 1.0, best_loss=0.3,
            model_epoch=1,
        )  # fmt: skip
        console = Console(width=300, record=True, file=io.StringIO(), color_system=None)
        print_train_summary(console, result)
        return console.export_text()

    # epoch 3 as accurate as the best epoch (1): nothing to gain by monitoring val_acc
    assert "highest validation accuracy" not in summary([0.9, 0.8, 0.9])
    assert (
        "highest validation accuracy 91.00% at epoch 3; to keep that epoch instead: "
        "--set training.early_stopping.monitor=val_acc"
    ) in summary([0.9, 0.8, 0.91])


def test_the_input_in_a_console_one_column_narrower_is_shrunk_keeping_its_last_column() -> None:
    image = np.zeros((28, 28), np.float32)
    image[:, 27] = 1.0  # ink in the last column alone, which cutting to 27 would lose
    prediction = Prediction("p.png", 1, 0.9, [0.05, 0.9, 0.05], image)
    console = Console(width=27, record=True, file=io.StringIO(), color_system=None)
    print_prediction(console, prediction, ["0", "1", "2"], True)
    picture = [
        line for line in console.export_text().splitlines() if line and set(line) <= set(RAMP)
    ]
    assert len(picture) == 14  # two pixel rows a line
    assert all(line[-1] != " " for line in picture)


def test_a_resumed_run_says_after_which_epoch_it_goes_on() -> None:
    from mlp_cli.config import config_from_dict

    cfg = config_from_dict({"model": {"layers": [784, 10]}, "data": {"validation_size": 0}}, "t")
    info = {"run_dir": "runs/t", "epochs": 5, "n_train": 60_000, "n_val": 0, "parameters": 7850}
    for start, said in ((0, False), (3, True)):
        console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
        display = TrainDisplay(console, cfg)
        display.on_train_start({**info, "start_epoch": start})
        display.close()
        assert ("resuming after epoch 3" in console.export_text()) is said


def test_the_most_probable_class_has_the_green_bar() -> None:
    bars = probability_bars([0.2, 0.7, 0.1], ["a", "b", "c"])
    styles = [str(span.style) for span in bars.spans if span.style]
    assert styles == ["cyan", "bold green", "cyan"]


def test_an_empty_batch_of_predictions_prints_nothing_not_even_the_header() -> None:
    image = np.zeros((28, 28), np.float32)
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    rows = PredictionRows(console, ["0", "1"], ["a.png"])
    rows.print([])
    assert console.export_text(clear=False) == ""
    rows.print([Prediction("a.png", 1, 0.9, [0.1, 0.9], image)])
    assert console.export_text().split()[:5] == [
        "file",
        "digit",
        "probability",
        "runner-up",
        "probability",
    ]
