"""Render MNIST digits the way users hand pictures to `mlp predict`.

Each renderer takes an MNIST digit (uint8 (28, 28), white ink on black) and a
`np.random.Generator`, and returns the encoded file (suffix, bytes) of one kind of
picture people actually have: black ink on off-white paper, a large canvas with the digit
off-centre, a noisy JPEG, a transparent PNG, a palette GIF, a 16-bit TIFF, a phone JPEG
stored rotated with an EXIF Orientation tag, coloured ink on coloured paper.
`render_all` decodes them (so every kind has really been through its file format) and
`save_all` writes the same bytes to files. Used by the preprocessing tests and benchmarks.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

Digit = npt.NDArray[np.uint8]
Encoded = tuple[str, bytes]  # (file suffix, file contents)

# What exif_transpose does for each Orientation value, and the transpose that undoes it.
_ORIENTATION_UNDO = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # displayed = stored rotated by 270°, so store rotated by 90°
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _scaled(digit: Digit, side: int) -> npt.NDArray[np.float32]:
    """The digit's ink coverage in [0, 1], resized to (side, side) with bicubic smoothing."""
    resized = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32) / np.float32(255.0)


def _on_paper(
    coverage: npt.NDArray[np.float32],
    rng: np.random.Generator,
    *,
    paper: npt.ArrayLike,
    ink: npt.ArrayLike,
    noise: float,
) -> npt.NDArray[np.uint8]:
    """Blend ink over paper by coverage (H, W) -> uint8 (H, W) or (H, W, C), plus noise."""
    paper_arr = np.asarray(paper, dtype=np.float32)
    ink_arr = np.asarray(ink, dtype=np.float32)
    cover = coverage[..., None] if paper_arr.ndim else coverage
    values = paper_arr * (1 - cover) + ink_arr * cover
    values += np.float32(noise) * rng.standard_normal(size=values.shape, dtype=np.float32)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _paper_level(rng: np.random.Generator) -> float:
    return float(rng.uniform(205.0, 240.0))


def ink_on_paper(digit: Digit, rng: np.random.Generator) -> Encoded:
    """Black ink on off-white, slightly noisy paper, 84x84 pixels, as PNG."""
    pixels = _on_paper(
        _scaled(digit, 84), rng, paper=_paper_level(rng), ink=rng.uniform(15, 50), noise=4.0
    )
    return ".png", _encode(Image.fromarray(pixels), "PNG", compress_level=1)


def large_canvas(digit: Digit, rng: np.random.Generator) -> Encoded:
    """A 300x200 sheet with the digit (56 to 150 px tall) somewhere off-centre, as BMP."""
    width, height = 300, 200
    side = int(rng.integers(56, 151))
    coverage = np.zeros((height, width), dtype=np.float32)
    top = int(rng.integers(0, height - side + 1))
    left = int(
        rng.choice([rng.integers(0, width // 4), rng.integers(width // 2, width - side + 1)])
    )
    coverage[top : top + side, left : left + side] = _scaled(digit, side)
    pixels = _on_paper(coverage, rng, paper=_paper_level(rng), ink=rng.uniform(15, 50), noise=5.0)
    return ".bmp", _encode(Image.fromarray(pixels), "BMP")


def noisy_jpeg(digit: Digit, rng: np.random.Generator) -> Encoded:
    """Black ink on noisy paper, 112x112, JPEG at quality 60."""
    pixels = _on_paper(
        _scaled(digit, 112), rng, paper=_paper_level(rng), ink=rng.uniform(15, 50), noise=8.0
    )
    return ".jpg", _encode(Image.fromarray(pixels), "JPEG", quality=60)


def transparent_png(digit: Digit, rng: np.random.Generator) -> Encoded:
    """Black ink on a transparent layer: alpha carries the digit; under fully transparent
    pixels the RGB values are random, as some editors leave them."""
    coverage = _scaled(digit, 56)
    alpha = np.clip(np.rint(coverage * 255.0), 0, 255).astype(np.uint8)
    rgba = np.zeros((*alpha.shape, 4), dtype=np.uint8)
    hidden = alpha == 0
    rgba[hidden, :3] = rng.integers(0, 256, size=(int(hidden.sum()), 3), dtype=np.uint8)
    rgba[..., 3] = alpha
    return ".png", _encode(Image.fromarray(rgba), "PNG", compress_level=1)


def palette_gif(digit: Digit, rng: np.random.Generator) -> Encoded:
    """Dark ink on light paper with a 16-colour adaptive palette (mode P), as GIF."""
    pixels = _on_paper(
        _scaled(digit, 70), rng, paper=_paper_level(rng), ink=rng.uniform(15, 50), noise=3.0
    )
    rgb = Image.fromarray(pixels).convert("RGB")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return ".gif", _encode(palette, "GIF")


def grey16_tiff(digit: Digit, rng: np.random.Generator) -> Encoded:
    """A 16-bit greyscale scan (mode I;16): dark ink on light paper in the full 0-65535 range."""
    coverage = _scaled(digit, 64)
    paper, ink = rng.uniform(50000, 62000), rng.uniform(2000, 9000)
    values = paper * (1.0 - coverage) + ink * coverage + rng.normal(0.0, 600.0, coverage.shape)
    pixels = np.clip(np.rint(values), 0, 65535).astype(np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode == "I;16"
    return ".tif", _encode(image, "TIFF")


def exif_rotated_jpeg(digit: Digit, rng: np.random.Generator) -> Encoded:
    """A phone photo: pixels stored rotated or flipped, EXIF Orientation saying how to undo it."""
    pixels = _on_paper(
        _scaled(digit, 96), rng, paper=_paper_level(rng), ink=rng.uniform(15, 50), noise=4.0
    )
    orientation = int(rng.integers(2, 9))
    stored = Image.fromarray(pixels).transpose(_ORIENTATION_UNDO[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    return ".jpg", _encode(stored, "JPEG", quality=90, exif=exif)


def coloured_ink(digit: Digit, rng: np.random.Generator) -> Encoded:
    """Dark coloured ink (blue, red, green...) on light coloured paper, RGB, lossy WebP."""
    paper = rng.uniform([215, 205, 160], [255, 250, 240])
    ink = rng.uniform([0, 0, 0], [160, 90, 180])
    pixels = _on_paper(_scaled(digit, 80), rng, paper=paper, ink=ink, noise=4.0)
    return ".webp", _encode(Image.fromarray(pixels), "WEBP", quality=80, method=0)


RENDERERS: dict[str, Callable[[Digit, np.random.Generator], Encoded]] = {
    "ink_on_paper": ink_on_paper,
    "large_canvas": large_canvas,
    "jpeg": noisy_jpeg,
    "transparent": transparent_png,
    "palette": palette_gif,
    "grey16": grey16_tiff,
    "exif": exif_rotated_jpeg,
    "coloured": coloured_ink,
}


def render_files(digit: Digit, rng: np.random.Generator) -> dict[str, Encoded]:
    """Every kind of picture of `digit`, encoded: kind -> (suffix, bytes)."""
    if digit.shape != (28, 28) or digit.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (28, 28) MNIST digit, got {digit.dtype} {digit.shape}")
    return {kind: render(digit, rng) for kind, render in RENDERERS.items()}


def render_all(digit: Digit, rng: np.random.Generator) -> dict[str, Image.Image]:
    """Every kind of picture of `digit`, decoded from its file format: kind -> image."""
    images: dict[str, Image.Image] = {}
    for kind, (_, data) in render_files(digit, rng).items():
        image = Image.open(io.BytesIO(data))
        image.load()
        images[kind] = image
    return images


def save_all(
    digit: Digit, rng: np.random.Generator, directory: Path, prefix: str = ""
) -> dict[str, Path]:
    """Write every kind of picture of `digit` to `directory` as `{prefix}{kind}{suffix}`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for kind, (suffix, data) in render_files(digit, rng).items():
        path = directory / f"{prefix}{kind}{suffix}"
        path.write_bytes(data)
        paths[kind] = path
    return paths
