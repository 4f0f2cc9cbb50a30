"""Why some image operations stay written by hand instead of calling scipy.

    python -m bench.ndimage             # 5 rounds

Measures, alternating so that the machine's load hits both alike: the import of
scipy.ndimage and of scipy.stats in a fresh interpreter that already has NumPy and Pillow
(what `mlp predict` would pay at start-up for a centre of mass or a robust sigma); the
despeckling of a 280x280 canvas's ink and a dilation by radius 5 of a 300x300 crop, as
`mlp_cli.preprocess` does them and by Pillow's rank filters; the
bilinear warp of 128 digits by `Augmenter.apply` against scipy.ndimage.map_coordinates
(one call per image, the same points and fill); and the smoothing of their elastic fields
by `ElasticField` (two products with a band matrix) against two
scipy.ndimage.gaussian_filter1d calls, on one BLAS thread.  Needs scipy, which `mlp`
itself does not use (``pip install scipy``).  Prints the medians and writes them to
``bench/results/ndimage-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from threadpoolctl import threadpool_limits

from bench import report
from mlp_cli.augment import GAUSS_TRUNCATE, Augmenter, ElasticField
from mlp_cli.config import AugmentConfig
from mlp_cli.preprocess import _despeckled, _max_filter

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "import numpy, PIL.Image"


def import_ms(module: str) -> float:
    """Milliseconds `import module` adds to an interpreter that has NumPy and Pillow."""
    code = f"{BASE}; import time; t = time.perf_counter(); import {module}; "
    code += "print((time.perf_counter() - t) * 1000)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True).stdout)


def warp_ms(n: int = 128, side: int = 28) -> tuple[float, float]:
    """Milliseconds to warp n digits: (hand-written bilinear, map_coordinates)."""
    rng = np.random.default_rng(0)
    aug = Augmenter(AugmentConfig(), side, -0.42)
    X = rng.random((n, side * side), dtype=np.float32)
    angle, scale = np.radians(rng.uniform(-10, 10, n)), rng.uniform(0.9, 1.1, n)
    shift = rng.uniform(-2, 2, (n, 2))
    started = time.perf_counter()
    aug.apply(X.copy(), angle, scale, shift)
    ours = (time.perf_counter() - started) * 1000
    c, cos, sin = aug.centre, np.cos(angle) / scale, np.sin(angle) / scale
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    started = time.perf_counter()
    for i, image in enumerate(X.reshape(n, side, side)):
        tx, ty = c + shift[i, 0], c + shift[i, 1]
        sx = cos[i] * xs + sin[i] * ys + c - cos[i] * tx - sin[i] * ty
        sy = -sin[i] * xs + cos[i] * ys + c + sin[i] * tx - cos[i] * ty
        ndimage.map_coordinates(image, [sy, sx], order=1, mode="grid-constant", cval=-0.42)
    return ours, (time.perf_counter() - started) * 1000


def smooth_ms(n: int = 128, side: int = 28, sigma: float = 4.0) -> tuple[float, float]:
    """Milliseconds for n digits' elastic fields: (band matrices, gaussian_filter1d)."""
    field = ElasticField(side, 34.0, sigma)
    started = time.perf_counter()
    field(n, np.random.default_rng(0))
    ours = (time.perf_counter() - started) * 1000
    radius = math.ceil(GAUSS_TRUNCATE * sigma)
    started = time.perf_counter()
    noise = np.random.default_rng(0).random((2, side, n, side), dtype=np.float32) * 2 - 1
    for axis in (3, 1):
        ndimage.gaussian_filter1d(noise, sigma, axis, output=noise, mode="constant", radius=radius)
    noise *= np.float32(34.0)
    return ours, (time.perf_counter() - started) * 1000


def filters_ms() -> dict[str, float]:
    """Milliseconds for despeckling and dilation, by hand and by Pillow's rank filters."""
    rng = np.random.default_rng(0)
    mask = rng.random((280, 280)) > 0.93
    crop = np.pad(rng.random((290, 290), dtype=np.float32), 5)
    frame = Image.fromarray(np.pad(mask, 1).astype(np.uint8))
    tasks: dict[str, Callable[[], object]] = {
        "despeckle 280x280 by hand ms": lambda: _despeckled(mask),
        "despeckle 280x280 by Pillow RankFilter ms": lambda: frame.filter(
            ImageFilter.RankFilter(3, 6)
        ),
        "dilate 300x300 radius 5 by hand ms": lambda: _max_filter(crop, 5),
        "dilate 300x300 radius 5 by Pillow MaxFilter ms": lambda: Image.fromarray(crop).filter(
            ImageFilter.MaxFilter(11)
        ),
    }
    times = {}
    for name, task in tasks.items():
        started = time.perf_counter()
        task()
        times[name] = (time.perf_counter() - started) * 1000
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    report.check_counts(parser, args, "--rounds")
    rounds = args.rounds
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        with threadpool_limits(1, "blas"):
            ours, theirs = warp_ms()
            band, gaussian = smooth_ms()
        for name, value in (
            ("import scipy.ndimage ms", import_ms("scipy.ndimage")),
            ("import scipy.stats ms", import_ms("scipy.stats")),
            ("warp 128 digits by hand ms", ours),
            ("warp 128 digits by map_coordinates ms", theirs),
            ("smooth 128 fields by band matrices ms", band),
            ("smooth 128 fields by gaussian_filter1d ms", gaussian),
            *filters_ms().items(),
        ):
            samples.setdefault(name, []).append(value)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"{name:40s} {value:8.1f}")
    out = RESULTS / f"ndimage-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"medians": medians, "samples": samples}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
