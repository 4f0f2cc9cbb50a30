"""Tests of the batch augmenter: exact identity and integer shifts, geometry of rotations and
scalings on real MNIST digits, fill outside the image, elastic fields, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import real_mnist_bytes
from numpy.typing import NDArray

from mlp_cli.augment import GAUSS_TRUNCATE, Augmenter, gaussian_band_matrix
from mlp_cli.config import AugmentConfig, config_from_yaml
from mlp_cli.errors import ConfigError, UsageError
from mlp_cli.preprocess import digits_to_inputs

Array = NDArray[np.float32]


def _cfg(**kw: Any) -> AugmentConfig:
    base: dict[str, Any] = {
        "enabled": True,
        "max_shift": 0.0,
        "max_rotation": 0.0,
        "max_scale": 0.0,
        "elastic_alpha": 0.0,
    }
    return AugmentConfig(**(base | kw))


@pytest.fixture(scope="module")
def digits() -> NDArray[np.uint8]:
    """The first 200 MNIST test digits (200, 28, 28), read straight from the IDX file."""
    raw = real_mnist_bytes("t10k-images-idx3-ubyte")
    return np.frombuffer(raw, np.uint8, count=200 * 784, offset=16).reshape(200, 28, 28)


def _standardized(digits: NDArray[np.uint8], side: int) -> tuple[Array, float]:
    """Inputs as training sees them with normalize=standardize, and a blank pixel's value."""
    X = digits_to_inputs(digits, side)
    mean, std = float(X.mean()), float(X.std())
    X = (X - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(X, np.float32), -mean / std


def _ink(X: Array, fill: float, side: int) -> NDArray[np.float64]:
    """Ink per pixel (B, side, side): input minus the blank value."""
    return (X.astype(np.float64) - fill).reshape(len(X), side, side)


def _centre_of_mass(ink: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Column and row of each image's centre of mass, each (B,)."""
    r = np.arange(ink.shape[1], dtype=np.float64)
    mass = ink.sum(axis=(1, 2))
    return (ink.sum(axis=1) * r).sum(axis=1) / mass, (ink.sum(axis=2) * r).sum(axis=1) / mass


Params = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def _params(
    n: int, angle: float = 0.0, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0
) -> Params:
    """The same angle (radians), scale and shift (dx, dy) for all ``n`` images."""
    return np.full(n, angle), np.full(n, scale), np.tile([dx, dy], (n, 1))


@pytest.mark.parametrize("side", [20, 28])
def test_zero_ranges_leave_images_unchanged(digits: NDArray[np.uint8], side: int) -> None:
    X, fill = _standardized(digits[:64], side)
    batch = X.copy()
    Augmenter(_cfg(), side, fill)(batch, np.random.default_rng(0))
    np.testing.assert_array_equal(batch, X)


@pytest.mark.parametrize(("dx", "dy"), [(2, -1), (-3, 0), (0, 4), (5, 5)])
def test_integer_shift_moves_pixels_and_fills_the_vacated_border(
    digits: NDArray[np.uint8], dx: int, dy: int
) -> None:
    side = 28
    X, fill = _standardized(digits[:16], side)
    batch = X.copy()
    Augmenter(_cfg(), side, fill).apply(batch, *_params(len(X), dx=dx, dy=dy))
    # Independent construction: slice assignment into a canvas of blank pixels.
    src = X.reshape(-1, side, side)
    expected = np.full_like(src, np.float32(fill))
    rows_out = slice(max(dy, 0), side + min(dy, 0))
    cols_out = slice(max(dx, 0), side + min(dx, 0))
    rows_in = slice(max(-dy, 0), side + min(-dy, 0))
    cols_in = slice(max(-dx, 0), side + min(-dx, 0))
    expected[:, rows_out, cols_out] = src[:, rows_in, cols_in]
    np.testing.assert_allclose(batch.reshape(-1, side, side), expected, rtol=0, atol=1e-6)


def test_random_shifts_stay_within_max_shift(digits: NDArray[np.uint8]) -> None:
    side, max_shift = 28, 3.0
    X, fill = _standardized(digits, side)
    batch = X.copy()
    Augmenter(_cfg(max_shift=max_shift), side, fill)(batch, np.random.default_rng(1))
    before, after = _ink(X, fill, side), _ink(batch, fill, side)
    # Digits whose ink reaches the border lose mass when shifted; judge the others.
    kept = np.abs(after.sum(axis=(1, 2)) / before.sum(axis=(1, 2)) - 1) < 1e-3
    assert kept.sum() > 150
    moved = np.stack(_centre_of_mass(after[kept])) - np.stack(_centre_of_mass(before[kept]))
    assert np.abs(moved).max() <= max_shift + 1e-3
    # Uniform in [-3, 3]: the moves spread over most of the range, in both directions.
    assert moved.min() < -2.0
    assert moved.max() > 2.0


@pytest.mark.parametrize("degrees", [15.0, -15.0])
def test_rotation_keeps_mass_and_turns_the_centre_of_mass(
    digits: NDArray[np.uint8], degrees: float
) -> None:
    side = 28
    X, fill = _standardized(digits, side)
    batch = X.copy()
    theta = np.radians(degrees)
    Augmenter(_cfg(max_rotation=15.0), side, fill).apply(batch, *_params(len(X), angle=theta))
    before, after = _ink(X, fill, side), _ink(batch, fill, side)
    ratio = after.sum(axis=(1, 2)) / before.sum(axis=(1, 2))
    assert np.abs(ratio - 1).max() < 0.03
    # The centre of mass turns with the image about the centre (y down: positive angles
    # turn clockwise on screen), and MNIST's centred digits stay near the centre.
    c = (side - 1) / 2
    cx, cy = _centre_of_mass(before)
    px = np.cos(theta) * (cx - c) - np.sin(theta) * (cy - c) + c
    py = np.sin(theta) * (cx - c) + np.cos(theta) * (cy - c) + c
    ox, oy = _centre_of_mass(after)
    assert np.median(np.hypot(ox - px, oy - py)) < 0.1
    assert np.hypot(ox - px, oy - py).max() < 0.4
    assert np.hypot(ox - c, oy - c).max() < 2.0


@pytest.mark.parametrize("scale", [0.9, 1.1])
def test_scaling_changes_mass_by_the_square_of_the_scale(
    digits: NDArray[np.uint8], scale: float
) -> None:
    side = 28
    X, fill = _standardized(digits, side)
    batch = X.copy()
    Augmenter(_cfg(max_scale=0.1), side, fill).apply(batch, *_params(len(X), scale=scale))
    ratio = _ink(batch, fill, side).sum(axis=(1, 2)) / _ink(X, fill, side).sum(axis=(1, 2))
    assert np.median(ratio) == pytest.approx(scale**2, rel=0.03)


@pytest.mark.parametrize("side", [20, 28])
def test_points_outside_the_image_read_the_fill_value(side: int) -> None:
    fill, ink = -0.4242, 1.5
    batch = np.full((3, side * side), ink, np.float32)
    Augmenter(_cfg(), side, fill).apply(batch, *_params(3, angle=np.pi / 4))
    out = batch.reshape(3, side, side)
    # A 45-degree turn of a full square leaves its corners empty and its middle full.
    assert np.all(out[:, 0, 0] == np.float32(fill))
    assert np.all(out[:, -1, -1] == np.float32(fill))
    mid = side // 2
    np.testing.assert_allclose(out[:, mid - 3 : mid + 3, mid - 3 : mid + 3], ink, atol=1e-6)
    assert out.min() >= np.float32(fill) - 1e-6
    assert out.max() <= ink + 1e-6
    # Shifted by the whole width, nothing of the image is left.
    far = np.full((2, side * side), ink, np.float32)
    Augmenter(_cfg(), side, fill).apply(far, *_params(2, dx=side, dy=0.5))
    assert np.all(far == np.float32(fill))


def test_same_seed_gives_same_output_and_other_seeds_differ(digits: NDArray[np.uint8]) -> None:
    X, fill = _standardized(digits[:64], 28)
    cfg = _cfg(max_shift=2.0, max_rotation=12.0, max_scale=0.1, elastic_alpha=20.0)
    outputs = []
    for seed in (7, 7, 8):
        batch = X.copy()
        Augmenter(cfg, 28, fill)(batch, np.random.default_rng(seed))
        outputs.append(batch)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_buffers_reused_across_batch_sizes_give_the_same_result(
    digits: NDArray[np.uint8],
) -> None:
    X, fill = _standardized(digits[:64], 28)
    cfg = _cfg(max_shift=2.0, max_rotation=10.0, max_scale=0.1, elastic_alpha=10.0)
    reused = Augmenter(cfg, 28, fill)
    for n in (64, 17, 40, 64):  # more sizes than buffers kept
        reused(X[:n].copy(), np.random.default_rng(n))
    fresh_batch, reused_batch = X[:17].copy(), X[:17].copy()
    Augmenter(cfg, 28, fill)(fresh_batch, np.random.default_rng(3))
    reused(reused_batch, np.random.default_rng(3))
    np.testing.assert_array_equal(reused_batch, fresh_batch)


@pytest.mark.parametrize("side", [20, 28])
def test_batch_keeps_shape_dtype_and_memory(digits: NDArray[np.uint8], side: int) -> None:
    X, fill = _standardized(digits[:32], side)
    batch = X.copy()
    address = batch.__array_interface__["data"][0]
    cfg = _cfg(max_shift=2.0, max_rotation=15.0, max_scale=0.1, elastic_alpha=34.0)
    result = Augmenter(cfg, side, fill)(batch, np.random.default_rng(0))
    assert result is None
    assert batch.shape == (32, side * side)
    assert batch.dtype == np.float32
    assert batch.flags.c_contiguous
    assert batch.__array_interface__["data"][0] == address
    assert np.isfinite(batch).all()
    assert not np.array_equal(batch, X)


def test_draws_stay_within_the_configured_ranges() -> None:
    class Recorder(Augmenter):
        """Keeps the parameters `__call__` draws instead of warping."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.seen: list[tuple[Any, ...]] = []

        def apply(self, batch: Array, *params: Any) -> None:
            self.seen.append(params)

    cfg = _cfg(max_shift=2.5, max_rotation=12.0, max_scale=0.15)
    aug = Recorder(cfg, 28, 0.0)
    aug(np.zeros((5000, 784), np.float32), np.random.default_rng(0))
    angle, scale, shift, displacement = aug.seen[0]
    assert displacement is None
    for values, low, high in (
        (np.degrees(angle), -12.0, 12.0),
        (scale, 0.85, 1.15),
        (shift, -2.5, 2.5),
    ):
        assert values.min() >= low
        assert values.max() <= high
        # Uniform draws fill the range: extremes close to both ends.
        assert values.min() < low + 0.01 * (high - low)
        assert values.max() > high - 0.01 * (high - low)


def test_band_matrix_matches_a_direct_convolution() -> None:
    side, sigma = 28, 3.0
    G = gaussian_band_matrix(side, sigma)
    radius = int(np.ceil(GAUSS_TRUNCATE * sigma))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    f = np.random.default_rng(0).uniform(-1, 1, side)
    np.testing.assert_allclose(G @ f, np.convolve(f, kernel, mode="same"), atol=1e-6)


def test_elastic_distortion_moves_ink_but_keeps_it(digits: NDArray[np.uint8]) -> None:
    side = 28
    X, fill = _standardized(digits, side)
    batch = X.copy()
    Augmenter(_cfg(elastic_alpha=34.0, elastic_sigma=4.0), side, fill)(
        batch, np.random.default_rng(0)
    )
    before, after = _ink(X, fill, side), _ink(batch, fill, side)
    changed = np.abs(after - before).reshape(len(X), -1).max(axis=1)
    assert (changed > 0.5 * before.max()).all()  # every digit visibly deformed
    ratio = after.sum(axis=(1, 2)) / before.sum(axis=(1, 2))
    assert abs(ratio.mean() - 1) < 0.03  # fields stretch some strokes, squeeze others
    # A smooth field: the centre of mass moves by about a pixel, not across the image.
    moved = np.hypot(*(np.stack(_centre_of_mass(after)) - np.stack(_centre_of_mass(before))))
    assert np.median(moved) < 1.5


@pytest.mark.parametrize(("dx", "dy"), [(2, -1), (0, 3), (-4, 0)])
def test_a_displacement_field_moves_each_read_by_its_dx_and_dy(
    digits: NDArray[np.uint8], dx: int, dy: int
) -> None:
    # Output pixel (x, y) reads the source at (x + dx, y + dy); outside the image, the fill.
    side = 28
    X, fill = _standardized(digits[:16], side)
    batch = X.copy()
    ones = np.ones((len(X), side, side), np.float32)
    Augmenter(_cfg(), side, fill).apply(batch, *_params(len(X)), (dx * ones, dy * ones))
    src = X.reshape(-1, side, side)
    expected = np.full_like(src, np.float32(fill))
    ys, xs = np.mgrid[0:side, 0:side]
    rows, cols = ys + dy, xs + dx
    inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    expected[:, ys[inside], xs[inside]] = src[:, rows[inside], cols[inside]]
    np.testing.assert_allclose(batch.reshape(-1, side, side), expected, rtol=0, atol=1e-6)


def test_elastic_fields_have_the_expected_size() -> None:
    # Uniform [-1, 1] noise (variance 1/3) smoothed by a normalised 2-D Gaussian has
    # variance (1/3) * sum(k^2) per field away from the border, times alpha^2.
    side, sigma, alpha = 28, 3.0, 34.0  # kernel radius 12: rows 12..15 see all of it
    aug = Augmenter(_cfg(elastic_alpha=alpha, elastic_sigma=sigma), side, 0.0)
    recorded: list[Any] = []
    aug.apply = lambda batch, *params: recorded.append(params)  # type: ignore[method-assign]
    aug(np.zeros((400, side * side), np.float32), np.random.default_rng(0))
    dx, dy = recorded[0][3]
    g = gaussian_band_matrix(101, sigma)[50]  # the 1-D kernel, away from any border
    expected = alpha * np.sqrt(np.sum(g**2) ** 2 / 3.0)
    core = slice(12, 16)
    for field in (dx, dy):
        assert field.shape == (400, side, side)
        assert np.std(field[:, core, core]) == pytest.approx(expected, rel=0.1)
    assert abs(np.corrcoef(dx[:, 14, 14], dy[:, 14, 14])[0, 1]) < 0.15


def test_elastic_sigma_wider_than_an_image_is_refused() -> None:
    # The kernel has 8 sigma + 1 taps: sigma 1e12 asked for terabytes before the bound.
    aug = Augmenter(_cfg(elastic_alpha=34.0, elastic_sigma=28.0), 28, 0.0)
    aug(np.zeros((3, 784), np.float32), np.random.default_rng(0))
    with pytest.raises(
        ConfigError,
        match=r"elastic_sigma: expected a number less than or equal to 28, found 10{12}\.0",
    ):
        config_from_yaml("model: {layers: 784-10}\n", "c.yaml", ["augment.elastic_sigma=1e12"])


def test_elastic_alpha_is_bounded_below_float32_overflow(digits: NDArray[np.uint8]) -> None:
    # alpha 1e39 is infinite in float32: the fields, then every training image, were NaN.
    X, fill = _standardized(digits[:5], 28)
    Augmenter(_cfg(elastic_alpha=10_000.0), 28, fill)(X, np.random.default_rng(0))
    assert np.isfinite(X).all()
    with pytest.raises(
        ConfigError, match=r"elastic_alpha: expected a number less than or equal to 10000, found"
    ):
        config_from_yaml("model: {layers: 784-10}\n", "c.yaml", ["augment.elastic_alpha=1e39"])


def test_batches_of_the_wrong_shape_or_type_are_refused() -> None:
    aug = Augmenter(_cfg(), 28, 0.0)
    with pytest.raises(UsageError, match=r"\(n, 784\)"):
        aug(np.zeros((4, 400), np.float32), np.random.default_rng(0))
    with pytest.raises(UsageError, match="float32"):
        aug(np.zeros((4, 784), np.float64), np.random.default_rng(0))


def test_training_with_augmentation_leaves_the_dataset_untouched(
    digits: NDArray[np.uint8], tmp_path: Path
) -> None:
    from mlp_cli.config import config_from_dict
    from mlp_cli.data import Splits
    from mlp_cli.train import Trainer

    X, fill = _standardized(digits, 28)
    cfg = config_from_dict(
        {
            "data": {"validation_size": 50, "normalize": "standardize"},
            "model": {"layers": "784-16-10"},
            "training": {"epochs": 1, "batch_size": 32},
            "augment": {"enabled": True, "elastic_alpha": 20.0},
        }
    )
    mean, std = -fill, 1.0  # normalize_inputs maps a blank 0 to (0 - mean) / std = fill
    splits = Splits(
        X=X.copy(),
        y=np.arange(len(X), dtype=np.uint8) % 10,
        train_idx=np.arange(50, len(X)),
        val_idx=np.arange(50),
        preprocessing={"input_size": 28, "normalize": {"mean": mean, "std": std}},
        data_hashes={},
    )
    trainer = Trainer(cfg, tmp_path, splits)
    assert isinstance(trainer.augment, Augmenter)
    assert trainer.augment.fill == np.float32(fill)
    trainer.run()
    np.testing.assert_array_equal(splits.X, X)


def test_scale_range_reaching_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="less than 1"):  # the schema refuses it first ...
        _cfg(max_scale=1.0)
    unchecked = AugmentConfig.model_construct(**{**_cfg().model_dump(), "max_scale": 1.0})
    with pytest.raises(ConfigError, match=r"augment\.max_scale is 1\b"):  # ... and so does
        Augmenter(unchecked, 28, 0.0)  # the augmenter, for configs built without validation


@pytest.mark.parametrize(("setting", "limit"), [("max_rotation", "180"), ("max_shift", "28")])
def test_ranges_too_wide_to_draw_from_are_refused(setting: str, limit: str) -> None:
    # rng.uniform(-x, x) overflows for x near the largest float; 180 degrees already covers
    # every rotation, and a shift by an image's side moves the digit out of it.
    aug = Augmenter(_cfg(**{setting: float(limit)}), 28, 0.0)
    aug(np.zeros((3, 784), np.float32), np.random.default_rng(0))
    with pytest.raises(
        ConfigError,
        match=f"augment.{setting}: expected a number less than or equal to {limit}, found 1e.?308",
    ):
        config_from_yaml("model: {layers: 784-10}\n", "c.yaml", [f"augment.{setting}=1e308"])


def test_a_batch_is_warped_as_its_images_one_by_one(digits: NDArray[np.uint8]) -> None:
    n = 70  # more than one chunk, and a partial last chunk
    X, fill = _standardized(digits[:n], 28)
    rng = np.random.default_rng(5)
    angle, scale, shift = (
        rng.uniform(-0.3, 0.3, n),
        rng.uniform(0.9, 1.1, n),
        rng.normal(0, 2, (n, 2)),
    )
    aug = Augmenter(_cfg(), 28, fill)
    together = X.copy()
    aug.apply(together, angle, scale, shift)
    for i in range(n):
        alone = X[i : i + 1].copy()
        aug.apply(alone, angle[i : i + 1], scale[i : i + 1], shift[i : i + 1])
        np.testing.assert_array_equal(together[i], alone[0])  # the same bits
