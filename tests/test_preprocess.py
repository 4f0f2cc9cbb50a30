"""Tests for mlp_cli.preprocess: the area-averaged input transform, reading image files,
and turning users' pictures (rendered from real MNIST digits by tests/userlike.py) back
into MNIST digits."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import userlike
from conftest import real_mnist_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from mlp_cli import preprocess
from mlp_cli.errors import ImageError, UsageError
from mlp_cli.preprocess import (
    digits_to_inputs,
    input_statistics,
    mnist_style,
    model_inputs,
    normalize_inputs,
    open_image,
    prepare_inputs,
    raw_image,
    resize_digits,
)

N_DIGITS = 200  # real MNIST test digits read for these tests
N_RENDERED = 100  # of which this many are rendered as every kind of user's picture
Digits = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def digits() -> Digits:
    """N_DIGITS real MNIST test digits (N, 28, 28) uint8, read straight from the IDX file."""
    raw = real_mnist_bytes("t10k-images-idx3-ubyte")
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    chosen = np.random.default_rng(2024).choice(len(images), N_DIGITS, replace=False)
    return images[np.sort(chosen)]


def correlation(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def png_bytes(image: Image.Image, **params: object) -> Image.Image:
    """`image` after a lossless round trip through PNG (so file metadata is real)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    reopened = Image.open(io.BytesIO(buffer.getvalue()))
    reopened.load()
    return reopened


def ink_on_paper(digit: Digits, paper: int = 230, ink: int = 20) -> npt.NDArray[np.uint8]:
    """Dark ink on light paper, no noise: uint8 (28, 28)."""
    cover = digit.astype(np.float64) / 255.0
    return np.rint(paper * (1 - cover) + ink * cover).astype(np.uint8)


# --- the input transform ------------------------------------------------------------------


def pil_area_average(image: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
    """Area averaging by Pillow: BOX on the image replicated 5x, so 140 / size is a whole
    number for size 20 (Pillow's BOX point-samples its kernel, which is exact area
    averaging only for whole-number factors; replication leaves area means unchanged)."""
    replicated = np.kron(image, np.ones((5, 5), dtype=np.float32))  # (140, 140)
    resized = Image.fromarray(replicated).resize((size, size), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


def test_resize_digits_20_matches_pillow_box_on_random_arrays() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    resized = resize_digits(images, 20)
    assert resized.shape == (6, 20, 20)
    assert resized.dtype == np.float32
    for image, ours in zip(images, resized, strict=True):
        expected = pil_area_average(image.astype(np.float32) / 255.0, 20)
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_resize_digits_20_matches_pillow_box_on_mnist(digits: Digits) -> None:
    resized = resize_digits(digits[:5], 20)
    for image, ours in zip(digits[:5], resized, strict=True):
        expected = pil_area_average(image.astype(np.float32) / 255.0, 20)
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_resize_digits_preserves_mass() -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    resized = resize_digits(images, 20)
    # mean over the frame is preserved, so the total scales by the area ratio (20/28)^2
    np.testing.assert_allclose(
        resized.sum(axis=(1, 2)) * (28 / 20) ** 2,
        images.sum(axis=(1, 2)) / 255.0,
        rtol=1e-5,
    )


def test_resize_digits_whole_factor_is_block_mean_and_28_is_identity() -> None:
    images = np.random.default_rng(2).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    scaled = images.astype(np.float32) / 255.0
    block_mean = scaled.reshape(3, 14, 2, 14, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(resize_digits(images, 14), block_mean, atol=1e-6)
    np.testing.assert_array_equal(resize_digits(images, 28), scaled)


def test_digits_to_inputs_flattens_the_resized_digits(digits: Digits) -> None:
    inputs = digits_to_inputs(digits[:7], 20)
    assert inputs.shape == (7, 400)
    assert inputs.dtype == np.float32
    assert inputs.flags.c_contiguous
    np.testing.assert_array_equal(inputs[3], resize_digits(digits[3:4], 20)[0].ravel())


@pytest.mark.parametrize("size", [28, 20])
def test_prepare_inputs_is_the_same_transform_as_for_mnist(digits: Digits, size: int) -> None:
    prepared = [digit.astype(np.float32) / 255.0 for digit in digits[:4]]
    inputs = prepare_inputs(prepared, size)
    assert inputs.dtype == np.float32
    assert inputs.flags.c_contiguous
    np.testing.assert_allclose(inputs, digits_to_inputs(digits[:4], size), atol=1e-6)


def test_model_inputs_apply_the_model_standardisation(digits: Digits) -> None:
    plain = {"input_size": 20, "normalize": None}
    np.testing.assert_array_equal(model_inputs(digits[:3], plain), digits_to_inputs(digits[:3], 20))
    standardised = {"input_size": 20, "normalize": {"mean": 0.13, "std": 0.31}}
    expected = (digits_to_inputs(digits[:3], 20).astype(np.float64) - 0.13) / 0.31
    np.testing.assert_allclose(model_inputs(digits[:3], standardised), expected, atol=1e-5)
    X = prepare_inputs([digit.astype(np.float32) / 255.0 for digit in digits[:3]], 20)
    assert normalize_inputs(X, standardised) is X  # in place, as documented
    np.testing.assert_allclose(X, expected, atol=1e-5)


def test_input_statistics_are_those_of_the_chosen_rows_in_float64(
    digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preprocess, "STATS_ROWS", 16)  # several blocks and a partial last one
    X = digits_to_inputs(digits, 28)
    before = X.copy()
    rows = np.sort(np.random.default_rng(7).choice(len(X), 150, replace=False))
    chosen = X[rows].astype(np.float64)
    stats = input_statistics(X, rows)
    assert stats == pytest.approx({"mean": chosen.mean(), "std": chosen.std()}, rel=1e-12)
    np.testing.assert_array_equal(X, before)


def test_input_transform_rejects_wrong_shapes_and_sizes(digits: Digits) -> None:
    with pytest.raises(UsageError, match="shape"):
        resize_digits(digits[0], 20)
    with pytest.raises(UsageError, match="uint8"):
        resize_digits(digits[:2].astype(np.float32), 20)
    with pytest.raises(UsageError, match="positive"):
        digits_to_inputs(digits[:2], 0)
    with pytest.raises(UsageError, match=r"\(28, 28\)"):
        prepare_inputs([np.zeros((20, 20), dtype=np.float32)], 20)


# --- MNIST digits and users' pictures through mnist_style -----------------------------------


def test_mnist_digits_pass_through_nearly_unchanged(digits: Digits) -> None:
    correlations = np.array(
        [correlation(mnist_style(Image.fromarray(digit)), digit) for digit in digits]
    )
    assert np.mean(correlations > 0.9) > 0.9
    assert np.median(correlations) > 0.99


@pytest.fixture(scope="module")
def processed(digits: Digits) -> dict[str, list[tuple[float, npt.NDArray[np.float32]]]]:
    """kind -> [(correlation with the original digit, mnist_style output)] for every digit."""
    rng = np.random.default_rng(7)
    results: dict[str, list[tuple[float, npt.NDArray[np.float32]]]] = {}
    for digit in digits[:N_RENDERED]:
        for kind, image in userlike.render_all(digit, rng).items():
            prepared = mnist_style(image, source=kind)
            results.setdefault(kind, []).append((correlation(prepared, digit), prepared))
    return results


@pytest.mark.parametrize("kind", list(userlike.RENDERERS))
def test_users_pictures_come_back_as_the_original_digit(
    processed: dict[str, list[tuple[float, npt.NDArray[np.float32]]]], kind: str
) -> None:
    correlations = np.array([score for score, _ in processed[kind]])
    assert correlations.mean() > 0.85, f"{kind}: mean correlation {correlations.mean():.3f}"
    assert np.mean(correlations > 0.7) > 0.95


@pytest.mark.parametrize("kind", list(userlike.RENDERERS))
def test_prepared_digits_follow_mnist_geometry(
    processed: dict[str, list[tuple[float, npt.NDArray[np.float32]]]], kind: str
) -> None:
    """Longer side of the ink's box about 20 px; centre of mass at (14, 14) to within the
    rounding of a whole-pixel shift, unless the digit was kept from leaving the frame."""
    rows = np.arange(28)
    for _, prepared in processed[kind]:
        assert prepared.shape == (28, 28)
        assert prepared.dtype == np.float32
        assert prepared.min() >= 0.0
        assert prepared.max() <= 1.0
        ink_rows = np.flatnonzero(prepared.any(axis=1))
        ink_cols = np.flatnonzero(prepared.any(axis=0))
        longer = max(np.ptp(ink_rows), np.ptp(ink_cols)) + 1
        assert 17 <= longer <= 20
        mass = prepared.sum()
        com = np.array([prepared.sum(axis=1) @ rows, prepared.sum(axis=0) @ rows]) / mass
        touches = {ink_rows[0], ink_rows[-1], ink_cols[0], ink_cols[-1]} & {0, 27}
        assert touches or np.all(np.abs(com - 14.0) <= 0.5 + 1e-4)


def test_saved_files_of_every_kind_open_and_match(digits: Digits, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    for number, digit in enumerate(digits[:3]):
        paths = userlike.save_all(digit, rng, tmp_path, prefix=f"{number}_")
        assert set(paths) == set(userlike.RENDERERS)
        for kind, path in paths.items():
            prepared = mnist_style(open_image(path), source=str(path))
            assert correlation(prepared, digit) > 0.7, kind
            Image.fromarray(np.rint(prepared * 255).astype(np.uint8)).save(
                tmp_path / f"{number}_{kind}_prepared.png"
            )


def test_specks_far_from_the_digit_are_ignored(digits: Digits) -> None:
    canvas = np.full((200, 300), 230, dtype=np.uint8)
    digit = Image.fromarray(digits[0]).resize((112, 112), Image.Resampling.BICUBIC)
    canvas[40:152, 150:262] = ink_on_paper(np.asarray(digit))
    clean = mnist_style(Image.fromarray(canvas))
    for top, left in [(10, 10), (180, 40), (100, 20)]:
        canvas[top : top + 2, left : left + 2] = 0  # dust, specks of 2x2 pixels
    np.testing.assert_allclose(mnist_style(Image.fromarray(canvas)), clean, atol=1e-6)


def test_light_ink_on_dark_and_on_mid_grey_paper(digits: Digits) -> None:
    digit = digits[1]
    light_on_dark = (40 + digit.astype(np.float64) * 0.7).astype(np.uint8)
    light_on_grey = ink_on_paper(digit, paper=110, ink=235)
    dark_on_grey = ink_on_paper(digit, paper=150, ink=10)
    for pixels in (light_on_dark, light_on_grey, dark_on_grey):
        assert correlation(mnist_style(Image.fromarray(pixels)), digit) > 0.95


def test_uneven_lighting_is_removed_with_the_paper(digits: Digits) -> None:
    """A strong left-to-right gradient and a phone photo's vignette: a single background
    level would take the dark side of the paper for ink, or find no ink at all."""
    height, width = 200, 300
    rows, cols = np.mgrid[0:height, 0:width]
    radius2 = ((rows - height / 2) / (height / 2)) ** 2 + ((cols - width / 2) / (width / 2)) ** 2
    noise = np.random.default_rng(5).normal(0.0, 4.0, size=(height, width))
    big = Image.fromarray(digits[11]).resize((112, 112), Image.Resampling.BICUBIC)
    cover = np.zeros((height, width))
    cover[40:152, 100:212] = np.asarray(big) / 255.0
    for paper in (np.linspace(120, 245, width)[None, :] + 0 * rows, 245 - 100 * radius2):
        pixels = np.clip(paper * (1 - cover) + 30 * cover + noise, 0, 255).astype(np.uint8)
        assert correlation(mnist_style(Image.fromarray(pixels)), digits[11]) > 0.9


def test_thin_pen_strokes_are_thickened_like_mnist() -> None:
    """The same 7 drawn with pens from fine to broad on a large sheet comes out alike (up to
    the whole-pixel rounding of the centring), with strokes as wide as MNIST's."""
    prepared = []
    for pen in (1, 3, 8, 24):
        sheet = Image.new("L", (400, 400), 245)
        ImageDraw.Draw(sheet).line(
            [(120, 80), (280, 80), (170, 330)], fill=20, width=pen, joint="curve"
        )
        prepared.append(mnist_style(sheet))
        top_bar = prepared[-1][:12, 14]  # (12,) down a column crossing the top bar
        assert np.count_nonzero(top_bar > 0.5) >= 2, pen
    for fine in prepared[:-1]:
        shifted = [
            correlation(np.roll(fine, (dy, dx), axis=(0, 1)), prepared[-1])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        assert max(shifted) > 0.9


def test_large_photo_is_reduced_first(digits: Digits) -> None:
    canvas = np.full((1500, 2100), 225, dtype=np.uint8)
    digit = Image.fromarray(digits[2]).resize((700, 700), Image.Resampling.BICUBIC)
    canvas[500:1200, 300:1000] = ink_on_paper(np.asarray(digit), paper=225)
    assert correlation(mnist_style(Image.fromarray(canvas)), digits[2]) > 0.9


# --- modes and metadata ---------------------------------------------------------------------


def test_16_bit_greyscale_uses_its_full_range(digits: Digits) -> None:
    """All values lie above 255: clipping at 255 would leave a blank picture."""
    cover = digits[3].astype(np.float64) / 255.0
    values = np.rint(60000 * (1 - cover) + 20000 * cover).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    assert correlation(mnist_style(image), digits[3]) > 0.95
    # The same pixels in a 16-bit PNG file: Pillow 10.1 opens it as 32-bit "I", later
    # Pillows as "I;16"; either way the whole range is read.
    as_file = png_bytes(image)
    assert as_file.mode in ("I;16", "I")
    assert correlation(mnist_style(as_file), digits[3]) > 0.95
    as_int32 = Image.fromarray(values.astype(np.int32))
    assert as_int32.mode == "I"
    assert correlation(mnist_style(as_int32), digits[3]) > 0.95
    big_endian = Image.fromarray(values).convert("I").convert("I;16B")
    assert big_endian.mode == "I;16B"
    np.testing.assert_allclose(raw_image(big_endian), values / 65535.0, atol=1e-6)


def test_a_dark_16_bit_png_is_read_by_its_depth_not_by_its_values(
    digits: Digits, tmp_path: Path
) -> None:
    """Every value at most 255: a nearly black 16-bit scan, not an 8-bit picture."""
    values = (255 - digits[5]).astype(np.uint16)  # dark ink on paper at 255 of 65535
    path = tmp_path / "dark.png"
    Image.fromarray(values).save(path)
    np.testing.assert_allclose(raw_image(preprocess.open_image(path)), values / 65535.0, atol=1e-6)
    with Image.open(path) as image:  # as a library caller opens it, with no help from mlp
        np.testing.assert_allclose(raw_image(image), values / 65535.0, atol=1e-6)


def test_float_images_of_any_range(digits: Digits) -> None:
    cover = digits[4].astype(np.float32) / 255.0
    for pixels in (1.0 - cover, 255.0 * (1.0 - cover), 1e6 * cover, cover - 0.5):
        image = Image.fromarray(pixels.astype(np.float32))
        assert image.mode == "F"
        assert correlation(mnist_style(image), digits[4]) > 0.95


def test_infinite_pixels_of_a_float_picture_count_as_the_largest_float32_values(
    digits: Digits,
) -> None:
    """+inf and -inf in one picture: stretching between them must not overflow to NaN."""
    largest = np.finfo(np.float32).max
    cover = digits[4].astype(np.float32) / 255.0
    with_inf, extremes = cover.copy(), cover.copy()
    with_inf[0, :2] = np.inf, -np.inf
    extremes[0, :2] = largest, -largest
    expected = mnist_style(Image.fromarray(extremes))
    np.testing.assert_array_equal(mnist_style(Image.fromarray(with_inf)), expected)


def test_signalling_nan_pixels_of_a_float_picture_count_as_paper_without_a_warning(
    digits: Digits,
) -> None:
    """A quiet NaN passes a cast silently; a signalling one (0x7fa00000) raises NumPy's
    "invalid value" warning, which would reach the terminal quoting our source."""
    cover = digits[4].astype(np.float32) / 255.0
    holes = np.zeros(cover.shape, dtype=bool)
    holes[::5, ::5] = True
    signalling = np.array(0x7FA00000, dtype=np.uint32).view(np.float32)
    with_nan = np.where(holes, signalling, cover).astype(np.float32)
    as_zero = np.where(holes, np.float32(0.0), cover)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for prepare in (mnist_style, raw_image):
            expected = prepare(Image.fromarray(as_zero))
            np.testing.assert_array_equal(prepare(Image.fromarray(with_nan)), expected)


def test_palette_image_with_a_transparent_background(digits: Digits) -> None:
    """Black ink in a palette image whose background index is transparent (and black)."""
    ink = digits[5] > 100
    indices = np.where(ink, 1, 0).astype(np.uint8)
    image = Image.frombytes("P", (28, 28), indices.tobytes())
    image.putpalette([0, 0, 0, 0, 0, 0] + [0, 0, 0] * 254)
    image = png_bytes(image, transparency=0)
    assert image.mode == "P"
    assert "transparency" in image.info
    assert correlation(mnist_style(image), ink) > 0.9


def test_la_and_pa_black_ink_on_transparent(digits: Digits) -> None:
    """Luma 0 everywhere, alpha carries the digit: a plain greyscale conversion is blank."""
    alpha = Image.fromarray(digits[6])
    black = Image.new("L", alpha.size, 0)
    la = png_bytes(Image.merge("LA", [black, alpha]))
    assert la.mode == "LA"
    assert np.asarray(la.convert("L")).max() == 0
    assert correlation(mnist_style(la), digits[6]) > 0.95
    palette_black = Image.new("P", alpha.size, 0)
    palette_black.putpalette([0, 0, 0] * 256)
    pa = Image.merge("PA", [palette_black, alpha])
    assert correlation(mnist_style(pa), digits[6]) > 0.95


@pytest.mark.parametrize("side", [28, 1100], ids=["small", "reduced first"])
def test_in_memory_images_with_alpha_or_a_palettes_alpha_match_their_files(
    digits: Digits, side: int
) -> None:
    """A premultiplied La picture and a palette with alpha in its colours (no colour key in
    `info`) are read as the PNG files Pillow writes of them are."""
    alpha = Image.fromarray(digits[6]).resize((side, side))
    la = Image.merge("LA", [Image.new("L", alpha.size, 0), alpha])
    ink = np.asarray(alpha) > 100
    indices = Image.fromarray(ink.astype(np.uint8), "P")
    indices.putpalette([0, 0, 0, 0, 0, 0, 0, 255], "RGBA")  # index 0 clear, 1 black
    drawn = (
        (la.convert("La"), la, 255 - np.asarray(alpha)),  # black ink on white paper
        (indices, indices, np.where(ink, 0, 255).astype(np.uint8)),
    )
    for image, as_file, on_paper in drawn:
        np.testing.assert_array_equal(mnist_style(image), mnist_style(png_bytes(as_file)))
        opaque = mnist_style(Image.fromarray(on_paper))
        assert correlation(mnist_style(image), opaque) > 0.99, image.mode


def test_rgba_ink_of_either_lightness_on_transparent(digits: Digits) -> None:
    for colour in [(0, 0, 0), (30, 30, 160), (255, 255, 255), (250, 240, 120)]:
        rgba = np.zeros((28, 28, 4), dtype=np.uint8)
        rgba[..., :3] = colour
        rgba[..., 3] = digits[7]
        image = png_bytes(Image.fromarray(rgba))
        assert image.mode == "RGBA"
        assert correlation(mnist_style(image), digits[7]) > 0.95, colour


def test_cmyk_matches_rgb(digits: Digits) -> None:
    paper, ink = np.array([240, 230, 200]), np.array([20, 30, 120])
    cover = digits[8].astype(np.float64)[..., None] / 255.0
    rgb = Image.fromarray(np.rint(paper * (1 - cover) + ink * cover).astype(np.uint8))
    cmyk = rgb.convert("CMYK")
    assert cmyk.mode == "CMYK"
    from_rgb = mnist_style(rgb)
    assert correlation(from_rgb, digits[8]) > 0.95
    assert correlation(mnist_style(cmyk), from_rgb) > 0.98


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(digits: Digits, orientation: int) -> None:
    upright = Image.fromarray(ink_on_paper(digits[9]))
    undo = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(undo[orientation]) if orientation in undo else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = png_bytes(stored, exif=exif)
    assert image.getexif()[0x0112] == orientation
    np.testing.assert_allclose(mnist_style(image), mnist_style(upright), atol=1e-6)


def test_damaged_exif_is_read_without_warnings(tmp_path: Path, digits: Digits) -> None:
    # an orientation whose value lies past the end of the EXIF block: Pillow warns, skips it
    exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\xff\xff\xff\xff\0\x06\0\0"
    path = tmp_path / "damaged-exif.jpg"
    Image.fromarray(ink_on_paper(digits[9])).save(path, exif=exif)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = open_image(path)
    assert image.size == (28, 28)


def test_raw_image_does_no_processing(digits: Digits) -> None:
    dark_on_light = ink_on_paper(digits[10])
    np.testing.assert_allclose(raw_image(Image.fromarray(dark_on_light)), dark_on_light / 255.0)
    larger = raw_image(Image.fromarray(digits[10]).resize((56, 56)))
    assert larger.shape == (28, 28)
    assert larger.dtype == np.float32
    assert correlation(larger, digits[10]) > 0.95


def test_raw_image_reduces_a_large_picture_before_copying_it(digits: Digits) -> None:
    """As `mnist_style` does: no step copies the full-size picture (float64 here)."""
    import tracemalloc  # NumPy reports its arrays to it

    digit = Image.fromarray(digits[10]).resize((4000, 4000), Image.Resampling.BICUBIC)
    large = Image.fromarray(np.asarray(digit, dtype=np.float32) / np.float32(255.0))  # 64 MB
    tracemalloc.start()
    try:
        raw = raw_image(large)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4000 * 4000 * 4  # less than one float32 copy of the picture
    assert raw.shape == (28, 28)
    assert correlation(raw, digits[10]) > 0.95


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.uint8,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        elements=st.integers(0, 255),
    )
)
def test_any_picture_gives_a_digit_or_an_image_error(pixels: npt.NDArray[np.uint8]) -> None:
    try:
        prepared = mnist_style(Image.fromarray(pixels), source="random.png")
    except ImageError as error:
        message = str(error)
    else:
        assert prepared.shape == (28, 28)
        assert prepared.dtype == np.float32
        assert np.all((prepared >= 0) & (prepared <= 1))
        assert prepared.max() > 0
        return
    assert "random.png" in message


# --- bad input -------------------------------------------------------------------------------


def save_png(path: Path, pixels: npt.NDArray[np.uint8]) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.png"
    with pytest.raises(ImageError, match="does not exist") as error:
        open_image(missing)
    assert str(missing) in str(error.value)
    with pytest.raises(ImageError, match="directory") as error:
        open_image(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_a_link_to_nowhere_is_named_as_one(tmp_path: Path) -> None:
    link = tmp_path / "seven.png"  # listed in its folder, so "does not exist" would puzzle
    link.symlink_to(tmp_path / "deleted.png")
    with pytest.raises(ImageError) as error:
        open_image(link)
    assert str(error.value).startswith(f"Image file {link} is a link to nowhere")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="not an image") as error:
        open_image(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path: Path, fmt: str) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=(64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated") as error:
        open_image(path)
    assert str(path) in str(error.value)


def test_a_tiff_pillow_refuses_is_said_once_not_also_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pillow logs an error before it refuses a TIFF of too many samples per pixel; with no
    logging set up (the command line), Python prints that line as it is."""
    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[277] = 112  # SamplesPerPixel
    path = tmp_path / "samples.tiff"
    Image.new("L", (4, 4), 255).save(path, tiffinfo=tags)
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert str(path) in str(error.value)
    assert caplog.records == []


@pytest.mark.parametrize("side", [40, 100])  # over the limit (a warning), over twice (an error)
def test_decompression_bomb_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    path = save_png(tmp_path / "big.png", np.zeros((side, side), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="too large") as error:
        open_image(path)
    assert str(path) in str(error.value)


def test_blank_pictures_hold_no_ink(tmp_path: Path) -> None:
    noise = np.random.default_rng(4).normal(0, 3, size=(80, 120))
    blank = {
        "white.png": np.full((80, 120), 255, dtype=np.uint8),
        "paper.png": np.clip(np.rint(225 + noise), 0, 255).astype(np.uint8),
        "transparent.png": np.zeros((80, 120, 4), dtype=np.uint8),
    }
    for name, pixels in blank.items():
        path = save_png(tmp_path / name, pixels)
        with pytest.raises(ImageError, match="no ink") as error:
            mnist_style(open_image(path), source=str(path))
        assert str(path) in str(error.value)


def test_nan_pixels_of_a_large_float_picture_count_as_paper_one_at_a_time() -> None:
    """Reducing first must not let one NaN blank its whole block into ink."""
    values = np.ones((3000, 3000), dtype=np.float32)
    values[600:2400, 1400:1600] = 0.0  # a dark stroke on white
    holes = np.random.default_rng(0).random(values.shape) < 0.01
    with_nan = np.where(holes, np.float32(np.nan), values)
    as_zero = np.where(holes, np.float32(0.0), values)
    expected = mnist_style(Image.fromarray(as_zero))
    np.testing.assert_array_equal(mnist_style(Image.fromarray(with_nan)), expected)


def test_a_colour_key_on_a_large_picture_is_applied_before_it_is_reduced() -> None:
    ring = Image.new("RGB", (3000, 3000), (0, 0, 0))  # black is the transparent colour
    ImageDraw.Draw(ring).ellipse((700, 500, 2300, 2500), outline=(255, 255, 255), width=40)
    keyed = png_bytes(ring, transparency=(0, 0, 0))
    assert keyed.mode == "RGB"
    assert "transparency" in keyed.info
    explicit = keyed.convert("RGBA")
    np.testing.assert_allclose(mnist_style(keyed), mnist_style(explicit), atol=1e-6)
