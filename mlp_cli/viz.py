"""Pictures of a network and its training: what units respond to, curves, confusions, mistakes.

A hidden unit of a network fed with flattened ``side x side`` images has ``side * side``
incoming weights, one per pixel, so its row of ``W1`` (shape ``(n_hidden, n_inputs)``,
``z = W1 @ a + b1``) *is* a picture of the pattern that excites it (red, positive weights)
and the pattern that inhibits it (blue, negative weights). `unit_patterns` picks those rows
(or, for deeper layers, a linear approximation of them), `unit_colours` colours them, and
`tile_grid` / `save_hidden_png` draw them as a PNG (`render.render_hidden_terminal` draws
them in the terminal). `plot_curves`, `plot_confusion` and `save_gallery` draw training
histories, confusion matrices and misclassified digits.

Every picture is a `matplotlib.figure.Figure`, never built through pyplot, so no GUI
backend is touched and no global figure state is kept. Left out on purpose: loading
checkpoints or metrics, computing confusion matrices, choosing which images to show,
checking where a picture may be written (the command does that with
`outputs.check_picture`, before the work) and printing. matplotlib and Pillow are imported
inside the functions that need them, so importing this module costs only NumPy.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import os
import textwrap
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np

from mlp_cli.errors import UsageError
from mlp_cli.limits import MAX_PARAMETERS, counted, percent, shorten
from mlp_cli.losses import LOSSES
from mlp_cli.outputs import PICTURE_MARK, picture_format, save_image, save_picture

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from PIL import Image

CMAP = "RdBu_r"  # diverging: blue = negative, near-white = 0, red = positive
SEPARATOR = 2  # px of frame between tiles in `tile_grid`
MAX_DRAWN_UNITS = 1024  # units in one picture of hidden units: 32x32 tiles, 3,700 px square
SEPARATOR_RGB = (70, 70, 70)  # dark, so it stands out against near-white (near-zero) pixels
PAGE_RGB = (255, 255, 255)  # background of the header and of empty grid cells
LABEL_BOX_RGB = (20, 20, 20)  # box behind a tile's unit index, so it reads on red and blue
MIN_HEADER_WIDTH = 300  # px; narrower grids are centred on a page this wide so the legend fits
DPI = 120  # resolution of every matplotlib figure
FONT_SIZE = 11  # pt, base size of matplotlib text
HIDDEN_FILE = "hidden.png"  # `mlp show hidden`'s picture, beside the model
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # a run records float32 values


def _not_about_matplotlibs_folder(record: logging.LogRecord) -> bool:
    """False for matplotlib's warnings that its settings and cache folder (below the home
    folder, or ``MPLCONFIGDIR``) cannot be written, which it prints on every command that
    draws: it then makes a temporary folder of its own and removes it at exit."""
    return record.funcName != "_get_config_or_cache_dir"


if not os.environ.get("MPLCONFIGDIR"):  # one the user chose is theirs to hear about
    logging.getLogger("matplotlib").addFilter(_not_about_matplotlibs_folder)


# --------------------------------------------------------------------------- unit patterns


def unit_patterns(weights: Sequence[np.ndarray], layer: int = 1) -> tuple[np.ndarray, str]:
    """Return the input-space pattern of every unit of `layer` and a one-line note.

    `weights` are the weight matrices ``W1 ... WL`` of the network, ``Wk`` of shape
    ``(units_k, units_{k-1})``. Layer 1 gives the rows of ``W1`` exactly. A deeper layer
    ``k`` gives the rows of the product ``Wk @ ... @ W1``: what the unit would respond to if
    every activation in between were the identity (a linear approximation; biases and
    nonlinearities are ignored). The output layer ``L`` is allowed: it shows one linear
    template per class. Returns ``(patterns, note)`` with patterns of shape
    ``(units_layer, n_inputs)`` in float64.
    """
    mats = [np.asarray(w, dtype=np.float64) for w in weights]
    if not mats:
        raise UsageError(
            "No weight matrices were given, so there are no units to draw. Pass the network's "
            "weight matrices W1 ... WL, W1 of shape (n_hidden, n_inputs)."
        )
    for k, W in enumerate(mats, start=1):
        if W.ndim != 2:
            raise UsageError(
                f"Weight matrix W{k} has shape {W.shape}, but a 2-D matrix of shape "
                "(units, inputs) was expected. Pass the weight matrices only, not the biases."
            )
        if k > 1 and W.shape[1] != mats[k - 2].shape[0]:
            raise UsageError(
                f"Weight matrix W{k} has shape {W.shape}, so it expects {W.shape[1]} inputs, but "
                f"W{k - 1} (shape {mats[k - 2].shape}) has {mats[k - 2].shape[0]} units. Pass the "
                "matrices in order W1, W2, ..., each of shape (units, units of the layer below)."
            )
    n_layers = len(mats)
    if not 1 <= layer <= n_layers:
        hidden = n_layers - 1
        if not hidden:
            layers = "no hidden layer; its one weight layer, numbered 1, is the output layer"
        else:
            first = "layer 1" if hidden == 1 else f"layers 1 to {hidden}"
            layers = (
                f"{hidden} hidden layer{'s' if hidden > 1 else ''} and an output layer, numbered "
                f"1 to {n_layers} ({first} hidden, layer {n_layers} the output layer)"
            )
        choose = "layer 1" if n_layers == 1 else f"a layer from 1 to {n_layers}"
        raise UsageError(
            f"Layer {layer} does not exist: this network has {layers}. Choose {choose}."
        )
    patterns = mats[0]  # (units_1, n_inputs)
    for W in mats[1:layer]:  # each step's patterns are bounded as a model's weights are
        if (size := W.shape[0] * patterns.shape[1]) > MAX_PARAMETERS:
            raise UsageError(
                f"Layer {layer} cannot be drawn: its product of weights passes through a layer "
                f"of {W.shape[0]:,} units, whose patterns of {patterns.shape[1]} pixels are "
                f"{size:,} numbers, more than mlp holds for a whole model "
                f"({MAX_PARAMETERS:,}). Choose a lower layer (layer 1 draws W1 itself)."
            )
    with np.errstate(over="ignore", invalid="ignore"):  # said below in a sentence
        for W in mats[1:layer]:
            patterns = W @ patterns  # (units_k, n_inputs)
    what = "output units (one per class)" if layer == n_layers else f"layer {layer} units"
    if layer == 1:
        note = f"{what}: incoming weights (rows of W1)"
    else:
        names = [f"W{k}" for k in range(layer, 0, -1)]
        # a deep layer's whole product would run off its picture's title: its ends say it
        product = "·".join(names if layer <= 4 else [*names[:2], "...", *names[-2:]])
        note = f"{what} shown through the product {product} (linear approximation)"
        if not np.all(np.isfinite(patterns)):
            raise UsageError(
                f"Layer {layer} cannot be drawn: the product {product} of its weights holds "
                "numbers too large for float64. Choose a lower layer (layer 1 draws W1 itself)."
            )
    return patterns, note


def check_patterns(patterns: np.ndarray, side: int) -> np.ndarray:
    """Validate (units, side*side) patterns; return them as float64."""
    P = np.asarray(patterns, dtype=np.float64)
    if side < 1:
        raise UsageError(f"The image side must be a positive number of pixels, got {side}.")
    if P.ndim != 2 or P.shape[1] != side * side:
        found = P.shape[1] if P.ndim == 2 else f"an array of shape {P.shape}"
        root = math.isqrt(P.shape[1]) if P.ndim == 2 else 0
        hint = f" These patterns look like {root}x{root} images." if root**2 == found else ""
        raise UsageError(
            f"Cannot draw unit patterns as {side}x{side} images: expected shape (units, "
            f"{side * side}), one flattened image per unit, found {found}.{hint} Pass the "
            "image side the network was trained on."
        )
    if P.shape[0] == 0:
        raise UsageError("There are no units to draw (the pattern array has 0 rows).")
    if not np.all(np.isfinite(P)):
        raise UsageError(
            "Some weights are NaN or infinite, so they cannot be drawn. The network probably "
            "diverged during training; train again with a smaller learning rate."
        )
    return P


def unit_colours(patterns: np.ndarray) -> np.ndarray:
    """Colour each row with the diverging map `CMAP`, scaled by the row's own max |w| so 0
    stays white whatever its range; (units, n) -> (units, n, 3) uint8."""
    from matplotlib import colormaps

    peak = np.max(np.abs(patterns), axis=1, keepdims=True)  # (units, 1)
    scaled = patterns / np.where(peak > 0, peak, 1.0)  # (units, n) in [-1, 1]
    rgba = colormaps[CMAP]((scaled + 1.0) / 2.0, bytes=True)  # (units, n, 4) uint8
    return np.asarray(rgba[..., :3], dtype=np.uint8)


# --------------------------------------------------------------------------- PNG tile grid


def grid_cols(n: int) -> int:
    """Columns of a near-square grid for n tiles (never more rows than columns)."""
    return max(1, math.ceil(math.sqrt(n)))


def tile_sheet(
    patterns: np.ndarray, side: int, cols: int, *, scale: int = 1, frame: int = 0
) -> np.ndarray:
    """Unit patterns (units, side * side) as one RGB image (uint8), `cols` tiles to a row in
    unit order, each coloured by `unit_colours`, enlarged `scale` times and framed by `frame`
    pixels of `SEPARATOR_RGB`; cells without a unit are white."""
    n = patterns.shape[0]
    step = side * scale + frame
    rgb = unit_colours(patterns).reshape(n, side, side, 3)  # (units, side, side, 3)
    rgb = rgb.repeat(scale, axis=1).repeat(scale, axis=2)  # (units, tile, tile, 3)
    sheet = np.full(
        (math.ceil(n / cols) * step + frame, cols * step + frame, 3), PAGE_RGB, np.uint8
    )
    for i in range(n):
        y, x = (i // cols) * step, (i % cols) * step
        sheet[y : y + step + frame, x : x + step + frame] = SEPARATOR_RGB
        sheet[y + frame : y + step, x + frame : x + step] = rgb[i]
    return sheet


@contextmanager
def _defaults(rc: Mapping[str, Any]) -> Iterator[None]:
    """matplotlib's own defaults, updated with `rc`, whatever a matplotlibrc (the user's, or
    one in the current folder) sets: a picture is the same everywhere, and a setting such as
    text.usetex (LaTeX, which may not be installed) or savefig.bbox (a picture of another
    size than the one drawn) cannot break it."""
    from matplotlib.style import context

    with context(["default", dict(rc)]):
        yield


@_defaults({})
def tile_grid(
    patterns: np.ndarray,
    side: int,
    *,
    scale: int = 4,
    cols: int | None = None,
    labels: bool = True,
    legend: bool = True,
    title: str | None = None,
) -> Image.Image:
    """Draw one ``side x side`` tile per unit in a near-square grid; return an RGB image.

    `patterns` has shape ``(units, side * side)``, each row a flattened row-major image.
    Every tile is scaled symmetrically around zero by its own max |w| and coloured with the
    diverging map `CMAP` (see `unit_colours`). Tiles are enlarged `scale` times (nearest
    neighbour: one block of pixels per weight) and framed by `SEPARATOR` pixels, so the grid
    is ``cols * side * scale + (cols + 1) * SEPARATOR`` pixels wide (likewise high with
    rows). With `labels` the unit index is drawn in each tile's top-left corner, on tiles
    at least twice as tall as the box behind it (a smaller tile would be hidden). With
    `legend` a header holding `title`, a colour bar and what the colours mean sits above the
    grid (and the page is at least `MIN_HEADER_WIDTH` wide, the grid centred); without it
    the image is the grid alone. Text and colour bar are drawn by matplotlib at 72 dpi, so
    one point is one pixel, over the grid's pixels, which are never resampled.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import PathCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath, text_to_path
    from matplotlib.transforms import IdentityTransform, Transform, offset_copy
    from PIL import Image

    P = check_patterns(patterns, side)
    if scale < 1:
        raise UsageError(f"The tile scale must be a whole number of at least 1, got {scale}.")
    if cols is not None and cols < 1:
        raise UsageError(f"The number of grid columns must be at least 1, got {cols}.")
    n = P.shape[0]
    cols = min(n, cols if cols is not None else grid_cols(n))
    tile, step = side * scale, side * scale + SEPARATOR
    grid = tile_sheet(P, side, cols, scale=scale, frame=SEPARATOR)
    width = max(grid.shape[1], MIN_HEADER_WIDTH) if legend else grid.shape[1]
    label_size = int(np.clip(tile * 0.16, 9, 14))
    labels = labels and tile >= 2 * (label_size + 2)  # the box would hide a smaller tile
    font = FontProperties(size=label_size)  # whose digits all have the same width
    digit_w = text_to_path.get_text_width_height_descent("0", font, False)[0]
    x0 = (width - grid.shape[1]) // 2 + SEPARATOR + 2  # px from the page's left edge
    base = grid.shape[0] - SEPARATOR - 1 - label_size * 0.95  # first row: under digits this tall
    glyphs: list[TextPath] = []  # one collection of glyph outlines: a text artist per unit is slow
    for i in range(n if labels else 0):  # the box behind each index, so it reads on any colour
        row, col = divmod(i, cols)
        y, x = row * step + SEPARATOR, col * step + SEPARATOR
        grid[y : y + label_size + 2, x : x + int(len(str(i)) * digit_w) + 5] = LABEL_BOX_RGB
        glyphs.append(TextPath((x0 + col * step, base - row * step), str(i), size=label_size))

    fig = Figure(figsize=(width / 72, grid.shape[0] / 72), dpi=72)  # taller once with a header
    header, height = 0, grid.shape[0]
    if legend:
        pad, bar_h, ticks_h = 6, 12, 18  # px: margins, the colour bar, its tick labels
        # matplotlib wraps text at the edges of its subfigure: the page less its margins here
        column = fig.add_subfigure(
            fig.add_gridspec(1, 3, width_ratios=(pad, width - 2 * pad, pad))[1]
        )

        def px_below(y: float) -> Transform:  # `y` px below the page's top, however tall
            return offset_copy(column.transSubfigure, fig, 0, -y, units="dots")

        words = (
            f"{counted(n, 'unit')}; red = positive weight, blue = negative, "
            "white = 0; each tile is scaled to its own largest |weight|"
            + ("; the number is the unit's index (row)" if labels else "")
        )
        texts = [  # first both `pad` below the top edge: matplotlib wraps no text right at it
            column.text(0, 1, title or "", transform=px_below(pad), va="top", wrap=True,
                        fontsize=13, weight="bold", parse_math=False),
            column.text(0, 1, words, transform=px_below(pad), va="top", wrap=True, fontsize=11,
                        color="0.16"),
        ]  # fmt: skip
        fig.draw_without_rendering()  # wraps the text, so that its height can be measured
        title_h, words_h = (t.get_window_extent().height for t in texts)  # 0 for no title
        bar_y = pad + title_h + 4 + bar_h  # px from the top to the colour bar's bottom
        texts[1].set_transform(px_below(bar_y + ticks_h))
        header = math.ceil(bar_y + ticks_h + words_h + pad)
        height = header + grid.shape[0]
        fig.set_size_inches(width / 72, height / 72)
        bar_w = min(160, width - 2 * pad - 80)
        cax = fig.add_axes((40 / width, 1 - bar_y / height, bar_w / width, bar_h / height))
        bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), CMAP), cax=cax,
                           orientation="horizontal", ticks=[-1, 0, 1])  # fmt: skip
        bar.ax.set_xticklabels(["−max", "0", "+max"], fontsize=11)
        bar.ax.tick_params(length=3, pad=1)
    if glyphs:  # drawn in pixels from the bottom left
        fig.add_artist(
            PathCollection(glyphs, facecolors="white", linewidths=0, transform=IdentityTransform())
        )
    # text on a transparent layer over the grid: `figimage` would resample every pixel
    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", dpi=72, transparent=True)
    page = Image.new("RGBA", (width, height), PAGE_RGB)
    page.paste(Image.fromarray(grid), ((width - grid.shape[1]) // 2, header))
    text = Image.frombuffer("RGBA", (width, height), raw.getvalue(), "raw", "RGBA", 0, 1)
    return Image.alpha_composite(page, text).convert("RGB")


def hidden_png_path(model: Path, layer: int = 1) -> Path:
    """Where `mlp show hidden` draws by default: beside the model file, so in its run
    folder (``hidden.png``, ``hidden-layer2.png`` for layer 2...), prefixed with the file's
    stem for a model file not named ``model.npz``."""
    from mlp_cli.checkpoint import MODEL_FILE

    name = HIDDEN_FILE if layer == 1 else f"hidden-layer{layer}.png"
    if model.name != MODEL_FILE:
        name = f"{model.stem}-{name}"
    folder = model.parent
    if folder.is_symlink():  # runs/latest: name the run the picture belongs to
        folder = folder.parent / os.readlink(folder)
    return folder / name


def save_hidden_png(patterns: np.ndarray, side: int, out: Path, note: str) -> Path:
    """Draw unit patterns (see `unit_patterns`, whose `note` heads the picture) into a PNG at
    `out` (checked first with `outputs.check_picture`): the first `MAX_DRAWN_UNITS` of them,
    and the title says so when there are more. Returns `out`."""
    if (n := len(patterns)) > MAX_DRAWN_UNITS:
        patterns = patterns[:MAX_DRAWN_UNITS]
        note = f"{note}; the first {MAX_DRAWN_UNITS:,} of {n:,} units"
    return save_image(tile_grid(patterns, side, title=note), out, "picture of hidden units")


# --------------------------------------------------------------------------- matplotlib figures


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    """A pyplot-free figure with this module's font size and constrained layout."""
    from matplotlib.figure import Figure

    with _defaults({"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1}):
        yield Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _fill(text: str, inches: float, points: float) -> str:
    """`text` broken into lines at most `inches` wide in a font of `points` (0.6 em is about
    the widest average letter of the font): matplotlib cuts a longer title off at the
    picture's sides."""
    return textwrap.fill(text, max(1, int(inches * 72 / (0.6 * points))))


def _save_figure(fig: Figure, out: Path) -> Path:
    """Save in the format named by the suffix of `out`, atomically and with `PICTURE_MARK`.
    Whether `out` may be replaced is for the caller to check first (`outputs.check_picture`),
    before the work whose result is drawn."""
    fmt = picture_format(Path(out), "figure")
    metadata = {"Software" if fmt == "png" else "Creator": PICTURE_MARK}

    def write(f: IO[bytes]) -> None:
        with warnings.catch_warnings():
            # A name in letters the font lacks (a run folder or class name in Chinese, an
            # emoji) is drawn as boxes, without matplotlib's warning quoting our source
            # ("missing from font(s) DejaVu Sans"; in older versions "missing from current font").
            missing = r"Glyph \d+ .* missing from (current )?font"
            warnings.filterwarnings("ignore", missing, UserWarning)
            fig.savefig(f, format=fmt, dpi=DPI, metadata=metadata)

    return save_picture(Path(out), "figure", write)


def _series(records: Sequence[Mapping[str, Any]], key: str, *, finite: bool = False) -> np.ndarray:
    """The values of `key` across records as float64, NaN where absent or None; with
    `finite`, a value given as NaN or infinity is refused (no run records one there)."""
    beyond = "beyond any float32 value a run records."
    values = np.full(len(records), np.nan)
    for i, rec in enumerate(records):
        v = rec.get(key)
        if v is None:
            continue
        problem = None
        try:
            values[i] = float(v)
        except OverflowError:  # an integer of hundreds of digits
            problem = beyond
        except (TypeError, ValueError):
            problem = "but a number (or null) was expected."
        else:
            if finite and not np.isfinite(values[i]):
                problem = (
                    "but a finite number (or null) was expected: a run never records NaN or"
                    " infinity there."
                )
            elif abs(values[i]) > _FLOAT32_MAX and np.isfinite(values[i]):  # matplotlib fails
                problem = beyond
        if problem is not None:
            # the value as the file holds it, which may be text of any length
            raise UsageError(
                f"Metrics record {i + 1} has {key} = {shorten(repr(v), 40)}, {problem}"
            )
    return values


MONITORED = {"val_loss": "lowest validation loss", "val_acc": "highest validation accuracy"}
_IMPROVEMENT = {"val_loss": "drops", "val_acc": "rises"}


def monitored(monitor: str, min_delta: float = 0.0) -> str:
    """What makes an epoch the best: "lowest validation loss", qualified by a positive
    `min_delta`, since a smaller improvement makes no new best and a later epoch can then
    beat the best one."""
    words = MONITORED.get(monitor, monitor)
    if min_delta > 0:
        change = _IMPROVEMENT.get(monitor, "changes")
        words += f", counting only {change} of more than min_delta {min_delta:g}"
        if monitor == "val_acc":  # a fraction, where accuracy is shown in percent
            words += f", that is {min_delta * 100:g} percentage points"
    return words


def best_record(
    records: Sequence[Mapping[str, Any]], best_by: Literal["val_loss", "val_acc"] = "val_loss"
) -> int | None:
    """Index of the best epoch's record, or None without validation scores.

    The trainer flags an epoch ``"best": true`` when it improved by the trainer's own
    threshold, so the last flagged record wins; without flags, the lowest ``val_loss`` (or
    highest ``val_acc``) does, the first one on ties.
    """
    scores = _series(records, best_by)
    flagged = [i for i, rec in enumerate(records) if rec.get("best") is True]
    if flagged and not np.isnan(scores[flagged[-1]]):
        return flagged[-1]
    if np.all(np.isnan(scores)):
        return None
    return int(np.nanargmin(scores) if best_by == "val_loss" else np.nanargmax(scores))


def curve_series(
    records: Sequence[Mapping[str, Any]],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The epochs (n,) and the series (n,) of `plot_curves` (``train_loss``... ``lr``), NaN
    where a record has none; refuses records no run writes with `UsageError`, before anything
    is drawn."""
    if not records:
        raise UsageError("There are no metrics records to plot: the training history is empty.")
    epoch = _series(records, "epoch", finite=True)
    epoch = np.where(np.isnan(epoch), np.arange(1, len(records) + 1), epoch)
    if (back := np.flatnonzero(np.diff(epoch) <= 0)).size:
        i = int(back[0]) + 1  # the first record whose epoch does not follow the one before
        raise UsageError(
            f"Metrics record {i + 1} has epoch {epoch[i]:g} after record {i} with epoch "
            f"{epoch[i - 1]:g}, but the epochs of one run only go up: these records mix more "
            "than one run (another run's lines appended, or two files joined). Plot each run's "
            "own metrics.jsonl."
        )
    s = {k: _series(records, k) for k in ("train_loss", "val_loss", "train_acc", "val_acc")}
    s["lr"] = _series(records, "lr", finite=True)
    for key in ("train_acc", "val_acc"):
        if np.nanmax(s[key], initial=0.0) > 1.0 + 1e-9:
            raise UsageError(
                f"{key} reaches {np.nanmax(s[key]):g}, but accuracies must be fractions in "
                "[0, 1] (0.97 for 97%)."
            )
    return epoch, s


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    title: str | None = None,
    loss: str | None = None,
    monitor: Literal["val_loss", "val_acc"] | None = None,
    min_delta: float = 0.0,
) -> Path:
    """Plot loss, accuracy and learning rate per epoch into `out`; return `out`.

    `loss` is the run's loss (a key of `losses.LOSSES`), which names the loss axis; None
    when it is not known. `monitor` and `min_delta` are the run's
    ``training.early_stopping`` settings, which the legend names as what made the best
    epoch best (see `monitored`); None when they are not known.

    `records` hold one mapping per epoch with keys ``epoch``, ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc`` and ``lr``; accuracies are fractions in [0, 1] and are shown
    as percentages. Any value may be None or absent (a run without a validation split has
    no ``val_*``); a missing ``epoch`` is taken as the record's position (1, 2, ...). The
    best epoch is marked: the last record flagged ``"best": true`` by the trainer (which
    applies its own improvement threshold and monitored metric), else the lowest
    ``val_loss`` (the highest ``val_acc`` when that is monitored). The learning rate is
    drawn on a log scale when it varies by more than 10x.
    """
    from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator, PercentFormatter

    epoch, s = curve_series(records)
    marker = "o" if len(records) <= 30 else None  # dots make short histories readable
    loss_label = "loss" if loss is None else LOSSES[loss].label

    best = best_record(records, monitor or "val_loss")
    with _figure(14.0, 4.8) as fig:
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
        for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            in_percent = key == "acc"
            lasts = []
            for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
                y = s[f"{split}_{key}"] * (100.0 if in_percent else 1.0)
                if np.all(np.isnan(y)):
                    continue
                label = "training" if split == "train" else "validation"
                ax.plot(epoch, y, color=colour, marker=marker, ms=3, label=label)
                last = y[~np.isnan(y)][-1]
                figure = percent(last / 100) if in_percent else f"{last:.4g}"
                lasts.append(f"{label} {figure}")
            # final values in the title keep the plot area free of legends
            ax.set_title(f"{name}\nlast: {', '.join(lasts)}" if lasts else name)
            ax.set_ylabel("accuracy (%)" if in_percent else loss_label)
            if in_percent:
                ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
        if best is not None:
            b_epoch, b_loss, b_acc = epoch[best], s["val_loss"][best], s["val_acc"][best]
            # "best" by the monitored metric, named: with val_acc the loss panel's star is
            # not at the lowest loss, and without the words it would read as a mistake
            why = "" if monitor is None else f" ({monitored(monitor, min_delta)})"
            b_label = f"best epoch {b_epoch:g}{why}: " + ", ".join(
                text
                for text, value in (
                    (f"validation loss {b_loss:.4g}", b_loss),
                    (f"validation accuracy {percent(b_acc)}", b_acc),
                )
                if not np.isnan(value)
            )
            for ax in (ax_loss, ax_acc, ax_lr):
                ax.axvline(b_epoch, color="0.4", ls="--", lw=1)
            for ax, y in ((ax_loss, b_loss), (ax_acc, 100 * b_acc)):
                # grey dashes + red star: in the legend this reads as the line and the marker
                ax.plot([b_epoch], [y], ls="--", lw=1, color="0.4", marker="*", ms=13,
                        mfc="tab:red", mec="tab:red", label=b_label)  # fmt: skip

        lr = s["lr"]
        if np.all(np.isnan(lr)):
            ax_lr.text(0.5, 0.5, "no learning rate recorded", ha="center", va="center",
                       transform=ax_lr.transAxes, color="0.4")  # fmt: skip
            ax_lr.set_title("learning rate")
        else:
            ax_lr.plot(epoch, lr, color="tab:green", marker=marker, ms=3)
            known = lr[~np.isnan(lr)]
            if np.all(known > 0) and known.max() > 10 * known.min():
                ax_lr.set_yscale("log")
                # label some minor ticks too: a decayed rate such as 0.0037 should be readable
                ax_lr.yaxis.set_minor_formatter(
                    LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5))
                )
            elif known.max() == known.min():
                # a constant rate: show it against zero rather than as a zoomed-in flat line
                ax_lr.set_ylim(min(0.0, 1.5 * known.min()), max(0.0, 1.5 * known.max()) or 1.0)
            ax_lr.set_title(f"learning rate\nlast: {known[-1]:.3g}")
        ax_lr.set_ylabel("learning rate")

        pad = max(0.5, 0.02 * (epoch.max() - epoch.min()))  # keeps a lone epoch's ticks whole
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.set_xlabel("epoch")
            ax.set_xlim(epoch.min() - pad, epoch.max() + pad)
            ax.xaxis.set_major_locator(
                MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1)
            )
            ax.grid(True, alpha=0.3)
        # one legend for all panels, below them, where it cannot cover a curve
        handles, labels = ax_loss.get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=len(handles),
                       frameon=False)  # fmt: skip
        if title:
            from mlp_cli.plain import escape_controls

            # a run's name, drawn as it is: not TeX, control characters escaped
            text = _fill(escape_controls(title), fig.get_figwidth(), FONT_SIZE + 3)
            fig.suptitle(text, fontsize=FONT_SIZE + 3, parse_math=False)
        return _save_figure(fig, out)


def plot_confusion(
    confusion: np.ndarray,
    out: Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw a (K, K) confusion matrix (rows = true class, columns = predicted) into `out`.

    Each cell shows its count; colour follows the square root of the count, so that the
    few off-diagonal mistakes stay visible next to a diagonal of thousands. The default
    title gives the overall accuracy. Returns `out`.
    """
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import StrMethodFormatter

    from mlp_cli.plain import escape_controls, shown

    C = np.asarray(confusion, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
        raise UsageError(
            f"A confusion matrix must be square, (classes, classes), found shape {C.shape}."
        )
    if not np.all(np.isfinite(C)) or np.any(C < 0):
        raise UsageError("A confusion matrix holds counts: finite numbers of at least 0.")
    K = C.shape[0]
    names = [str(k) for k in range(K)] if class_names is None else [str(c) for c in class_names]
    if len(names) != K:
        raise UsageError(f"{len(names)} class names were given for a {K}x{K} confusion matrix.")
    whole = bool(np.all(np.round(C) == C))
    total = C.sum()
    if title is None:
        title = "confusion matrix"
        if total > 0:
            title += (
                f": {C.trace():,.{0 if whole else 2}f} of {total:,.{0 if whole else 2}f} "
                f"correct ({percent(C.trace() / total)})"
            )

    size = max(5.0, 0.55 * K + 1.5)
    with _figure(size + 1.2, size) as fig:
        ax: Axes = fig.subplots()
        im = ax.imshow(C, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=max(C.max(), 1)))
        bar = fig.colorbar(im, ax=ax, label="count (square-root colour scale)", shrink=0.85)
        if whole:  # counts as the title and the terminal write them: 5,586
            bar.formatter = StrMethodFormatter("{x:,.0f}")
        # class names come from the model file: drawn as they are on one line, never as TeX,
        # and cut short (a file may hold 100 characters each), upright while they fit a column
        ticks = [shorten(shown(name), 20).replace("$", r"\$") for name in names]
        ax.set_xticks(range(K), ticks, rotation=90 if max(map(len, ticks)) > 3 else 0)
        ax.set_yticks(range(K), ticks)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        # may hold a file name, drawn as it is: not TeX, control characters escaped
        ax.set_title(_fill(escape_controls(title), size, FONT_SIZE + 1), parse_math=False)
        if K <= 30:  # beyond that the numbers would not fit their cells
            fontsize = FONT_SIZE - 2 if K <= 12 else 7
            rgba = np.asarray(im.cmap(im.norm(C)))  # (K, K, 4), the colour of each cell
            light = rgba[..., :3] @ np.array([0.2126, 0.7152, 0.0722]) > 0.5  # (K, K)
            for (i, j), v in np.ndenumerate(C):
                ax.text(j, i, f"{v:,.0f}" if whole else f"{v:,.2f}", ha="center", va="center",
                        fontsize=fontsize, color="black" if light[i, j] else "white")  # fmt: skip
        return _save_figure(fig, out)


def save_gallery(
    images: np.ndarray,
    true: Sequence[int] | np.ndarray,
    pred: Sequence[int] | np.ndarray,
    prob: Sequence[float] | np.ndarray,
    out: Path,
    *,
    cols: int = 10,
    max_images: int = 100,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Draw digits with ``true 4 → pred 9 (87%)`` under each into `out`; return `out`.

    `images` has shape ``(N, side, side)`` (or ``(N, side * side)``) with values in [0, 1],
    or 0-255 in uint8 as MNIST stores them; 1 (255) = ink, drawn dark on white. `prob` is
    the probability of the predicted class; classes are named by `class_names` (the
    model's, cut to a tile's width) where given, else by their index. Images are shown in
    the order given (`evaluate.Evaluation.worst_mistakes` ranks mistakes); only the first
    `max_images` are drawn (and made floats), and the title says so. Captions of wrong
    predictions are red, of right ones green. With no images the figure says there is
    nothing to show.
    """
    from mlp_cli.plain import shown as on_one_line

    imgs = np.asarray(images)
    if imgs.ndim == 2 and math.isqrt(imgs.shape[1]) ** 2 == imgs.shape[1]:
        side = math.isqrt(imgs.shape[1])
        imgs = imgs.reshape(-1, side, side)
    if imgs.ndim != 3:
        raise UsageError(f"Gallery images must have shape (N, side, side), found {imgs.shape}.")
    t, p = [int(x) for x in true], [int(x) for x in pred]
    q = [float(x) for x in prob]
    if not len(t) == len(p) == len(q) == imgs.shape[0]:
        raise UsageError(
            f"The gallery got {imgs.shape[0]} images but {len(t)} true labels, {len(p)} "
            f"predictions and {len(q)} probabilities; give one of each per image."
        )
    if cols < 1 or max_images < 1:
        raise UsageError(f"cols and max_images must be at least 1, got {cols} and {max_images}.")
    n_total = imgs.shape[0]
    n = min(n_total, max_images)
    # only the drawn images as floats: all of a split's mistakes may be passed
    imgs = imgs[:n] / 255.0 if imgs.dtype == np.uint8 else imgs[:n].astype(np.float64)
    if title is None:
        title = "true label → predicted label (model's probability for its prediction)"
    if n < n_total:
        title += f"; first {n} of {n_total}"

    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    width = max(1.55 * cols, 5.0)  # inches: the picture is as wide as its tiles

    def name(k: int) -> str:  # from the model file: cut to the width of a tile
        if class_names is None or not 0 <= k < len(class_names):
            return str(k)
        return shorten(on_one_line(class_names[k]), 9)

    # two digits fit side by side under a tile; longer names get a line each
    apart = "\n" if max((len(name(k)) for k in (*t[:n], *p[:n])), default=0) > 2 else " "
    with _figure(width, 1.75 * rows + 0.5) as fig:
        fig.suptitle(_fill(title, width, FONT_SIZE + 1), fontsize=FONT_SIZE + 1)
        if n == 0:
            ax0: Axes = fig.subplots()
            ax0.axis("off")
            ax0.text(0.5, 0.5, "no images to show", ha="center", va="center", color="0.4")
            return _save_figure(fig, out)
        axes = fig.subplots(rows, cols, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= n:
                ax.axis("off")
                continue
            ax.imshow(imgs[k], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ok = t[k] == p[k]
            shown = percent(q[k], 0)  # a whole percentage: ">99%" where a doubt remains
            ax.set_xlabel(
                f"true {name(t[k])}{apart}→ pred {name(p[k])}\n({shown})",
                fontsize=FONT_SIZE - 1,
                color="tab:green" if ok else "tab:red",
                parse_math=False,  # a class name is drawn as it is, never as TeX
            )
        return _save_figure(fig, out)


# Characters of tick labels that a sweep panel's axis holds between its outermost points
# (465 px at DPI, 10 px a character at FONT_SIZE, less matplotlib's margins)
_SWEEP_AXIS_CHARS = 40


def _labels_fit(values: Sequence[float], labels: Sequence[str]) -> bool:
    """Whether `labels` centred at `values` (ascending, all > 0) on a sweep panel's log
    axis stand clear of each other."""
    span = math.log(values[-1] / values[0])
    return all(
        math.log(b / a) / span * _SWEEP_AXIS_CHARS > (len(p) + len(q)) / 2 + 1
        for (a, b), (p, q) in zip(
            itertools.pairwise(values), itertools.pairwise(labels), strict=True
        )
    )


def sweep_figure(
    points: Mapping[str, Sequence[tuple[Any, float | None, str]]],
    curves: Mapping[str, Sequence[tuple[int, float | None]]],
    metric: str,
    title: str,
    out: Path,
) -> Path:
    """A sweep's picture: for each swept setting, every trial's best `metric` against its
    value (``points[key]``: (value, best, status); hollow markers for trials stopped
    early), then the learning curves of the best trials (``curves[trial id]``: (epoch,
    metric))."""
    from matplotlib.ticker import MaxNLocator, NullFormatter, PercentFormatter

    from mlp_cli.plain import escape_controls

    # accuracies are fractions here, percentages in the sweep's table and in curves.png
    in_percent = metric.endswith("_acc")
    panels = len(points) + 1
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    with _figure(4.6 * cols, 3.6 * rows) as fig:
        axes = list(fig.subplots(rows, cols, squeeze=False).flat)
        for ax, (key, found) in zip(axes, points.items(), strict=False):
            values = [v for v, _, _ in found]
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            if numeric:
                x = [float(v) for v in values]
                if x and min(x) > 0 and max(x) / min(x) >= 8:  # a decade or so: log scale
                    ax.set_xscale("log")
                    ax.xaxis.set_minor_formatter(NullFormatter())  # labels would overlap
                    # a grid's few values are labelled themselves: batch sizes 32 to 256
                    # would otherwise share the one label 10^2; a few random draws, close
                    # together and of many digits, keep the decades
                    grid = sorted(set(x))
                    labels = [f"{v:g}" for v in grid]
                    if len(grid) <= 6 and _labels_fit(grid, labels):
                        ax.set_xticks(grid, labels)
            else:
                names = list(dict.fromkeys(map(str, values)))
                x = [names.index(str(v)) for v in values]
                # a swept text (output.dir, data.mirror) is drawn as written: not TeX,
                # control characters escaped
                ticks = [escape_controls(name) for name in names]
                ax.set_xticks(range(len(names)), ticks, rotation=20, ha="right", parse_math=False)
                ax.set_xlim(-0.5, len(names) - 0.5)
            for xi, (_, best, status) in zip(x, found, strict=True):
                early = status == "pruned"
                ax.plot(xi, best, "o", ms=6, color="tab:blue", mfc="none" if early else "tab:blue")
            ax.set_xlabel(key)
            ax.set_ylabel(f"best {metric}")
            ax.grid(alpha=0.3)
        for ax in axes[:panels] if in_percent else []:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
        ax = axes[len(points)]
        for trial, series in curves.items():
            epochs = [e for e, v in series if v is not None]
            ax.plot(epochs, [v for _, v in series if v is not None], marker=".", label=trial)
        leaders = f"the best {len(curves)} trials" if len(curves) > 1 else "the best trial"
        ax.set_title(f"{metric} of {leaders}" if curves else f"no trial gave a {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        # one tick is enough: else trials of one epoch get ticks at 0.96, 0.975, 0.99...
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=FONT_SIZE - 2)
        for extra in axes[panels:]:
            extra.set_visible(False)
        stopped = any(status == "pruned" for found in points.values() for _, _, status in found)
        fig.suptitle(f"{title}: hollow markers are trials stopped early" if stopped else title)
        return _save_figure(fig, out)
