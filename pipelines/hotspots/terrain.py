"""Terrain slope and aspect, the topographic inputs of the delineation U-Net.

The hot spot paper's best model adds terrain aspect to the hot spot map: a natural slope
faces one way, so aspect changes at the ridges and valley lines that bound a landslide. This
module computes slope and aspect from an elevation grid (pure numpy) with Horn's (1981)
third-order finite differences, the estimator of GDAL's ``gdaldem`` and ArcGIS's Slope and
Aspect tools. :func:`terrain_on_grid`, the only I/O here, reads an operator's DEM GeoTIFF
and puts slope and aspect on the hot spot grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

FLAT_SLOPE_DEG = 1.0
"""Below this slope the aspect is undefined (NaN): on flat ground it is noise."""


def slope_aspect(
    dem: np.ndarray, cell_x: float, cell_y: float, *, flat_slope_deg: float = FLAT_SLOPE_DEG
) -> tuple[np.ndarray, np.ndarray]:
    """Slope and aspect in degrees of a north-up elevation grid.

    Horn's weighted 3x3 differences. The outermost ring of cells sees an edge-replicated
    border, which about halves its slope; :func:`terrain_on_grid` avoids that by reading one
    cell beyond the grid. A cell with any NaN neighbour gets NaN.

    Parameters
    ----------
    dem : ndarray, shape (ny, nx)
        Elevation in metres, row 0 = north, NaN = no data.
    cell_x, cell_y : float
        Cell width and height in metres (> 0).
    flat_slope_deg : float
        Aspect is NaN where the slope is below this (flat ground has no facing).

    Returns
    -------
    slope_deg : ndarray, shape (ny, nx)
        0 (flat) to 90 (vertical).
    aspect_deg : ndarray, shape (ny, nx)
        Direction the slope faces (downslope), degrees clockwise from north, [0, 360);
        NaN on flat ground or no data.

    References
    ----------
    Horn, B. K. P. (1981). Hill shading and the reflectance map. *Proceedings of the IEEE*
    69(1), 14-47. https://doi.org/10.1109/PROC.1981.11918

    Examples
    --------
    A plane rising to the north (so facing south) by 1 m per 10 m:

    >>> dem = np.tile(np.arange(5.0)[::-1, None], (1, 5))
    >>> s, a = slope_aspect(dem, 10.0, 10.0)
    >>> round(float(s[2, 2]), 2), round(float(a[2, 2]), 1)
    (5.71, 180.0)
    """
    z = np.asarray(dem, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"dem must be 2-D, got shape {z.shape}")
    if not (np.isfinite(cell_x) and np.isfinite(cell_y) and cell_x > 0 and cell_y > 0):
        raise ValueError(f"cell sizes must be positive, got {cell_x}, {cell_y}")
    p = np.pad(z, 1, mode="edge")
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, f = p[1:-1, :-2], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    # East and north gradients (rows run south, so north = up the array).
    dz_dx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * cell_x)
    dz_dy = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * cell_y)
    slope = np.degrees(np.arctan(np.hypot(dz_dx, dz_dy)))
    # Downslope direction is minus the gradient; azimuth clockwise from north.
    aspect = np.degrees(np.arctan2(-dz_dx, -dz_dy)) % 360.0
    aspect = np.where(slope >= flat_slope_deg, aspect, np.nan)
    return slope, aspect


class TerrainError(ValueError):
    """The DEM cannot give terrain on the hot spot grid; the message says what to fix."""


@dataclass(frozen=True)
class TerrainGrids:
    """Terrain aspect and slope on the hot spot grid, the model's terrain inputs.

    Attributes
    ----------
    aspect_deg : ndarray of float32, shape (ny, nx)
        Downslope direction, degrees clockwise from north, [0, 360); NaN on flat ground
        (slope below :data:`FLAT_SLOPE_DEG`) and outside the DEM.
    slope_deg : ndarray of float32, shape (ny, nx)
        Slope, degrees [0, 90]; NaN outside the DEM.
    source : str
        Path of the DEM they come from (for notes and logs).
    """

    aspect_deg: np.ndarray
    slope_deg: np.ndarray
    source: str


def terrain_on_grid(dem_path: Path | str, like: xr.DataArray) -> TerrainGrids:
    """Slope and aspect of a DEM GeoTIFF on the grid of a hot spot map.

    The DEM's first band is reprojected (bilinear, with rioxarray/GDAL) onto ``like``'s grid
    widened by one cell on each side, and :func:`slope_aspect` runs there with ``like``'s cell
    sizes, so the grid's outermost cells get centred differences from DEM cells beyond the
    grid; where the DEM stops at the grid edge the missing ring is extrapolated linearly, so
    those cells get a one-sided difference (exact on a plane). Reprojecting *before*
    differencing keeps the horizontal unit metric whatever the DEM's CRS (a DEM in degrees
    is fine). Elevations must be in metres. Cells outside the DEM are NaN, which the model
    reads as unknown.

    Parameters
    ----------
    dem_path : path or str
        A GeoTIFF (any GDAL raster) with a CRS; its nodata value, if set, is masked.
    like : xarray.DataArray, dims (y, x)
        The grid to sample on, e.g. the output of
        :func:`pipelines.hotspots.kde.z_weighted_kde`: north up, a projected CRS in metres
        and its transform written with rioxarray.

    Returns
    -------
    TerrainGrids
        Aspect and slope, float32, shape of ``like``; ``source`` is ``str(dem_path)``.

    Raises
    ------
    TerrainError
        (a ``ValueError``) When the file does not exist or cannot be read as a raster, the
        DEM or the grid has no CRS, the grid is not in a projected CRS or not north up, or
        the DEM does not cover any cell of the grid.
    """
    import rioxarray  # the one I/O of this module; keeps slope_aspect free of GDAL
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    path = Path(dem_path)
    if not path.is_file():
        raise TerrainError(
            f"DEM {path} not found: set delineation.dem_path to an existing GeoTIFF "
            "(or leave it empty to delineate from the hot spot map alone)"
        )
    grid_crs = like.rio.crs
    if grid_crs is None:
        raise TerrainError("the hot spot grid has no CRS: write one with rioxarray first")
    if not grid_crs.is_projected:
        raise TerrainError(
            f"the hot spot grid is in {grid_crs}, not a projected CRS in metres: slope needs "
            "metric cell sizes"
        )
    t = like.rio.transform()
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise TerrainError(f"the hot spot grid must be north up without rotation, got {t!r}")
    ny, nx = like.rio.height, like.rio.width

    try:
        opened = rioxarray.open_rasterio(path, masked=True)
    except (RasterioError, OSError) as e:
        raise TerrainError(
            f"cannot read DEM {path} as a raster ({e}): set delineation.dem_path to a GeoTIFF"
        ) from e
    if not isinstance(opened, xr.DataArray):
        raise TerrainError(f"DEM {path} holds several datasets: give a single-band GeoTIFF")
    dem = opened.isel(band=0) if "band" in opened.dims else opened
    if dem.rio.crs is None:
        raise TerrainError(
            f"DEM {path} has no CRS: write one into the file (e.g. "
            "gdal_edit.py -a_srs EPSG:<code>) so it can be placed on the hot spot grid"
        )

    # One extra cell all round: the grid's edge cells then get centred differences.
    padded_transform = Affine(t.a, 0.0, t.c - t.a, 0.0, t.e, t.f - t.e)
    on_grid = dem.rio.reproject(
        grid_crs,
        shape=(ny + 2, nx + 2),
        transform=padded_transform,
        resampling=Resampling.bilinear,
        nodata=np.nan,
    )
    z = np.asarray(on_grid.values, dtype=np.float64)
    if not np.isfinite(z[1:-1, 1:-1]).any():
        dem_bounds = _fmt_bounds(dem.rio.transform_bounds(grid_crs))
        grid_bounds = _fmt_bounds(like.rio.bounds())
        raise TerrainError(
            f"DEM {path} does not cover the hot spot grid: DEM bounds {dem_bounds}, grid "
            f"bounds {grid_bounds} (xmin, ymin, xmax, ymax in {grid_crs}); set "
            "delineation.dem_path to a DEM of the monitored area"
        )
    # Where the DEM ends at the grid edge, extrapolate the edge linearly (2 z0 - z1) rather
    # than let the missing ring blank the grid's outermost cells: the difference across an
    # edge cell is then one-sided but unbiased (edge replication would halve the slope).
    ring = np.ones(z.shape, dtype=bool)
    ring[1:-1, 1:-1] = False
    extrapolated = np.pad(z[1:-1, 1:-1], 1, mode="reflect", reflect_type="odd")
    z = np.where(ring & np.isnan(z), extrapolated, z)
    slope, aspect = slope_aspect(z, abs(t.a), abs(t.e))
    return TerrainGrids(
        aspect_deg=aspect[1:-1, 1:-1].astype(np.float32),
        slope_deg=slope[1:-1, 1:-1].astype(np.float32),
        source=str(dem_path),
    )


def _fmt_bounds(bounds: tuple[float, ...]) -> str:
    """``(xmin, ymin, xmax, ymax)`` rounded to the metre, for error messages."""
    return "(" + ", ".join(f"{b:.0f}" for b in bounds) + ")"
