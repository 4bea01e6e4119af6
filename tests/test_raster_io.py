"""Reading wrapped-phase rasters: round trips and every refusal reason."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipelines.raster_io import (
    ProductError,
    read_wrapped_phase,
    write_wrapped_phase_geotiff,
    write_wrapped_phase_netcdf,
)

TRANSFORM = Affine(0.001, 0, 14.9, 0, -0.001, 37.8)


@pytest.fixture()
def phase() -> np.ndarray:
    values = np.random.default_rng(1).uniform(-np.pi, np.pi, (90, 130)).astype(np.float32)
    values[:7, :11] = np.nan
    return values


@pytest.mark.parametrize("writer", [write_wrapped_phase_geotiff, write_wrapped_phase_netcdf])
def test_round_trip_keeps_values_nan_transform_and_crs(tmp_path: Path, phase, writer):
    suffix = ".tif" if writer is write_wrapped_phase_geotiff else ".nc"
    path = writer(tmp_path / f"p{suffix}", phase, TRANSFORM)
    raster = read_wrapped_phase(path)
    np.testing.assert_array_equal(np.isnan(raster.phase), np.isnan(phase))
    np.testing.assert_allclose(raster.phase, phase, equal_nan=True)
    assert raster.crs == "EPSG:4326"
    assert raster.transform.almost_equals(TRANSFORM)


def _reason(path: Path, **kwargs) -> str:
    with pytest.raises(ProductError) as info:
        read_wrapped_phase(path, **kwargs)
    assert str(path.name) in str(info.value)
    return info.value.reason


def test_refusals_carry_a_reason_code(tmp_path: Path, phase):
    assert _reason(tmp_path / "missing.tif") == "not_found"
    (tmp_path / "junk.tif").write_bytes(b"II*\x00not a tiff at all")
    assert _reason(tmp_path / "junk.tif") == "unreadable"
    utm = write_wrapped_phase_geotiff(tmp_path / "utm.tif", phase, TRANSFORM, crs="EPSG:32633")
    assert _reason(utm) == "wrong_crs"
    assert read_wrapped_phase(utm, allowed_crs=["EPSG:32633"]).crs == "EPSG:32633"
    unwrapped = write_wrapped_phase_geotiff(tmp_path / "unw.tif", phase * 4, TRANSFORM)
    assert _reason(unwrapped) == "not_wrapped_phase"
    empty = write_wrapped_phase_geotiff(tmp_path / "nan.tif", phase * np.nan, TRANSFORM)
    assert _reason(empty) == "all_nan"


def test_integer_and_unreferenced_rasters_are_refused(tmp_path: Path):
    ints = tmp_path / "int.tif"
    with rasterio.open(ints, "w", driver="GTiff", height=8, width=8, count=1, dtype="int16",
                       crs="EPSG:4326", transform=TRANSFORM) as dst:
        dst.write(np.ones((8, 8), np.int16), 1)
    assert _reason(ints) == "wrong_dtype"
    bare = tmp_path / "nocrs.tif"
    with rasterio.open(bare, "w", driver="GTiff", height=8, width=8, count=1,
                       dtype="float32") as dst:
        dst.write(np.zeros((8, 8), np.float32), 1)
    assert _reason(bare) == "no_crs"
    multi = tmp_path / "multi.tif"
    with rasterio.open(multi, "w", driver="GTiff", height=8, width=8, count=2, dtype="float32",
                       crs="EPSG:4326", transform=TRANSFORM) as dst:
        dst.write(np.zeros((2, 8, 8), np.float32))
    assert _reason(multi) == "multiband"
