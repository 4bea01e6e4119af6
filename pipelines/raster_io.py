"""Read interferogram rasters (GeoTIFF or NetCDF) into checked wrapped-phase arrays.

A thin adapter over rioxarray/xarray. It refuses, with a one-line reason that says
what to do, everything the unrest model cannot score honestly: missing, unreadable or
truncated files, rasters without a CRS or with a CRS not in the accepted list, integer data,
values outside [-pi, pi] (unwrapped phase, degrees), several bands, rasters whose
header claims more pixels than allowed (a few-KB compressed or sparse file can claim
billions: the size is checked before any pixel is read), and rasters with no finite
pixel at all. The same reasons are used for the dead-letter topic.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5")
# Variable names LiCSAR-like NetCDF exports use for wrapped phase, tried in this order.
SPATIAL_DIMS = ("x", "y", "lon", "lat", "longitude", "latitude")
PHASE_VARIABLE_NAMES = ("phase", "wrapped_phase", "diff_pha", "pha", "Band1", "band_data")
# TIFF field type -> bytes per value (TIFF 6.0 and BigTIFF); unknown types count as 1.
_TIFF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                    13: 4, 16: 8, 17: 8, 18: 8}
# (offsets tag, byte counts tag): strips and tiles.
_TIFF_BLOCK_TAGS = ((273, 279), (324, 325))
_TIFF_MAX_IFDS = 64
_TIFF_MAX_BLOCK_TABLE_BYTES = 64 * 1024 * 1024


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


def tiff_truncation(path: Path | str) -> str | None:
    """What is cut off in a TIFF/BigTIFF file, from its structure alone; None when intact.

    GDAL opens a truncated GeoTIFF with warnings and reads what is left: its geokeys may be
    gone (it then looks like a raster without a CRS) or its last strips may be missing
    (reading fails, or worse, gives zeros). This walks the image directories and checks
    that every directory, every tag's out-of-line value and every strip or tile lies inside
    the file. Files that are not TIFF return None (the readers judge them).

    Parameters
    ----------
    path : path-like
        The file to check; only its directories and block tables are read.

    Returns
    -------
    str or None
        A short description of the first problem found.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(16)
        if head[:2] not in (b"II", b"MM"):
            return None
        order = "<" if head[:2] == b"II" else ">"
        magic = struct.unpack(order + "H", head[2:4])[0]
        if magic == 42:
            count_fmt, entry_fmt, next_fmt, inline = "H", "HHII", "I", 4
            offset = struct.unpack(order + "I", head[4:8])[0]
        elif magic == 43 and len(head) >= 16:
            count_fmt, entry_fmt, next_fmt, inline = "Q", "HHQQ", "Q", 8
            offset = struct.unpack(order + "Q", head[8:16])[0]
        else:
            return None
        count_size = struct.calcsize(count_fmt)
        entry_size = struct.calcsize(order + entry_fmt)
        next_size = struct.calcsize(next_fmt)
        seen: set[int] = set()
        while offset and len(seen) < _TIFF_MAX_IFDS:
            if offset in seen:
                return f"image directories loop at byte {offset}"
            seen.add(offset)
            f.seek(offset)
            raw = f.read(count_size)
            if len(raw) < count_size:
                return f"image directory at byte {offset} is past the end ({size} bytes)"
            n = struct.unpack(order + count_fmt, raw)[0]
            table = f.read(n * entry_size + next_size)
            if len(table) < n * entry_size + next_size:
                return f"image directory at byte {offset} runs past the end ({size} bytes)"
            tags: dict[int, tuple[int, int, int, bytes]] = {}
            for i in range(n):
                entry = table[i * entry_size : (i + 1) * entry_size]
                tag, typ, count, value = struct.unpack(order + entry_fmt, entry)
                nbytes = count * _TIFF_TYPE_BYTES.get(typ, 1)
                if nbytes > inline and value + nbytes > size:
                    return f"tag {tag} needs bytes {value}..{value + nbytes}, the file has {size}"
                tags[tag] = (typ, count, value, entry[-inline:])
            for offsets_tag, counts_tag in _TIFF_BLOCK_TAGS:
                if offsets_tag in tags and counts_tag in tags:
                    end = _tiff_block_end(f, order, inline, tags[offsets_tag], tags[counts_tag])
                    if end is not None and end > size:
                        return f"image data runs to byte {end}, the file has {size}"
            offset = struct.unpack(order + next_fmt, table[n * entry_size :])[0]
    return None


def _tiff_values(f, order: str, inline: int, field: tuple[int, int, int, bytes]) -> np.ndarray:
    typ, count, value, raw = field
    dtype = np.dtype({3: "u2", 4: "u4", 16: "u8"}.get(typ, "u4")).newbyteorder(order)
    nbytes = count * dtype.itemsize
    if nbytes <= inline:
        return np.frombuffer(raw[:nbytes], dtype=dtype)
    f.seek(value)
    return np.frombuffer(f.read(nbytes), dtype=dtype)


def _tiff_block_end(
    f, order: str, inline: int, offsets: tuple[int, int, int, bytes],
    counts: tuple[int, int, int, bytes],
) -> int | None:
    """Largest offset + byte count over the strips/tiles written (sparse ones are 0)."""
    if max(offsets[1], counts[1]) * 8 > _TIFF_MAX_BLOCK_TABLE_BYTES or offsets[1] != counts[1]:
        return None
    starts = _tiff_values(f, order, inline, offsets).astype(np.int64)
    lengths = _tiff_values(f, order, inline, counts).astype(np.int64)
    written = starts > 0
    if not written.any():
        return None
    return int((starts[written] + lengths[written]).max())


def _check_pixel_count(path: Path, shape: tuple[int, ...], max_pixels: int | None) -> None:
    """Refuse a raster whose header claims more than ``max_pixels`` pixels (nothing read)."""
    n_pixels = math.prod(int(n) for n in shape)
    if max_pixels is not None and n_pixels > max_pixels:
        raise ProductError(
            "too_large",
            f"{path}: {' x '.join(str(int(n)) for n in shape)} = {n_pixels} pixels exceeds the "
            f"limit of {max_pixels} (products.max_raster_pixels); a small compressed file can "
            "claim a huge raster: split the product or raise the limit",
        )


def read_wrapped_phase(
    path: Path | str,
    *,
    allowed_crs: list[str] | tuple[str, ...] = ("EPSG:4326",),
    phase_tolerance_rad: float = 0.01,
    max_pixels: int | None = None,
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
    max_pixels : int, optional
        Largest ``rows * cols`` accepted, checked from the header before any pixel is
        read (decompression bombs); None = no limit.

    Raises
    ------
    ProductError
        With ``reason`` one of ``not_found``, ``unreadable``, ``no_phase_variable``,
        ``multiband``, ``too_large``, ``no_crs``, ``wrong_crs``, ``wrong_dtype``,
        ``not_wrapped_phase``, ``all_nan``.
    """
    from pyproj import CRS

    path = Path(path)
    if not path.is_file():
        raise ProductError("not_found", f"{path}: file not found")
    problem = None if path.suffix.lower() in NETCDF_SUFFIXES else tiff_truncation(path)
    if problem:
        raise ProductError(
            "unreadable", f"{path}: truncated or corrupt GeoTIFF ({problem}); re-publish it"
        )
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
        _check_pixel_count(path, da.shape, max_pixels)
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
