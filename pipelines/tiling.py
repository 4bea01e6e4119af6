"""Cut an interferogram frame into fixed-size tiles for patch classifiers (pure, no I/O).

A frame is a 2D float array (wrapped phase in radians, NaN = no data) of any size from
64 x 64 pixels up. Tiles are ``size x size`` (224 for the unrest detector), laid every
``size - overlap`` pixels; the last tile of each row and column is aligned to the frame's
edge so the whole frame is covered without padding. Frames smaller than ``size`` in a
dimension are NaN-padded at the bottom / right. Tiles whose finite fraction is below
``min_valid_fraction`` are dropped (nothing to classify). Wrapped phase is never resampled:
tiles are crops (plus NaN padding), exactly the pixels of the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_FRAME_PX = 64
"""Smallest frame side accepted, pixels: below it a tile would be mostly padding."""


@dataclass(frozen=True, eq=False)
class Tile:
    """One tile of a frame.

    Attributes
    ----------
    row, col : int
        Tile index in the tiling grid (0-based, row-major).
    row0, col0 : int
        Frame pixel of the tile's upper-left corner.
    valid_fraction : float
        Share of finite pixels in the tile (padding counts as invalid), in [0, 1].
    data : ndarray, shape (size, size), float32
        The tile's pixels (NaN where the frame has none or was padded).
    bounds : tuple of float or None
        ``(left, bottom, right, top)`` of the tile's full extent in the transform's CRS
        units (e.g. degrees for EPSG:4326), or None without a transform.
    """

    row: int
    col: int
    row0: int
    col0: int
    valid_fraction: float
    data: np.ndarray
    bounds: tuple[float, float, float, float] | None = None


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` pixels, the last one edge-aligned.

    Parameters
    ----------
    length : int
        Axis length in pixels.
    size : int
        Tile side in pixels.
    stride : int
        Step between tile starts, pixels (> 0).

    Returns
    -------
    list of int
        Increasing offsets; ``[0]`` when ``length <= size``.

    Examples
    --------
    >>> tile_starts(600, 224, 168)
    [0, 168, 336, 376]
    """
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return sorted(set(starts))


def _affine_coeffs(transform: Any) -> tuple[float, float, float, float, float, float]:
    """(a, b, c, d, e, f) of an ``affine.Affine`` or a 6-sequence in the same order."""
    if hasattr(transform, "a"):
        return (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    coeffs = tuple(float(v) for v in transform)
    if len(coeffs) not in (6, 9):
        raise ValueError(f"transform needs 6 coefficients (a, b, c, d, e, f), got {len(coeffs)}")
    return coeffs[:6]  # type: ignore[return-value]


def pixel_bounds(
    transform: Any, row0: int, col0: int, height: int, width: int
) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a pixel window under an affine transform.

    ``x = a * col + b * row + c``, ``y = d * col + e * row + f`` (rasterio / ``affine``
    convention, corners of pixels); works for rotated transforms too (the bounding box).
    """
    a, b, c, d, e, f = _affine_coeffs(transform)
    cols = np.array([col0, col0 + width, col0, col0 + width], dtype=float)
    rows = np.array([row0, row0, row0 + height, row0 + height], dtype=float)
    xs = a * cols + b * rows + c
    ys = d * cols + e * rows + f
    return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def tile_frame(
    phase: np.ndarray,
    size: int = 224,
    overlap: int = 56,
    min_valid_fraction: float = 0.1,
    transform: Any | None = None,
) -> list[Tile]:
    """Tile a frame into ``size x size`` crops covering all of it.

    Parameters
    ----------
    phase : ndarray, shape (rows, cols), float
        The frame (e.g. wrapped phase in radians), NaN = no data; rows, cols >= 64.
    size : int
        Tile side in pixels.
    overlap : int
        Pixels shared by neighbouring tiles, 0 <= overlap < size (stride = size - overlap).
    min_valid_fraction : float
        Tiles with a smaller share of finite pixels are skipped, in [0, 1].
    transform : affine.Affine or 6-sequence (a, b, c, d, e, f), optional
        Pixel -> map transform of the frame; gives each tile its ``bounds``.

    Returns
    -------
    list of Tile
        Row-major order; may be empty if every tile is below ``min_valid_fraction``.

    Raises
    ------
    ValueError
        If ``phase`` is not 2D, a side is below 64 pixels, or an option is out of range.
    """
    phase = np.asarray(phase)
    if phase.ndim != 2:
        raise ValueError(f"a frame must be a 2D array, got shape {phase.shape}")
    rows, cols = phase.shape
    if rows < MIN_FRAME_PX or cols < MIN_FRAME_PX:
        raise ValueError(
            f"frame of {rows} x {cols} pixels is too small to tile: each side must be at least "
            f"{MIN_FRAME_PX} pixels"
        )
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(
            f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}"
        )
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
    data = phase.astype(np.float32, copy=False)
    if rows < size or cols < size:
        data = np.pad(
            data, ((0, max(0, size - rows)), (0, max(0, size - cols))), constant_values=np.nan
        )
    finite = np.isfinite(data)
    stride = size - overlap
    tiles: list[Tile] = []
    for i, r0 in enumerate(tile_starts(rows, size, stride)):
        for j, c0 in enumerate(tile_starts(cols, size, stride)):
            frac = float(finite[r0 : r0 + size, c0 : c0 + size].mean())
            if frac < min_valid_fraction or frac == 0.0:
                continue
            bounds = None if transform is None else pixel_bounds(transform, r0, c0, size, size)
            tiles.append(
                Tile(i, j, r0, c0, frac, data[r0 : r0 + size, c0 : c0 + size].copy(), bounds)
            )
    return tiles


def stack_tiles(tiles: Sequence[Tile], size: int = 224) -> np.ndarray:
    """Stack tiles into one batch.

    Parameters
    ----------
    tiles : sequence of Tile
    size : int
        Tile side, used for the shape of an empty batch.

    Returns
    -------
    ndarray, shape (n, size, size), float32
    """
    if not tiles:
        return np.empty((0, size, size), dtype=np.float32)
    return np.stack([t.data for t in tiles]).astype(np.float32, copy=False)
