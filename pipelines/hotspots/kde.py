"""The z-weighted kernel density surface of a hot spot analysis, and its GeoTIFF/NetCDF files.

The hot spot paper turns the Gi* z-scores of scattered PS/CT points into a continuous map
(red = clusters of high velocity, blue = clusters of low velocity) by a kernel density
estimate in which each point is weighted by its z-score (its eq. 2, ArcGIS's Kernel Density
tool). That map, not the points, is what its U-Net segments. This module computes the
surface on a regular north-up grid (pure numpy) and writes it with its CRS; the writers are
the only I/O here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor used below)
import xarray as xr
from affine import Affine

# Density per m2 times this is density per km2.
_M2_PER_KM2 = 1.0e6

# Kernel evaluations (point x stencil cell) held in memory at once, ~16 bytes each per array.
_EVALUATIONS_PER_CHUNK = 2_000_000


def z_weighted_kde(
    xy: np.ndarray,
    z: np.ndarray,
    *,
    radius: float,
    cell_size: float,
    bounds: tuple[float, float, float, float] | None = None,
    crs: str,
    area_unit: Literal["km2", "m2"] = "km2",
) -> xr.DataArray:
    r"""Quartic (biweight) kernel density of points weighted by their Gi* z-scores.

    The paper's eq. 2 (after Silverman 1986, eq. 4.5, as in ArcGIS's Kernel Density), for
    a cell centre ``x``:

    .. math::

        \mathrm{Density}(x) = \frac{1}{d^2} \sum_{i=1}^{n}
            \left[\frac{3}{\pi}\, p_i \left(1 - \left(\frac{|x - x_i|}{d}\right)^2\right)^2
            \right] \quad \text{over the points with } |x - x_i| < d,

    with ``d`` the search radius and ``p_i`` the weight of point ``i``, here its z-score.
    The kernel ``3 / (pi d^2) (1 - r^2/d^2)^2`` integrates to exactly 1 over the disc of
    radius ``d``, so the surface integrates to ``sum(z)``: each point spreads its z-score
    over the disc. Density is evaluated at cell centres (no cell averaging), as ArcGIS does.
    The paper does not state the area unit; ArcGIS's default for a CRS in metres is square
    kilometres, which is the default here (``area_unit="m2"`` gives the raw eq. 2 value).

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Point coordinates in a metric CRS, metres.
    z : ndarray, shape (n,)
        Weight per point (Gi* z-score, dimensionless); finite.
    radius : float
        Search radius ``d``, metres (> 0).
    cell_size : float
        Grid spacing, metres (> 0). Keep it well below ``radius`` (e.g. radius / 3 or
        less): the kernel is sampled at cell centres.
    bounds : tuple of 4 floats, optional
        ``(xmin, ymin, xmax, ymax)`` of the grid in metres. The grid starts at
        ``(xmin, ymax)`` and is extended right and down to whole cells. Points outside
        still contribute to cells within ``radius``. Default: the points' extent widened by
        ``radius`` and snapped outwards to multiples of ``cell_size`` (so grids of
        different runs with the same cell size line up).
    crs : str
        The metric CRS of ``xy`` (e.g. ``"EPSG:32632"``), attached with rioxarray.
    area_unit : {"km2", "m2"}, default "km2"
        Unit of area of the density.

    Returns
    -------
    xarray.DataArray, shape (ny, nx), float64
        Named ``z_kernel_density``, dims (``y``, ``x``) with cell-centre coordinates in
        metres, ``y`` decreasing (north up); CRS and affine transform written by rioxarray;
        attrs ``units``, ``radius_m``, ``cell_size_m``, ``kernel``, ``description``.

    Raises
    ------
    ValueError
        On shapes that do not match, non-finite input, non-positive radius or cell size,
        or empty bounds.

    References
    ----------
    Silverman, B. W. (1986). *Density Estimation for Statistics and Data Analysis*.
    Chapman and Hall, London, p. 76, eq. 4.5. https://doi.org/10.1201/9781315140919

    Examples
    --------
    >>> da = z_weighted_kde(np.array([[0.0, 0.0]]), np.array([2.0]), radius=100.0,
    ...                     cell_size=10.0, crs="EPSG:32632", area_unit="m2")
    >>> da.shape, float(da.sum() * 10.0 * 10.0).__round__(3)
    ((20, 20), 2.0)
    """
    points = np.asarray(xy, dtype=np.float64)
    weights = np.asarray(z, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {points.shape}")
    if weights.shape != (points.shape[0],):
        raise ValueError(f"z must have shape ({points.shape[0]},), got {weights.shape}")
    if not (np.isfinite(points).all() and np.isfinite(weights).all()):
        raise ValueError("xy and z must be finite")
    if not (math.isfinite(radius) and radius > 0 and math.isfinite(cell_size) and cell_size > 0):
        raise ValueError(f"radius and cell_size must be positive, got {radius}, {cell_size}")
    if area_unit not in ("km2", "m2"):
        raise ValueError(f"area_unit must be 'km2' or 'm2', got {area_unit!r}")

    left, top, nx, ny = _grid(points, radius, cell_size, bounds)
    surface = _accumulate(points, weights, radius, cell_size, left, top, nx, ny)
    surface *= 3.0 / (math.pi * radius * radius)
    if area_unit == "km2":
        surface *= _M2_PER_KM2

    x = left + (np.arange(nx) + 0.5) * cell_size
    y = top - (np.arange(ny) + 0.5) * cell_size
    da = xr.DataArray(
        surface,
        dims=("y", "x"),
        coords={"y": y, "x": x},
        name="z_kernel_density",
        attrs={
            "long_name": "z-weighted kernel density of Gi* z-scores",
            "units": f"1/{area_unit}",
            "radius_m": float(radius),
            "cell_size_m": float(cell_size),
            "kernel": "quartic (biweight), 3/(pi d^2) * (1 - r^2/d^2)^2 for r < d",
            "description": (
                "sum over points of z_i * K(|x - x_i|); integrates to sum(z); positive = "
                "clusters of high values, negative = clusters of low values"
            ),
        },
    )
    transform = Affine(cell_size, 0.0, left, 0.0, -cell_size, top)
    return da.rio.write_crs(crs).rio.write_transform(transform)


def _grid(
    points: np.ndarray,
    radius: float,
    cell: float,
    bounds: tuple[float, float, float, float] | None,
) -> tuple[float, float, int, int]:
    """Upper-left corner and size (nx, ny) of the grid."""
    if bounds is None:
        if points.shape[0] == 0:
            raise ValueError("no points and no bounds: nothing to grid")
        xmin = math.floor((points[:, 0].min() - radius) / cell) * cell
        ymin = math.floor((points[:, 1].min() - radius) / cell) * cell
        xmax = math.ceil((points[:, 0].max() + radius) / cell) * cell
        ymax = math.ceil((points[:, 1].max() + radius) / cell) * cell
    else:
        xmin, ymin, xmax, ymax = (float(b) for b in bounds)
        if not (np.isfinite([xmin, ymin, xmax, ymax]).all() and xmax > xmin and ymax > ymin):
            raise ValueError(f"bounds must be finite (xmin, ymin, xmax, ymax), got {bounds}")
    # The tolerance keeps an extent that is a whole number of cells from growing by one.
    nx = max(1, math.ceil((xmax - xmin) / cell - 1e-9))
    ny = max(1, math.ceil((ymax - ymin) / cell - 1e-9))
    return xmin, ymax, nx, ny


def _accumulate(
    points: np.ndarray,
    weights: np.ndarray,
    radius: float,
    cell: float,
    left: float,
    top: float,
    nx: int,
    ny: int,
) -> np.ndarray:
    """``sum_i w_i (1 - r^2/d^2)^2`` at every cell centre within ``d`` of a point.

    Each point visits the square stencil of cells around its own cell that can hold
    centres within ``radius``; squared distances are separable (dx^2 + dy^2), so they are
    built from two small arrays per point.
    """
    surface = np.zeros(ny * nx)
    r2 = radius * radius
    # Only points whose disc can touch the grid matter.
    x, y = points[:, 0], points[:, 1]
    right, bottom = left + nx * cell, top - ny * cell
    near = (
        (x > left - radius) & (x < right + radius) & (y > bottom - radius) & (y < top + radius)
        & (weights != 0)
    )
    x, y, w = x[near], y[near], weights[near]
    if x.size == 0:
        return surface.reshape(ny, nx)
    col0 = np.floor((x - left) / cell).astype(np.int64)
    row0 = np.floor((top - y) / cell).astype(np.int64)
    # Row-major order of the points makes each chunk's cells a narrow band of the grid.
    order = np.lexsort((col0, row0))
    x, y, w, col0, row0 = x[order], y[order], w[order], col0[order], row0[order]

    half = math.ceil(radius / cell) + 1
    offsets = np.arange(-half, half + 1)
    per_chunk = max(1, _EVALUATIONS_PER_CHUNK // offsets.size**2)
    for start in range(0, x.size, per_chunk):
        sl = slice(start, start + per_chunk)
        cols = col0[sl, None] + offsets
        rows = row0[sl, None] + offsets
        dx2 = (left + (cols + 0.5) * cell - x[sl, None]) ** 2
        dy2 = (top - (rows + 0.5) * cell - y[sl, None]) ** 2
        # Cells off the grid get an infinite distance, i.e. no weight.
        dx2[(cols < 0) | (cols >= nx)] = np.inf
        dy2[(rows < 0) | (rows >= ny)] = np.inf
        d2 = dy2[:, :, None] + dx2[:, None, :]
        inside = d2 < r2
        p_idx, r_idx, c_idx = np.nonzero(inside)
        kernel = (1.0 - d2[inside] / r2) ** 2 * w[sl][p_idx]
        flat = rows[p_idx, r_idx] * nx + cols[p_idx, c_idx]
        if flat.size == 0:
            continue
        lo, hi = int(flat.min()), int(flat.max()) + 1
        surface[lo:hi] += np.bincount(flat - lo, weights=kernel, minlength=hi - lo)
    return surface.reshape(ny, nx)


def write_netcdf(da: xr.DataArray, path: Path | str) -> Path:
    """Write a density surface as NetCDF-4 (h5netcdf) with its CF grid mapping.

    Read it back with ``xarray.open_dataset(path, engine="h5netcdf", decode_coords="all")``;
    ``.rio.crs`` and ``.rio.transform()`` are then those of ``da``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    da.to_dataset(name=da.name or "z_kernel_density").to_netcdf(path, engine="h5netcdf")
    return path


def write_geotiff(da: xr.DataArray, path: Path | str) -> Path:
    """Write a density surface as a single-band float64 GeoTIFF (deflate), CRS and transform."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    da.rio.to_raster(path, driver="GTiff", compress="deflate")
    return path
