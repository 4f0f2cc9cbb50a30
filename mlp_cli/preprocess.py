"""Turn MNIST digits and users' pictures into the network's input vectors.

MNIST was built by size-normalising each digit to fit a 20x20 box (aspect ratio kept,
anti-aliased) and pasting it into a 28x28 frame so that its centre of mass sits at the
centre, white ink (high values) on black. A network trained on it only works on pictures
that look the same, so `mnist_style` reproduces that construction for whatever a user
hands over: black ink on white paper, a digit in a corner of a large photo, a transparent
PNG, a 16-bit scan, a rotated phone JPEG.

Both kinds of image then go through one and the same input transform
(`digits_to_inputs` for MNIST's uint8 arrays, `prepare_inputs` for prepared pictures):
scale to the model's input size by exact area averaging and flatten; `normalize_inputs`
then applies the model's standardisation, if any (`model_inputs` does both for MNIST).

Left out on purpose: segmenting several digits in one picture, sharp shadows (the
background is a smooth surface fitted to the picture's border), perspective correction,
and choosing among colour channels (colour pictures are reduced to luma).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mlp_cli.errors import ImageError, UsageError
from mlp_cli.limits import MNIST_SIDE, NotRegularFileError, format_bytes, open_regular
from mlp_cli.plain import shown

FloatArray = npt.NDArray[np.float32]

BOX_SIDE = 20  # MNIST digits are scaled so that their longer side is this long
MNIST_CENTRE = 14.0  # row/column index MNIST puts the centre of mass at (measured: 13.99, 14.01)
MAX_FILE_BYTES = 64 * 2**20  # a phone photo is a few MB; larger files are refused unread
MAX_SIDE = 1024  # larger pictures are first reduced by area averaging; the digit ends at 20 px
MAX_PIXELS = 50_000_000  # width * height; a 48-megapixel photo opens, larger ones are refused
STATS_ROWS = 1024  # inputs gathered at a time for standardisation statistics (~6 MB at 28x28)

# Formats `open_image` accepts (Pillow names; "JPEG" also opens the MPO variant of cameras).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
_FORMAT_LIST = "PNG, JPEG, BMP, GIF, TIFF or WebP"

_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

# Pillow logs an error about a TIFF of too many samples per pixel, then refuses it with an
# exception: with no logging set up (the command line), Python would print that line as it
# is, before the ImageError naming the file says the same.
logging.getLogger("PIL.TiffImagePlugin").addFilter(lambda record: record.levelno < logging.ERROR)

BORDER_FRACTION = 0.02  # width of the border ring, as a fraction of the shorter side
NOISE_SIGMAS = 3.0  # deviations from the background below this many noise sigmas are not ink
INK_FLOOR = 0.15  # ... nor below this fraction of the ink's strong level (JPEG ringing, halos)
INK_PERCENTILE = 90.0  # this percentile of the ink's contrast is mapped to 1
MIN_CONTRAST = 0.02  # on a [0, 1] scale: weaker "ink" than this is an empty picture
BOX_TRIM = 0.05  # mass fraction trimmed off each side to find the digit's core box
SURFACE_MIN_SIDE = 16  # smaller pictures get a flat background, not a fitted surface
FLAT_FIELD_MIN = 0.2  # backgrounds lighter than this everywhere are divided out, not subtracted
SURFACE_ITERATIONS = 2  # robust refits of the background surface, each without outliers
GAP_FRACTION = 0.03  # breaks in strokes up to this fraction of the shorter side are bridged
# Stroke width, in pixels once the digit fits the 20-pixel box, estimated as 2 * area /
# perimeter of the pixels above 0.5. Measured on MNIST's test digits: 5th percentile 1.2,
# median 1.8. Thinner strokes (a fine pen on a large photo) shrink to faint 1-pixel lines,
# so they are thickened to the median; MNIST's own digits are left alone.
MIN_STROKE = 1.2
TARGET_STROKE = 1.8


# --- the model's input transform (MNIST and prepared pictures alike) ------------------------


@functools.lru_cache(maxsize=16)
def area_matrix(n_in: int, n_out: int) -> FloatArray:
    """Overlap weights (n_out, n_in): row i averages the input span output pixel i covers.

    Output pixel i covers [i, i+1) * n_in / n_out in input coordinates; its weight on input
    pixel j is the length of the overlap with [j, j+1), divided by the span's length, so
    every row sums to 1. `mlp export` writes the same matrix into its ONNX graph.
    """
    scale = n_in / n_out
    edges = np.arange(n_out + 1, dtype=np.float64) * scale  # (n_out + 1,)
    left = np.arange(n_in, dtype=np.float64)  # (n_in,)
    overlap = np.minimum(edges[1:, None], left[None, :] + 1) - np.maximum(
        edges[:-1, None], left[None, :]
    )  # (n_out, n_in)
    weights: FloatArray = (np.clip(overlap, 0.0, None) / scale).astype(np.float32)
    weights.flags.writeable = False
    return weights


def _area_resize(images: FloatArray, size: int) -> FloatArray:
    """Area-average a batch (N, 28, 28) of floats to (N, size, size)."""
    if size == MNIST_SIDE:
        return images
    weights = area_matrix(MNIST_SIDE, size)  # (size, 28)
    out: FloatArray = np.matmul(np.matmul(weights, images), weights.T)  # (N, size, size)
    return out


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UsageError(
            f"The input size must be a positive whole number of pixels per side "
            f"(28 for MNIST as is, 20 for the smaller input); got {size!r}."
        )


def resize_digits(images: npt.NDArray[np.uint8], size: int) -> FloatArray:
    """Scale uint8 MNIST digits (N, 28, 28) to float32 (N, size, size) in [0, 1].

    Each output pixel is the mean of the input area it covers (exact area averaging, also
    for sizes that do not divide 28, such as 20).
    """
    _check_size(size)
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise UsageError(f"Digits must be an array of shape (N, 28, 28); got shape {images.shape}.")
    if images.dtype != np.uint8:
        raise UsageError(f"Digits must be uint8 (0-255 as in MNIST); got {images.dtype}.")
    scaled = images.astype(np.float32) / np.float32(255.0)  # (N, 28, 28)
    return _area_resize(scaled, size)


def digits_to_inputs(images: npt.NDArray[np.uint8], size: int) -> FloatArray:
    """The network's inputs for uint8 MNIST digits: float32 (N, size*size), C-contiguous."""
    resized = resize_digits(images, size)  # (N, size, size)
    return np.ascontiguousarray(resized.reshape(len(resized), size * size))


def prepare_inputs(images: Sequence[npt.NDArray[np.floating]], size: int) -> FloatArray:
    """The network's inputs for prepared pictures, each (28, 28) in [0, 1]: (N, size*size).

    Uses the same area averaging as `digits_to_inputs`, so MNIST digits and users' pictures
    reach the model through an identical transform.
    """
    _check_size(size)
    for index, image in enumerate(images):
        if image.shape != (MNIST_SIDE, MNIST_SIDE):
            raise UsageError(
                f"Prepared image {index} must have shape (28, 28) (see mnist_style); "
                f"got {image.shape}."
            )
    if len(images) == 0:
        return np.zeros((0, size * size), dtype=np.float32)
    stacked = np.stack([np.asarray(image, dtype=np.float32) for image in images])  # (N, 28, 28)
    resized = _area_resize(stacked, size)  # (N, size, size)
    return np.ascontiguousarray(resized.reshape(len(images), size * size))


def input_statistics(X: FloatArray, rows: npt.NDArray[np.int64]) -> dict[str, float]:
    """The mean and standard deviation over all pixels of X[rows] (X: (N, D)), as the
    `normalize` entry of a model's preprocessing metadata.

    Two passes in float64 over STATS_ROWS rows at a time: no copy of X[rows] is made, so the
    memory needed stays small however large the training set is.
    """
    n = len(rows) * X.shape[1]

    def blocks() -> Iterator[FloatArray]:
        for start in range(0, len(rows), STATS_ROWS):
            yield X[rows[start : start + STATS_ROWS]]  # (<= STATS_ROWS, D)

    mean = sum(float(block.sum(dtype=np.float64)) for block in blocks()) / n
    squares = 0.0
    for block in blocks():
        deviation = block.astype(np.float64).ravel() - mean
        squares += float(deviation @ deviation)
    return {"mean": mean, "std": float(np.sqrt(squares / n))}


def normalize_inputs(X: FloatArray, preprocessing: Mapping[str, Any]) -> FloatArray:
    """Apply a model's input standardisation, if it has one, to inputs in [0, 1], in place.

    `preprocessing` is the model's metadata: `normalize` is None or {"mean", "std"} (one
    mean and one standard deviation over all training pixels). Returns X, shape kept.
    """
    norm = preprocessing.get("normalize")
    if norm:
        X -= np.float32(norm["mean"])
        X *= np.float32(1.0 / norm["std"])
    return X


def model_inputs(images: npt.NDArray[np.uint8], preprocessing: Mapping[str, Any]) -> FloatArray:
    """MNIST-form uint8 digits (N, 28, 28) -> the inputs (N, input_size**2) of a model with
    this `preprocessing` metadata (its `input_size` and `normalize`)."""
    X = digits_to_inputs(images, int(preprocessing["input_size"]))
    return normalize_inputs(X, preprocessing)


# --- reading files ---------------------------------------------------------------------------


def open_image(path: str | Path) -> Image.Image:
    """Read an image file fully into memory, with its EXIF orientation applied.

    Accepts PNG, JPEG, BMP, GIF, TIFF and WebP (the first frame of animations) of at most
    MAX_PIXELS pixels; Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is an
    error too, not a warning. Raises ImageError naming the file for a missing file, a
    directory or anything else that is not a regular file (a named pipe would block), a file
    that is not a supported image, a truncated or corrupt image, or one that is too large.
    """
    path, name = Path(path), shown(path)
    try:
        # Read whole, then decoded from memory: Pillow asks a file for as many bytes as a
        # chunk header claims, and a file object allocates that much before reading.
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(size + 1) if size <= MAX_FILE_BYTES else None
    except FileNotFoundError:
        # a link to a deleted file is listed in its folder: "does not exist" would puzzle
        what = (
            "is a link to nowhere (its target is gone)" if path.is_symlink() else "does not exist"
        )
        raise ImageError(
            f"Image file {name} {what}. Give the path of a {_FORMAT_LIST} file."
        ) from None
    except (IsADirectoryError, NotRegularFileError) as error:
        if path.is_dir():
            raise ImageError(
                f"{name} is a directory, not an image file. Give the path of one "
                f"{_FORMAT_LIST} file."
            ) from None
        raise ImageError(
            f"{name} cannot be used as an image: {error.strerror}. Give the path of a "
            f"{_FORMAT_LIST} file."
        ) from None
    except OSError as error:
        raise ImageError(f"Image {name} could not be read: {error.strerror or error}.") from None
    if data is None or len(data) > MAX_FILE_BYTES:
        raise ImageError(
            f"Image {name} is larger than {format_bytes(MAX_FILE_BYTES)}, more than a picture "
            f"of a digit needs; scale it down or crop it and save it as a {_FORMAT_LIST} file."
        )
    return _decode(io.BytesIO(data), name)


def image_from_bytes(data: bytes, source: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """`open_image` for an image held in memory (an upload), refused beyond `max_pixels`;
    errors say "Image {source} ...", so `source` reads after "Image" ("in the request body")."""
    if not data:
        raise ImageError(f"Image {source} is empty (0 bytes); send a {_FORMAT_LIST} image.")
    return _decode(io.BytesIO(data), source, max_pixels)


def _decode(file: BinaryIO, source: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `file` fully (and close it), EXIF orientation applied; the bomb limit and
    `max_pixels` are errors, checked from the header before any pixel is decoded."""
    try:
        with file, warnings.catch_warnings():
            # Pillow warns of damaged metadata (an EXIF tag it skips), which no digit needs
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file, formats=FORMATS)
            if image.width * image.height > max_pixels:
                raise ImageError(
                    f"Image {source} has {image.width}x{image.height} pixels, more than the "
                    f"{max_pixels / 1e6:.3g} million mlp reads; scale or crop it (a digit needs "
                    f"only a few hundred pixels per side) and try again."
                )
            image.load()  # the pixels are in memory before `file` closes
            ImageOps.exif_transpose(image, in_place=True)  # in place: no full-size copy
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageError(
            f"Image {source} is too large to open safely: {error} Larger pictures are "
            f"refused as possible decompression bombs; scale or crop it (a digit needs "
            f"only a few hundred pixels per side) and try again."
        ) from error
    except UnidentifiedImageError as error:
        raise ImageError(
            f"Image {source} is not an image this program can read: expected a {_FORMAT_LIST} "
            f"file, but Pillow recognises none of these formats in it. Convert it to PNG "
            f"and try again."
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, OverflowError) as error:
        # Pillow reports truncated and corrupt data as OSError, SyntaxError or EOFError; a
        # TIFF whose strip offset is a fraction or beyond 63 bits, as TypeError or OverflowError.
        raise ImageError(
            f"Image {source} could not be read: {error}. The file looks truncated or "
            f"corrupt; save or export it again as a {_FORMAT_LIST} file."
        ) from error
    return image


# --- users' pictures -> MNIST conventions ------------------------------------------------------


def _luma(rgb: npt.NDArray[np.uint8]) -> FloatArray:
    """ITU-R 601 luma of (H, W, 3) uint8 colours, in [0, 1] (the weights Pillow's "L" uses)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    luma: FloatArray = (rgb.astype(np.float32) @ weights) / np.float32(255.0)
    return luma


def _flatten_transparency(image: Image.Image) -> Image.Image:
    """Composite a picture with transparency onto an opaque background.

    Converting straight to greyscale would drop alpha and keep the colour under transparent
    pixels, which is often black: black ink on a transparent sheet then vanishes. The
    background is white, except when everything visible is one light colour (a white or
    pale digit drawn on a transparent layer), which would vanish on white; then it is black.
    """
    if image.mode in _UINT16_MODES or image.mode in ("I", "F"):
        return image  # colour-key transparency on 16-bit or float scans is not honoured
    if not image.has_transparency_data:  # an alpha band, a colour key or a palette's alpha
        return image
    if image.mode == "La":
        image = image.convert("LA")  # Pillow converts premultiplied La to nothing else
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    if np.frombuffer(rgba.tobytes("raw", "A"), dtype=np.uint8).min() == 255:
        return rgba  # opaque: its grey is the grey of its RGB
    pixels = np.asarray(rgba)  # (H, W, 4)
    alpha = pixels[..., 3]
    visible = _luma(pixels[..., :3])[alpha >= 128]
    light_uniform_ink = (
        visible.size > 0
        and float(np.percentile(visible, 95) - np.percentile(visible, 5)) < 0.25
        and float(np.median(visible)) > 0.5
    )
    background = (0, 0, 0, 255) if light_uniform_ink else (255, 255, 255, 255)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba).convert("RGB")


def _png_depth(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale PNG as "I;16", whatever the Pillow: Pillow 10.1 opens one as 32-bit
    "I", whose scale `_grey` would guess from the values (a dark scan, all of them at most
    255, read as 8-bit and 257 times too bright), where later Pillows open it as "I;16",
    read by its depth.  A PNG holds no 32-bit greys, so its "I" is always 16 bits."""
    if image.format == "PNG" and image.mode == "I":
        return image.convert("I;16")
    return image


def _grey(image: Image.Image) -> FloatArray:
    """Greyscale float32 (H, W) in [0, 1], whatever the mode and bit depth."""
    mode = image.mode
    if mode in _UINT16_MODES:
        return np.asarray(image).astype(np.float32) / np.float32(65535.0)
    if mode in ("I", "F"):
        # infinities as float32's extremes: between float64's, the stretch below overflows
        largest = float(np.finfo(np.float32).max)
        with np.errstate(invalid="ignore"):  # a signalling NaN warns as it is cast: a NaN still
            values = np.asarray(image).astype(np.float64)
        values = np.nan_to_num(values, posinf=largest, neginf=-largest)
        low, high = float(values.min()), float(values.max())
        # the smallest usual full scale that holds the data (1.0 only for float pictures);
        # data outside all of them is stretched from its minimum to its maximum
        scales = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0, 2.0**32 - 1)
        full = next((scale for scale in scales if low >= 0.0 and high <= scale), None)
        if full is None:
            values, full = values - low, max(high - low, 1e-12)
        return np.clip(values / full, 0.0, 1.0).astype(np.float32)
    if mode == "LAB":
        grey = image.getchannel("L")  # L* is lightness already
    elif mode in ("CMYK", "HSV"):
        grey = image.convert("RGB").convert("L")
    else:
        grey = image.convert("L")
    levels: FloatArray = np.array(grey, dtype=np.float32)
    levels /= np.float32(255.0)
    return levels


def _reduce_large(image: Image.Image) -> Image.Image:
    """Area-average pictures over MAX_SIDE pixels down to about MAX_SIDE, first of all, so
    that no step below copies the full-size picture: the digit ends at 20 px anyway.

    Pillow averages colours with their transparency premultiplied, so flattening afterwards
    gives what flattening first would. It cannot average palette indices, bilevel pixels,
    colour keys or 16-bit greys as they are, so those are converted to a mode it can first.
    """
    factor = -(-max(image.size) // MAX_SIDE)  # ceil
    if factor <= 1:
        return image
    mode, width, height = image.mode, image.width, image.height
    if mode in _UINT16_MODES:
        return image.convert("I").reduce(factor).convert("I;16")
    if mode == "F":  # NaN counts as 0 (see _grey) one pixel at a time, not a block at a time
        rows = [  # (1, W / factor) each, from `factor` rows of pixels at a time
            np.asarray(Image.fromarray(np.nan_to_num(np.asarray(strip))).reduce(factor))
            for strip in (
                image.crop((0, top, width, min(top + factor, height)))
                for top in range(0, height, factor)
            )
        ]
        return Image.fromarray(np.vstack(rows))
    if mode != "I" and (mode in ("P", "PA") or "transparency" in image.info):
        # a palette's or a colour key's transparency, if it has any, kept as alpha
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif mode == "1":
        image = image.convert("L")
    return image.reduce(factor)


def _border_mask(shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The outer ring of pixels, BORDER_FRACTION of the shorter side wide (at least 1)."""
    height, width = shape
    ring = max(1, round(BORDER_FRACTION * min(height, width)))
    mask = np.ones(shape, dtype=bool)
    if 2 * ring < min(height, width):
        mask[ring:-ring, ring:-ring] = False
    return mask


def _robust_sigma(residuals: npt.NDArray[np.floating]) -> float:
    """Noise level from residuals around zero: the scaled median absolute value (MAD).

    One line by hand, as scipy.stats' import would cost `mlp predict` more than it saves
    (`python -m bench.ndimage`).
    """
    return 1.4826 * float(np.median(np.abs(residuals)))


def _background(grey: FloatArray) -> tuple[FloatArray, float]:
    """The background under the whole picture (H, W), or (1, 1) where it is flat, and its
    noise (a robust sigma), both estimated from the border ring.

    The background is a quadratic surface in the pixel coordinates, fitted by least squares
    to the ring's pixels and refitted without the outliers (ink reaching the border), so
    that a light gradient or the falloff of a phone photo's lighting is removed along with
    the paper. For uniform paper it is flat, at the ring's level. Pictures too small to
    fit a surface to, and rings of one value (MNIST), get a flat background at the median.
    """
    height, width = grey.shape
    ring = _border_mask(grey.shape)
    values = grey[ring]  # (ring pixels,)
    level = float(np.median(values))
    noise = _robust_sigma(values - level)
    if min(height, width) < SURFACE_MIN_SIDE or float(np.ptp(values)) == 0.0:
        return np.full((1, 1), level, dtype=np.float32), noise  # broadcasts as (H, W)
    # coordinates scaled to [-1, 1], so the least-squares problem is well conditioned
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)  # (H,)
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)  # (W,)
    rows, cols = np.nonzero(ring)
    ry, rx = y[rows], x[cols]  # (ring pixels,) each
    design = np.stack([np.ones_like(rx), rx, ry, rx * rx, ry * ry, rx * ry], axis=1)
    design64 = design.astype(np.float64)  # (ring pixels, 6): the quadratic's monomials
    c = np.array([level, 0, 0, 0, 0, 0], dtype=np.float64)
    residuals = values - np.float32(level)
    for _ in range(SURFACE_ITERATIONS):
        inliers = np.abs(residuals) <= max(NOISE_SIGMAS * noise, 1e-6)
        if np.count_nonzero(inliers) < 4 * len(c):
            break
        kept = design64[inliers]  # (inliers, 6)
        try:  # normal equations: 6 unknowns, well conditioned on [-1, 1] coordinates
            c = np.linalg.solve(kept.T @ kept, kept.T @ values[inliers])
        except np.linalg.LinAlgError:
            break  # inliers on too few sides of the ring to fix a surface: keep the last
        residuals = values - (design @ c.astype(np.float32))
        noise = _robust_sigma(residuals)
    c32 = c.astype(np.float32)
    by_row = c32[0] + c32[2] * y + c32[4] * y * y  # (H,)
    by_col = c32[1] * x + c32[3] * x * x  # (W,)
    surface = by_row[:, None] + by_col[None, :] + c32[5] * np.outer(y, x)  # (H, W)
    return surface, noise


def _ink_contrast(grey: FloatArray) -> tuple[FloatArray, float]:
    """Each pixel's difference from the background, signed so that ink is positive, and
    the background's noise: (H, W), sigma.

    The side of the background level carrying more mass beyond the noise is the ink. When
    that is the darker side (dark ink on light paper) the sign flips, which inverts the
    picture: ink becomes light on dark, as in MNIST.
    """
    background, noise = _background(grey)
    deviation = grey - background  # (H, W)
    low, high = float(background.min()), float(background.max())
    if low > FLAT_FIELD_MIN and low < high:  # a flat background would divide by itself
        # Light falls on paper and ink alike, so an unevenly lit picture has proportionally
        # weaker ink where it is darker: dividing by the background evens that out.
        deviation *= np.float32(np.median(background)) / background
    cut = NOISE_SIGMAS * noise
    beyond = deviation - cut  # (H, W): how far each side reaches past the noise
    lighter = float(np.maximum(beyond, 0.0, out=beyond).sum())
    inverted = -deviation
    np.subtract(inverted, cut, out=beyond)
    darker = float(np.maximum(beyond, 0.0, out=beyond).sum())
    return (inverted if darker > lighter else deviation), noise


def _ink(contrast: FloatArray, noise: float, source: str) -> FloatArray:
    """Separate ink from the background: background 0, the ink's strong level 1.

    Contrasts within the noise or under INK_FLOOR of the ink's strong level (paper texture,
    JPEG ringing) go to 0; the rest, less the noise threshold, is rescaled linearly so the
    strong level maps to 1, and clipped to [0, 1].
    """
    noise_cut = NOISE_SIGMAS * noise
    candidates = contrast[contrast > noise_cut]
    strong = float(np.percentile(candidates, INK_PERCENTILE)) if candidates.size else 0.0
    if strong <= max(2 * noise_cut, MIN_CONTRAST):
        raise ImageError(
            f"Image {source} holds no ink / digit: nothing in it stands out from the "
            f"background (taken from the border of the picture) and its noise. Give a "
            f"picture of one handwritten digit, dark on light or light on dark, with a "
            f"margin of background around it."
        )
    # Noise is subtracted (soft threshold: no step at its edge); the floor only cuts, so that
    # the faint anti-aliased edges of clean digits above it keep their values.
    ink = contrast - noise_cut  # (H, W)
    ink /= strong - noise_cut
    np.clip(ink, 0.0, 1.0, out=ink)
    ink[~(contrast > INK_FLOOR * strong)] = 0.0
    return ink


def _despeckled(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Ink pixels with at least 2 ink neighbours in their 3x3 window (drops specks).

    Shifted sums by hand, three along each row and then three of those down each column:
    Pillow's rank filter takes many times longer on a full-size picture, and
    scipy.ndimage's import would cost `mlp predict` more than it saves (`python -m
    bench.ndimage`).
    """
    padded = np.pad(mask.astype(np.uint8), 1)  # (H + 2, W + 2), a frame of zeros
    across = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]  # (H + 2, W)
    count = across[:-2] + across[1:-1] + across[2:]  # (H, W), including the pixel itself
    result: npt.NDArray[np.bool_] = mask & (count >= 3)
    return result


def _trimmed_span(mass: FloatArray) -> tuple[int, int]:
    """First and last index of a 1-D mass profile after trimming BOX_TRIM off each end."""
    cumulative = np.cumsum(mass, dtype=np.float64)
    total = cumulative[-1]
    first = int(np.searchsorted(cumulative, BOX_TRIM * total, side="right"))
    last = int(np.searchsorted(cumulative, (1.0 - BOX_TRIM) * total, side="left"))
    return first, max(first, last)


def _ink_box(ink: FloatArray) -> tuple[int, int, int, int]:
    """Bounding box (top, bottom, left, right; inclusive) of the digit, ignoring specks.

    Start from the core box holding all but BOX_TRIM of the ink's mass on each side, then
    grow it while despeckled ink lies within a few lines beyond one of its sides (near its
    extent along that side): strokes are followed to their ends across small breaks, while
    specks separated from the digit by a wider stretch of background are left out.
    """
    solid = _despeckled(ink > 0)
    if not solid.any():
        solid = ink > 0  # a digit drawn with single pixels: keep what there is
    weighted = np.zeros_like(ink)  # (H, W): the ink of the solid pixels
    np.copyto(weighted, ink, where=solid)
    top, bottom = _trimmed_span(weighted.sum(axis=1))
    left, right = _trimmed_span(weighted.sum(axis=0))
    height, width = ink.shape
    reach = max(2, round(GAP_FRACTION * min(height, width)))
    while True:
        # the box and `reach` lines around it: the lines beyond a side that hold ink within
        # this window are those within reach, near the box's extent along that side
        first_row, first_col = max(top - reach, 0), max(left - reach, 0)
        window = solid[first_row : bottom + reach + 1, first_col : right + reach + 1]
        rows = np.flatnonzero(np.logical_or.reduce(window, axis=1)) + first_row
        cols = np.flatnonzero(np.logical_or.reduce(window, axis=0)) + first_col
        grown = (
            min(top, int(rows[0])),
            max(bottom, int(rows[-1])),
            min(left, int(cols[0])),
            max(right, int(cols[-1])),
        )
        if grown == (top, bottom, left, right):
            return grown
        top, bottom, left, right = grown


def _stroke_width(mask: npt.NDArray[np.bool_]) -> float:
    """Mean width of the strokes in a binary image, 2 * area / perimeter (a long stroke of
    width w has area L*w and perimeter about 2L)."""
    padded = np.pad(mask, 1)  # a frame of False, so that edges at the border count
    vertical = int(np.count_nonzero(padded[1:, :] != padded[:-1, :]))
    horizontal = int(np.count_nonzero(padded[:, 1:] != padded[:, :-1]))
    return 2.0 * float(np.count_nonzero(mask)) / max(vertical + horizontal, 1)


def _max_filter(image: FloatArray, radius: int) -> FloatArray:
    """Grey dilation by a (2*radius+1) square: each pixel becomes its neighbourhood's max.

    Separable, so 4 * radius maxima per pixel; Pillow's MaxFilter sorts the whole square
    at every pixel, which grows with radius squared (`python -m bench.ndimage`).
    """
    result = image
    for axis in (0, 1):
        source = result
        result = source.copy()
        for shift in range(1, radius + 1):
            ahead = [slice(None), slice(None)]
            behind = [slice(None), slice(None)]
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            np.maximum(result[tuple(ahead)], source[tuple(behind)], out=result[tuple(ahead)])
            np.maximum(result[tuple(behind)], source[tuple(ahead)], out=result[tuple(behind)])
    return result


def _thickened(digit: FloatArray) -> FloatArray:
    """A cropped digit (h, w) whose strokes would be thinner than MIN_STROKE in the 20-pixel
    box, dilated (and padded to make room) so that they reach TARGET_STROKE there."""
    longer = max(digit.shape)
    width = _stroke_width(digit > 0.5) * BOX_SIDE / longer
    radius = round((TARGET_STROKE - width) / 2 * longer / BOX_SIDE)
    if width >= MIN_STROKE or radius < 1:
        return digit
    return _max_filter(np.pad(digit, radius), radius)


def _fit_box(digit: FloatArray) -> FloatArray:
    """Scale a cropped digit so its longer side is BOX_SIDE, keeping the aspect ratio."""
    height, width = digit.shape
    longer = max(height, width)
    new_size = (max(1, round(width * BOX_SIDE / longer)), max(1, round(height * BOX_SIDE / longer)))
    if new_size == (width, height):
        return digit
    resized = Image.fromarray(digit).resize(new_size, Image.Resampling.LANCZOS)
    scaled = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    # Shrinking thin strokes dims them; MNIST strokes reach full intensity.
    peak = float(scaled.max())
    return scaled / np.float32(peak) if peak > 0 else scaled


def _centre_by_mass(digit: FloatArray) -> FloatArray:
    """Paste a (h, w) digit, h, w <= 28, into a 28x28 frame with its centre of mass at
    MNIST_CENTRE, shifted by whole pixels and kept entirely inside the frame.

    The centre of mass is two sums by hand, as scipy.ndimage's import would cost `mlp
    predict` more than it saves (`python -m bench.ndimage`).
    """
    height, width = digit.shape
    total = float(digit.sum())
    row_com = float(digit.sum(axis=1) @ np.arange(height)) / total
    col_com = float(digit.sum(axis=0) @ np.arange(width)) / total
    top = min(max(round(MNIST_CENTRE - row_com), 0), MNIST_SIDE - height)
    left = min(max(round(MNIST_CENTRE - col_com), 0), MNIST_SIDE - width)
    frame = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    frame[top : top + height, left : left + width] = digit
    return frame


def mnist_style(image: Image.Image, *, source: str = "<image>") -> FloatArray:
    """A user's picture of one digit as an MNIST digit: float32 (28, 28) in [0, 1].

    Applies EXIF orientation, flattens transparency, reduces to greyscale (any bit depth),
    makes the ink light on a dark background, removes the background and its noise, crops
    to the digit, thickens strokes much thinner than MNIST's, scales the digit's longer
    side to 20 pixels and centres it by mass in a 28x28 frame. MNIST digits themselves pass
    through nearly unchanged. Raises ImageError naming `source` when the picture holds no
    ink.
    """
    image = _png_depth(image)  # first: turning a picture drops the format it came in
    # exif_transpose copies a picture it leaves as it is, and `open_image`'s are upright
    upright = image.getexif().get(ExifTags.Base.Orientation, 1) == 1
    oriented = image if upright else ImageOps.exif_transpose(image)
    if oriented.width == 0 or oriented.height == 0:
        raise ImageError(f"Image {source} is empty (0 pixels); give a picture of a digit.")
    grey = _grey(_flatten_transparency(_reduce_large(oriented)))  # (H, W)
    ink = _ink(*_ink_contrast(grey), source)  # (H, W)
    top, bottom, left, right = _ink_box(ink)
    crop = _thickened(ink[top : bottom + 1, left : right + 1])
    digit = _fit_box(crop)  # (h, w), max(h, w) == 20
    return _centre_by_mass(digit)


def raw_image(image: Image.Image, *, source: str = "<image>") -> FloatArray:
    """A picture taken as already in MNIST form: float32 (28, 28) in [0, 1].

    Only converts to greyscale (any bit depth) and resizes to 28x28 if it is another size
    (a picture over MAX_SIDE pixels area-averaged first, as in `mnist_style`, so that no
    step copies it at full size); no inversion, cropping or centring.
    """
    if image.width == 0 or image.height == 0:
        raise ImageError(f"Image {source} is empty (0 pixels); give a 28x28 picture.")
    grey = _grey(_reduce_large(_png_depth(image)))  # (H, W), at most about MAX_SIDE a side
    if grey.shape != (MNIST_SIDE, MNIST_SIDE):
        resized = Image.fromarray(grey).resize((MNIST_SIDE, MNIST_SIDE), Image.Resampling.LANCZOS)
        grey = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return grey
