"""Tests for mlp_cli.viz: tile geometry and colours, deeper-layer products, terminal width,
and that every figure writes a real image (or fails with a clear MLPError)."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.figure import SubFigure
from PIL import Image

from mlp_cli import train, viz
from mlp_cli.errors import UsageError

SEP = viz.SEPARATOR
LUT = colormaps[viz.CMAP](np.arange(256), bytes=True)[:, :3]  # (256, 3) the colour map's table
RED, BLUE, MIDDLE = LUT[255], LUT[0], LUT[128]  # colours of +max, -max and 0


def grid_array(patterns: np.ndarray, side: int, **kw: Any) -> np.ndarray:
    """tile_grid without labels or header, as an (H, W, 3) uint8 array."""
    img = viz.tile_grid(patterns, side, labels=False, legend=False, **kw)
    assert img.mode == "RGB"
    return np.asarray(img)


def tile_pixels(grid: np.ndarray, unit: int, side: int, scale: int, cols: int) -> np.ndarray:
    """The colour of every weight of one unit, read at the centre of its scale x scale block."""
    step = side * scale + SEP
    y0, x0 = SEP + (unit // cols) * step, SEP + (unit % cols) * step
    centres = np.arange(side) * scale + scale // 2
    return grid[y0 + centres[:, None], x0 + centres[None, :]]  # (side, side, 3)


# --------------------------------------------------------------------------- tile_grid


@pytest.mark.parametrize(
    ("n", "side", "scale", "cols", "want_cols", "want_rows"),
    [(25, 20, 4, None, 5, 5), (10, 20, 4, None, 4, 3), (7, 28, 2, 7, 7, 1), (1, 20, 1, None, 1, 1)],
)
def test_grid_pixel_size_follows_tiles_scale_and_separators(
    n: int, side: int, scale: int, cols: int | None, want_cols: int, want_rows: int
) -> None:
    patterns = np.random.default_rng(0).standard_normal((n, side * side))
    h, w, _ = grid_array(patterns, side, scale=scale, cols=cols).shape
    assert w == want_cols * side * scale + (want_cols + 1) * SEP
    assert h == want_rows * side * scale + (want_rows + 1) * SEP


def test_legend_adds_a_header_above_the_same_grid() -> None:
    patterns = np.random.default_rng(1).standard_normal((25, 400))
    bare = viz.tile_grid(patterns, 20, legend=False)
    page = viz.tile_grid(patterns, 20, title="layer 1 units")
    assert page.width == bare.width  # 412 px, wider than the minimum header
    assert page.height > bare.height + 30
    np.testing.assert_array_equal(np.asarray(page)[-bare.height :], np.asarray(bare))


def test_checkerboard_on_unit_7_is_drawn_in_its_tile() -> None:
    rng = np.random.default_rng(2)
    patterns = rng.standard_normal((25, 400)) * 0.1
    r, c = np.mgrid[0:20, 0:20]
    board = np.where((r + c) % 2 == 0, 1.0, -1.0)  # +1 where row + col is even
    patterns[7] = board.ravel()
    tile = tile_pixels(grid_array(patterns, 20, scale=4), 7, 20, 4, cols=5)
    positive = board > 0
    assert np.all(tile[positive] == RED)
    assert np.all(tile[~positive] == BLUE)
    red, blue = tile[..., 0].astype(int), tile[..., 2].astype(int)
    assert np.all(red[positive] > blue[positive] + 50)  # reddish
    assert np.all(blue[~positive] > red[~positive] + 50)  # bluish


def test_vertical_bar_is_vertical_and_zero_is_the_middle_colour() -> None:
    patterns = np.random.default_rng(3).standard_normal((6, 400))
    bar = np.zeros((20, 20))
    bar[:, 12] = 0.3  # column 12, every row: a vertical bar in a row-major image
    patterns[4] = bar.ravel()
    tile = tile_pixels(grid_array(patterns, 20, scale=3), 4, 20, 3, cols=3)
    assert np.all(tile[:, 12] == RED)
    assert np.all(np.delete(tile, 12, axis=1) == MIDDLE)


def test_scaling_is_symmetric_per_tile_so_w_and_minus_w_mirror_the_colour_map() -> None:
    rng = np.random.default_rng(4)
    k = rng.integers(0, 256, 400)  # the colour-table entry each weight should get
    w = 2 * (k + 0.5) / 256 - 1  # centre of entry k once scaled into [-1, 1]
    k[0], w[0] = 255, 1.0  # the largest |w| sets the tile's scale
    patterns = np.stack([w, -w, 7.5 * w])
    grid = grid_array(patterns, 20, scale=2, cols=3)
    tiles = [tile_pixels(grid, u, 20, 2, cols=3).reshape(400, 3) for u in range(3)]
    np.testing.assert_array_equal(tiles[0], LUT[k])
    np.testing.assert_array_equal(tiles[1], LUT[255 - k])  # mirrored around the middle
    np.testing.assert_array_equal(tiles[2], tiles[0])  # each tile scaled by its own max |w|


def test_asymmetric_range_keeps_zero_white() -> None:
    w = np.zeros(400)
    w[:10], w[10:20] = 1.0, -0.1  # min-max scaling would paint 0 almost as red as -0.1 is blue
    tile = tile_pixels(grid_array(w[None], 20, scale=1), 0, 20, 1, cols=1).reshape(400, 3)
    assert np.all(tile[20:] == MIDDLE)
    np.testing.assert_array_equal(tile[10], LUT[int((1 - 0.1) / 2 * 256)])


def test_labels_only_touch_the_top_left_corner_of_each_tile() -> None:
    patterns = np.random.default_rng(5).standard_normal((12, 400))
    plain = grid_array(patterns, 20, scale=4)
    labelled = np.asarray(viz.tile_grid(patterns, 20, scale=4, legend=False))
    changed = np.any(plain != labelled, axis=2)
    step = 80 + SEP
    corners = np.zeros_like(changed)
    for u in range(12):
        y0, x0 = SEP + (u // 4) * step, SEP + (u % 4) * step
        corner = changed[y0 : y0 + 24, x0 : x0 + 30]
        assert corner.sum() > 40  # a box and a number were drawn
        box = labelled[y0 : y0 + 24, x0 : x0 + 30][corner]
        assert (box.max(axis=1) < 60).any()  # the dark box
        assert (box.min(axis=1) > 200).any()  # the light number
        corners[y0 : y0 + 24, x0 : x0 + 30] = True
    assert not changed[~corners].any()


def test_tile_grid_refuses_patterns_of_the_wrong_side() -> None:
    with pytest.raises(UsageError, match=r"28x28.*look like 20x20"):
        viz.tile_grid(np.zeros((3, 400)), 28)
    with pytest.raises(UsageError, match="NaN or infinite"):
        viz.tile_grid(np.full((3, 400), np.nan), 20)


# --------------------------------------------------------------------------- unit_patterns


def three_layers(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(s) for s in ((25, 400), (16, 25), (10, 16))]


def test_layer_1_patterns_are_the_rows_of_w1() -> None:
    weights = three_layers(np.random.default_rng(6))
    patterns, note = viz.unit_patterns(weights, layer=1)
    np.testing.assert_array_equal(patterns, weights[0])
    assert "W1" in note


@pytest.mark.parametrize(("layer", "units", "product"), [(2, 16, "W2·W1"), (3, 10, "W3·W2·W1")])
def test_deeper_layers_are_the_linear_response_to_each_input_pixel(
    layer: int, units: int, product: str
) -> None:
    weights = three_layers(np.random.default_rng(7))
    patterns, note = viz.unit_patterns(weights, layer=layer)
    assert patterns.shape == (units, 400)
    # column i = what the units see when only pixel i is on, passed through linear layers
    for i in (0, 137, 399):
        a = np.zeros(400)
        a[i] = 1.0
        for W in weights[:layer]:
            a = W @ a
        np.testing.assert_allclose(patterns[:, i], a, rtol=1e-12, atol=1e-12)
    assert product in note
    assert "linear approximation" in note


def test_the_product_of_a_deep_layer_fits_the_title_of_its_picture(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)  # 41 weight layers of 3 units each, 4x4 inputs
    weights = [rng.standard_normal((3, 16)), *(rng.standard_normal((3, 3)) for _ in range(40))]
    patterns, note = viz.unit_patterns(weights, layer=41)
    assert "W41·W40·...·W2·W1" in note
    out = viz.save_hidden_png(patterns, 4, tmp_path / "h.png", note)
    with Image.open(out) as img:
        pixels = np.asarray(img.convert("L"))
    edges = pixels[:, [0, 1, -2, -1]]  # a title wider than the picture is cut at its sides
    assert (edges == 255).all()


@pytest.mark.parametrize("layer", [0, 4, -1])
def test_layer_out_of_range_is_a_usage_error(layer: int) -> None:
    with pytest.raises(UsageError, match="numbered 1 to 3"):
        viz.unit_patterns(three_layers(np.random.default_rng(8)), layer=layer)


@pytest.mark.parametrize(
    ("units", "layers"),
    [
        ((16, 10), "1 hidden layer and an output layer, numbered 1 to 2 (layer 1 hidden"),
        (
            (16, 12, 10),
            "2 hidden layers and an output layer, numbered 1 to 3 (layers 1 to 2 hidden",
        ),
    ],
)
def test_a_layer_out_of_range_says_how_many_hidden_layers_there_are(
    units: tuple[int, ...], layers: str
) -> None:
    rng = np.random.default_rng(8)
    sizes = (784, *units)
    weights = [rng.standard_normal((n_out, n_in)) for n_in, n_out in itertools.pairwise(sizes)]
    with pytest.raises(UsageError) as refused:
        viz.unit_patterns(weights, layer=len(units) + 1)
    assert f"this network has {layers}, layer {len(units)} the output layer)." in str(refused.value)


@pytest.mark.parametrize(("layer", "product"), [(4, "W4·W3·W2·W1"), (5, "W5·W4·...·W2·W1")])
def test_a_product_of_more_than_four_matrices_is_named_by_its_ends(
    layer: int, product: str
) -> None:
    rng = np.random.default_rng(8)
    weights = [rng.standard_normal((8, 784)), *(rng.standard_normal((8, 8)) for _ in range(4))]
    _, note = viz.unit_patterns(weights, layer=layer)
    assert f"shown through the product {product} (linear approximation)" in note


@pytest.mark.parametrize("layer", [2, 3])
def test_a_layer_past_a_network_without_hidden_layers_says_it_has_none(layer: int) -> None:
    W1 = np.random.default_rng(8).standard_normal((10, 784))  # a 784-10 network
    with pytest.raises(UsageError) as refused:
        viz.unit_patterns([W1], layer=layer)
    assert str(refused.value) == (
        f"Layer {layer} does not exist: this network has no hidden layer; its one weight layer, "
        "numbered 1, is the output layer. Choose layer 1."
    )


def test_a_product_of_weights_beyond_float64_is_refused_naming_it_without_a_warning() -> None:
    weights = [W * 1e200 for W in three_layers(np.random.default_rng(9))]  # finite, each
    assert np.isfinite(viz.unit_patterns(weights, layer=1)[0]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would reach the terminal
        with pytest.raises(UsageError) as refused:
            viz.unit_patterns(weights, layer=3)
    message = str(refused.value)
    assert "W3·W2·W1" in message
    assert "layer 1" in message


def test_a_product_wider_than_a_model_may_be_is_refused_before_it_is_computed() -> None:
    # A layer of 65,536 units above one of a single unit: a valid model of 850,000
    # parameters, but W2·W1 would be 65,536 patterns of 784 pixels, 51 million numbers.
    W1, W2 = np.ones((1, 784), np.float32), np.ones((65_536, 1), np.float32)
    with pytest.raises(UsageError) as refused:
        viz.unit_patterns([W1, W2], layer=2)
    message = str(refused.value)
    assert "65,536 units" in message
    assert "layer 1" in message


def test_weights_that_do_not_chain_are_refused() -> None:
    rng = np.random.default_rng(9)
    with pytest.raises(UsageError, match="W2"):
        viz.unit_patterns([rng.standard_normal((25, 400)), rng.standard_normal((10, 24))], 2)
    with pytest.raises(UsageError, match="2-D"):
        viz.unit_patterns([rng.standard_normal(25)], 1)


def test_save_hidden_png_draws_at_most_max_drawn_units(tmp_path: Path) -> None:
    patterns = np.random.default_rng(16).standard_normal((viz.MAX_DRAWN_UNITS + 500, 16))
    first = viz.save_hidden_png(patterns[: viz.MAX_DRAWN_UNITS], 4, tmp_path / "a.png", "n")
    every = viz.save_hidden_png(patterns, 4, tmp_path / "b.png", "n")
    with Image.open(first) as a, Image.open(every) as b:
        assert a.size == b.size


def test_the_header_counts_the_units_as_the_title_does(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    text = SubFigure.text

    def spy(self: SubFigure, x: float, y: float, s: str, *args: Any, **kwargs: Any) -> Any:
        said.append(s)
        return text(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(SubFigure, "text", spy)
    viz.tile_grid(np.ones((1024, 1)), 1, scale=1)
    assert said[1].startswith("1,024 units; ")


@pytest.mark.parametrize("side", [1, 2, 3, 5])
def test_save_hidden_png_shows_the_weights_of_tiles_too_small_for_their_labels(
    tmp_path: Path, side: int
) -> None:
    # A model file may take inputs of any side up to 28; the box behind a unit's index is
    # 11 pixels tall or more, so on tiles of 4 pixels per weight it would hide the weights.
    units, tile = 12, 4 * side  # 4 x 3 tiles
    out = viz.save_hidden_png(np.ones((units, side * side)), side, tmp_path / "h.png", "n")
    with Image.open(out) as img:
        grid = np.asarray(img.convert("RGB"))[-(3 * (tile + SEP) + SEP) :]  # under the header
    assert np.all(grid == RED, axis=2).sum() == units * tile**2


def test_save_hidden_png_writes_the_grid(tmp_path: Path) -> None:
    weights = three_layers(np.random.default_rng(10))
    patterns, note = viz.unit_patterns(weights, layer=2)
    out = viz.save_hidden_png(patterns, 20, tmp_path / "sub" / "hidden.png", note)
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.width == 4 * 80 + 5 * SEP  # 16 units: 4 x 4 tiles
        assert img.height > 4 * 80 + 5 * SEP
    with pytest.raises(UsageError, match="20x20"):
        viz.save_hidden_png(patterns, 28, tmp_path / "bad.png", note)


# --------------------------------------------------------------------------- curves / metrics


def history(epochs: int, *, val: bool = True) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for e in range(1, epochs + 1):
        loss = 2.3 * math.exp(-e / 4) + 0.05
        rec: dict[str, Any] = {
            "epoch": e,
            "train_loss": loss,
            "train_acc": 1 - loss / 2.5,
            "lr": 0.1 * 0.5 ** (e // 5),
        }
        if val:
            rec |= {"val_loss": loss + 0.03, "val_acc": 1 - (loss + 0.03) / 2.5}
        records.append(rec)
    return records


def assert_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= min_size[0]
        assert img.height >= min_size[1]
        img.verify()


def test_curves_from_records_with_and_without_validation(tmp_path: Path) -> None:
    out = viz.plot_curves(history(20), tmp_path / "curves.png", title="run 1")
    assert out == tmp_path / "curves.png"
    assert_png(out, (1000, 300))
    assert_png(viz.plot_curves(history(20, val=False), tmp_path / "train_only.png"), (1000, 300))
    assert_png(viz.plot_curves(history(1), tmp_path / "one.png"), (1000, 300))


def test_a_name_in_letters_the_font_lacks_is_drawn_without_a_python_warning(
    tmp_path: Path,
) -> None:
    name = "运行 🙂"  # a run folder or class name: DejaVu Sans has no glyphs for these
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would reach the terminal with our source
        assert_png(viz.plot_curves(history(3), tmp_path / "c.png", title=name), (1000, 300))
        confusion = viz.plot_confusion(
            np.eye(2), tmp_path / "m.png", class_names=[name, "1"], title=name
        )
    assert_png(confusion, (400, 400))


def test_curves_from_a_metrics_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in history(12)) + "\n")
    records = train.read_metrics(path)
    assert records == history(12)  # blank lines are skipped
    assert_png(viz.plot_curves(records, tmp_path / "deep" / "curves.png"), (1000, 300))


def test_an_accuracy_short_of_100_percent_is_never_titled_100(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 57,999 of 58,000 is 99.998%, and a test split of 9,999 of 10,000 right: 99.99%
    records = [{"epoch": 1, "train_acc": 57_999 / 58_000, "val_acc": 0.9999, "val_loss": 0.1}]
    titles: list[str] = []
    save = viz._save_figure

    def keep_titles(fig: Any, out: Path) -> Path:
        titles.extend(ax.get_title() for ax in fig.axes)
        titles.extend(text.get_text() for legend in fig.legends for text in legend.get_texts())
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_titles)
    viz.plot_curves(records, tmp_path / "curves.png")
    viz.plot_confusion(np.array([[57_999, 1], [0, 0]]), tmp_path / "confusion.png")
    titles = [" ".join(title.split()) for title in titles]  # as wrapped to fit
    assert "accuracy last: training >99.99%, validation 99.99%" in titles
    assert "best epoch 1: validation loss 0.1, validation accuracy 99.99%" in titles
    assert "confusion matrix: 57,999 of 58,000 correct (>99.99%)" in titles


def test_matplotlib_settings_neither_break_nor_change_the_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    patterns = np.random.default_rng(0).standard_normal((6, 400))
    page = np.asarray(viz.tile_grid(patterns, 20, title="layer 1 units"))
    viz.plot_curves(history(3), tmp_path / "plain.png")
    # what a matplotlibrc (the user's, or one in the current folder) may set: LaTeX for
    # every label (which fails where LaTeX is not installed) and pictures cut to their ink
    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)
    monkeypatch.setitem(matplotlib.rcParams, "savefig.bbox", "tight")
    np.testing.assert_array_equal(viz.tile_grid(patterns, 20, title="layer 1 units"), page)
    viz.plot_curves(history(3), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes() == (tmp_path / "plain.png").read_bytes()


def test_an_unknown_mplbackend_does_not_stop_mlp_drawing(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history(3)))
    proc = subprocess.run(
        [sys.executable, "-m", "mlp_cli.cli", "plot", str(tmp_path)],
        env={**os.environ, "MPLBACKEND": "nonsense"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert_png(tmp_path / "curves.png", (1000, 300))


@pytest.mark.parametrize("key", ["epoch", "train_loss"])
def test_curves_refuse_a_number_no_run_records(tmp_path: Path, key: str) -> None:
    # 1e308 is finite but beyond float32; matplotlib's axis ticks fail on it with a ValueError.
    records = history(3)
    records[1][key] = 1e308
    with pytest.raises(UsageError, match=f"record 2 has {key} = 1e\\+308"):
        viz.plot_curves(records, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_curves_refuse_a_negative_number_beyond_float32_too(tmp_path: Path) -> None:
    records = history(3)
    records[1]["train_loss"] = -1e308
    with pytest.raises(UsageError, match=r"record 2 has train_loss = -1e\+308, beyond any float32"):
        viz.plot_curves(records, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_a_record_without_an_epoch_is_numbered_by_its_place(tmp_path: Path) -> None:
    # the first record, without an epoch, is epoch 1: the second's epoch 1 goes back
    records = history(2)
    del records[0]["epoch"]
    records[1]["epoch"] = 1
    with pytest.raises(UsageError, match="record 2 has epoch 1 after record 1 with epoch 1,"):
        viz.plot_curves(records, tmp_path / "curves.png")


def test_curves_refuse_an_integer_beyond_any_float(tmp_path: Path) -> None:
    records = history(3)
    records[0]["train_loss"] = 10**400  # as JSON reads 1 followed by 400 zeros
    with pytest.raises(UsageError) as info:
        viz.plot_curves(records, tmp_path / "curves.png")
    assert f"record 1 has train_loss = 1{'0' * 36}..., beyond any float32" in str(info.value)
    assert not (tmp_path / "curves.png").exists()


def test_curves_cut_a_value_of_any_length_short_in_the_error(tmp_path: Path) -> None:
    records = history(3)
    records[2]["val_loss"] = "x" * 5000
    with pytest.raises(UsageError) as info:
        viz.plot_curves(records, tmp_path / "curves.png")
    assert f"record 3 has val_loss = '{'x' * 36}..., but a number" in str(info.value)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("key", ["epoch", "lr"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_curves_refuse_an_epoch_or_rate_that_is_not_finite(
    tmp_path: Path, key: str, value: float
) -> None:
    path = tmp_path / "metrics.jsonl"
    records = history(3)
    records[1][key] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in records))  # as Infinity, NaN
    with pytest.raises(UsageError, match=f"record 2 has {key} = {value!r}, but a finite"):
        viz.plot_curves(train.read_metrics(path), tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_curves_refuse_records_that_mix_two_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="record 4 has epoch 1 after record 3 with epoch 3"):
        viz.plot_curves(history(3) + history(2), tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_curves_refuse_empty_histories_percent_accuracies_and_unknown_formats(
    tmp_path: Path,
) -> None:
    with pytest.raises(UsageError, match="empty"):
        viz.plot_curves([], tmp_path / "c.png")
    with pytest.raises(UsageError, match="fractions"):
        viz.plot_curves([{"epoch": 1, "train_loss": 1.0, "train_acc": 97.0}], tmp_path / "c.png")
    with pytest.raises(UsageError, match=r"\.xyz"):
        viz.plot_curves(history(3), tmp_path / "c.xyz")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize(
    ("loss", "label"), [("mse", "mean squared error"), ("cross_entropy", "cross-entropy loss")]
)
def test_the_loss_axis_is_named_after_the_runs_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: str, label: str
) -> None:
    from test_train import make_config, make_splits
    from typer.testing import CliRunner

    from mlp_cli import cli

    drawn: list[str] = []
    save = viz._save_figure

    def keep_label(fig: Any, out: Path) -> Path:
        drawn.append(fig.axes[0].get_ylabel())
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_label)
    cfg = make_config(tmp_path, loss=loss, training={"epochs": 1})
    run = train.start(cfg, make_splits(), tmp_path / "run").run().run_dir  # draws curves.png
    result = CliRunner().invoke(cli.app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    viz.plot_curves(history(3), tmp_path / "unknown.png")  # a record without its run
    older = tmp_path / "older"  # a config this mlp no longer validates
    older.mkdir()
    (older / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history(3)))
    (older / "config.yaml").write_text("model: {layers: 784-10}\nretired_key: 1\n")
    result = CliRunner().invoke(cli.app, ["plot", str(older)])
    assert result.exit_code == 0, result.output
    assert drawn == [label, label, "loss", "loss"]


@pytest.mark.parametrize(
    ("stopping", "words"),
    [
        ({"monitor": "val_acc"}, "highest validation accuracy"),
        ({"min_delta": 0.5}, "lowest validation loss, counting only drops of more than min_delta"),
    ],
)
def test_the_best_epoch_in_the_curves_legend_says_what_made_it_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopping: dict[str, Any], words: str
) -> None:
    from test_train import make_config, make_splits
    from typer.testing import CliRunner

    from mlp_cli import cli

    legends: list[str] = []
    save = viz._save_figure

    def keep_legend(fig: Any, out: Path) -> Path:
        legends.append(fig.legends[0].get_texts()[-1].get_text())
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_legend)
    cfg = make_config(tmp_path, training={"epochs": 2, "early_stopping": stopping})
    run = train.start(cfg, make_splits(), tmp_path / "run").run().run_dir  # draws curves.png
    result = CliRunner().invoke(cli.app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = [r["epoch"] for r in records if r["best"]][-1]
    assert len(legends) == 2
    assert all(legend.startswith(f"best epoch {best} ({words}") for legend in legends), legends
    viz.plot_curves(history(3), tmp_path / "unknown.png")  # records without their run's config
    assert legends[-1].startswith("best epoch 3: validation loss")


def test_best_record_prefers_the_trainers_flag_then_the_validation_score() -> None:
    records = history(10)
    val_loss = [r["val_loss"] for r in records]
    val_acc = [r["val_acc"] for r in records]
    records[3]["val_loss"] = records[4]["val_loss"] = min(val_loss) - 1.0  # a tie
    assert viz.best_record(records) == 3
    assert viz.best_record(records, "val_acc") == val_acc.index(max(val_acc))
    for i in (2, 6):  # improvements by the trainer's threshold
        records[i]["best"] = True
    assert viz.best_record(records) == 6
    assert viz.best_record(history(5, val=False)) is None


# --------------------------------------------------------------------------- confusion / gallery


def test_confusion_heatmap_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    confusion = np.stack([rng.multinomial(500, np.eye(10)[i] * 0.9 + 0.01) for i in range(10)])
    out = viz.plot_confusion(confusion, tmp_path / "confusion.png")
    assert_png(out, (500, 500))
    names = [f"class {i}" for i in range(3)]
    assert_png(
        viz.plot_confusion(confusion[:3, :3], tmp_path / "c3.png", class_names=names), (400, 400)
    )


def test_confusion_refuses_non_square_or_mislabelled_matrices(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="square"):
        viz.plot_confusion(np.zeros((3, 4)), tmp_path / "c.png")
    with pytest.raises(UsageError, match="2 class names"):
        viz.plot_confusion(np.eye(3), tmp_path / "c.png", class_names=["a", "b"])
    with pytest.raises(UsageError, match="at least 0"):
        viz.plot_confusion(-np.eye(3), tmp_path / "c.png")


def test_class_names_as_long_as_a_model_may_hold_fit_the_heatmap(tmp_path: Path) -> None:
    # a model file's class names may be 100 characters long (checkpoint.MAX_CLASS_NAME)
    names = [f"{d}-" + "x" * 98 for d in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" reached the terminal
        out = viz.plot_confusion(np.eye(10) * 100, tmp_path / "c.png", class_names=names)
    with Image.open(out) as img:
        pixels = np.asarray(img.convert("L"))
    edges = pixels[:, [0, 1, -2, -1]]  # names wider than the picture are cut at its sides
    assert (edges == 255).all()


def test_a_class_name_holding_a_line_break_is_one_line_of_the_heatmap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks: list[str] = []
    save = viz._save_figure

    def keep_ticks(fig: Any, out: Path) -> Path:
        ticks.extend(tick.get_text() for tick in fig.axes[0].get_yticklabels())
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_ticks)
    viz.plot_confusion(np.eye(3), tmp_path / "c.png", class_names=["a\nb", "c\td", "e"])
    assert ticks == ["a\\nb", "c\\td", "e"]  # as the terminal and the gallery show them


def test_gallery_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    images = rng.uniform(0, 1, (12, 28, 28))
    true, pred = rng.integers(0, 10, 12), rng.integers(0, 10, 12)
    prob = rng.uniform(0.3, 1.0, 12)
    out = viz.save_gallery(images, true.tolist(), pred.tolist(), prob.tolist(), tmp_path / "g.png")
    assert_png(out, (800, 300))
    flat = images.reshape(12, 784)  # flattened images are accepted too
    assert_png(viz.save_gallery(flat, true, pred, prob, tmp_path / "f.png", cols=4), (400, 400))
    assert_png(
        viz.save_gallery(np.zeros((0, 28, 28)), [], [], [], tmp_path / "none.png"), (300, 50)
    )
    with pytest.raises(UsageError, match="12 images but 11 true labels"):
        viz.save_gallery(images, true[:11], pred, prob, tmp_path / "x.png")


def test_a_gallery_of_uint8_digits_converts_only_the_ones_it_draws(tmp_path: Path) -> None:
    import tracemalloc

    rng = np.random.default_rng(16)
    digits = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)  # as MNIST stores them
    labels = ([4] * 12, [5] * 12, [0.25] * 12)
    as_floats = viz.save_gallery(digits / 255.0, *labels, tmp_path / "f.png")
    as_bytes = viz.save_gallery(digits, *labels, tmp_path / "b.png")
    with Image.open(as_floats) as a, Image.open(as_bytes) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    n = 20_000  # every mistake of a poor model on the training split: 15.7 MB as bytes
    many = np.repeat(digits[:1], n, axis=0)
    tracemalloc.start()
    try:
        viz.save_gallery(many, [4] * n, [5] * n, [0.25] * n, tmp_path / "many.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # as float64 they alone would take 125 MB


@pytest.mark.parametrize(
    ("names", "caption"),
    [
        (None, "true 7 → pred 2\n(92%)"),
        ([str(d) for d in range(10)], "true 7 → pred 2\n(92%)"),
        (
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
            "true seven\n→ pred two\n(92%)",
        ),
        (["$x^$", "1", "a\nb"] + ["c" * 100] * 7, "true cccccc...\n→ pred a\\nb\n(92%)"),
    ],
)
def test_the_gallery_names_the_classes_as_the_model_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str] | None, caption: str
) -> None:
    captions: list[tuple[str, bool]] = []
    save = viz._save_figure

    def keep_captions(fig: Any, out: Path) -> Path:
        labels = [ax.xaxis.label for ax in fig.axes if ax.get_xlabel()]
        captions.extend((label.get_text(), label.get_parse_math()) for label in labels)
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_captions)
    images = np.zeros((2, 28, 28))
    viz.save_gallery(images, [7, 0], [2, 0], [0.92, 0.5], tmp_path / "g.png", class_names=names)
    assert captions[0] == (caption, False)  # as the heatmap and the terminal name them
    assert captions[1][1] is False  # "$x^$" is drawn as it is, never as TeX


@pytest.mark.parametrize("n", [1, 3, 12])
def test_the_gallery_title_fits_the_picture_of_a_few_mistakes(tmp_path: Path, n: int) -> None:
    images = np.random.default_rng(15).uniform(0, 1, (n, 28, 28))
    out = viz.save_gallery(images, [4] * n, [5] * n, [0.25] * n, tmp_path / "g.png")
    with Image.open(out) as img:
        pixels = np.asarray(img.convert("L"))
    edges = pixels[:, [0, 1, -2, -1]]  # a title wider than the picture is cut at its sides
    assert (edges == 255).all()


@pytest.mark.parametrize("figure", ["curves", "confusion"])
def test_the_title_of_a_run_with_a_long_name_fits_the_picture(tmp_path: Path, figure: str) -> None:
    # a run folder is named after its config file: 255 bytes at most, not 30
    name = "mnist-784-256-128-10-adam-cosine-schedule-with-dropout-and-augmentation-" * 3
    out = tmp_path / "p.png"
    if figure == "curves":
        viz.plot_curves(history(3), out, title=name)
    else:
        viz.plot_confusion(np.eye(10) * 100, out, title=f"{name}: test split, accuracy 94.92%")
    with Image.open(out) as img:
        pixels = np.asarray(img.convert("L"))
    edges = pixels[:, [0, 1, -2, -1]]  # a title wider than the picture is cut at its sides
    assert (edges == 255).all()


def test_importing_viz_does_not_import_plotting_libraries(
    imports_of: Callable[[str], set[str]],
) -> None:
    assert sorted(imports_of("import mlp_cli.viz") & {"matplotlib", "PIL", "rich"}) == []


# --------------------------------------------------------------------------- sweeps


def test_a_swept_text_is_drawn_as_written_not_as_tex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # output.dir or data.mirror may be swept with any text: "$x^$" is no TeX to typeset
    points = {"output.dir": [(v, 0.9, "completed") for v in ("out/$x^$", "out/$HOME$", "a\x1bb")]}
    drawn: list[tuple[str, bool]] = []
    save = viz._save_figure

    def keep_ticks(fig: Any, out: Path) -> Path:
        ticks = fig.axes[0].get_xticklabels()
        drawn.extend((tick.get_text(), tick.get_parse_math()) for tick in ticks)
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_ticks)
    viz.sweep_figure(points, {"t000": [(1, 0.9)]}, "val_acc", "sweep s", tmp_path / "s.png")
    assert drawn == [("out/$x^$", False), ("out/$HOME$", False), ("a\\x1bb", False)]
    assert_png(tmp_path / "s.png", (400, 300))


@pytest.mark.parametrize(("metric", "percent"), [("val_acc", True), ("val_loss", False)])
def test_a_sweeps_accuracies_are_labelled_as_percentages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metric: str, percent: bool
) -> None:
    # as the sweep's table (90.80%) and curves.png write them; a loss stays a number
    labels: list[tuple[float, str]] = []
    save = viz._save_figure

    def keep_ticks(fig: Any, out: Path) -> Path:
        out = save(fig, out)  # the labels drawn inside each axis
        for ax in fig.axes:
            low, high = ax.get_ylim()
            labels.extend(
                (t.get_position()[1], t.get_text())
                for t in ax.get_yticklabels()
                if low <= t.get_position()[1] <= high
            )
        return out

    monkeypatch.setattr(viz, "_save_figure", keep_ticks)
    points = {"optimizer.lr": [(0.01, 0.908, "completed"), (0.05, 0.8962, "completed")]}
    curves = {"t001": [(1, 0.908)], "t000": [(1, 0.8962)]}
    viz.sweep_figure(points, curves, metric, "sweep s", tmp_path / "s.png")
    assert len(labels) >= 4
    for value, text in labels:
        shown = text.replace("\u2212", "-")
        if percent:
            assert shown.endswith("%"), labels
            assert float(shown[:-1]) == pytest.approx(100 * value)
        else:
            assert float(shown) == pytest.approx(value)


def test_the_curves_of_one_epoch_trials_are_drawn_at_whole_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[float] = []
    save = viz._save_figure

    def keep_ticks(fig: Any, out: Path) -> Path:
        out = save(fig, out)  # the learning curves' epoch ticks inside the axis, as drawn
        low, high = fig.axes[-1].get_xlim()
        shown.extend(t for t in fig.axes[-1].xaxis.get_majorticklocs() if low <= t <= high)
        return out

    monkeypatch.setattr(viz, "_save_figure", keep_ticks)
    viz.sweep_figure({}, {"t000": [(1, 0.9)]}, "val_acc", "sweep s", tmp_path / "s.png")
    assert shown == [1.0]  # not 0.96, 0.975, 0.99...


@pytest.mark.parametrize(
    ("trials", "title"),
    [
        (0, "no trial gave a val_acc"),
        (1, "val_acc of the best trial"),
        (2, "val_acc of the best 2 trials"),
    ],
)
def test_the_sweep_curves_are_titled_by_how_many_trials_they_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trials: int, title: str
) -> None:
    titles: list[str] = []
    save = viz._save_figure

    def keep_title(fig: Any, out: Path) -> Path:
        titles.append(fig.axes[-1].get_title())
        return save(fig, out)

    monkeypatch.setattr(viz, "_save_figure", keep_title)
    curves = {f"t00{i}": [(1, 0.9)] for i in range(trials)}
    viz.sweep_figure({}, curves, "val_acc", "sweep s", tmp_path / "s.png")
    assert titles == [title]


@pytest.mark.parametrize(
    ("values", "ticks"),
    [
        ([32, 64, 128, 256], ["32", "64", "128", "256"]),  # within a decade
        ([1e-3, 3e-3, 1e-2, 1e-1], ["0.001", "0.003", "0.01", "0.1"]),
        (
            [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
            ["0.0001", "0.0003", "0.001", "0.003", "0.01", "0.03"],
        ),
    ],
)
def test_a_grids_values_on_a_log_axis_are_each_labelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: list[float], ticks: list[str]
) -> None:
    shown: list[str] = []
    save = viz._save_figure

    def keep_ticks(fig: Any, out: Path) -> Path:
        out = save(fig, out)  # the labels drawn inside the axis
        low, high = fig.axes[0].get_xlim()
        labels = fig.axes[0].get_xticklabels()
        shown.extend(t.get_text() for t in labels if low <= t.get_position()[0] <= high)
        return out

    monkeypatch.setattr(viz, "_save_figure", keep_ticks)
    points = {"training.batch_size": [(v, 0.9, "completed") for v in values]}
    viz.sweep_figure(points, {"t000": [(1, 0.9)]}, "val_acc", "sweep s", tmp_path / "s.png")
    assert shown == ticks


def test_the_log_axis_labels_of_a_few_random_draws_stand_clear_of_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A random sweep of five trials: values drawn log-uniformly, two of them close together
    boxes: list[Any] = []
    save = viz._save_figure

    def keep_boxes(fig: Any, out: Path) -> Path:
        out = save(fig, out)  # the labels drawn inside the axis, where they were drawn
        low, high = fig.axes[0].get_xlim()
        labels = [t for t in fig.axes[0].get_xticklabels() if low <= t.get_position()[0] <= high]
        boxes.extend(t.get_window_extent() for t in labels if t.get_text())
        return out

    monkeypatch.setattr(viz, "_save_figure", keep_boxes)
    values = [0.000234157, 0.000312, 0.0123456, 0.0451234, 0.0512345]
    points = {"optimizer.lr": [(v, 0.9, "completed") for v in values]}
    viz.sweep_figure(points, {"t000": [(1, 0.9)]}, "val_acc", "sweep s", tmp_path / "s.png")
    assert len(boxes) >= 2
    boxes.sort(key=lambda box: box.x0)
    assert all(left.x1 < right.x0 for left, right in itertools.pairwise(boxes))


def test_the_hidden_units_picture_is_named_as_the_readme_says(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    assert viz.hidden_png_path(run / "model.npz") == run / "hidden.png"
    assert viz.hidden_png_path(run / "model.npz", 2) == run / "hidden-layer2.png"
    assert viz.hidden_png_path(tmp_path / "mine.npz") == tmp_path / "mine-hidden.png"
    (tmp_path / "runs" / "latest").symlink_to("r1")  # the run it points to is named
    assert viz.hidden_png_path(tmp_path / "runs" / "latest" / "model.npz") == run / "hidden.png"


def test_a_large_tiles_label_is_at_most_14_pixels_tall() -> None:
    # Tiles of 28 x 4 = 112 pixels: 16% of them would be 17-pixel digits; labels stop at 14,
    # in a box 2 pixels taller, so that they never cover much of a tile.
    patterns = np.random.default_rng(5).standard_normal((4, 784))
    labelled = np.asarray(viz.tile_grid(patterns, 28, scale=4, legend=False))
    edge = labelled[SEP : SEP + 112, SEP]  # the left edge of the first tile, top down
    boxed = np.all(edge == viz.LABEL_BOX_RGB, axis=1)
    assert boxed[:16].all()
    assert not boxed[16:].any()


@pytest.mark.parametrize(("units", "drawn", "title"), [
    (1024, 1024, "note"),
    (1025, 1024, "note; the first 1,024 of 1,025 units"),
])  # fmt: skip
def test_the_picture_of_hidden_units_draws_the_first_1024_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, units: int, drawn: int, title: str
) -> None:
    asked: list[tuple[int, str | None]] = []

    def tile_grid(patterns: np.ndarray, side: int, *, title: str | None = None) -> Any:
        asked.append((len(patterns), title))
        return Image.new("RGB", (1, 1))

    monkeypatch.setattr(viz, "tile_grid", tile_grid)  # the drawing itself is tested above
    viz.save_hidden_png(np.ones((units, 4)), 2, tmp_path / "hidden.png", "note")
    assert asked == [(drawn, title)]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures viz draws, kept to be looked at instead of saved."""
    kept: list[Any] = []

    def keep(fig: Any, out: Path) -> Path:
        kept.append(fig)
        return out

    monkeypatch.setattr(viz, "_save_figure", keep)
    return kept


@pytest.mark.parametrize(
    ("rates", "scale"), [([0.1, 0.05, 0.005], "log"), ([0.1, 0.05, 0.02], "linear")]
)
def test_the_learning_rate_panel_is_logarithmic_beyond_10x_and_titled_with_the_last(
    figures: list[Any], tmp_path: Path, rates: list[float], scale: str
) -> None:
    records = history(3)
    for record, lr in zip(records, rates, strict=True):
        record["lr"] = lr
    viz.plot_curves(records, tmp_path / "curves.png")
    panel = figures[0].axes[2]
    assert panel.get_yscale() == scale  # 0.1 / 0.005 is 20x, 0.1 / 0.02 is 5x
    assert panel.get_title() == f"learning rate\nlast: {rates[-1]:g}"


def test_a_confusion_matrix_of_fractions_is_titled_and_filled_with_two_decimals(
    figures: list[Any], tmp_path: Path
) -> None:
    viz.plot_confusion(np.array([[0.5, 0.25], [0.0, 0.25]]), tmp_path / "c.png")
    viz.plot_confusion(np.array([[3, 1], [0, 1]]), tmp_path / "c.png")
    fractions, counts = (fig.axes[0] for fig in figures)
    assert fractions.get_title() == "confusion matrix: 0.75 of 1.00 correct (75.00%)"
    assert [t.get_text() for t in fractions.texts] == ["0.50", "0.25", "0.00", "0.25"]
    assert counts.get_title() == "confusion matrix: 4 of 5 correct (80.00%)"
    assert [t.get_text() for t in counts.texts] == ["3", "1", "0", "1"]


def test_a_confusion_pictures_counts_have_thousands_separators(
    figures: list[Any], tmp_path: Path
) -> None:
    # as the title, `mlp evaluate`'s terminal matrix and its per-class table write them
    viz.plot_confusion(np.array([[5586, 12], [1116, 999]]), tmp_path / "c.png")
    matrix, bar = figures[0].axes
    assert matrix.get_title() == "confusion matrix: 6,585 of 7,713 correct (85.38%)"
    assert [t.get_text() for t in matrix.texts] == ["5,586", "12", "1,116", "999"]
    ticks = [bar.yaxis.get_major_formatter()(v) for v in (0, 1000, 5000)]
    assert ticks == ["0", "1,000", "5,000"]


def test_a_confusion_pictures_class_names_are_cut_to_20_characters(
    figures: list[Any], tmp_path: Path
) -> None:
    names = ["a" * 20, "b" * 21]
    viz.plot_confusion(np.eye(2), tmp_path / "c.png", class_names=names)
    ticks = [t.get_text() for t in figures[0].axes[0].get_xticklabels()]
    assert ticks == ["a" * 20, "b" * 17 + "..."]


def test_a_gallery_of_more_images_than_it_draws_says_how_many_it_shows(
    figures: list[Any], tmp_path: Path
) -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    labels = ([1, 2, 3], [7, 2, 5], [0.9, 0.8, 0.7])
    viz.save_gallery(images, *labels, tmp_path / "g.png", max_images=2)
    viz.save_gallery(images, *labels, tmp_path / "g.png")
    cut, whole = (" ".join(fig.get_suptitle().split()) for fig in figures)
    assert cut.endswith("(model's probability for its prediction); first 2 of 3")
    assert whole.endswith("(model's probability for its prediction)")


def test_a_gallery_names_a_class_beyond_the_models_names_by_its_number(
    figures: list[Any], tmp_path: Path
) -> None:
    images = np.zeros((1, 28, 28), np.uint8)
    viz.save_gallery(images, [0], [2], [0.9], tmp_path / "g.png", class_names=["zero", "one"])
    assert figures[0].axes[0].get_xlabel() == "true zero\n→ pred 2\n(90%)"


def test_a_sweeps_trials_stopped_early_are_drawn_hollow_and_the_title_says_so(
    figures: list[Any], tmp_path: Path
) -> None:
    points = {"optimizer.lr": [(0.1, 0.5, "completed"), (0.2, 0.6, "pruned")]}
    viz.sweep_figure(points, {}, "val_loss", "sweep s", tmp_path / "s.png")
    viz.sweep_figure(
        {"optimizer.lr": points["optimizer.lr"][:1]}, {}, "val_loss", "sweep s", tmp_path / "s.png"
    )
    stopped, finished = figures
    faces = [line.get_markerfacecolor() for line in stopped.axes[0].lines]
    assert faces[1] == "none"  # hollow
    assert faces[0] != "none"
    assert stopped.get_suptitle() == "sweep s: hollow markers are trials stopped early"
    assert finished.get_suptitle() == "sweep s"


@pytest.mark.parametrize(("cols", "most"), [(0, 100), (10, 0)])
def test_a_gallery_of_no_columns_or_no_images_is_refused(
    tmp_path: Path, cols: int, most: int
) -> None:
    images = np.zeros((1, 28, 28), np.uint8)
    with pytest.raises(UsageError) as refused:
        viz.save_gallery(images, [0], [1], [0.9], tmp_path / "g.png", cols=cols, max_images=most)
    assert str(refused.value) == f"cols and max_images must be at least 1, got {cols} and {most}."
    assert not (tmp_path / "g.png").exists()


def test_a_min_delta_on_accuracy_is_also_said_in_percentage_points() -> None:
    # 0.005 beside "accuracy 90.46%" would read as half a hundredth of a point
    assert viz.monitored("val_acc", 0.005) == (
        "highest validation accuracy, counting only rises of more than min_delta 0.005"
        ", that is 0.5 percentage points"
    )
    assert viz.monitored("val_loss", 0.005).endswith("drops of more than min_delta 0.005")
