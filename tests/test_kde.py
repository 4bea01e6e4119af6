"""z-weighted kernel density (pipelines.hotspots.kde) and metric projection (.projection).

The density is checked against the paper's eq. 2 evaluated by hand at single cells, its
integral against the kernel's normalisation, and its files against a read back with
xarray/rioxarray. The projection is checked against known UTM coordinates and geodesic
distances from pyproj.Geod.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import rioxarray
import xarray as xr
from pyproj import CRS, Geod

from pipelines.hotspots import kde, projection
from pipelines.hotspots.kde import write_geotiff, write_netcdf, z_weighted_kde
from pipelines.hotspots.projection import from_metric, to_metric, utm_crs_for

CRS_UTM = "EPSG:32632"


def quartic(distance: np.ndarray, radius: float, weight: float) -> np.ndarray:
    """Eq. 2 of the paper for one point, per m^2: 3/(pi d^2) p (1 - (r/d)^2)^2 inside d."""
    r = np.asarray(distance, dtype=float)
    inside = r < radius
    return np.where(inside, 3.0 / (math.pi * radius**2) * weight * (1 - (r / radius) ** 2) ** 2, 0)


def cell_distances(da: xr.DataArray, x0: float, y0: float) -> np.ndarray:
    xx, yy = np.meshgrid(da["x"].values, da["y"].values)
    return np.hypot(xx - x0, yy - y0)


# --- the density surface -------------------------------------------------------------------


def test_single_point_gives_the_quartic_profile_and_zero_beyond_the_radius():
    x0, y0, z0, radius = 503.7, 1021.2, 2.5, 150.0
    da = z_weighted_kde(np.array([[x0, y0]]), np.array([z0]), radius=radius, cell_size=10.0,
                        crs=CRS_UTM, area_unit="m2")
    d = cell_distances(da, x0, y0)
    np.testing.assert_allclose(da.values, quartic(d, radius, z0), rtol=1e-12, atol=1e-18)
    assert np.all(da.values[d >= radius] == 0.0)
    assert np.all(da.values[d < radius] > 0.0)
    # The peak is at the cell centre closest to the point, below the kernel's maximum.
    assert da.values.max() <= 3.0 / (math.pi * radius**2) * z0


def test_density_is_per_square_kilometre_by_default():
    xy, z = np.array([[0.0, 0.0]]), np.array([1.0])
    per_km2 = z_weighted_kde(xy, z, radius=100.0, cell_size=10.0, crs=CRS_UTM)
    per_m2 = z_weighted_kde(xy, z, radius=100.0, cell_size=10.0, crs=CRS_UTM, area_unit="m2")
    np.testing.assert_allclose(per_km2.values, per_m2.values * 1e6, rtol=1e-12)
    assert per_km2.attrs["units"] == "1/km2" and per_m2.attrs["units"] == "1/m2"


@pytest.mark.parametrize(("radius", "cell_size"), [(150.0, 5.0), (150.0, 25.0), (400.0, 20.0)])
def test_kernel_integrates_to_the_points_z(radius, cell_size):
    # 3/(pi d^2) * int_0^d (1 - r^2/d^2)^2 2 pi r dr = 1, so each point spreads exactly z.
    xy = np.array([[12.3, -40.7], [900.0, 850.0]])
    z = np.array([3.0, -1.5])
    da = z_weighted_kde(xy, z, radius=radius, cell_size=cell_size, crs=CRS_UTM)
    cell_km2 = cell_size**2 / 1e6
    # Midpoint-rule error of a smooth kernel sampled at cell/radius <= 1/6: below 1 %.
    assert float(da.sum()) * cell_km2 == pytest.approx(z.sum(), rel=0.01)
    left = da.sel(x=slice(None, 450.0))
    assert float(left.sum()) * cell_km2 == pytest.approx(3.0, rel=0.01)


def test_symmetric_points_give_a_symmetric_surface():
    # Four equal points placed symmetrically about the cell centre (0, 0): the surface has
    # the square's symmetries (mirror in x, in y, and in the diagonal).
    xy = np.array([[-60.0, 0.0], [60.0, 0.0], [0.0, -60.0], [0.0, 60.0]])
    da = z_weighted_kde(xy, np.full(4, 2.0), radius=150.0, cell_size=10.0,
                        bounds=(-205.0, -205.0, 205.0, 205.0), crs=CRS_UTM)
    values = da.values
    np.testing.assert_allclose(values, values[::-1, :], rtol=1e-12)
    np.testing.assert_allclose(values, values[:, ::-1], rtol=1e-12)
    np.testing.assert_allclose(values, values.T, rtol=1e-12)
    centre = da.sel(x=0.0, y=0.0, method="nearest")
    assert float(centre.x) == 0.0 and float(centre.y) == 0.0
    expected = 4 * quartic(np.array(60.0), 150.0, 2.0) * 1e6
    assert float(centre) == pytest.approx(float(expected), rel=1e-12)


def test_opposite_z_scores_cancel():
    xy = np.array([[100.0, 100.0], [100.0, 100.0]])
    da = z_weighted_kde(xy, np.array([3.0, -3.0]), radius=150.0, cell_size=10.0, crs=CRS_UTM)
    np.testing.assert_allclose(da.values, 0.0, atol=1e-9)


def test_density_sums_over_points_linearly():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 2000, (300, 2))
    z = rng.normal(0, 2, 300)
    bounds = (-200.0, -200.0, 2200.0, 2200.0)
    whole = z_weighted_kde(xy, z, radius=150.0, cell_size=20.0, bounds=bounds, crs=CRS_UTM)
    first = z_weighted_kde(xy[:100], z[:100], radius=150.0, cell_size=20.0, bounds=bounds,
                           crs=CRS_UTM)
    rest = z_weighted_kde(xy[100:], z[100:], radius=150.0, cell_size=20.0, bounds=bounds,
                          crs=CRS_UTM)
    np.testing.assert_allclose(whole.values, first.values + rest.values, atol=1e-9)
    # Brute force at a few cells: eq. 2 summed over all points.
    for iy, ix in [(10, 10), (55, 60), (100, 3)]:
        cx, cy = float(whole.x[ix]), float(whole.y[iy])
        expected = quartic(np.hypot(xy[:, 0] - cx, xy[:, 1] - cy), 150.0, 1.0) @ z * 1e6
        assert float(whole[iy, ix]) == pytest.approx(expected, rel=1e-10, abs=1e-9)


def test_grid_geometry_default_and_given_bounds():
    xy = np.array([[1003.0, 2017.0], [1441.0, 2299.0]])
    da = z_weighted_kde(xy, np.ones(2), radius=150.0, cell_size=50.0, crs=CRS_UTM)
    assert da.dims == ("y", "x")
    # Points' extent widened by the radius, snapped outwards to the 50 m lattice.
    transform = da.rio.transform()
    assert (transform.c, transform.f, transform.a, transform.e) == (850.0, 2450.0, 50.0, -50.0)
    assert da.shape == ((2450 - 1850) // 50, (1600 - 850) // 50)
    np.testing.assert_allclose(np.diff(da["x"].values), 50.0)
    np.testing.assert_allclose(np.diff(da["y"].values), -50.0)  # north up
    assert da["x"].values[0] == 875.0 and da["y"].values[0] == 2425.0  # cell centres
    assert da.rio.crs == CRS.from_user_input(CRS_UTM)
    assert da.attrs["radius_m"] == 150.0 and da.attrs["cell_size_m"] == 50.0
    # Given bounds are kept, extended to whole cells to the right and down.
    boxed = z_weighted_kde(xy, np.ones(2), radius=150.0, cell_size=50.0,
                           bounds=(1000.0, 2000.0, 1420.0, 2300.0), crs=CRS_UTM)
    assert boxed.shape == (6, 9)
    assert boxed.rio.transform().c == 1000.0 and boxed.rio.transform().f == 2300.0


def test_points_outside_the_bounds_still_contribute_near_the_edge():
    da = z_weighted_kde(np.array([[-50.0, 50.0]]), np.array([1.0]), radius=150.0,
                        cell_size=10.0, bounds=(0.0, 0.0, 200.0, 100.0), crs=CRS_UTM)
    assert da.values[:, 0].max() > 0 and da.values[:, -1].max() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radius": 0.0}, "radius"),
        ({"cell_size": -1.0}, "cell_size"),
        ({"z": np.array([np.nan])}, "finite"),
        ({"z": np.array([1.0, 2.0])}, "shape"),
        ({"bounds": (10.0, 0.0, 0.0, 10.0)}, "bounds"),
        ({"area_unit": "ha"}, "area_unit"),
    ],
)
def test_kde_rejects_bad_input(kwargs, message):
    args = {"xy": np.zeros((1, 2)), "z": np.ones(1), "radius": 150.0, "cell_size": 10.0,
            "crs": CRS_UTM} | kwargs
    with pytest.raises(ValueError, match=message):
        z_weighted_kde(**args)


# --- files ----------------------------------------------------------------------------------


@pytest.fixture
def surface() -> xr.DataArray:
    rng = np.random.default_rng(8)
    xy = rng.uniform(0, 1000, (200, 2)) + np.array([600_000.0, 4_500_000.0])
    return z_weighted_kde(xy, rng.normal(0, 3, 200), radius=150.0, cell_size=25.0,
                          crs=CRS_UTM)


def test_netcdf_round_trip_keeps_values_crs_and_transform(surface, tmp_path):
    path = write_netcdf(surface, tmp_path / "out" / "kde.nc")
    with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as ds:
        back = ds["z_kernel_density"].load()
    np.testing.assert_array_equal(back.values, surface.values)
    np.testing.assert_array_equal(back["x"].values, surface["x"].values)
    np.testing.assert_array_equal(back["y"].values, surface["y"].values)
    assert back.rio.crs == CRS.from_user_input(CRS_UTM)
    assert back.rio.transform() == surface.rio.transform()
    assert back.attrs["units"] == "1/km2" and back.attrs["radius_m"] == 150.0


def test_geotiff_round_trip_keeps_values_crs_and_transform(surface, tmp_path):
    path = write_geotiff(surface, tmp_path / "kde.tif")
    with rioxarray.open_rasterio(path) as raster:
        back = raster.squeeze("band", drop=True).load()
    np.testing.assert_array_equal(back.values, surface.values)
    assert back.rio.crs == CRS.from_user_input(CRS_UTM)
    assert back.rio.transform() == surface.rio.transform()
    np.testing.assert_allclose(back["x"].values, surface["x"].values)
    np.testing.assert_allclose(back["y"].values, surface["y"].values)


# --- projection -------------------------------------------------------------------------------


def test_to_metric_known_point_and_round_trip():
    # On the central meridian of zone 32 (9 E): x = 500 km; y = 0.9996 * meridian arc to 45 N.
    xy, crs = to_metric(np.array([9.0]), np.array([45.0]))
    assert crs == "EPSG:32632"
    assert xy[0, 0] == pytest.approx(500_000.0, abs=1e-6)
    assert xy[0, 1] == pytest.approx(0.9996 * 4_984_944.378, abs=0.01)
    lon, lat = from_metric(xy, crs)
    assert lon[0] == pytest.approx(9.0, abs=1e-9) and lat[0] == pytest.approx(45.0, abs=1e-9)


@pytest.mark.parametrize(
    ("lon", "lat", "expected"),
    [
        (np.array([-3.6, -3.5]), np.array([37.1, 37.2]), "EPSG:32630"),  # Granada
        (np.array([103.2]), np.array([36.1]), "EPSG:32648"),  # upper Yellow River
        (np.array([-70.6]), np.array([-33.4]), "EPSG:32719"),  # southern hemisphere
        (np.array([179.9, -179.9]), np.array([-17.0, -17.1]), "EPSG:32760"),  # antimeridian
    ],
)
def test_utm_zone_of_the_mean_position(lon, lat, expected):
    assert utm_crs_for(lon, lat) == expected
    assert to_metric(lon, lat)[1] == expected


@pytest.mark.parametrize(("lon", "lat"), [(103.2, 36.1), (-3.6, 37.1), (11.95, 60.0)])
def test_projected_distance_of_150_m_matches_the_geodesic(lon, lat):
    geod = Geod(ellps="WGS84")
    for azimuth in (0.0, 45.0, 90.0, 135.0):
        lon2, lat2, _ = geod.fwd(lon, lat, azimuth, 150.0)
        xy, _ = to_metric(np.array([lon, lon2]), np.array([lat, lat2]))
        assert np.hypot(*(xy[1] - xy[0])) == pytest.approx(150.0, rel=0.005)


def test_to_metric_with_a_named_crs_and_back():
    lon = np.array([10.0, 10.5, 11.0])
    lat = np.array([50.0, 50.2, 49.9])
    xy, crs = to_metric(lon, lat, "EPSG:3035")
    assert crs == "EPSG:3035"
    back_lon, back_lat = from_metric(xy, crs)
    np.testing.assert_allclose(back_lon, lon, atol=1e-9)
    np.testing.assert_allclose(back_lat, lat, atol=1e-9)


@pytest.mark.parametrize(
    ("lon", "lat", "crs", "message"),
    [
        ([1.0, np.nan], [45.0, 45.0], None, "NaN"),
        ([181.0], [45.0], None, "range|\\[-180"),
        ([1.0], [91.0], None, "range|\\[-90"),
        ([1.0, 2.0], [45.0], None, "shape"),
        ([1.0], [88.0], None, "UTM"),
        ([1.0], [45.0], "EPSG:4326", "metres"),
        ([1.0], [45.0], "not a crs", "CRS"),
    ],
)
def test_to_metric_rejects_bad_input(lon, lat, crs, message):
    with pytest.raises(ValueError, match=message):
        to_metric(np.array(lon), np.array(lat), crs)


def test_kde_and_projection_docstring_examples_run():
    for module in (kde, projection):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0
