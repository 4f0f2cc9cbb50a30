"""On-the-fly distortion of training batches: random affine maps and elastic deformation.

Each image of a batch gets its own random affine map about the image centre (rotation,
isotropic scaling, translation) and, when ``elastic_alpha > 0``, a smooth random
displacement field as in Simard, Steinkraus & Platt (2003), "Best practices for
convolutional neural networks applied to visual document analysis": a field uniform in
[-1, 1] per pixel and axis, smoothed by a Gaussian of standard deviation ``elastic_sigma``
and multiplied by ``elastic_alpha``.

The warp is computed by inverse mapping: for every output pixel, the point of the source
image it comes from, read by bilinear interpolation; points outside the image read the
``fill`` value (a blank pixel as the network sees it, which is not 0 for standardized
inputs). The bilinear reads and the Gaussian smoothing are written by hand, as array
operations on CHUNK images at a time, because scipy.ndimage's map_coordinates and
gaussian_filter1d do the same several times slower (`python -m bench.ndimage`).

Left out on purpose: shearing, anisotropic scaling, flips (they change digit identity),
intensity changes, and any interpolation of higher order than bilinear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from mlp_cli.config import AugmentConfig
from mlp_cli.errors import ConfigError, UsageError

Array = NDArray[np.float32]

CHUNK = 32  # images warped together: about 0.5 MB of work arrays at 28x28, cache-sized
GAUSS_TRUNCATE = 4.0  # the smoothing kernel is cut off at this many sigmas (as scipy.ndimage)


def gaussian_band_matrix(side: int, sigma: float) -> Array:
    """(side, side) matrix G with ``G @ f`` the 1-D Gaussian smoothing of a column ``f``.

    G[i, j] = k(i - j) for a Gaussian kernel k of standard deviation ``sigma``, truncated
    at GAUSS_TRUNCATE sigmas and normalised to sum 1. Beyond the image the field counts as
    zero (no displacement), so smoothing near the border shrinks the field slightly.
    """
    radius = max(1, math.ceil(GAUSS_TRUNCATE * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    diff = np.arange(side)[:, None] - np.arange(side)[None, :]  # (side, side): i - j
    band = np.where(np.abs(diff) <= radius, kernel[np.clip(diff + radius, 0, 2 * radius)], 0.0)
    return band.astype(np.float32)


@dataclass
class _Buffers:
    """Work arrays for one chunk of C images, reused from chunk to chunk (the first m
    rows serve a shorter chunk)."""

    padded: Array  # (C, side + 3, side + 3): the images in a frame of fill (see _bilinear)
    coords: Array  # (2, C, side, side): source x and y of each output pixel, then weights
    scratch: Array  # (C, side, side)
    acc: Array  # (C, side, side)
    index: NDArray[np.intp]  # (C, side, side): flat index of the upper-left neighbour
    offsets: Array  # (C, 1, 1): where each image starts in the flat padded chunk

    @classmethod
    def allocate(cls, n: int, side: int, fill: np.float32) -> _Buffers:
        full = (n, side, side)
        return cls(
            padded=np.full((n, side + 3, side + 3), fill, np.float32),
            coords=np.empty((2, n, side, side), np.float32),
            scratch=np.empty(full, np.float32),
            acc=np.empty(full, np.float32),
            index=np.empty(full, np.intp),
            offsets=(np.arange(n, dtype=np.float32) * (side + 3) ** 2)[:, None, None],
        )

    def view(self, m: int) -> _Buffers:
        """The buffers of the first ``m`` images (views, no copies)."""
        if m == len(self.padded):
            return self
        rows = {f.name: getattr(self, f.name)[:m] for f in fields(self)}
        rows["coords"] = self.coords[:, :m]
        return _Buffers(**rows)


class ElasticField:
    """Random smooth displacement fields (Simard et al. 2003) for batches of images."""

    def __init__(self, side: int, alpha: float, sigma: float) -> None:
        self.side = side
        self.band = gaussian_band_matrix(side, sigma)  # G, (side, side)
        self.band_t_alpha = np.ascontiguousarray(self.band.T * np.float32(alpha))  # alpha G^T
        self._work: dict[int, tuple[Array, Array]] = {}  # 2 x (2, side, B, side) per size B

    def __call__(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """Fields (dx, dy) for ``n`` images, each (n, side, side): alpha * G U G^T with U
        uniform in [-1, 1) per pixel. Views into a buffer that the next call overwrites.

        The noise is laid out (field, row, image, column), so smoothing along columns is one
        matrix product over all rows of all images, and smoothing along rows another.
        """
        s = self.side
        work = self._work.get(n)
        if work is None:
            if len(self._work) >= 2:
                self._work.clear()
            work = self._work[n] = (
                np.empty((2, s, n, s), np.float32),
                np.empty((2, s, n, s), np.float32),
            )
        noise, smooth = work
        rng.random(out=noise, dtype=np.float32)
        noise *= np.float32(2.0)
        noise -= np.float32(1.0)
        np.matmul(noise.reshape(-1, s), self.band_t_alpha, out=smooth.reshape(-1, s))  # columns
        np.matmul(self.band, smooth.reshape(2, s, -1), out=noise.reshape(2, s, -1))  # rows
        fields = noise.transpose(0, 2, 1, 3)  # (2, n, side, side) view
        return fields[0], fields[1]


class Augmenter:
    """Random affine and elastic distortion of flattened square images, in place."""

    def __init__(self, cfg: AugmentConfig, side: int, fill: float) -> None:
        if side < 2:
            raise UsageError(f"augmentation needs images of at least 2x2 pixels; got side {side}")
        if cfg.max_scale >= 1.0:
            raise ConfigError(
                f"augment.max_scale is {cfg.max_scale:g}, but image sizes are drawn from "
                f"[1 - max_scale, 1 + max_scale] and must stay above 0; use a value below 1 "
                f"(0.1 means up to ±10%)."
            )
        self.cfg, self.side, self.fill = cfg, side, np.float32(fill)
        self.centre = (side - 1) / 2.0  # pixel centres sit at 0 .. side-1
        ys, xs = np.mgrid[0:side, 0:side]
        # (2, side*side): x and y of every output pixel, row by row
        self.pixels = np.stack([xs.ravel(), ys.ravel()]).astype(np.float32)
        self.elastic = (
            ElasticField(side, cfg.elastic_alpha, cfg.elastic_sigma)
            if cfg.elastic_alpha > 0
            else None
        )
        self._buffers = _Buffers.allocate(CHUNK, side, self.fill)

    # -- random parameters -------------------------------------------------------------

    def __call__(self, batch: Array, rng: np.random.Generator) -> None:
        """Distort every row of ``batch`` (B, side*side), float32, C-contiguous, in place.

        All randomness comes from ``rng``: the same generator state gives the same output.
        """
        n, cfg = len(batch), self.cfg
        angle = rng.uniform(-cfg.max_rotation, cfg.max_rotation, n)
        scale = rng.uniform(1.0 - cfg.max_scale, 1.0 + cfg.max_scale, n)
        shift = rng.uniform(-cfg.max_shift, cfg.max_shift, (n, 2))
        displacement = self.elastic(n, rng) if self.elastic is not None else None
        self.apply(batch, np.radians(angle), scale, shift, displacement)

    # -- the warp ------------------------------------------------------------------------

    def apply(
        self,
        batch: Array,
        angle: NDArray[np.floating],
        scale: NDArray[np.floating],
        shift: NDArray[np.floating],
        displacement: tuple[Array, Array] | None = None,
    ) -> None:
        """Warp each image of ``batch`` (B, side*side) in place with given parameters.

        Image b is rotated by ``angle[b]`` radians and scaled by ``scale[b]`` about the
        centre, then moved by ``shift[b] = (dx, dy)`` pixels (x to the right, y down); the
        output pixel p reads the source at A_b^-1 (p - centre - shift_b) + centre, plus
        ``displacement`` (dx, dy fields, each (B, side, side)) when given. Points outside
        the source image read ``fill``.
        """
        n, s = len(batch), self.side
        if batch.shape != (n, s * s) or batch.dtype != np.float32:
            raise UsageError(
                f"augmentation expects a float32 batch of shape (n, {s * s}); "
                f"got {batch.dtype} {batch.shape}"
            )
        if n == 0:
            return
        # Source point of output pixel p = (x, y, 1): M_b p, with M_b (2, 3) the inverse map
        # [R(-angle) / scale | c - R(-angle) (c + shift) / scale], shifted by +1 into the
        # padded frame.
        cos = np.cos(angle) / scale  # (B,)
        sin = np.sin(angle) / scale
        c = self.centre
        tx, ty = c + shift[:, 0], c + shift[:, 1]
        M = np.empty((2, n, 3), np.float32)  # x rows of all images, then y rows
        M[0, :, 0], M[0, :, 1], M[0, :, 2] = cos, sin, c + 1 - cos * tx - sin * ty
        M[1, :, 0], M[1, :, 1], M[1, :, 2] = -sin, cos, c + 1 + sin * tx - cos * ty
        images = batch.reshape(n, s, s)
        # Chunks of CHUNK images keep the work arrays in the processor's cache.
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            m = stop - start
            buf = self._buffers.view(m)
            # x' = a x + b y + c per pixel, as elementwise products rather than one matrix
            # product: BLAS picks other kernels (and roundings) for other batch sizes, and an
            # image must be warped to the same bits however many come with it.
            px, py = self.pixels
            coords, products = buf.coords.reshape(2, m, s * s), buf.scratch.reshape(m, s * s)
            for row, rows in zip(coords, M[:, start:stop], strict=True):
                np.multiply(rows[:, 0:1], px, out=row)
                np.multiply(rows[:, 1:2], py, out=products)
                row += products
                row += rows[:, 2:3]
            if displacement is not None:
                buf.coords[0] += displacement[0][start:stop]
                buf.coords[1] += displacement[1][start:stop]
            buf.padded[:, 1 : s + 1, 1 : s + 1] = images[start:stop]
            self._bilinear(buf, images[start:stop])

    def _bilinear(self, buf: _Buffers, out: Array) -> None:
        """Bilinear reads of ``buf.padded`` at ``buf.coords`` (frame coordinates), written to
        ``out`` (m, side, side) for a chunk of m images."""
        s = self.side
        w = s + 3  # padded width: one column of fill before the image, two after
        # Clamping to [0, s + 1] changes nothing (beyond it everything is fill too) and keeps
        # both neighbours of every point inside the frame; a point on the frame's last
        # column gets weight 0 on the next one, so it reads exactly the fill value.
        np.clip(buf.coords, 0.0, float(s + 1), out=buf.coords)
        wx, wy = buf.coords[0], buf.coords[1]
        # Flat index offset + floor(y) * w + floor(x) of the upper-left neighbour, built in
        # float32 while the coordinates become their fractional parts, the interpolation
        # weights. Exact: all are integers below CHUNK * w * w, far below 2**24.
        flat_f, floor_x = buf.scratch, buf.acc
        np.floor(wy, out=flat_f)
        wy -= flat_f
        flat_f *= np.float32(w)
        np.floor(wx, out=floor_x)
        wx -= floor_x
        flat_f += floor_x
        flat_f += buf.offsets
        np.copyto(buf.index, flat_f, casting="unsafe")
        # Neighbours to the right and below are the same indices into the flat chunk
        # shifted by 1, w and w + 1: views, no index arithmetic. Every index is in range,
        # so mode="clip" only skips np.take's bounds check.
        flat, idx, v, acc = buf.padded.reshape(-1), buf.index, buf.scratch, buf.acc
        np.take(flat, idx, out=acc, mode="clip")  # upper left
        np.take(flat[1:], idx, out=v, mode="clip")  # upper right
        v -= acc
        v *= wx
        acc += v  # upper row, interpolated along x
        np.take(flat[w:], idx, out=out, mode="clip")  # lower left
        np.take(flat[w + 1 :], idx, out=v, mode="clip")  # lower right
        v -= out
        v *= wx
        out += v  # lower row
        out -= acc
        out *= wy
        out += acc  # interpolated along y
