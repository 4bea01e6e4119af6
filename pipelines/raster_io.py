"""Read interferogram rasters (GeoTIFF or NetCDF) into checked wrapped-phase arrays.

A thin adapter over rioxarray/xarray. It refuses, with a one-line reason that says
what to do, everything the unrest model cannot score honestly: missing or unreadable
files, rasters without a CRS or with a CRS not in the accepted list, integer data,
values outside [-pi, pi] (unwrapped phase, degrees), several bands, and rasters
with no finite pixel at all. The same reasons are used for the dead-letter topic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5")
# Variable names LiCSAR-like NetCDF exports use for wrapped phase, tried in this order.
SPATIAL_DIMS = ("x", "y", "lon", "lat", "longitude", "latitude")
PHASE_VARIABLE_NAMES = ("phase", "wrapped_phase", "diff_pha", "pha", "Band1", "band_data")


class ProductError(ValueError):
    """A product cannot be processed; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PhaseRaster:
    """Wrapped phase of one interferogram, float32 radians, NaN where there is no data.

    Attributes
    ----------
    phase : ndarray, shape (rows, cols), float32
    transform : Affine
        Pixel (col, row) to CRS coordinates (upper-left corner convention).
    crs : str
        As ``EPSG:nnnn`` where known, else WKT.
    """

    phase: np.ndarray
    transform: Affine
    crs: str


def _open_dataarray(path: Path):  # -> xarray.DataArray
    import rioxarray
    import xarray as xr

    if path.suffix.lower() in NETCDF_SUFFIXES:
        ds = xr.open_dataset(path, engine="h5netcdf", decode_coords="all")
        names = [n for n in PHASE_VARIABLE_NAMES if n in ds.data_vars]
        grids = [n for n, v in ds.data_vars.items() if v.ndim >= 2]
        if not names and not grids:
            raise ProductError("no_phase_variable", f"{path}: no 2-D variable holds wrapped phase")
        return ds[names[0] if names else grids[0]]
    return rioxarray.open_rasterio(path, masked=True)


def read_wrapped_phase(
    path: Path | str,
    *,
    allowed_crs: list[str] | tuple[str, ...] = ("EPSG:4326",),
    phase_tolerance_rad: float = 0.01,
) -> PhaseRaster:
    """Read and check a wrapped-phase raster (LiCSAR ``*.geo.diff_pha.tif`` or NetCDF).

    Parameters
    ----------
    path : path-like
        GeoTIFF (any GDAL raster) or NetCDF file.
    allowed_crs : sequence of str
        Accepted CRS, compared as EPSG codes where possible.
    phase_tolerance_rad : float
        Slack beyond +-pi before values are judged not to be wrapped radians.

    Raises
    ------
    ProductError
        With ``reason`` one of ``not_found``, ``unreadable``, ``no_phase_variable``,
        ``multiband``, ``no_crs``, ``wrong_crs``, ``wrong_dtype``, ``not_wrapped_phase``,
        ``all_nan``.
    """
    from pyproj import CRS

    path = Path(path)
    if not path.is_file():
        raise ProductError("not_found", f"{path}: file not found")
    try:
        da = _open_dataarray(path)
    except ProductError:
        raise
    except Exception as e:  # rasterio/h5netcdf raise many types for a corrupt file
        raise ProductError(
            "unreadable", f"{path}: cannot be read as GeoTIFF or NetCDF ({e})"
        ) from e
    try:
        extra_dims = [d for d in da.dims if d not in SPATIAL_DIMS]
        for dim in extra_dims:
            if da.sizes[dim] != 1:
                raise ProductError(
                    "multiband",
                    f"{path}: {da.sizes[dim]} layers along '{dim}'; give one wrapped-phase band",
                )
            da = da.isel({dim: 0})
        crs = da.rio.crs
        if crs is None:
            raise ProductError(
                "no_crs", f"{path}: no CRS; a georeferenced product (LiCSAR: EPSG:4326) is needed"
            )
        epsg = CRS.from_user_input(crs).to_epsg()
        crs_name = f"EPSG:{epsg}" if epsg else CRS.from_user_input(crs).to_wkt()
        allowed = {CRS.from_user_input(c).to_epsg() or c for c in allowed_crs}
        if (epsg or crs_name) not in allowed:
            raise ProductError(
                "wrong_crs",
                f"{path}: CRS {crs_name} is not accepted ({', '.join(allowed_crs)}); "
                "reproject the product or add its CRS to products.allowed_crs",
            )
        raw_dtype = np.dtype(da.encoding.get("rasterio_dtype", da.encoding.get("dtype", da.dtype)))
        if not np.issubdtype(raw_dtype, np.floating):
            raise ProductError(
                "wrong_dtype",
                f"{path}: data type {raw_dtype} is not floating point; wrapped phase in radians "
                "is float32",
            )
        phase = np.asarray(da.values, dtype=np.float32)
        transform = da.rio.transform()
    except ProductError:
        raise
    except Exception as e:
        raise ProductError("unreadable", f"{path}: {e}") from e
    finally:
        da.close()
    if phase.ndim != 2:
        raise ProductError("multiband", f"{path}: expected a 2-D raster, got shape {phase.shape}")
    phase[~np.isfinite(phase)] = np.nan
    finite = np.isfinite(phase)
    if not finite.any():
        raise ProductError("all_nan", f"{path}: every pixel is NaN/nodata; nothing to score")
    limit = math.pi + phase_tolerance_rad
    peak = float(np.nanmax(np.abs(phase)))
    if peak > limit:
        raise ProductError(
            "not_wrapped_phase",
            f"{path}: |value| up to {peak:.3g} exceeds pi; expected wrapped phase in radians "
            "(is it unwrapped phase or degrees?)",
        )
    return PhaseRaster(phase=phase, transform=transform, crs=crs_name)


def write_wrapped_phase_geotiff(
    path: Path | str, phase: np.ndarray, transform: Affine, crs: str = "EPSG:4326"
) -> Path:
    """Write float32 wrapped phase as a LiCSAR-like single-band GeoTIFF (nodata = NaN)."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(phase, dtype=np.float32)
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
        dtype="float32", crs=crs, transform=transform, nodata=np.nan, compress="deflate",
    ) as dst:
        dst.write(data, 1)
    return path


def write_wrapped_phase_netcdf(
    path: Path | str, phase: np.ndarray, transform: Affine, crs: str = "EPSG:4326"
) -> Path:
    """Write float32 wrapped phase as NetCDF (variable ``phase``, CF grid mapping)."""
    import rioxarray  # noqa: F401
    import xarray as xr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = phase.shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    da = xr.DataArray(
        np.asarray(phase, dtype=np.float32), dims=("y", "x"), coords={"y": y, "x": x},
        name="phase", attrs={"units": "radians", "long_name": "wrapped interferometric phase"},
    )
    da = da.rio.write_crs(crs).rio.write_transform(transform)
    da.to_dataset().to_netcdf(path, engine="h5netcdf")
    return path
