"""Terrain on the hot spot grid: DEM GeoTIFFs reprojected, slope and aspect, and the errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from pyproj import Transformer

from pipelines.hotspots.terrain import TerrainError, TerrainGrids, slope_aspect, terrain_on_grid

UTM = "EPSG:32632"
LEFT, TOP = 600_000.0, 5_000_000.0  # upper-left corner of the test grids, UTM 32N


def grid(nx: int, ny: int, cell: float, left: float, top: float, crs: str | None = UTM):
    """A north-up DataArray like the kde's: cell-centre coords, CRS and transform written."""
    x = left + (np.arange(nx) + 0.5) * cell
    y = top - (np.arange(ny) + 0.5) * cell
    da = xr.DataArray(np.zeros((ny, nx)), dims=("y", "x"), coords={"y": y, "x": x})
    da = da.rio.write_transform(Affine(cell, 0.0, left, 0.0, -cell, top))
    return da if crs is None else da.rio.write_crs(crs)


def write_dem(
    path: Path, z: np.ndarray, transform: Affine, crs: str, nodata: float | None = None
) -> Path:
    """Write elevations (row 0 = north) as a single-band GeoTIFF with rioxarray."""
    ny, nx = z.shape
    x = transform.c + (np.arange(nx) + 0.5) * transform.a
    y = transform.f + (np.arange(ny) + 0.5) * transform.e
    da = xr.DataArray(z, dims=("y", "x"), coords={"y": y, "x": x})
    da = da.rio.write_crs(crs).rio.write_transform(transform)
    if nodata is not None:
        da = da.rio.write_nodata(nodata)
    da.rio.to_raster(path)
    return path


def plane_dem(path: Path, left: float, top: float, nx: int, ny: int, cell: float) -> Path:
    """A plane rising 0.1 m/m east and 0.1 m/m north: it faces south-west (225 deg)."""
    x = left + (np.arange(nx) + 0.5) * cell
    y = top - (np.arange(ny) + 0.5) * cell
    z = 1000.0 + 0.1 * (x[None, :] - left) + 0.1 * (y[:, None] - top)
    return write_dem(path, z, Affine(cell, 0, left, 0, -cell, top), UTM)


PLANE_SLOPE = math.degrees(math.atan(0.1 * math.sqrt(2.0)))  # 8.05 deg


def test_tilted_plane_gives_its_aspect_and_slope_on_every_cell_edges_included(tmp_path):
    # DEM of 25 m cells reaching 500 m beyond a 50 m grid on every side.
    dem = plane_dem(tmp_path / "dem.tif", LEFT - 500, TOP + 500, 120, 100, 25.0)
    like = grid(40, 30, 50.0, LEFT, TOP)

    terrain = terrain_on_grid(dem, like)

    assert isinstance(terrain, TerrainGrids)
    assert terrain.source == str(dem)
    assert terrain.aspect_deg.shape == terrain.slope_deg.shape == (30, 40)
    assert terrain.aspect_deg.dtype == np.float32
    # The DEM extends past the grid, so the outermost cells get centred differences too.
    np.testing.assert_allclose(terrain.aspect_deg, 225.0, atol=0.01)
    np.testing.assert_allclose(terrain.slope_deg, PLANE_SLOPE, atol=0.01)


def test_dem_of_exactly_the_grid_matches_slope_aspect_inside(tmp_path):
    rng = np.random.default_rng(3)
    z = np.cumsum(rng.normal(0.0, 5.0, (20, 24)), axis=1)  # rough terrain
    dem = write_dem(tmp_path / "dem.tif", z, Affine(50, 0, LEFT, 0, -50, TOP), UTM)

    terrain = terrain_on_grid(dem, grid(24, 20, 50.0, LEFT, TOP))

    slope, aspect = slope_aspect(z, 50.0, 50.0)
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(terrain.slope_deg[inner], slope[inner], rtol=1e-5)
    np.testing.assert_allclose(terrain.aspect_deg[inner], aspect[inner], atol=1e-3)


def test_dem_ending_at_the_grid_edge_keeps_an_unbiased_slope_on_edge_cells(tmp_path):
    # slope_aspect alone replicates the edge, which halves the slope of the outermost
    # cells; terrain_on_grid extrapolates instead, so a plane is exact on every cell.
    dem = plane_dem(tmp_path / "dem.tif", LEFT, TOP, 40, 30, 50.0)

    terrain = terrain_on_grid(dem, grid(40, 30, 50.0, LEFT, TOP))

    np.testing.assert_allclose(terrain.slope_deg, PLANE_SLOPE, atol=0.01)
    np.testing.assert_allclose(terrain.aspect_deg, 225.0, atol=0.01)


def test_dem_in_geographic_crs_is_reprojected_onto_the_utm_grid(tmp_path):
    # Elevation rising 10 km per degree of latitude around 9 E (UTM 32's central meridian,
    # where grid north is true north): the ground faces south.
    cell = 0.0005
    lon0, lat_top, n = 8.95, 45.1, 200
    lat = lat_top - (np.arange(n) + 0.5) * cell
    z = np.repeat((10_000.0 * (lat - 45.0))[:, None], n, axis=1)
    dem = write_dem(
        tmp_path / "dem4326.tif", z, Affine(cell, 0, lon0, 0, -cell, lat_top), "EPSG:4326"
    )
    e, nn = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(9.0, 45.05)
    like = grid(40, 40, 50.0, round(e) - 1000.0, round(nn) + 1000.0)

    terrain = terrain_on_grid(dem, like)

    # 1 degree of latitude is 111 132 m of meridian at 45 N, 0.9996 of that on the UTM grid.
    expected = math.degrees(math.atan(10_000.0 / (111_132.0 * 0.9996)))
    np.testing.assert_allclose(terrain.slope_deg, expected, atol=0.02)
    np.testing.assert_allclose(terrain.aspect_deg, 180.0, atol=0.2)


def test_dem_covering_part_of_the_grid_leaves_nan_outside(tmp_path):
    # The DEM covers the western 20 of 40 columns (and more north and south).
    dem = plane_dem(tmp_path / "dem.tif", LEFT - 500, TOP + 500, 60, 100, 25.0)
    terrain = terrain_on_grid(dem, grid(40, 30, 50.0, LEFT, TOP))

    assert np.isfinite(terrain.slope_deg[:, :19]).all()
    assert np.isnan(terrain.slope_deg[:, 21:]).all()
    np.testing.assert_allclose(terrain.aspect_deg[:, :19], 225.0, atol=0.01)


def test_dem_nodata_is_masked_not_blended_into_the_slope(tmp_path):
    cell = 50.0
    x = (np.arange(40) + 0.5) * cell
    z = np.repeat((100.0 + 0.05 * x)[None, :], 30, axis=0)  # gentle, 2.9 deg
    z[10:15, 10:15] = -9999.0
    dem = write_dem(tmp_path / "dem.tif", z, Affine(cell, 0, LEFT, 0, -cell, TOP), UTM, -9999.0)

    terrain = terrain_on_grid(dem, grid(40, 30, cell, LEFT, TOP))

    assert np.isnan(terrain.slope_deg[10:15, 10:15]).all()
    finite = terrain.slope_deg[np.isfinite(terrain.slope_deg)]
    # A -9999 m pit blended in would give slopes near 90 degrees around the hole.
    np.testing.assert_allclose(finite, math.degrees(math.atan(0.05)), atol=1e-3)


# --- errors ----------------------------------------------------------------------------------


def test_missing_dem_file_says_which_setting_to_fix(tmp_path):
    with pytest.raises(TerrainError, match=r"set delineation\.dem_path to an existing GeoTIFF"):
        terrain_on_grid(tmp_path / "nowhere.tif", grid(10, 10, 50.0, LEFT, TOP))


def test_terrain_error_is_a_value_error():
    assert issubclass(TerrainError, ValueError)


def test_file_that_is_not_a_raster_is_reported(tmp_path):
    bad = tmp_path / "dem.tif"
    bad.write_text("not a GeoTIFF")
    with pytest.raises(TerrainError, match="cannot read DEM"):
        terrain_on_grid(bad, grid(10, 10, 50.0, LEFT, TOP))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_dem_without_crs_is_rejected(tmp_path):
    path = tmp_path / "nocrs.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "float32"}
    with rasterio.open(path, "w", transform=Affine(50, 0, LEFT, 0, -50, TOP), **profile) as dst:
        dst.write(np.ones((1, 8, 8), dtype=np.float32))
    with pytest.raises(TerrainError, match="has no CRS"):
        terrain_on_grid(path, grid(8, 8, 50.0, LEFT, TOP))


def test_dem_that_misses_the_grid_names_both_bounds(tmp_path):
    dem = plane_dem(tmp_path / "dem.tif", LEFT + 50_000, TOP, 20, 20, 25.0)
    with pytest.raises(TerrainError, match="does not cover") as info:
        terrain_on_grid(dem, grid(10, 10, 50.0, LEFT, TOP))
    message = str(info.value)
    assert "DEM bounds (650000, 4999500, 650500, 5000000)" in message
    assert "grid bounds (600000, 4999500, 600500, 5000000)" in message


@pytest.mark.parametrize(
    ("crs", "match"), [(None, "grid has no CRS"), ("EPSG:4326", "not a projected CRS")]
)
def test_grid_without_a_metric_crs_is_rejected(tmp_path, crs, match):
    dem = plane_dem(tmp_path / "dem.tif", LEFT, TOP, 20, 20, 25.0)
    with pytest.raises(TerrainError, match=match):
        terrain_on_grid(dem, grid(10, 10, 50.0, LEFT, TOP, crs=crs))
